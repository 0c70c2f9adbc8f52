"""SAR's similarity measures (Microsoft Recommenders' ``SARSingleNode``) against its
formulas written out here directly: hits binarised per (user, item), item co-occurrence
``H^T H`` with counts under the threshold set to 0, then ``cooccurrence`` itself,
``jaccard`` ``c / (d_i + d_j - c)`` and ``lift`` ``c / (d_i d_j)`` from its diagonal
``d``; a user's scores are the affinity (here the ratings: no time decay) times the
similarity matrix, seen items removed (dcf's ``ranking="sum"`` over lists long enough to
hold every positive similarity)."""

import dask
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from conftest import random_ratings
from dcf import ItemKNN

KINDS = ["cooccurrence", "jaccard", "lift"]


def _codes(frame):
    users, u = np.unique(frame["user"].to_numpy(), return_inverse=True)
    items, i = np.unique(frame["item"].to_numpy(), return_inverse=True)
    return users, items, u, i


def sar_similarity(frame, kind, threshold=1):
    """SAR's item-item similarity of a ratings frame, dense (items sorted by id)."""
    users, items, u, i = _codes(frame)
    hits = sp.csr_matrix((np.ones(len(frame)), (u, i)), shape=(len(users), len(items)))
    cooc = (hits.T @ hits).toarray()
    cooc = cooc * (cooc >= threshold)
    diag = np.diag(cooc)
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == "cooccurrence":
            sim = cooc
        elif kind == "jaccard":
            sim = cooc / (diag[:, None] + diag[None, :] - cooc)
        else:
            sim = cooc / (diag[:, None] * diag[None, :])
    return np.nan_to_num(sim, nan=0.0, posinf=0.0)


def sar_scores(frame, sim):
    """SAR's user scores: affinity (the ratings) times the similarity, seen items at -inf."""
    users, items, u, i = _codes(frame)
    affinity = sp.csr_matrix((frame["rating"].to_numpy(np.float64), (u, i)), shape=(len(users), len(items)))
    scores = np.asarray(affinity @ sim)
    scores[u, i] = -np.inf
    return scores


def _fit(frame, kind, threshold):
    n_items = frame["item"].nunique()
    with dask.config.set(scheduler="sync"):
        model = ItemKNN(similarity=kind, neighbourhood="global", k=n_items - 1, min_support=threshold).fit(frame)
        idx, sim = dask.compute(model.idx_, model.sim_)
    dense = np.zeros((n_items, n_items))
    rows = np.repeat(np.arange(n_items), idx.shape[1])
    keep = idx.ravel() >= 0
    dense[rows[keep], idx.ravel()[keep]] = sim.ravel()[keep]
    return model, dense


def _check(frame, kind, threshold, n):
    sim = sar_similarity(frame, kind, threshold)
    want = sim.copy()
    np.fill_diagonal(want, 0.0)  # dcf keeps an item out of its own list
    model, got = _fit(frame, kind, threshold)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    scores = sar_scores(frame, sim)
    users, items, _, _ = _codes(frame)
    with dask.config.set(scheduler="sync"):
        recs = model.recommend(n=n, ranking="sum").compute()
    recs = recs[~recs["fallback"]]
    row = np.searchsorted(users, recs["user"].to_numpy(np.int64))
    col = np.searchsorted(items, recs["item"].to_numpy(np.int64))
    # each listed item's score is SAR's, and each list holds SAR's best scores (ties may
    # be ordered differently: dcf breaks them by popularity)
    np.testing.assert_allclose(recs["score"].to_numpy(), scores[row, col], rtol=1e-9, atol=0)
    for user, got_scores in recs.groupby("user")["score"]:
        u = np.searchsorted(users, user)
        best = np.sort(scores[u][scores[u] > 0])[::-1][:len(got_scores)]
        np.testing.assert_allclose(got_scores.to_numpy(), best, rtol=1e-9, atol=0)
    listed = recs.groupby("user").size()
    positive = (scores > 0).sum(axis=1)
    assert (listed.to_numpy() == np.minimum(positive[np.searchsorted(users, listed.index)], n)).all()


@pytest.mark.parametrize("threshold", [1, 3])
@pytest.mark.parametrize("kind", KINDS)
def test_sar_similarity_and_user_scores_on_random_ratings(kind, threshold):
    frame = random_ratings(5, n_users=60, n_items=35, density=0.25)
    _check(frame, kind, threshold, n=8)


@pytest.mark.parametrize("kind", KINDS)
def test_sar_similarity_and_user_scores_on_ml100k(ml100k, kind):
    frame = pd.read_csv(ml100k / "u.data", sep="\t", names=["user", "item", "rating", "time"])
    frame = frame[["user", "item", "rating"]].astype({"rating": np.float64})
    _check(frame, kind, 1, n=10)

