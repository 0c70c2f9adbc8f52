"""implicit's item-item measures: ``bm25`` and ``tfidf`` against implicit's formulas written
out (tests/reference.py), item- and user-based, by both methods, and against the package
itself (``BM25Recommender``, ``TFIDFRecommender``, and ``CosineRecommender`` for
``full-cosine``: every item's similar-items list and every user's ``recommend`` list) where
it is installed (the test extras install it).

Ties are the one documented difference: dcf breaks a tie between equal similarities by id
ascending (lists) or by popularity (Top-N), implicit by index descending; so a list is
checked score by score, and by the ids it holds above its last score."""

import dask
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import reference as ref
from conftest import random_ratings
from dcf import KNN, ItemKNN, kernels
from dcf.errors import ConfigError

pytestmark = [pytest.mark.usefixtures("sync"),
              pytest.mark.filterwarnings("ignore:Method expects CSR input")]  # implicit's own conversion


def _dense_model(model, n):
    """The fitted top-k lists as a dense n x n matrix (0 where none)."""
    idx, sim = dask.compute(model.idx_, model.sim_)
    out = np.zeros((n, n))
    rows = np.repeat(np.arange(n), idx.shape[1])
    keep = idx.ravel() >= 0
    out[rows[keep], idx.ravel()[keep]] = sim.ravel()[keep]
    return out


@given(seed=st.integers(0, 10**6), kind=st.sampled_from(["bm25", "tfidf"]), k1=st.sampled_from([0.0, 1.2, 100.0]),
       b=st.sampled_from([0.0, 0.75, 1.0]), transposed=st.booleans())
@settings(max_examples=40, deadline=None)
def test_weights_equal_implicits_formulas_in_either_orientation(seed, kind, k1, b, transposed):
    P, _, _ = ref.dense(random_ratings(seed % 1000, n_users=9, n_items=7, density=0.4))
    want = ref.implicit_weights(P, kind, k1, b)
    rated = P > 0
    weights = kernels.rating_weights(kind, P.sum(axis=1), rated.sum(axis=0), k1, b)
    X = sp.csr_matrix(P.T if transposed else P)
    got = kernels.weigh_block(X, 0, weights, rows_are_entities=not transposed).toarray()
    np.testing.assert_allclose(got.T if transposed else got, want, rtol=1e-13, atol=1e-15)
    # a block of rows further down weighs its rows as the whole does
    lo = 3
    part = kernels.weigh_block(X[lo:], lo, weights, rows_are_entities=not transposed).toarray()
    np.testing.assert_array_equal(part, (got.T if transposed else got)[lo:] if not transposed else got[lo:])


@pytest.mark.parametrize("based", ["item", "user"])
@pytest.mark.parametrize("method", ["rows", "tiles"])
@pytest.mark.parametrize("kind,extra", [("bm25", {}), ("bm25", dict(bm25_k1=3.0, bm25_b=0.2)),
                                        ("tfidf", {}), ("tfidf", dict(min_support=2))])
def test_bm25_and_tfidf_fit_equals_the_formula(based, method, kind, extra):
    frame = random_ratings(23, n_users=26, n_items=18, density=0.3)
    R, _, _ = ref.dense(frame)
    P = R.T if based == "item" else R
    n = P.shape[0]
    S = ref.measure(P, kind, extra.get("min_support", 1), bm25_k1=extra.get("bm25_k1", 1.2),
                    bm25_b=extra.get("bm25_b", 0.75))
    model = KNN(based=based, similarity=kind, k=n - 1, method=method, block_size=5, neighbourhood="global",
                **extra).fit(frame)
    want = np.where(S > 0, S, 0.0)
    np.fill_diagonal(want, 0.0)  # an entity is left out of its own list
    np.testing.assert_allclose(_dense_model(model, n), want, rtol=1e-12, atol=1e-12)
    # include_self: the entity is in its own list, with its own similarity (sum of squared
    # weights for bm25, 1 up to rounding for tfidf), and k lists the best k of all
    selfish = KNN(based=based, similarity=kind, k=n, method=method, block_size=5, neighbourhood="global",
                  include_self=True, **extra).fit(frame)
    W = ref.implicit_weights(P, kind, extra.get("bm25_k1", 1.2), extra.get("bm25_b", 0.75))
    own = (W ** 2).sum(axis=1) if kind == "bm25" else np.ones(n)
    if extra.get("min_support", 1) > 1:  # an entity with fewer raters than min_support has no similarity to itself
        own = np.where((P > 0).sum(axis=1) >= extra["min_support"], own, 0.0)
    np.fill_diagonal(want, own)
    np.testing.assert_allclose(_dense_model(selfish, n), np.where(want > 0, want, 0.0), rtol=1e-12, atol=1e-12)


