"""Pair predictions with fallbacks, and Top-N recommendation, as task graphs.

Prediction (paper formula 2 and the plain weighted average), for a pair
(user u, item i) and entity x (i for item-based CF, u for user-based), with
N the chosen neighbours among the entities that rated/were rated in the pair:

.. math::
    \\hat r = \\frac{\\sum_{j \\in N} s_{xj} r_j}{\\sum_{j \\in N} s_{xj}}
    \\quad\\text{(weighted)}, \\qquad
    \\hat r = \\mu_x + \\frac{\\sum_{j \\in N} s_{xj} (r_j - \\mu_j)}{\\sum_{j \\in N} s_{xj}}
    \\quad\\text{(mean-centred)}

``neighbourhood="rated"``: N = the k most similar among *all* candidates
(scikit-surprise's rule, exact); ``"global"``: N = the candidates that are in
x's precomputed top-k list (the paper's rule, fast).  Only similarities > 0
count.  Fewer than ``min_k`` neighbours: weighted falls back to the global
mean, mean-centred to :math:`\\mu_x`; an unknown user or item gets the global
mean.  ``baseline`` (surprise's ``KNNBaseline``) predicts
:math:`b_{ui} + \\sum_j s_{xj} (r_j - b_j) / \\sum_j s_{xj}` with the biases of
:mod:`dcf.baseline`, and falls back to :math:`b_{ui}` (an unknown user or item
adds no bias: :math:`\\mu + b_i` for a new user).  Every prediction is clipped to the training rating range and carries
its neighbour count and the fallback used (``none``, ``global_mean``,
``item_mean``, ``user_mean``).

Pairs are routed to a grid of (entity block, other block) cells, one task
each (``predict-cell``), so a task reads one similarity row block and one
ratings block.
"""

from __future__ import annotations

import dask
import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
import scipy.sparse as sp

from . import kernels
from .blocks import outputs, reblock_rows, row_blocks, stack_rows
from .ids import IdMap, frame_from_parts, ids_of

__all__ = ["predict_pairs", "recommend_blocks", "recommend_histories", "PREDICTION_META",
           "RECOMMENDATION_META"]

FALLBACKS = ("none", "global_mean", "item_mean", "user_mean", "baseline")
PREDICTION_META = pd.DataFrame({
    "user": pd.Series([], dtype=object), "item": pd.Series([], dtype=object),
    "rating": pd.Series([], dtype=np.float64), "prediction": pd.Series([], dtype=np.float64),
    "neighbours": pd.Series([], dtype=np.int64),
    "fallback": pd.Categorical([], categories=FALLBACKS)})
RECOMMENDATION_META = pd.DataFrame({
    "user": pd.Series([], dtype=object), "rank": pd.Series([], dtype=np.int64),
    "item": pd.Series([], dtype=object), "score": pd.Series([], dtype=np.float64),
    "fallback": pd.Series([], dtype=bool)})


def predict_pairs(parts, *, users: IdMap, items: IdMap, based: str, S: da.Array, Q: da.Array,
                  means, k: int, min_k: int, prediction: str, global_mean, rating_range,
                  with_rating: bool = True, token: str = "", max_cells: int | None = None,
                  biases=None, amplification: float = 1.0) -> dd.DataFrame:
    """Predict every (user, item) pair of the frame parts.

    Parameters
    ----------
    parts : list of Delayed pandas DataFrames with ``user``, ``item`` (raw ids)
        and optionally ``rating``.
    S : dask array, entity x entity similarity rows (dense/CSR chunks) or the
        neighbour matrix ``W``, in entity row blocks.
    Q : dask array, others x entities ratings (CSR chunks), in other row blocks.
    means : Delayed (n_entities,) float64 entity means.
    global_mean, rating_range : Delayed or plain float / (low, high).

    with_rating : bool
        Whether the parts carry a ``rating`` column (kept in the output).
    max_cells : int, optional
        Merge consecutive blocks so that the grid has about this many cells
        (default: no merging).  At 20M ratings 82 x 80 blocks made 6,560 cells
        and 131k routing pieces: the scheduler, not the work, set the time.
    biases : (global mean, user biases, item biases), optional
        For ``prediction="baseline"`` (Delayed or plain).
    amplification : float
        Each neighbour weighs :math:`s^\\rho` (case amplification; 1 = off).

    Returns
    -------
    dask.dataframe.DataFrame with the columns of ``PREDICTION_META`` (without
    ``rating`` when the pairs have none).
    """
    s_blocks, s_bounds = row_blocks(S)
    q_blocks, q_bounds = row_blocks(Q)
    if max_cells and len(s_blocks) * len(q_blocks) > max_cells:
        side = max(1, int(np.ceil(np.sqrt(max_cells))))
        s_blocks, s_bounds = _merged(s_blocks, s_bounds, side, f"predict-similarity-{token}")
        q_blocks, q_bounds = _merged(q_blocks, q_bounds, side, f"predict-ratings-{token}")
    n_cells = len(s_blocks) * len(q_blocks)
    route = dask.delayed(_route, pure=True)
    u_key, i_key = users.as_delayed(), items.as_delayed()
    routed = [outputs(route(p, u_key, i_key, based, s_bounds, q_bounds,
                            dask_key_name=f"predict-route-{token}-{j}"), n_cells + 1, "predict-route-part")
              for j, p in enumerate(parts)]
    cell = dask.delayed(_score_cell, pure=True)
    unknown = dask.delayed(_score_unknown, pure=True)
    fallback = "item_mean" if based == "item" else "user_mean"
    out = []
    for a, s_blk in enumerate(s_blocks):
        for b, q_blk in enumerate(q_blocks):
            c = a * len(q_blocks) + b
            out.append(cell(s_blk, q_blk, means, k, min_k, prediction, global_mean, rating_range,
                            fallback, biases, based, amplification, *[r[c] for r in routed],
                            dask_key_name=f"predict-cell-{token}-{a}-{b}"))
    out.append(unknown(global_mean, rating_range, biases, *[r[n_cells] for r in routed],
                       dask_key_name=f"predict-unknown-{token}"))
    meta = PREDICTION_META if with_rating else PREDICTION_META.drop(columns="rating")
    return frame_from_parts(out, meta, "predictions")


