"""Pair predictions with fallbacks, as task graphs.

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
The rule and the fitted numbers a prediction reads come as one
:class:`~dcf.predict.rule.ScoringRule` and one :class:`~dcf.predict.rule.ScoringData`.
"""

from __future__ import annotations

import dask
import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd

from .. import kernels
from ..blocks import concat_rows, outputs, row_blocks, stack_rows
from ..ids import IdMap, frame_from_parts, ids_of
from .rule import FALLBACKS, PREDICTION_META, ScoringData, ScoringRule, data_task

__all__ = ["predict_pairs", "predict_frame", "grid_cells", "merged_rows", "RATINGS_PER_CELL"]

# ratings of the model per cell of the prediction grid: a job predicts about a tenth as many pairs,
# 25k a cell. On the paper shape (620k ratings, 4 x 4 blocks) its 16 cells took the stage 0.34 s
# on a warm cluster, 4 cells 0.17 s: each cell is a task, its routed pieces and its packing
RATINGS_PER_CELL = 250_000


def predict_pairs(parts, *, users: IdMap, items: IdMap, S: da.Array, Q: da.Array, rule: ScoringRule,
                  data: ScoringData, with_rating: bool = True, token: str = "",
                  max_cells: int | None = None) -> dd.DataFrame:
    """Predict every (user, item) pair of the frame parts.

    Parameters
    ----------
    parts : list of Delayed pandas DataFrames with ``user``, ``item`` (raw ids)
        and optionally ``rating``.
    users, items : IdMap
    S : dask array, entity x entity similarity rows (dense/CSR chunks) or the
        neighbour matrix ``W``, in entity row blocks.
    Q : dask array, others x entities ratings (CSR chunks), in other row blocks.
    rule : ScoringRule
        ``based``, ``prediction``, ``k``, ``min_k`` and ``amplification`` apply.
    data : ScoringData
        ``rating_range``, ``global_mean``, ``entity_means`` and (for the baseline
        prediction) ``biases``, Delayed or plain.

    with_rating : bool
        Whether the parts carry a ``rating`` column (kept in the output).
    max_cells : int, optional
        Merge consecutive blocks so that the grid has about this many cells
        (default: no merging).  At 20M ratings 82 x 80 blocks made 6,560 cells
        and 131k routing pieces: the scheduler, not the work, set the time.

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
    routed = [outputs(route(p, u_key, i_key, rule.based, s_bounds, q_bounds,
                            dask_key_name=f"predict-route-{token}-{j}"), n_cells + 1, "predict-route-part")
              for j, p in enumerate(parts)]
    cell = dask.delayed(_score_cell, pure=True)
    shared = data_task(data, token)
    unknown = dask.delayed(_score_unknown, pure=True)
    out = []
    for a, s_blk in enumerate(s_blocks):
        for b, q_blk in enumerate(q_blocks):
            c = a * len(q_blocks) + b
            out.append(cell(s_blk, q_blk, rule, shared, *[r[c] for r in routed],
                            dask_key_name=f"predict-cell-{token}-{a}-{b}"))
    out.append(unknown(shared, *[r[n_cells] for r in routed],
                       dask_key_name=f"predict-unknown-{token}"))
    meta = PREDICTION_META if with_rating else PREDICTION_META.drop(columns="rating")
    return frame_from_parts(out, meta, "predictions")


def grid_cells(ratings: int, threads: int) -> int:
    """The most cells of the prediction grid (``max_cells`` of :func:`predict_pairs`) for a
    model of ``ratings`` ratings on ``threads`` threads: one per :data:`RATINGS_PER_CELL`,
    at least 1, at most 4 a thread (and 16 whatever the threads): a small model's pairs
    are scored in a few tasks instead of one per block pair, a large one's still in
    enough to keep every thread busy."""
    return int(min(max(16, 4 * threads), max(1, -(-int(ratings) // RATINGS_PER_CELL))))


def predict_frame(frame: pd.DataFrame, *, users: IdMap, items: IdMap, S, Q, rule: ScoringRule,
                  data: ScoringData) -> pd.DataFrame:
    """The predictions of a checked frame of pairs (``user, item`` [, ``rating``]) from the
    whole similarity rows ``S`` and ratings ``Q`` held in this process (one grid cell: the
    scores a ``predict-cell`` and the ``predict-unknown`` task give), in the pairs' order.
    :class:`dcf.serving.Snapshot` answers a few pairs with it."""
    u, i = users.to_codes(ids_of(frame["user"])), items.to_codes(ids_of(frame["item"]))
    x, y = (i, u) if rule.based == "item" else (u, i)
    n = len(frame)
    pred, used, fb = np.zeros(n), np.zeros(n, np.int64), np.empty(n, dtype=object)
    known = (u >= 0) & (i >= 0)
    k, o = np.flatnonzero(known), np.flatnonzero(~known)
    if len(k):  # the rows the pairs read, not the whole matrices (the kernel copies its inputs' indices)
        xs, xk = np.unique(x[k], return_inverse=True)
        ys, yk = np.unique(y[k], return_inverse=True)
        pred[k], used[k], fb[k] = _known_scores(S[xs], Q[ys], rule, data, dict(x=xk, y=yk, gx=x[k], gy=y[k],
                                                                                gu=u[k], gi=i[k]))
    if len(o):
        pred[o], used[o], fb[o] = _unknown_scores(data, u[o], i[o])
    out = {"user": users.canonical(ids_of(frame["user"])), "item": items.canonical(ids_of(frame["item"]))}
    if "rating" in frame:
        out["rating"] = frame["rating"].to_numpy()
    return _finish(out, pred, used, fb, data.rating_range)


def merged_rows(X: da.Array, groups: int, name: str) -> da.Array:
    """``X``'s row blocks stacked into at most ``groups`` (consecutive blocks, each group one
    task, named ``name``): the ratings' side of a grid whose other side must not be stacked."""
    blocks, bounds = row_blocks(X)
    blocks, bounds = _merged(blocks, bounds, groups, name)
    return concat_rows(blocks, bounds, int(X.shape[1]), name, dtype=X.dtype)


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
    """The output frame: ``frame``'s (a frame or a dict of arrays) ``user``, ``item`` and
    ``rating`` where it has one, the clipped predictions, neighbour counts and fallbacks."""
    lo, hi = rating_range
    out = {"user": np.asarray(frame["user"], dtype=object), "item": np.asarray(frame["item"], dtype=object)}
    if "rating" in frame:
        out["rating"] = np.asarray(frame["rating"], np.float64)
    fb = np.asarray(fb, dtype=object)
    codes = np.full(len(fb), -1, np.int8)
    for c, name in enumerate(FALLBACKS):
        codes[fb == name] = c
    out.update(prediction=np.clip(pred, lo, hi), neighbours=np.asarray(used, np.int64),
               fallback=pd.Categorical.from_codes(codes, categories=FALLBACKS))
    return pd.DataFrame(out)


