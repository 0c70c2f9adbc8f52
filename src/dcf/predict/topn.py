"""Top-N recommendation, as task graphs: every user of a block at once, or users given by
their rating histories.

Scores are the predictions of the global neighbour rule (each target's top-k list,
as the paper ranks) or sums over the neighbour lists (``ranking="sum"``,
``"normalised-sum"``), computed by one fused kernel per block of users
(:func:`dcf.kernels.recommend_rows`).  Rated and excluded items are never listed;
ties go to the more popular item; short lists are filled in by popularity.
"""

from __future__ import annotations

from typing import NamedTuple

import dask
import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp

from .. import kernels
from ..blocks import reblock_rows, row_blocks, stack_rows
from ..cluster import parallelism
from ..ids import IdMap, frame_from_parts
from .rule import RECOMMENDATION_FALLBACKS, RECOMMENDATION_META, ScoringData, ScoringRule, data_task

__all__ = ["ListRules", "PLAIN_LISTS", "FEW_ROWS", "candidate_order", "popularity_order", "recommendation_meta",
           "recommend_blocks", "recommend_parts", "recommendation_frame", "recommend_block", "other_side", "recommend_histories", "EXPLAIN_TOP",
           "because_lists", "no_explanations"]


class ListRules(NamedTuple):
    """What a request asks of its lists: which items they may hold (only ``allow``, sorted
    item codes, None: every item; never ``exclude``, sorted codes or None; not the user's
    rated items unless ``keep_rated``, a re-purchase), and whether each scored item says why
    (``explain``: the ``because`` column, :func:`dcf.kernels.explain_rows`)."""

    allow: np.ndarray | None = None
    exclude: np.ndarray | None = None
    keep_rated: bool = False
    explain: bool = False


PLAIN_LISTS = ListRules()
FEW_ROWS = 256  # a block's rows up to this many are scored one at a time, more as the whole block


def candidate_order(order, rules: ListRules):
    """The popularity ``order`` (item codes, most popular first) kept to the candidates:
    what the Top-N kernels list and fill from (:func:`dcf.kernels.recommend_rows`)."""
    order = np.asarray(order, np.int64)
    if rules.allow is not None:
        order = order[np.isin(order, rules.allow)]
    if rules.exclude is not None and len(rules.exclude):
        order = order[~np.isin(order, rules.exclude)]
    return order


def recommend_blocks(*, users: IdMap, items: IdMap, by_user: da.Array, W: da.Array, rule: ScoringRule,
                     data: ScoringData, n: int, blocks=None, token: str = "",
                     rules: ListRules = PLAIN_LISTS) -> dd.DataFrame:
    """Top-N unrated items for every user, one task per user block (or per piece of
    one, :func:`_pieces`): the frame of :func:`recommend_parts` (the same parameters)."""
    parts = recommend_parts(users=users, items=items, by_user=by_user, W=W, rule=rule, data=data, n=n,
                            blocks=blocks, token=token, rules=rules)
    return recommendation_frame(parts, rules, token, items)


def recommendation_frame(parts, rules: ListRules, token: str, items: IdMap | None = None) -> dd.DataFrame:
    """Delayed recommendation frames as one dask DataFrame (an empty one where there are
    none: no requested user known); ``items``: the item map (the explanations' id type)."""
    meta = recommendation_meta(rules, items)
    return frame_from_parts(parts or [dask.delayed(meta.copy, pure=True)(dask_key_name=f"recommendations-none-{token}")],
                            meta, "recommendations")


