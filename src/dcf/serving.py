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

The documented calls use one too: :func:`held` is the snapshot a process keeps of a
model whose arrays take at most :data:`HELD_BYTES`, built by its first small request, and
:meth:`dcf.model.KNN.recommend`, ``predict``, ``neighbours`` and
``recommend_for_history`` answer a few users, pairs or items from it
(:func:`for_request`) instead of building a graph over every block.
"""

from __future__ import annotations

import os
import threading
import weakref
from dataclasses import replace

import dask
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .blocks import row_blocks, stack_rows
from .errors import ConfigError
from .io import validate_frame
from .predict import ScoringData, predict_frame, scoring
from .predict.requests import (FEW_USERS, as_ids, check_explain, check_request, default_ranking, list_rules,
                              model_ratings, popular_lists, request_frame, split_users)
from .predict.topn import other_side, popularity_order, recommend_block, recommendation_meta

__all__ = ["Snapshot", "HELD_BYTES", "FEW_PAIRS", "held", "held_bytes", "for_request"]

def _held_limit() -> int:
    """``$DCF_HELD_BYTES`` (a whole number of bytes), else 1 GiB."""
    text = os.environ.get("DCF_HELD_BYTES", "").strip()
    if not text:
        return 1 << 30
    if not text.isascii() or not text.isdigit():
        raise ConfigError(f"DCF_HELD_BYTES must be a whole number of bytes (0: hold nothing), not {text!r}")
    return int(text)


# a fitted model whose ratings and lists (and, for ``predict``, similarity rows) take at
# most this many bytes is held in the process that asks (once, by its first small
# request: :func:`held`); 0 sends every request to the cluster ($DCF_HELD_BYTES, 1 GiB)
HELD_BYTES = _held_limit()
# a ``predict`` of at most this many pairs (a pandas frame) is answered from the snapshot
FEW_PAIRS = 10_000


class Snapshot:
    """A fitted :class:`~dcf.model.KNN` (or one loaded with :func:`dcf.load`) held in this
    process for single requests.

    >>> from dcf.serving import Snapshot                      # doctest: +SKIP
    >>> snap = Snapshot(model)                                # gathers the arrays once
    >>> snap.recommend(196, n=10, items=in_stock)             # pandas, about a millisecond

    ``pairs=False`` leaves out what only :meth:`predict` reads (the similarity rows of
    ``neighbourhood="rated"``, entities x entities, dense; user-based, the ratings by item).
    """

    def __init__(self, model, pairs: bool = True):
        model.check_fitted()
        self.model = model
        m = model.matrix_
        rated, by_item = model.neighbourhood == "rated", model.based == "user"
        by_user, W, S, Q = dask.compute(
            stack_rows_of(m.by_user, "snapshot-ratings"), stack_rows_of(model.neighbours_.W, "snapshot-lists"),
            stack_rows_of(model.similarity_rows_, "snapshot-similarity") if pairs and rated else None,
            stack_rows_of(m.by_item, "snapshot-ratings") if pairs and by_item else None)
        self.by_user, self.W = sp.csr_matrix(by_user), sp.csr_matrix(W)
        self.by_user.sort_indices()
        # (S, Q) of the prediction cells: similarity rows (the lists, global) and the others' ratings
        self._pairs = ((S if rated else self.W), (Q if by_item else self.by_user)) if pairs else None
        rule, data = scoring(model, default_ranking(model, None))
        fields = dask.compute(data.rating_range, data.global_mean, data.entity_means, data.item_means,
                              data.item_count, data.biases)
        self.data = ScoringData(*fields)
        self.order = popularity_order(self.data.item_count)
        self._sides = {}  # ranking -> (left rows, other side) as the Top-N tasks read them
        self._lock = threading.Lock()

    @property
    def predicts(self) -> bool:
        """Whether :meth:`predict` answers here (the snapshot was built with ``pairs=True``)."""
        return self._pairs is not None

    @property
    def nbytes(self) -> int:
        """The bytes of the ratings, neighbour lists and similarity rows held."""
        arrays = {id(x): x for x in (self.by_user, self.W, *(self._pairs or ()))}  # each once
        return sum(x.nbytes if isinstance(x, np.ndarray) else x.data.nbytes + x.indices.nbytes + x.indptr.nbytes
                   for x in arrays.values())

    def _sides_of(self, rule):
        with self._lock:  # built once, by the first request of a ranking
            if rule.ranking not in self._sides:
                self._sides[rule.ranking] = other_side(rule, self.W, self.by_user)
            return self._sides[rule.ranking]

    def predict(self, pairs: pd.DataFrame) -> pd.DataFrame:
        """:meth:`dcf.model.KNN.predict` of a pandas frame of pairs (``user, item``, and
        ``rating`` carried through), as a pandas frame in the pairs' order: the same
        predictions, neighbour counts and fallbacks, computed here."""
        model = self.model
        if self._pairs is None:
            raise ConfigError("this snapshot holds no similarity rows (built with pairs=False): Snapshot(model) "
                              "predicts")
        frame = request_frame(pairs, "pairs", "the frame")
        if "rating" not in frame and all(isinstance(frame[c].dtype, np.dtype) and frame[c].dtype.kind == "i"
                                         for c in ("user", "item")):
            # integer ids: checked as numbers (the Parquet path's checks), not as text; a rating
            # of 1 is always valid and is dropped after
            frame, _ = validate_frame(frame.assign(rating=1.0), "DataFrame", model.on_bad_lines, False)
            frame = frame.drop(columns="rating")
        else:
            frame, _ = validate_frame(frame, "DataFrame", model.on_bad_lines, False)
        S, Q = self._pairs
        rule, _ = scoring(model)
        m = model.matrix_
        return predict_frame(frame, users=m.users, items=m.items, S=S, Q=Q, rule=rule, data=self.data)

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
        return pd.concat(frames, ignore_index=True) if frames else recommendation_meta(wanted, model.matrix_.items).copy()

    def score_histories(self, H, users, rule, data, request) -> pd.DataFrame:
        """Top-N of users given by their histories (``H``: users x items over the model's
        item codes; ``users``: their IdMap), what :func:`dcf.predict.topn.recommend_histories`
        computes, from the lists held here; ``request`` is ``(n, ListRules)``."""
        n, wanted = request
        _, other = self._sides_of(rule)
        data = replace(self.data, biases=data.biases)  # the histories' own user biases, where any
        return recommend_block(H, other, H, 0, (users, self.model.matrix_.items), self.order, rule, data, n, wanted)

    def in_model_order(self, users, strict: bool = False) -> list:
        """A request's ``users`` as the documented call lists them: the known ones once each
        in the model's order, then the unknown ones as given (:meth:`dcf.model.KNN.recommend`)."""
        codes, unknown = split_users(self.model.matrix_, users, strict)
        return list(self.model.matrix_.users.to_raw(np.unique(codes[codes >= 0]))) + unknown

    def similar(self, ids, n: int | None = None) -> pd.DataFrame:
        """:meth:`dcf.model.KNN.neighbours` of the given entities (items for item-based CF),
        from the lists held here: ``entity, rank, neighbour, similarity``."""
        model = self.model
        vocab = model.matrix_.items if model.based == "item" else model.matrix_.users
        rows = vocab.to_codes(as_ids(ids, "ids"))
        rows = rows[rows >= 0]
        W = self.W[rows]
        ent, nbr, sim, rank = [], [], [], []
        for r in range(len(rows)):  # each requested id its own list, a repeated one too (as the graph's)
            lo, hi = W.indptr[r], W.indptr[r + 1]
            order = np.lexsort((W.indices[lo:hi], -W.data[lo:hi]))[:n]  # similarity descending, ties by lower id
            ent.append(np.full(len(order), rows[r]))
            nbr.append(W.indices[lo:hi][order])
            sim.append(W.data[lo:hi][order])
            rank.append(np.arange(1, len(order) + 1))
        ent, nbr, sim, rank = (np.concatenate(x) if x else np.zeros(0, np.int64) for x in (ent, nbr, sim, rank))
        return pd.DataFrame({"entity": vocab.to_raw(ent.astype(np.int64)), "rank": rank.astype(np.int64),
                             "neighbour": vocab.to_raw(nbr.astype(np.int64)), "similarity": sim.astype(np.float64)})