def test_the_rated_neighbourhood_predicts_from_bm25_rows():
    frame = random_ratings(4, n_users=20, n_items=12, density=0.4)
    R, users, items = ref.dense(frame)
    S = ref.measure(R.T, "bm25")
    model = ItemKNN(similarity="bm25", k=5, neighbourhood="rated").fit(frame)
    rows = model.similarity_rows_.compute()
    np.testing.assert_allclose(rows.toarray() if sp.issparse(rows) else rows, S, rtol=1e-12, atol=1e-12)
    pairs = pd.DataFrame({"user": np.repeat(users, len(items)), "item": np.tile(items, len(users))})
    got = model.predict(pairs).compute().sort_values(["user", "item"])
    want = ref.predict(R, S, [(u, i) for u in range(len(users)) for i in range(len(items))], based="item", k=5)
    np.testing.assert_allclose(got["prediction"].to_numpy(), [w[0] for w in want], rtol=1e-9)


@given(seed=st.integers(0, 10**6), k1=st.sampled_from([0.0, 1.2, 100.0]), b=st.sampled_from([0.0, 0.75, 1.0]))
@settings(max_examples=30, deadline=None)
def test_bm25_split_form_takes_few_values_and_gives_the_weights_bit_for_bit(seed, k1, b):
    """The rows method's shared matrix for bm25 (dcf.fitted.split_bm25): the weights
    without their idf take one value per pair of a rating and an entity's length (so that
    it packs), and times the idf are the weights themselves, the very doubles."""
    frame = random_ratings(seed % 1000, n_users=30, n_items=12, density=0.4)
    P, _, _ = ref.dense(frame)  # users x items: entities are items, the others users
    X = sp.csr_matrix(P)  # others x entities, as the shared matrix
    weights = kernels.rating_weights("bm25", P.sum(axis=0), (P > 0).sum(axis=1), k1, b)
    full = kernels.weigh_block(X, 0, weights, rows_are_entities=False).toarray()
    saturated = kernels.weigh_block(X, 0, weights, rows_are_entities=False, idf=False).toarray()
    rated = P > 0
    pairs = {(P[u, i], P[:, i].sum()) for u, i in zip(*np.nonzero(rated))}
    assert len(np.unique(saturated[rated])) <= len(pairs)
    np.testing.assert_array_equal(saturated[rated] * weights.idf[np.nonzero(rated)[0]], full[rated])
    with pytest.raises(ValueError, match="bm25"):
        kernels.weigh_block(X, 0, kernels.rating_weights("tfidf", P.sum(axis=0), rated.sum(axis=1)), False,
                            idf=False)


@pytest.mark.parametrize("based", ["item", "user"])
@pytest.mark.parametrize("seed,b", [(3, 0.0), (5, 0.75), (11, 1.0)])
def test_bm25_lists_are_the_same_bit_for_bit_by_rows_and_tiles(based, seed, b):
    # the rows method reads the split matrix (packed saturated ratings, the idf multiplied
    # in as read), the tiles method the weighed one: the same doubles, so the same lists,
    # whichever of several items tied in exact arithmetic makes the k-th place (seed 3,
    # user-based, b = 0: a tie at the cut that the idf squared on one side broke the other way)
    frame = random_ratings(seed, n_users=40, n_items=25, density=0.3)
    fits = [KNN(based=based, similarity="bm25", k=12, bm25_b=b, method=method, block_size=7,
                neighbourhood="global").fit(frame) for method in ("rows", "tiles")]
    (ri, rs), (ti, ts) = (dask.compute(m.idx_, m.sim_) for m in fits)
    np.testing.assert_array_equal(ri, ti)
    np.testing.assert_array_equal(rs, ts)


@pytest.mark.parametrize("params", [dict(bm25_k1=-1.0), dict(bm25_b=1.5), dict(bm25_k1=float("nan")),
                                    dict(include_self="yes")])
def test_bad_bm25_settings_are_named(params):
    with pytest.raises(ConfigError, match=next(iter(params))):
        ItemKNN(similarity="bm25", **params).check_params()


# ---------------------------------------------------------------- implicit itself

def _user_items(frame):
    users, u = np.unique(frame["user"].to_numpy(), return_inverse=True)
    items, i = np.unique(frame["item"].to_numpy(), return_inverse=True)
    M = sp.csr_matrix((frame["rating"].to_numpy(np.float64), (u, i)), shape=(len(users), len(items)))
    return users, items, M


