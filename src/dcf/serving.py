"""Answers for a few users or items in about a millisecond, from a fitted model held in
this process: :class:`Snapshot` (issue 23's fast query path).

A fitted model's documented calls (``recommend``, ``neighbours``) build a task graph over
every block, which costs tens of milliseconds on a cluster however small the request.
A snapshot gathers the arrays a score reads once (the ratings by user, the neighbour
lists, the fitted means, counts and biases) and answers each request with the very
function a Top-N task runs on its block (:func:`dcf.predict.topn.recommend_block`), one
user at a time: the same lists and scores, bit for bit, with no scheduler in the way.
It holds the whole matrix and neighbour table in this process's memory, which the
caller sizes (:attr:`Snapshot.nbytes`).
"""

from __future__ import annotations

import dask
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .blocks import row_blocks, stack_rows
from .predict import ScoringData, scoring
from .predict.requests import (as_ids, check_explain, check_request, default_ranking, list_rules, popular_lists,
                              split_users)
from .predict.topn import other_side, popularity_order, recommend_block, recommendation_meta

__all__ = ["Snapshot"]


class Snapshot:
    """A fitted :class:`~dcf.model.KNN` (or one loaded with :func:`dcf.load`) held in this
    process for single requests.

    >>> from dcf.serving import Snapshot                      # doctest: +SKIP
    >>> snap = Snapshot(model)                                # gathers the arrays once
    >>> snap.recommend(196, n=10, items=in_stock)             # pandas, about a millisecond
    """

    def __init__(self, model):
        model.check_fitted()
        self.model = model
        m = model.matrix_
        by_user, W = dask.compute(stack_rows_of(m.by_user), stack_rows_of(model.neighbours_.W))
        self.by_user, self.W = sp.csr_matrix(by_user), sp.csr_matrix(W)
        self.by_user.sort_indices()
        rule, data = scoring(model, default_ranking(model, None))
        fields = dask.compute(data.rating_range, data.global_mean, data.entity_means, data.item_means,
                              data.item_count, data.biases)
        self.data = ScoringData(*fields)
        self.order = popularity_order(self.data.item_count)
        self._sides = {}  # ranking -> (left rows, other side) as the Top-N tasks read them

    @property
    def nbytes(self) -> int:
        """The bytes of the ratings and neighbour lists held."""
        return sum(x.data.nbytes + x.indices.nbytes + x.indptr.nbytes for x in (self.by_user, self.W))

    def _sides_of(self, rule):
        if rule.ranking not in self._sides:
            self._sides[rule.ranking] = other_side(rule, self.W, self.by_user)
        return self._sides[rule.ranking]

    def recommend(self, users, n: int = 20, ranking: str | None = None, exclude=None, items=None,
                  filter_rated: bool = True, strict: bool = False, explain: bool = False) -> pd.DataFrame:
        """:meth:`dcf.model.KNN.recommend` for the given users (one id or a list), as a pandas
        frame: the same rows, scores and rules, computed here."""
        model = self.model
        ranking = default_ranking(model, ranking)
        check_request(n, ranking)
        m = model.matrix_
        n = min(int(n), len(m.items))
        wanted = list_rules(m, items, exclude, filter_rated, explain)
        rule, _ = scoring(model, ranking)
        check_explain(model, rule, wanted)
        codes, unknown = split_users(m, users, strict)
        left_all, other = self._sides_of(rule)
        ids = (m.users, m.items)
        frames = []
        for code in dict.fromkeys(codes[codes >= 0].tolist()):
            rated = self.by_user[code:code + 1]
            left = rated if rule.based == "item" else left_all[code:code + 1]
            frames.append(recommend_block(left, other, rated, int(code), ids, self.order, rule, self.data, int(n),
                                          wanted))
        if unknown:
            frames.append(popular_lists(model, unknown, int(n), rule, self.data, wanted))
        return pd.concat(frames, ignore_index=True) if frames else recommendation_meta(wanted).copy()

    def similar(self, ids, n: int | None = None) -> pd.DataFrame:
        """:meth:`dcf.model.KNN.neighbours` of the given entities (items for item-based CF),
        from the lists held here: ``entity, rank, neighbour, similarity``."""
        model = self.model
        vocab = model.matrix_.items if model.based == "item" else model.matrix_.users
        rows = vocab.to_codes(as_ids(ids, "ids"))
        rows = rows[rows >= 0]
        W = self.W[rows]
        ent, nbr, sim = [], [], []
        for r in range(len(rows)):
            lo, hi = W.indptr[r], W.indptr[r + 1]
            order = np.lexsort((W.indices[lo:hi], -W.data[lo:hi]))[:n]  # similarity descending, ties by lower id
            ent.append(np.full(len(order), rows[r]))
            nbr.append(W.indices[lo:hi][order])
            sim.append(W.data[lo:hi][order])
        ent, nbr, sim = (np.concatenate(x) if x else np.zeros(0, np.int64) for x in (ent, nbr, sim))
        return pd.DataFrame({"entity": vocab.to_raw(ent.astype(np.int64)), "rank": _ranks(ent),
                             "neighbour": vocab.to_raw(nbr.astype(np.int64)), "similarity": sim.astype(np.float64)})


def stack_rows_of(X):
    """Delayed: a row-chunked dask array's blocks stacked into one matrix."""
    return dask.delayed(stack_rows, pure=True)(*row_blocks(X)[0])


def _ranks(entities):
    """1, 2, ... within each run of equal entities."""
    if not len(entities):
        return np.zeros(0, np.int64)
    starts = np.flatnonzero(np.r_[True, entities[1:] != entities[:-1]])
    counts = np.diff(np.r_[starts, len(entities)])
    return (np.arange(len(entities)) - np.repeat(starts, counts) + 1).astype(np.int64)