def recommend_parts(*, users: IdMap, items: IdMap, by_user: da.Array, W: da.Array, rule: ScoringRule,
                    data: ScoringData, n: int, blocks=None, token: str = "",
                    rules: ListRules = PLAIN_LISTS) -> list:
    """Top-N unrated items for every user, one task per user block (Delayed frames); ranked
    by predicted rating, each block of all its users (``blocks`` None) is cut into row
    pieces, each its own task (:func:`_pieces`), in the block's order.

    Scores are the predictions of the *global* neighbour rule (each target's
    top-k list, as the paper ranks), computed for all items of a user block
    by one fused kernel (:func:`dcf.kernels.recommend_rows`: sums and
    selection per user, no sparse product materialised).  Ties go to the more popular item; users
    with fewer than ``n`` scored unrated items are filled in with the most
    popular unrated items (``fallback="popular"``, score = the item's mean).

    ``rule.ranking="sum"`` ranks by the unnormalised sum over each rated item's own
    list instead, ``"normalised-sum"`` by the same sum over lists scaled to sum to
    one (see :meth:`dcf.model.KNN.recommend`).  ``rule.amplification``
    :math:`\\rho \\ne 1` raises every listed similarity to the power :math:`\\rho`
    first (sign kept), for every ranking; ``rule.k`` does not apply (``W`` holds the
    lists as they are to be used).

    Parameters
    ----------
    users, items : IdMap
    by_user : dask array, users x items ratings (CSR chunks) in user row blocks
    W : dask array, the neighbour matrix (CSR chunks) in entity row blocks
    rule : ScoringRule
    data : ScoringData
        Every field but ``global_mean`` applies (``biases`` for the baseline prediction).
    n : int
        Items per user.
    blocks : set of int, or dict of int to row indices, optional
        Only those user blocks (default: all); a dict names the rows wanted in each
        block (within it), and only those are scored.
    rules : ListRules
        The items a list may hold (an allow-list, exclusions, rated items kept), and
        whether it explains them.

    Returns
    -------
    list of Delayed pandas frames with columns ``user, rank, item, score, fallback``
    (none where ``blocks`` is empty).
    """
    r_blocks, r_bounds = row_blocks(by_user)
    if rule.based == "user" and W.chunks[0] != by_user.chunks[0]:  # neighbour rows per user block
        W = reblock_rows(W, np.concatenate([[0], np.cumsum(by_user.chunks[0])]), "recommend-lists")
    w_blocks, _ = row_blocks(W)
    w_blocks = _amplified_blocks(w_blocks, rule.amplification, token)
    other = _other_side(rule, w_blocks, r_blocks, token)
    order = dask.delayed(popularity_order, pure=True)(data.item_count, dask_key_name=f"popularity-{token}")
    task = dask.delayed(recommend_block, pure=True)
    ids = (users.as_delayed(), items.as_delayed())
    shared = data_task(data, token)
    some = dask.delayed(_some_rows, pure=True)
    piece = dask.delayed(_rows_piece, pure=True)
    pieces = _pieces(rule, len(r_blocks)) if blocks is None else 1
    out = []
    for b, r_blk in enumerate(r_blocks):
        if blocks is not None and b not in blocks:
            continue
        left = r_blk if rule.based == "item" else w_blocks[b]
        rows = blocks.get(b) if isinstance(blocks, dict) else None
        if rows is None:
            size = int(r_bounds[b + 1] - r_bounds[b])
            cuts = _piece_cuts(size, pieces)
            if len(cuts) == 2:
                out.append(task(left, other, r_blk, int(r_bounds[b]), ids, order, rule, shared, n, rules,
                                dask_key_name=f"recommend-block-{token}-{b}"))
            else:  # the rows in pieces, each its own task (see _pieces)
                out += [piece(left, other, r_blk, (int(r_bounds[b]), int(lo), int(hi)), ids, order, rule, shared, n,
                              rules, dask_key_name=f"recommend-block-{token}-{b}-{lo}-{hi}")  # a name, one range
                        for lo, hi in zip(cuts[:-1], cuts[1:])]
        else:  # a few users of the block: their rows only (one user's list cost the whole block's)
            rows = np.unique(np.asarray(rows, np.int64))
            out.append(some(left, other, r_blk, (int(r_bounds[b]), rows), ids, order, rule, shared, n, rules,
                            dask_key_name=f"recommend-rows-{token}-{b}-{dask.base.tokenize(rows)}"))
    return out


PIECES_PER_THREAD = 4  # Top-N tasks a thread of the cluster, by predicted rating (see _pieces)
MIN_PIECE_ROWS = 1024  # users a piece has at least