def _same_list(got_ids, got_scores, want_ids, want_scores, full):
    """One ranked list against implicit's: the same scores rank by rank, the same ids above
    the last score, and any tied at the last score really scoring it (``full``: every
    candidate's score, by id)."""
    assert len(got_scores) == len(want_scores)
    np.testing.assert_allclose(got_scores, want_scores, rtol=1e-9, atol=0)
    if not len(got_scores):
        return
    cut = want_scores[-1] * (1 + 1e-9)
    assert set(got_ids[got_scores > cut]) == set(want_ids[want_scores > cut])
    np.testing.assert_allclose(full[got_ids[got_scores <= cut]], want_scores[-1], rtol=1e-9)


@pytest.fixture(scope="module")
def implicit_nn():
    return pytest.importorskip("implicit.nearest_neighbours", reason="implicit is not installed (pip install implicit)")


def _lists_matrix(lists, items):
    """dcf's neighbour lists as implicit holds its own: an items x items CSR of similarities."""
    rows = np.searchsorted(items, lists["entity"].to_numpy())
    cols = np.searchsorted(items, lists["neighbour"].to_numpy())
    return sp.csr_matrix((lists["similarity"].to_numpy(), (rows, cols)), shape=(len(items), len(items)))


def _check_against_implicit(frame, kind, K, n, implicit_nn):
    """implicit's lists and ``recommend`` lists for every item and user, up to tie order:
    each similar-items list (:func:`_same_list`); dcf's Top-N equal to implicit's own
    scorer run over dcf's lists; and, for every user none of whose rated items has a tie
    cut at the end of its list, equal to implicit's ``recommend`` itself."""
    users, items, M = _user_items(frame)
    make = {"bm25": implicit_nn.BM25Recommender, "tfidf": implicit_nn.TFIDFRecommender,
            "full-cosine": implicit_nn.CosineRecommender}[kind]
    peer = make(K=K, num_threads=1)
    peer.fit(M, show_progress=False)
    unpruned = make(K=len(items), num_threads=1)  # every pair's similarity, to check the ties
    unpruned.fit(M, show_progress=False)
    full = unpruned.similarity.toarray()
    model = ItemKNN(similarity=kind, k=K, neighbourhood="global", include_self=True).fit(frame)
    lists = model.neighbours()
    ours = _lists_matrix(lists, items)
    same = np.zeros(len(items), bool)  # the item's list holds implicit's items
    for code, item in enumerate(items):
        row = peer.similarity[code]
        order = np.argsort(-row.data, kind="stable")
        mine = lists[lists["entity"] == item].sort_values("rank")
        got = np.searchsorted(items, mine["neighbour"].to_numpy())
        _same_list(got, mine["similarity"].to_numpy(), row.indices[order], row.data[order], full[code])
        same[code] = set(got) == set(row.indices)
    recs = model.recommend(n=n, ranking="sum").compute()
    recs = recs[recs["fallback"] == "none"]
    want_ids, want_scores = peer.recommend(np.arange(len(users)), M, N=n)
    scorer = implicit_nn.ItemItemRecommender(K=K, num_threads=1)
    scorer.__setstate__({"similarity": ours})  # implicit's own scoring, of dcf's lists
    over_ours_ids, over_ours = scorer.recommend(np.arange(len(users)), M, N=n)
    plain = 0
    for code, user in enumerate(users):
        mine = recs[recs["user"] == user].sort_values("rank")
        got = np.searchsorted(items, mine["item"].to_numpy())
        checks = [(over_ours_ids[code], over_ours[code], np.asarray(M[code] @ ours.toarray()).ravel())]
        if same[M[code].indices].all():  # no tie cut in a rated item's list: implicit's own recommend
            checks.append((want_ids[code], want_scores[code], np.asarray(M[code] @ peer.similarity.toarray()).ravel()))
            plain += 1
        for ids, scores, every in checks:
            keep = (ids >= 0) & np.isfinite(scores) & (scores > 0)
            _same_list(got, mine["score"].to_numpy(), ids[keep], scores[keep], every)
    assert plain >= len(users) // 2, f"only {plain} of {len(users)} users free of ties in their items' lists"


@pytest.mark.parametrize("kind", ["bm25", "tfidf", "full-cosine"])
def test_lists_and_recommendations_equal_implicits_on_random_counts(kind, implicit_nn):
    frame = random_ratings(8, n_users=50, n_items=30, density=0.2)
    _check_against_implicit(frame, kind, K=6, n=5, implicit_nn=implicit_nn)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["bm25", "tfidf", "full-cosine"])
def test_lists_and_recommendations_equal_implicits_on_ml100k(ml100k, kind, implicit_nn):
    frame = pd.read_csv(ml100k / "u.data", sep="\t", names=["user", "item", "rating", "time"])
    frame = frame[["user", "item", "rating"]].astype({"rating": np.float64})
    _check_against_implicit(frame, kind, K=20, n=10, implicit_nn=implicit_nn)