def _merged(blocks, bounds, groups, name):
    """At most ``groups`` row blocks, each one task stacking consecutive ``blocks``
    (stacked once, however many cells read it)."""
    if len(blocks) <= groups:
        return blocks, bounds
    cuts = np.unique(np.linspace(0, len(blocks), groups + 1).round().astype(np.int64))
    stack = dask.delayed(stack_rows, pure=True)
    return ([stack(*blocks[lo:hi], dask_key_name=f"{name}-{g}")
             for g, (lo, hi) in enumerate(zip(cuts[:-1], cuts[1:]))], bounds[cuts])


def _route(frame, users, items, based, s_bounds, q_bounds):
    """Split one part's pairs into grid cells (+ a last piece of unknown pairs)."""
    u = users.to_codes(ids_of(frame["user"]))
    i = items.to_codes(ids_of(frame["item"]))
    x, y = (i, u) if based == "item" else (u, i)
    known = (u >= 0) & (i >= 0)
    a = np.searchsorted(s_bounds, x, side="right") - 1
    b = np.searchsorted(q_bounds, y, side="right") - 1
    n_b = len(q_bounds) - 1
    cell = np.where(known, a * n_b + b, (len(s_bounds) - 1) * n_b)
    base = frame[["user", "item"] + (["rating"] if "rating" in frame else [])].reset_index(drop=True)
    base["user"] = users.canonical(ids_of(base["user"]))
    base["item"] = items.canonical(ids_of(base["item"]))
    base = base.assign(x=x - s_bounds[np.clip(a, 0, None)], y=y - q_bounds[np.clip(b, 0, None)], gx=x, gy=y,
                       gu=u, gi=i)
    order = np.argsort(cell, kind="stable")
    cuts = np.searchsorted(cell[order], np.arange((len(s_bounds) - 1) * n_b + 2))
    return [base.iloc[order[cuts[c]:cuts[c + 1]]] for c in range(len(cuts) - 1)]


def _finish(frame, pred, used, fb, rating_range):
    lo, hi = rating_range
    out = pd.DataFrame({
        "user": frame["user"].to_numpy(dtype=object), "item": frame["item"].to_numpy(dtype=object),
        "rating": frame["rating"].to_numpy(np.float64) if "rating" in frame else 0.0,
        "prediction": np.clip(pred, lo, hi), "neighbours": used.astype(np.int64),
        "fallback": pd.Categorical(fb, categories=FALLBACKS)})
    return out if "rating" in frame else out.drop(columns="rating")


def _baseline_of(frame, biases):
    """:math:`b_{ui} = (\\mu + b_u) + b_i` per pair (surprise's order of additions), an
    unknown side adding nothing."""
    mu, bu, bi = biases
    u, i = frame["gu"].to_numpy(np.int64), frame["gi"].to_numpy(np.int64)
    bu, bi = np.asarray(bu), np.asarray(bi)
    return (mu + np.where(u >= 0, bu[np.clip(u, 0, None)], 0.0)) + np.where(i >= 0, bi[np.clip(i, 0, None)], 0.0)


