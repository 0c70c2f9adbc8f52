"""The baselines a model is judged against, on the model's own split: what a newcomer's
``precision@20 0.0012`` is to be compared with.

From a fitted model (its training ratings, id maps and means) and the test ratings:

* ``popularity`` -- each training user's list is the ``n`` most rated items it has not
  rated (LensKit's ``PopScorer``; the fill the Top-N kernels use, ties to the lower code);
  no rating prediction;
* ``item-mean`` and ``user-mean`` -- every rating predicted as the item's (the user's)
  training mean, the global mean where the model does not know it;
* ``baseline`` -- :math:`\\mu + b_u + b_i`, the ALS biases of :mod:`dcf.baseline`
  (surprise's ``BaselineOnly``, the model's ``baseline_epochs``, ``reg_user`` and
  ``reg_item``), an unknown side adding nothing.

Each gets the model's measures: MAE and RMSE of its predictions, and (popularity) the
Top-N measures, catalogue coverage and popularity bias of its lists.
"""

from __future__ import annotations

import dask
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .. import kernels
from ..baseline import fit_biases
from ..blocks import row_blocks
from ..predict.topn import popularity_order
from .metrics import average_popularity, catalogue_coverage, mae, ranking_metrics, rmse

__all__ = ["BASELINES", "baseline_predictions", "popularity_lists", "baseline_figures", "item_counts"]

BASELINES = ("popularity", "item-mean", "user-mean", "baseline")


def baseline_predictions(model, test: pd.DataFrame) -> dict:
    """``{name: predictions}`` of the test pairs (``user``, ``item``) by ``item-mean``,
    ``user-mean`` and ``baseline``: float64 arrays in the pairs' order, clipped to the
    training rating range."""
    m = model.matrix_
    u = m.users.to_codes(test["user"].to_numpy())
    i = m.items.to_codes(test["item"].to_numpy())
    mu = model.global_mean_
    biases = fit_biases(m.by_user, m.item_count, mu, int(model.baseline_epochs), float(model.reg_user),
                        float(model.reg_item), token=dask.base.tokenize(model.token_, "evaluate"))
    bu, bi, user_sum, user_count, item_sum, item_count = dask.compute(*biases, m.user_sum, m.user_count, m.item_sum,
                                                                      m.item_count)  # one round trip
    lo, hi = model.rating_range_

    def mean_of(codes, sums, counts):
        known = codes >= 0
        at = np.clip(codes, 0, None)
        return np.where(known, np.asarray(sums, np.float64)[at] / np.maximum(np.asarray(counts)[at], 1), mu)

    base = (mu + np.where(u >= 0, np.asarray(bu)[np.clip(u, 0, None)], 0.0)) + np.where(
        i >= 0, np.asarray(bi)[np.clip(i, 0, None)], 0.0)  # surprise's order of additions
    return {name: np.clip(values, lo, hi) for name, values in (
        ("item-mean", mean_of(i, item_sum, item_count)), ("user-mean", mean_of(u, user_sum, user_count)),
        ("baseline", base))}


def popularity_lists(model, n: int) -> pd.DataFrame:
    """Every training user's ``n`` most rated unrated items (ties: the lower item code), as
    a recommendation frame ``user, rank, item``: one task a user block, where the blocks are
    (``baseline-popularity``)."""
    m = model.matrix_
    token = dask.base.tokenize(model.token_, n, "popularity")
    order = dask.delayed(popularity_order, pure=True)(m.item_count, dask_key_name=f"baseline-popularity-order-{token}")
    blocks, bounds = row_blocks(m.by_user)
    task = dask.delayed(_popular_block, pure=True)
    parts = dask.compute(*[task(b, int(bounds[j]), order, min(int(n), len(m.items)),
                                dask_key_name=f"baseline-popularity-{token}-{j}") for j, b in enumerate(blocks)])
    rows = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
    cols = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int64)
    ranks = np.concatenate([p[2] for p in parts]) if parts else np.zeros(0, np.int64)
    return pd.DataFrame({"user": m.users.to_raw(rows), "rank": ranks, "item": m.items.to_raw(cols)})


def _popular_block(rated, row0, order, n):
    """``(user codes, item codes, ranks)`` of one user block's popularity lists: the Top-N
    kernel with no scores, so every list is its fill of the most popular unrated items."""
    rated = sp.csr_matrix(rated)
    users, items = rated.shape
    nothing = sp.csr_matrix((users, 1)), sp.csr_matrix((1, items))
    cols, _, _ = kernels.recommend_rows(*nothing, rated, n, np.asarray(order, np.int64), sim_left=False, divide=False)
    r, c = np.nonzero(cols >= 0)
    return (row0 + r).astype(np.int64), cols[r, c].astype(np.int64), (c + 1).astype(np.int64)


def baseline_figures(model, test: pd.DataFrame, n: int | None, threshold: float) -> pd.DataFrame:
    """One row per baseline (:data:`BASELINES`): ``mae, rmse`` (NaN for popularity, and for
    every baseline where the test pairs carry no rating to predict) and, for popularity,
    ``precision, recall, ndcg, map, mrr, hit_rate, users, coverage, popularity`` of its
    Top-``n`` lists against ``test`` (NaN for the others)."""
    truth = test["rating"].to_numpy(np.float64) if "rating" in test else None
    explicit = model.feedback != "implicit" and truth is not None
    predicted = baseline_predictions(model, test) if explicit else {}
    rows = []
    for name in BASELINES:
        row = {"baseline": name, "mae": np.nan, "rmse": np.nan}
        if name in predicted:
            row.update(mae=mae(truth, predicted[name]), rmse=rmse(truth, predicted[name]))
        if name == "popularity" and n is not None and truth is not None:
            lists = popularity_lists(model, n)
            m = model.matrix_
            row.update(ranking_metrics(lists, test, n, threshold), coverage=catalogue_coverage(lists, len(m.items)),
                       popularity=average_popularity(lists, item_counts(model), len(m.users)))
        rows.append(row)
    columns = ["baseline", "mae", "rmse", "precision", "recall", "ndcg", "map", "mrr", "hit_rate", "users",
               "coverage", "popularity"]
    return pd.DataFrame(rows).reindex(columns=columns)


def item_counts(model) -> pd.Series:
    """The training ratings of each item of a fitted model, indexed by raw item id (what
    :func:`dcf.evaluate.average_popularity` reads)."""
    m = model.matrix_
    return pd.Series(np.asarray(dask.compute(m.item_count)[0]), index=m.items.to_raw(np.arange(len(m.items))))