def _baseline_of(u, i, biases):
    """:math:`b_{ui} = (\\mu + b_u) + b_i` per pair of user codes ``u`` and item codes ``i``
    (surprise's order of additions), an unknown side (-1) adding nothing."""
    mu, bu, bi = biases
    bu, bi = np.asarray(bu), np.asarray(bi)
    return (mu + np.where(u >= 0, bu[np.clip(u, 0, None)], 0.0)) + np.where(i >= 0, bi[np.clip(i, 0, None)], 0.0)


def _codes(frame) -> dict:
    return {c: frame[c].to_numpy(np.int64) for c in ("x", "y", "gx", "gy", "gu", "gi")}


def _score_cell(S, Q, rule: ScoringRule, data: ScoringData, *pieces):
    """The predictions of one grid cell's pairs: similarity rows ``S`` of its entity
    block, ratings ``Q`` of its other block."""
    frame = pd.concat(pieces, ignore_index=True) if pieces else PREDICTION_META
    if len(frame) == 0:
        return _empty(frame)
    return _finish(frame, *_known_scores(S, Q, rule, data, _codes(frame)), data.rating_range)


def _known_scores(S, Q, rule: ScoringRule, data: ScoringData, codes: dict):
    """``(prediction, neighbours, fallback)`` of pairs whose user and item are known:
    ``codes`` holds their rows in ``S`` and ``Q`` (``x``, ``y``), their entity and other
    codes (``gx``, ``gy``) and their user and item codes (``gu``, ``gi``)."""
    x, y = codes["x"], codes["y"]
    centred = rule.prediction == "mean-centred"
    centre = offset = None
    if rule.prediction == "baseline":  # a neighbour j's baseline: (mu + b_j) + b_y, as surprise sums it
        mu, bu, bi = data.biases
        b_entity, b_other = ((np.asarray(bi), np.asarray(bu)) if rule.based == "item"
                             else (np.asarray(bu), np.asarray(bi)))
        centre, offset = mu + b_entity, b_other[codes["gy"]]
    elif centred:
        centre = np.asarray(data.entity_means)
    sum_sim, sum_val, used = kernels.score_pairs(S, x, y, Q, rule.k, centre, offset, rule.amplification)
    ok = (used >= max(rule.min_k, 1)) & (sum_sim > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(ok, sum_val / np.where(ok, sum_sim, 1.0), 0.0)
    if rule.prediction == "baseline":
        base = _baseline_of(codes["gu"], codes["gi"], data.biases)
        return np.where(ok, base + ratio, base), used, np.where(ok, "none", "baseline")
    if centred:
        return centre[codes["gx"]] + ratio, used, np.where(ok, "none", rule.fallback)
    return np.where(ok, ratio, data.global_mean), used, np.where(ok, "none", "global_mean")


def _unknown_scores(data: ScoringData, u, i):
    """``(prediction, neighbours, fallback)`` of pairs with an unknown user or item (codes
    ``u``, ``i``, -1 where unknown): the baseline where the model has biases (a new user
    still has the item's bias, a new item the user's), else the global mean."""
    n = len(u)
    if data.biases is not None:
        return _baseline_of(u, i, data.biases), np.zeros(n, np.int64), np.full(n, "baseline")
    return np.full(n, float(data.global_mean)), np.zeros(n, np.int64), np.full(n, "global_mean")


def _empty(frame):
    out = PREDICTION_META.copy()
    return out if "rating" in frame else out.drop(columns="rating")


def _score_unknown(data: ScoringData, *pieces):
    """The predictions of the pairs with an unknown user or item."""
    frame = pd.concat(pieces, ignore_index=True) if pieces else PREDICTION_META
    if len(frame) == 0:
        return _empty(frame)
    u, i = frame["gu"].to_numpy(np.int64), frame["gi"].to_numpy(np.int64)
    return _finish(frame, *_unknown_scores(data, u, i), data.rating_range)