def _pieces(rule: ScoringRule, n_blocks: int) -> int:
    """Tasks each user block's Top-N is cut into: one where lists are ranked by a sum
    (``n_u k`` products a user: the block's task is short), else enough for about
    :data:`PIECES_PER_THREAD` tasks a thread of the cluster.  Ranked by predicted rating, a
    user's work is every list holding one of the items they rated (9.3e9 products for the
    1.2M ratings of 117k items against the sum's 6.0e7; benchmarks/RESULTS.md, issue 21
    step 16): one task a block ran for minutes with "4 tasks to go" the only progress (the
    stage's time is unchanged: step 17)."""
    if rule.summed or n_blocks < 1:
        return 1
    return max(1, -(-PIECES_PER_THREAD * parallelism() // n_blocks))


def _piece_cuts(size: int, pieces: int) -> np.ndarray:
    """Row bounds of a block of ``size`` users cut into at most ``pieces`` ranges of about
    equal size, none under :data:`MIN_PIECE_ROWS` users (a block of fewer is one range)."""
    pieces = max(1, min(int(pieces), size // MIN_PIECE_ROWS))
    return np.linspace(0, size, pieces + 1).round().astype(np.int64)


def _rows_piece(left, other, rated, where, ids, order, rule, data, n, rules):
    """:func:`recommend_block` of rows ``lo .. hi`` of a block: ``where`` is ``(row0, lo, hi)``,
    row0 the block's first user; ``left`` is cut too (its rows are the block's users, for
    item- and user-based lists alike)."""
    row0, lo, hi = where
    left, rated = sp.csr_matrix(left)[lo:hi], sp.csr_matrix(rated)[lo:hi]
    return recommend_block(left, other, rated, row0 + lo, ids, order, rule, data, n, rules)


def _some_rows(left, other, rated, where, ids, order, rule, data, n, rules):
    """:func:`recommend_block` of some rows of a block: ``where`` is ``(row0, rows)``, the
    block's first user and the rows (within it) wanted; one row at a time where they are
    a few (:data:`FEW_ROWS`), else the whole block with the others' lists dropped."""
    row0, rows = where
    if len(rows) > FEW_ROWS:
        frame = recommend_block(left, other, rated, row0, ids, order, rule, data, n, rules)
        return frame[frame["user"].isin(ids[0].to_raw(row0 + rows))].reset_index(drop=True)
    left, rated = sp.csr_matrix(left), sp.csr_matrix(rated)
    parts = [recommend_block(left[w:w + 1], other, rated[w:w + 1], row0 + int(w), ids, order, rule, data, n, rules)
             for w in rows]
    return pd.concat(parts, ignore_index=True) if parts else recommendation_meta(rules, ids[1]).copy()


def recommendation_meta(rules: ListRules, items: IdMap | None = None) -> pd.DataFrame:
    """The columns of a request's lists: ``user, rank, item, score, fallback``, and
    ``because`` (lists of ``{"item", "share"}``, typed as :func:`because_lists` types
    ``items``' ids) where ``rules.explain``."""
    if not rules.explain:
        return RECOMMENDATION_META
    return RECOMMENDATION_META.assign(because=no_explanations(items, 0))


def _amplified_blocks(w_blocks, amplification, token):
    """The neighbour-matrix blocks with every similarity ``s`` as ``sign(s) |s|**rho``
    (the blocks themselves when ``rho`` is 1)."""
    if amplification == 1.0:
        return w_blocks
    task = dask.delayed(_amplified, pure=True)
    return [task(w, float(amplification), dask_key_name=f"recommend-amplified-{token}-{b}")
            for b, w in enumerate(w_blocks)]


def _amplified(W, amplification: float):
    """A neighbour-matrix block as CSR with every value ``s`` as ``sign(s) |s|**amplification``:
    Breese et al.'s case amplification, monotone, so no neighbour changes rank."""
    out = sp.csr_matrix(W, copy=True)
    out.data = np.sign(out.data) * np.abs(out.data) ** amplification
    return out


def _other_side(rule: ScoringRule, w_blocks, r_blocks, token):
    """What every user block's scores are read from: the neighbour lists (item-based:
    rows = rated items for the sums, W transposed for the prediction rule) or the
    ratings of every user (user-based)."""
    if rule.based == "item" and rule.summed:  # rows = rated items, their own lists
        return dask.delayed(_vstack_lists, pure=True)(rule.ranking == "normalised-sum", *w_blocks,
                                                       dask_key_name=f"recommend-neighbours-{token}")
    if rule.based == "item":  # W transposed once: columns = target items
        return dask.delayed(_vstack_transposed, pure=True)(
            *w_blocks, dask_key_name=f"recommend-neighbours-{token}")
    return dask.delayed(stack_rows, pure=True)(*r_blocks, dask_key_name=f"recommend-ratings-{token}")


def other_side(rule: ScoringRule, W, R):
    """``(left rows, other side)`` of the Top-N sum for every user, from the whole neighbour
    matrix ``W`` and ratings ``R`` held in this process (what :func:`_other_side` and the
    tasks' left blocks give): the left rows are ``R`` (item-based) or the lists of each user
    (user-based); lists amplified as :func:`_amplified_blocks` does."""
    W = _amplified(W, rule.amplification) if rule.amplification != 1.0 else sp.csr_matrix(W)
    if rule.based == "item" and rule.summed:
        return R, _vstack_lists(rule.ranking == "normalised-sum", W)
    if rule.based == "item":
        return R, _vstack_transposed(W)
    return W, R


def recommend_histories(history: sp.csr_matrix, users: IdMap, *, items: IdMap, W: da.Array,
                        rule: ScoringRule, data: ScoringData, n: int, token: str = "",
                        rules: ListRules = PLAIN_LISTS) -> pd.DataFrame:
    """Top-N for users given by their rating histories (item-based CF, ``rule.based``
    must be ``item``), not by the fitted matrix: the same scores as
    :func:`recommend_blocks` gives a user with that history, with no refit.
    ``history``: users x items CSR over the model's item codes; ``data.biases``:
    ``(mu, user_bias, item_bias)`` with one user bias per history."""
    if rule.based != "item":
        raise ValueError("recommend_histories scores item-based lists (rule.based='item')")
    w_blocks, _ = row_blocks(W)
    w_blocks = _amplified_blocks(w_blocks, rule.amplification, token)
    other = _other_side(rule, w_blocks, None, token)
    order = dask.delayed(popularity_order, pure=True)(data.item_count, dask_key_name=f"popularity-{token}")
    task = dask.delayed(recommend_block, pure=True)
    out = task(history, other, history, 0, (users, items.as_delayed()), order, rule, data_task(data, token), n,
               rules, dask_key_name=f"recommend-history-{token}")
    return out.compute()


def _vstack_lists(normalise, *blocks):
    """The neighbour lists stacked, each scaled to sum to one when ``normalise``
    (Deshpande and Karypis' similarity normalisation: every rated item then brings the
    same weight, however similar its neighbourhood is overall)."""
    W = stack_rows(*blocks)
    return _normalised_rows(W) if normalise else W


def _normalised_rows(W):
    W = sp.csr_matrix(W, copy=True)
    sums = np.asarray(W.sum(axis=1)).ravel()
    W.data = W.data / np.repeat(np.where(sums > 0, sums, 1.0), np.diff(W.indptr))
    return W


def _vstack_transposed(*blocks):
    return stack_rows(*blocks).T.tocsr()


def popularity_order(count):
    """Item codes, most rated first (ties: the lower code): the Top-N lists' tie order and fill."""
    count = np.asarray(count)
    return np.lexsort((np.arange(len(count)), -count)).astype(np.int64)


def recommend_block(left, other, rated, row0, ids, order, rule: ScoringRule, data: ScoringData, n,
                    rules: ListRules):
    """Top-``n`` of one block of users (rows ``row0 ..`` of ``rated``): ``left`` and
    ``other`` are the two sides of the sum (see :func:`_other_side`), ``ids`` the
    ``(users, items)`` IdMaps (literal Delayed values, rebuilt from the maps themselves).
    What every Top-N task runs, and :class:`dcf.serving.Snapshot` for one user."""
    users, items = ids
    based = rule.based
    lo, hi = data.rating_range
    order = candidate_order(order, rules)  # the kernels list and fill from these only
    if rules.keep_rated:  # nothing excluded per user
        rated = sp.csr_matrix(rated.shape, dtype=bool)
    entity_means = np.asarray(data.entity_means)
    item_means = np.asarray(data.item_means)
    total = rule.summed
    centred = rule.prediction == "mean-centred" and not total
    A, B = left, other
    row_add = col_add = None
    if rule.prediction == "baseline" and not total:
        # score = (mu + b_u) + b_i + sum s (r_j - b_j) / sum s; the residual ratings sit on
        # the ratings side (A for item-based, B for user-based)
        mu, bu, bi = float(data.biases[0]), np.asarray(data.biases[1]), np.asarray(data.biases[2])
        R = left if based == "item" else other
        r_row = np.repeat(np.arange(R.shape[0]), np.diff(R.indptr))
        res = R.copy()
        if based == "item":  # rows: users of this block; neighbour j = item: (mu + b_j) + b_u
            res.data = R.data - ((mu + bi[R.indices]) + bu[row0 + r_row])
            A = res
        else:  # rows: every user v (neighbours); y = item: (mu + b_v) + b_i
            res.data = R.data - ((mu + bu[r_row]) + bi[R.indices])
            B = res
        row_add = mu + bu[row0:row0 + rated.shape[0]]
        col_add = bi
    elif based == "item":  # A: ratings (u x items); B: W transposed (items x items)
        if centred:
            A = left.copy()
            A.data = A.data - entity_means[A.indices]
            col_add = entity_means
    else:  # A: W rows (u x users); B: ratings (users x items)
        if centred:
            B = other.copy()
            B.data = B.data - np.repeat(entity_means, np.diff(other.indptr))
            row_add = entity_means[row0:row0 + left.shape[0]]
    cols, vals, filled = kernels.recommend_rows(A, B, rated, n, order, sim_left=based == "user",
                                                min_k=rule.min_k, adds=(row_add, col_add),
                                                rating_range=(lo, hi), divide=not total)
    r, c = np.nonzero(cols >= 0)
    if not total:
        vals = np.clip(np.where(filled, item_means[np.clip(cols, 0, None)], vals), lo, hi)
    frame = pd.DataFrame({
        "user": users.to_raw(row0 + r), "rank": (c + 1).astype(np.int64),
        "item": items.to_raw(cols[r, c]), "score": vals[r, c],
        "fallback": pd.Categorical.from_codes(  # codes: 3x faster than from the names for one user's list
            np.where(filled[r, c], RECOMMENDATION_FALLBACKS.index("popular"), RECOMMENDATION_FALLBACKS.index("none")),
            categories=RECOMMENDATION_FALLBACKS)})
    if rules.explain:
        frame["because"] = _because(A, B, np.where(filled, -1, cols), r, c, items)
    return frame


EXPLAIN_TOP = 3  # rated items named per recommended item


def _because(A, B, scored, r, c, items):
    """Per listed ``(r, c)``: the rated items whose terms weigh most in its sum
    (:func:`dcf.kernels.explain_rows` of the Top-N kernel's two sides), as
    ``[{"item": raw id, "share": term / sum of the terms}, ...]``, largest first; empty
    for a filled-in item (no terms): one Arrow column (:func:`because_lists`)."""
    js, terms, totals = kernels.explain_rows(A, B, scored, EXPLAIN_TOP)
    js, terms, totals = js[r, c], terms[r, c], totals[r, c]
    kept = js >= 0  # each row's kept terms come first, largest first
    shares = np.divide(terms, totals[:, None], out=np.zeros_like(terms), where=totals[:, None] != 0)
    return because_lists(items.to_raw(js[kept]), shares[kept], kept.sum(axis=1))


def no_explanations(items: IdMap | None, rows: int) -> pd.Series:
    """``rows`` empty explanation lists, typed as :func:`because_lists` types ``items``'
    ids (int64 where ``items`` is None)."""
    none = np.zeros(0, np.int64) if items is None else items.to_raw(np.zeros(0, np.int64))
    return because_lists(none, np.zeros(0), np.zeros(rows, np.int64))


def because_lists(items, shares, counts) -> pd.Series:
    """Lists of ``{"item", "share"}`` as one Arrow-backed column, ``counts[i]`` entries in
    row ``i`` from the flat ``items`` (raw ids: int64, else text) and ``shares``.  A row
    reads as a Python list of dicts; no Python object is made for an entry (2M
    recommendations' lists of dicts took the paper shape's Top-N 20 s, its output 9 s)."""
    items = np.asarray(items)
    offsets = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    if offsets[-1] >= 2**31:  # a block's entries: 3 a listed item, far under this
        raise ValueError(f"{offsets[-1]:,} explanation entries in one block: more than a list column holds")
    kind = pa.int64() if items.dtype.kind in "iu" else pa.string()
    entries = pa.StructArray.from_arrays([pa.array(items, type=kind), pa.array(np.asarray(shares, np.float64))],
                                         names=["item", "share"])
    lists = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), entries)
    return pd.Series(pd.arrays.ArrowExtensionArray(lists), copy=False)