_HELD = weakref.WeakKeyDictionary()  # model -> ((token, limit), Snapshot or None, whether pairs fit)
_HELD_LOCK = threading.Lock()


def held(model, pairs: bool = False) -> Snapshot | None:
    """The snapshot this process holds of the fitted ``model`` (built by the first call),
    or None where its ratings and lists (and with ``pairs`` its similarity rows) would
    take more than :data:`HELD_BYTES`."""
    model.check_fitted()
    key = (model.token_, HELD_BYTES)
    with _HELD_LOCK:
        got = _HELD.get(model)
        if got is None or got[0] != key:
            lists, with_pairs = held_bytes(model)
            snap = Snapshot(model, pairs=with_pairs <= HELD_BYTES) if lists <= HELD_BYTES else None
            got = _HELD[model] = (key, snap, with_pairs <= HELD_BYTES)
    return got[1] if got[2] or not pairs else None


def held_bytes(model) -> tuple[int, int]:
    """About the bytes a snapshot of ``model`` takes for ``recommend`` (its ratings, 12 a
    rating, and its lists twice: the lists and their other side, 12 a neighbour), and with
    ``predict``'s arrays too (``rated``: the dense similarity rows, 8 a cell; user-based:
    the ratings by item)."""
    m = model.matrix_
    ratings = 12 * model_ratings(model) + 8 * (len(m.users) + 1)
    entities, k = model.neighbours_.idx.shape
    lists = ratings + 2 * 12 * entities * k
    return lists, (lists + (8 * entities * entities if model.neighbourhood == "rated" else 0)
                   + (ratings if model.based == "user" else 0))


def for_request(model, ids=None, pairs=None, history=None) -> Snapshot | None:
    """The held snapshot (:func:`held`) where a request is small: at most
    :data:`~dcf.predict.requests.FEW_USERS` ``ids`` (users or items), or at most
    :data:`FEW_PAIRS` ``pairs`` or ``history`` rows in a pandas frame; else None (the
    request runs as a graph)."""
    if HELD_BYTES <= 0:
        return None
    if history is not None:
        return held(model) if isinstance(history, pd.DataFrame) and len(history) <= FEW_PAIRS else None
    if pairs is not None:
        return held(model, pairs=True) if isinstance(pairs, pd.DataFrame) and len(pairs) <= FEW_PAIRS else None
    if ids is None:
        return None
    return held(model) if len(as_ids(ids, "ids")) <= FEW_USERS else None


def stack_rows_of(X, name: str):
    """Delayed: a row-chunked dask array's blocks stacked into one matrix, a task ``name``."""
    blocks = row_blocks(X)[0]
    return dask.delayed(stack_rows, pure=True)(*blocks, dask_key_name=f"{name}-{dask.base.tokenize(*blocks)}")