def _score_cell(S, Q, means, k, min_k, prediction, global_mean, rating_range, fallback, biases, based,
                amplification, *pieces):
    frame = pd.concat(pieces, ignore_index=True) if pieces else PREDICTION_META
    if len(frame) == 0:
        return _empty(frame)
    x = frame["x"].to_numpy(np.int64)
    y = frame["y"].to_numpy(np.int64)
    centred = prediction == "mean-centred"
    means = np.asarray(means)
    centre = offset = None
    if prediction == "baseline":  # a neighbour j's baseline: (mu + b_j) + b_y, as surprise sums it
        mu, bu, bi = biases
        b_entity, b_other = (np.asarray(bi), np.asarray(bu)) if based == "item" else (np.asarray(bu), np.asarray(bi))
        centre, offset = mu + b_entity, b_other[frame["gy"].to_numpy(np.int64)]
    elif centred:
        centre = means
    sum_sim, sum_val, used = kernels.score_pairs(S, x, y, Q, k, centre, offset, amplification)
    ok = (used >= max(int(min_k), 1)) & (sum_sim > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(ok, sum_val / np.where(ok, sum_sim, 1.0), 0.0)
    if prediction == "baseline":
        base = _baseline_of(frame, biases)
        pred = np.where(ok, base + ratio, base)
        fb = np.where(ok, "none", "baseline")
    elif centred:
        pred = means[frame["gx"].to_numpy(np.int64)] + ratio
        fb = np.where(ok, "none", fallback)
    else:
        pred = np.where(ok, ratio, global_mean)
        fb = np.where(ok, "none", "global_mean")
    return _finish(frame, pred, used, fb, rating_range)


def _empty(frame):
    out = PREDICTION_META.copy()
    return out if "rating" in frame else out.drop(columns="rating")


def _score_unknown(global_mean, rating_range, biases, *pieces):
    frame = pd.concat(pieces, ignore_index=True) if pieces else PREDICTION_META
    n = len(frame)
    if n == 0:
        return _empty(frame)
    if biases is not None:  # a new user still has the item's bias, and a new item the user's
        return _finish(frame, _baseline_of(frame, biases), np.zeros(n, np.int64), np.full(n, "baseline"),
                       rating_range)
    return _finish(frame, np.full(n, float(global_mean)), np.zeros(n, np.int64),
                   np.full(n, "global_mean"), rating_range)


def recommend_blocks(*, users: IdMap, items: IdMap, based: str, by_user: da.Array, W: da.Array,
                     entity_means, item_means, item_count, n: int, min_k: int, prediction: str,
                     rating_range, blocks=None, ranking="prediction", token: str = "",
                     biases=None, exclude=None, amplification: float = 1.0) -> dd.DataFrame:
    """Top-N unrated items for every user, one task per user block.

    Scores are the predictions of the *global* neighbour rule (each target's
    top-k list, as the paper ranks), computed for all items of a user block
    by one fused kernel (:func:`dcf.kernels.recommend_rows`: sums and
    selection per user, no sparse product materialised).  Ties go to the more popular item; users
    with fewer than ``n`` scored unrated items are filled in with the most
    popular unrated items (``fallback=True``, score = the item's mean).

    ``ranking="sum"`` ranks by the unnormalised sum over each rated item's own
    list instead, ``"normalised-sum"`` by the same sum over lists scaled to sum to
    one (see :meth:`dcf.model.KNN.recommend`).

    ``blocks`` limits the work to those user blocks (default: all).
    ``amplification`` :math:`\\rho \\ne 1` raises every listed similarity to the
    power :math:`\\rho` first (sign kept), for every ranking.

    Returns
    -------
    dask.dataframe.DataFrame with columns ``user, rank, item, score, fallback``.
    """
    r_blocks, r_bounds = row_blocks(by_user)
    if based == "user" and W.chunks[0] != by_user.chunks[0]:  # neighbour rows per user block
        W = reblock_rows(W, np.concatenate([[0], np.cumsum(by_user.chunks[0])]), "recommend-lists")
    w_blocks, _ = row_blocks(W)
    w_blocks = _amplified_blocks(w_blocks, amplification, token)
    other = _other_side(based, ranking, w_blocks, r_blocks, token)
    order = dask.delayed(_popularity_order, pure=True)(item_count, dask_key_name=f"popularity-{token}")
    task = dask.delayed(_recommend_block, pure=True)
    u_key, i_key = users.as_delayed(), items.as_delayed()
    out = []
    for b, r_blk in enumerate(r_blocks):
        if blocks is not None and b not in blocks:
            continue
        left = r_blk if based == "item" else w_blocks[b]
        out.append(task(left, other, r_blk, int(r_bounds[b]), based, u_key, i_key, entity_means,
                        item_means, order, n, min_k, prediction, rating_range, ranking, biases, exclude,
                        dask_key_name=f"recommend-block-{token}-{b}"))
    if not out:  # none of the requested users is known
        out = [dask.delayed(RECOMMENDATION_META.copy)()]
    return frame_from_parts(out, RECOMMENDATION_META, "recommendations")


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


def _other_side(based, ranking, w_blocks, r_blocks, token):
    """What every user block's scores are read from: the neighbour lists (item-based:
    rows = rated items for the sums, W transposed for the prediction rule) or the
    ratings of every user (user-based)."""
    if based == "item" and ranking in ("sum", "normalised-sum"):  # rows = rated items, their own lists
        return dask.delayed(_vstack_lists, pure=True)(ranking == "normalised-sum", *w_blocks,
                                                       dask_key_name=f"recommend-neighbours-{token}")
    if based == "item":  # W transposed once: columns = target items
        return dask.delayed(_vstack_transposed, pure=True)(
            *w_blocks, dask_key_name=f"recommend-neighbours-{token}")
    return dask.delayed(stack_rows, pure=True)(*r_blocks, dask_key_name=f"recommend-ratings-{token}")


def recommend_histories(history: sp.csr_matrix, users: IdMap, *, items: IdMap, W: da.Array,
                        entity_means, item_means, item_count, n: int, min_k: int, prediction: str,
                        rating_range, ranking="prediction", token: str = "", biases=None,
                        exclude=None, amplification: float = 1.0) -> pd.DataFrame:
    """Top-N for users given by their rating histories (item-based CF), not by the
    fitted matrix: the same scores as :func:`recommend_blocks` gives a user with that
    history, with no refit.  ``history``: users x items CSR over the model's item
    codes; ``biases``: ``(mu, user_bias, item_bias)`` with one user bias per history."""
    w_blocks, _ = row_blocks(W)
    w_blocks = _amplified_blocks(w_blocks, amplification, token)
    other = _other_side("item", ranking, w_blocks, None, token)
    order = dask.delayed(_popularity_order, pure=True)(item_count, dask_key_name=f"popularity-{token}")
    task = dask.delayed(_recommend_block, pure=True)
    out = task(history, other, history, 0, "item", users, items.as_delayed(), entity_means, item_means,
               order, n, min_k, prediction, rating_range, ranking, biases, exclude,
               dask_key_name=f"recommend-history-{token}")
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


def _popularity_order(count):
    count = np.asarray(count)
    return np.lexsort((np.arange(len(count)), -count)).astype(np.int64)


def _recommend_block(left, other, rated, row0, based, users, items, entity_means, item_means, order,
                     n, min_k, prediction, rating_range, ranking="prediction", biases=None, exclude=None):
    lo, hi = rating_range
    if exclude is not None and len(exclude):  # excluded items count as rated by everyone
        rows = rated.shape[0]
        banned = sp.csr_matrix((np.ones(rows * len(exclude)),
                                (np.repeat(np.arange(rows), len(exclude)), np.tile(exclude, rows))),
                               shape=rated.shape)
        rated = (sp.csr_matrix(rated, dtype=bool) + banned.astype(bool)).tocsr()
        rated.sort_indices()
    entity_means = np.asarray(entity_means)
    item_means = np.asarray(item_means)
    total = ranking in ("sum", "normalised-sum")
    centred = prediction == "mean-centred" and not total
    A, B = left, other
    row_add = col_add = None
    if prediction == "baseline" and not total:
        # score = (mu + b_u) + b_i + sum s (r_j - b_j) / sum s; the residual ratings sit on
        # the ratings side (A for item-based, B for user-based)
        mu, bu, bi = float(biases[0]), np.asarray(biases[1]), np.asarray(biases[2])
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
    cols, vals, filled = kernels.recommend_rows(A, B, based == "user", rated, n, order, min_k,
                                                row_add, col_add, (lo, hi), divide=not total)
    r, c = np.nonzero(cols >= 0)
    if not total:
        vals = np.clip(np.where(filled, item_means[np.clip(cols, 0, None)], vals), lo, hi)
    return pd.DataFrame({
        "user": users.to_raw(row0 + r), "rank": (c + 1).astype(np.int64),
        "item": items.to_raw(cols[r, c]), "score": vals[r, c], "fallback": filled[r, c]})
