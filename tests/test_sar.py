"""SAR's similarity measures (Microsoft Recommenders' ``SARSingleNode``) against its
formulas written out here directly: hits binarised per (user, item), item co-occurrence
``H^T H`` with counts under the threshold set to 0, then ``cooccurrence`` itself,
``jaccard`` ``c / (d_i + d_j - c)`` and ``lift`` ``c / (d_i d_j)`` from its diagonal
``d``; a user's scores are the affinity times the similarity matrix, seen items removed
(dcf's ``ranking="sum"`` over lists long enough to hold every positive similarity).  The
affinity is the ratings, or with time decay (``timedecay_formula=True``) each pair's sum
of ``rating * 0.5 ** ((t_now - t) / (half_life days))``, ``t_now`` the latest time
(SAR's ``compute_time_decay``; dcf's ``half_life``, ``feedback="implicit"``)."""

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
    hits.data[:] = 1.0  # repeated events of a pair: one hit
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


def sar_affinity(frame, half_life=None, reference=None):
    """SAR's affinity: the ratings, or their decayed sums per (user, item), one loop."""
    users, items, u, i = _codes(frame)
    out = np.zeros((len(users), len(items)))
    if half_life is None:
        out[u, i] = frame["rating"].to_numpy(np.float64)
        return out
    t_now = frame["time"].max() if reference is None else reference
    for row, col, r, t in zip(u, i, frame["rating"], frame["time"]):
        out[row, col] += r * np.power(0.5, (t_now - t) / (half_life * 24 * 60 * 60))
    return out


def sar_scores(frame, sim, half_life=None):
    """SAR's user scores: affinity times the similarity, seen items at -inf."""
    users, items, u, i = _codes(frame)
    affinity = sar_affinity(frame, half_life)
    scores = np.asarray(affinity @ sim)
    scores[u, i] = -np.inf
    return scores


def _fit(frame, kind, threshold, half_life=None):
    n_items = frame["item"].nunique()
    decay = {} if half_life is None else {"half_life": half_life, "feedback": "implicit"}
    with dask.config.set(scheduler="sync"):
        model = ItemKNN(similarity=kind, neighbourhood="global", k=n_items - 1, min_support=threshold,
                        **decay).fit(frame)
        idx, sim = dask.compute(model.idx_, model.sim_)
    dense = np.zeros((n_items, n_items))
    rows = np.repeat(np.arange(n_items), idx.shape[1])
    keep = idx.ravel() >= 0
    dense[rows[keep], idx.ravel()[keep]] = sim.ravel()[keep]
    return model, dense


def _check(frame, kind, threshold, n, half_life=None):
    sim = sar_similarity(frame, kind, threshold)
    want = sim.copy()
    np.fill_diagonal(want, 0.0)  # dcf keeps an item out of its own list
    model, got = _fit(frame, kind, threshold, half_life)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    scores = sar_scores(frame, sim, half_life)
    users, items, _, _ = _codes(frame)
    with dask.config.set(scheduler="sync"):
        recs = model.recommend(n=n, ranking="sum").compute()
    recs = recs[recs["fallback"] == "none"]
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
def test_sar_with_time_decay_on_random_events(kind):
    """Repeated events of a pair (summed after decay), times over two years."""
    rng = np.random.default_rng(11)
    frame = random_ratings(6, n_users=50, n_items=30, density=0.3)
    frame = pd.concat([frame, frame.sample(frac=0.4, random_state=1)], ignore_index=True)
    frame["time"] = rng.integers(1_500_000_000, 1_500_000_000 + 2 * 365 * 86400, len(frame))
    _check(frame, kind, 1, n=8, half_life=30)


def test_sar_affinity_with_a_reference_time_is_dcfs_matrix():
    rng = np.random.default_rng(2)
    frame = random_ratings(7, n_users=40, n_items=25, density=0.3)
    frame = pd.concat([frame, frame.sample(frac=0.5, random_state=2)], ignore_index=True)
    frame["time"] = rng.integers(0, 10**8, len(frame)).astype(np.float64)
    with dask.config.set(scheduler="sync"):
        model = ItemKNN(similarity="jaccard", feedback="implicit", half_life=7.5, reference_time=5e7).fit(frame)
        got = dask.compute(model.matrix_.by_user)[0].toarray()
    assert model.reference_time_ == 5e7
    np.testing.assert_allclose(got, sar_affinity(frame, 7.5, 5e7), rtol=1e-12, atol=0)


@pytest.mark.parametrize("half_life", [None, 30])
@pytest.mark.parametrize("kind", KINDS)
def test_sar_similarity_and_user_scores_on_ml100k(ml100k, kind, half_life):
    frame = pd.read_csv(ml100k / "u.data", sep="\t", names=["user", "item", "rating", "time"])
    frame = frame.astype({"rating": np.float64})
    _check(frame if half_life else frame[["user", "item", "rating"]], kind, 1, n=10, half_life=half_life)

