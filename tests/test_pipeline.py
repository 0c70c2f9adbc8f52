"""The estimator end to end against the dense reference, over chunkings and schedulers."""

import dask
import dask.array as da
import distributed
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import reference as ref
from conftest import random_ratings
import dcf.predict.requests
import dcf.predict.topn
from dcf import ItemKNN, UserKNN
from dcf.kernels import SimilaritySettings
from dcf.model import KNN

SCHEDULERS = ["sync", "threads", "distributed"]


def _codes(df, users, items):
    return list(zip(np.searchsorted(users, df["user"]), np.searchsorted(items, df["item"])))


def _fit_predict(train, pairs, block, **params):
    model = KNN(block_size=block, **params).fit(train)
    out = model.predict(pairs).compute()
    return model, out.sort_values(["user", "item"]).reset_index(drop=True)


@pytest.fixture(params=SCHEDULERS)
def scheduler(request):
    if request.param == "distributed":
        client = request.getfixturevalue("dist_client")
        with dask.config.set(scheduler=client):
            yield request.param
    else:
        with dask.config.set(scheduler=request.param):
            yield request.param


# every chunking on the in-process schedulers; on the distributed one a single block and
# blocks of 3 (the same graphs: what it adds is the transfers between workers, and its
# per-task cost made the 1- and 7-blocks cases 65 s of CI's 18 minutes)
CHUNKINGS = [(s, b) for s in SCHEDULERS for b in (1, 3, 7, None) if s != "distributed" or b in (3, None)]


@pytest.mark.parametrize("scheduler,block", CHUNKINGS, indirect=["scheduler"])
@pytest.mark.parametrize("params", [
    dict(based="item", prediction="weighted", neighbourhood="rated", k=3),
    dict(based="item", prediction="mean-centred", neighbourhood="rated", k=5, min_support=2),
    dict(based="user", prediction="weighted", neighbourhood="global", k=4, similarity="full-cosine"),
    dict(based="user", prediction="mean-centred", neighbourhood="rated", k=2, shrinkage=3.0, min_k=2),
    dict(based="item", prediction="mean-centred", neighbourhood="global", k=6, min_k=2),
    dict(based="item", prediction="baseline", neighbourhood="rated", k=4, similarity="pearson-baseline",
         shrinkage=5.0),
    dict(based="user", prediction="baseline", neighbourhood="global", k=3, similarity="pearson-baseline",
         min_k=2, baseline_epochs=3, reg_user=2.0, reg_item=4.0),
    dict(based="item", prediction="baseline", neighbourhood="global", k=5, similarity="cosine"),
    dict(based="item", prediction="baseline", neighbourhood="rated", k=4, amplification=2.0),
    dict(based="user", prediction="weighted", neighbourhood="global", k=3, amplification=0.5),
])
def test_predictions_match_reference(scheduler, block, params):
    data = random_ratings(7, n_users=25, n_items=18, density=0.3)
    test = data.sample(frac=0.2, random_state=1)
    train = data.drop(test.index)
    R, users, items = ref.dense(train)
    based = params["based"]
    bias = ref.biases(R, params.get("baseline_epochs", 10), params.get("reg_user", 15.0),
                      params.get("reg_item", 10.0))
    if params.get("similarity") == "pearson-baseline":
        mu, bu, bi = bias
        resid = R - (mu + bu[:, None] + bi[None, :])
        S = ref.pearson_baseline((R > 0).T if based == "item" else R > 0, resid.T if based == "item" else resid,
                                 params.get("min_support", 1), params.get("shrinkage", 0.0))
    else:
        S = ref.similarity(R.T if based == "item" else R, params.get("similarity", "cosine"),
                           params.get("min_support", 1), params.get("shrinkage", 0.0))
    table = ref.topk(S, params["k"])[0]
    pairs = test[test["user"].isin(users) & test["item"].isin(items)]
    pairs = pairs.sort_values(["user", "item"]).reset_index(drop=True)
    expected = ref.predict(R, S, _codes(pairs, users, items), based=based, k=params["k"],
                           prediction=params["prediction"], neighbourhood=params["neighbourhood"],
                           min_k=params.get("min_k", 1), table=table, bias=bias,
                           amplification=params.get("amplification", 1.0))
    model, got = _fit_predict(train, pairs, block, **params)
    np.testing.assert_allclose(got["prediction"], [e[0] for e in expected], rtol=0, atol=1e-12)
    assert got["neighbours"].tolist() == [e[1] for e in expected]
    assert got["fallback"].astype(str).tolist() == [e[2] for e in expected]
    idx, sim = dask.compute(model.idx_, model.sim_)
    exp_idx, exp_sim = ref.topk(S, params["k"])
    np.testing.assert_array_equal(idx, exp_idx)
    np.testing.assert_allclose(sim, exp_sim, atol=1e-12)


@pytest.mark.parametrize("method", ["rows", "tiles"])
@pytest.mark.parametrize("based", ["item", "user"])
@pytest.mark.parametrize("measure,extra", [
    ("pearson", dict(min_support=2)),
    ("adjusted-cosine", dict(significance=4.0)),
    ("centred-cosine", dict(min_similarity=0.2)),
    ("jaccard", dict(shrinkage=1.0, significance=3.0)),
    ("cooccurrence", dict(min_support=2)),
    ("lift", dict(min_similarity=0.01)),
    ("llr", dict(significance=2.0)),
    ("bm25", dict(bm25_k1=2.0, min_similarity=0.5)),
    ("tfidf", dict(bm25_b=0.1, shrinkage=1.0)),
    ("conditional", dict(alpha=0.3)),
    ("conditional", dict(alpha=0.8, min_support=2, significance=2.0)),
])
def test_every_measure_end_to_end_equals_its_formula(method, based, measure, extra):
    # the model centres with the means it keeps (sums over blocks), the reference with
    # numpy's: the same up to rounding
    data = random_ratings(11, n_users=24, n_items=17, density=0.35)
    test = data.sample(frac=0.2, random_state=2)
    train = data.drop(test.index)
    R, users, items = ref.dense(train)
    P = R.T if based == "item" else R
    S = ref.measure(P, measure, extra.get("min_support", 1), extra.get("shrinkage", 0.0),
                    extra.get("significance", 0.0), extra.get("min_similarity", 0.0), extra.get("bm25_k1", 1.2),
                    extra.get("bm25_b", 0.75), extra.get("alpha", 0.5))
    k = 4
    model = KNN(based=based, similarity=measure, k=k, method=method, block_size=5,
                prediction="mean-centred", **extra).fit(train)
    got = model.similarity_rows_.compute()
    np.testing.assert_allclose(got.toarray() if hasattr(got, "toarray") else got, S, rtol=1e-9, atol=1e-12)
    idx, sim = dask.compute(model.idx_, model.sim_)
    exp_idx, exp_sim = ref.topk(S, k)
    np.testing.assert_array_equal(idx, exp_idx)
    np.testing.assert_allclose(sim, exp_sim, rtol=1e-9)
    pairs = test[test["user"].isin(users) & test["item"].isin(items)].sort_values(["user", "item"])
    expected = ref.predict(R, S, _codes(pairs, users, items), based=based, k=k, prediction="mean-centred")
    out = model.predict(pairs.reset_index(drop=True)).compute().sort_values(["user", "item"])
    np.testing.assert_allclose(out["prediction"], [e[0] for e in expected], rtol=1e-9)
    assert out["neighbours"].tolist() == [e[1] for e in expected]


@pytest.mark.parametrize("block", [2, None])
@pytest.mark.parametrize("params", [
    dict(based="item", prediction="weighted", k=3),
    dict(based="user", prediction="mean-centred", k=4, min_k=2),
    dict(based="item", prediction="baseline", k=4),
    dict(based="user", prediction="baseline", k=3, min_k=2),
    dict(based="item", prediction="baseline", k=4, amplification=2.0),
    dict(based="user", prediction="mean-centred", k=4, amplification=3.0),
])
def test_recommendations_match_reference(scheduler, block, params):
    train = random_ratings(3, n_users=20, n_items=15, density=0.35)
    R, users, items = ref.dense(train)
    based = params["based"]
    S = ref.similarity(R.T if based == "item" else R)
    table = ref.topk(S, params["k"])
    expected, item_means = ref.recommend(R, table, 6, based=based, prediction=params["prediction"],
                                         min_k=params.get("min_k", 1), bias=ref.biases(R),
                                         amplification=params.get("amplification", 1.0))
    model = KNN(block_size=block, neighbourhood="global", **params).fit(train)
    got = model.recommend(n=6).compute()
    for u, exp in enumerate(expected):
        mine = got[got["user"] == users[u]].sort_values("rank")
        assert mine["item"].tolist() == [items[i] for i, _ in exp]
        assert (mine["fallback"] == "popular").tolist() == [s is None for _, s in exp]
        want = [item_means[i] if s is None else s for i, s in exp]
        np.testing.assert_allclose(mine["score"], want, atol=1e-12)


def test_unknown_users_and_items_get_the_global_mean():
    train = random_ratings(1, n_users=10, n_items=8)
    model = ItemKNN(k=3).fit(train)
    pairs = pd.DataFrame({"user": [100, 999, 999], "item": [12345, 500, 12345]})
    out = model.predict(pairs).compute()
    assert (out["fallback"] == "global_mean").all()
    assert np.allclose(out["prediction"], train["rating"].mean())
    assert (out["neighbours"] == 0).all()


def test_baseline_predictions_of_unknown_users_and_items_keep_the_known_bias():
    train = random_ratings(2, n_users=12, n_items=9)
    R, users, items = ref.dense(train)
    mu, bu, bi = ref.biases(R)
    model = ItemKNN(k=3, prediction="baseline").fit(train)
    pairs = pd.DataFrame({"user": [users[4], 999, 999], "item": [12345, items[2], 12345]})
    out = model.predict(pairs).compute().set_index(["user", "item"]).loc[list(zip(pairs.user, pairs.item))]
    assert (out["fallback"] == "baseline").all() and (out["neighbours"] == 0).all()
    lo, hi = R[R > 0].min(), R[R > 0].max()
    np.testing.assert_allclose(out["prediction"], np.clip([mu + bu[4], mu + bi[2], mu], lo, hi), atol=1e-12)


def test_predictions_never_nan_and_within_training_range():
    train = random_ratings(5, n_users=30, n_items=25, density=0.1, scale=(0.5, 4.5), half=True)
    model = UserKNN(k=2, prediction="mean-centred", min_k=2).fit(train)
    users, items = train["user"].unique(), train["item"].unique()
    pairs = pd.DataFrame([(u, i) for u in users for i in items], columns=["user", "item"])
    out = model.predict(pairs).compute()
    assert len(out) == len(pairs)
    assert list(out.columns) == ["user", "item", "prediction", "neighbours", "fallback"]
    assert out.notna().all().all()
    assert out["prediction"].between(train["rating"].min(), train["rating"].max()).all()


def test_batch_equals_one_by_one():
    train = random_ratings(11, n_users=15, n_items=12)
    model = ItemKNN(k=4, prediction="mean-centred").fit(train)
    pairs = train.sample(10, random_state=0)[["user", "item"]]
    batch = model.predict(pairs).compute().set_index(["user", "item"])["prediction"]
    for u, i in pairs.itertuples(index=False):
        one = model.predict(pd.DataFrame({"user": [u], "item": [i]})).compute()
        assert one["prediction"].iloc[0] == batch.loc[(u, i)]


def test_predictions_of_two_grids_computed_together_keep_their_own_rows(monkeypatch):
    """Two requests of the same pairs on grids of different sizes (the cluster's threads
    changed between them) name different tasks: computed together, each equals the pairs'
    predictions, no row twice."""
    train = random_ratings(12, n_users=30, n_items=20)
    model = KNN(block_size=4, k=3).fit(train)  # whole rows in blocks: the grid is cut by the cells
    pairs = train.sample(40, random_state=1)[["user", "item"]]
    got = []
    for cells in (2, 9):
        monkeypatch.setattr(dcf.predict.requests, "grid_cells", lambda ratings, threads, c=cells: c)
        got.append(dcf.predict.requests.model_predictions(model, pairs))  # the graph (not the held model)
    assert got[0].npartitions != got[1].npartitions
    with dask.config.set(scheduler="sync"):
        few, many = dask.compute(*got)
    key = ["user", "item"]
    assert len(few) == len(many) == len(pairs)
    pd.testing.assert_frame_equal(few.sort_values(key).reset_index(drop=True),
                                  many.sort_values(key).reset_index(drop=True))


def test_checkerboard_oracle():
    # even users like even items, odd users like odd items; each user's own item
    # (the diagonal) and its right neighbour are held out: top-1 must be the diagonal
    n = 12
    rows = [(u, i, 5.0 if (u - i) % 2 == 0 else 1.0) for u in range(n) for i in range(n)
            if i not in (u, (u + 1) % n)]
    train = pd.DataFrame(rows, columns=["user", "item", "rating"])
    for based in ("item", "user"):
        model = KNN(based=based, k=4, neighbourhood="global").fit(train)
        recs = model.recommend(n=2).compute()
        top1 = recs[recs["rank"] == 1].set_index("user")["item"]
        assert top1.sort_index().tolist() == list(range(n)), based


def test_recommend_gives_exactly_n_distinct_unrated_items():
    train = random_ratings(2, n_users=40, n_items=30, density=0.2)
    model = ItemKNN(k=5, neighbourhood="global").fit(train)
    recs = model.recommend(n=10).compute()
    rated = set(zip(train["user"], train["item"]))
    per_user = recs.groupby("user")
    assert (per_user.size() == 10).all() and per_user.ngroups == train["user"].nunique()
    assert (per_user["item"].nunique() == 10).all()
    assert not any((u, i) in rated for u, i in zip(recs["user"], recs["item"]))
    assert recs["score"].notna().all()


def test_params_round_trip_and_validation():
    m = ItemKNN(k=7, shrinkage=2.0)
    assert m.get_params()["k"] == 7 and "based" not in m.get_params()
    m.set_params(k=9)
    assert m.k == 9
    from dcf import ConfigError

    with pytest.raises(ConfigError, match="neighbourhood"):
        KNN(neighbourhood="everyone").fit(random_ratings(0))
    with pytest.raises(ConfigError, match="k must be"):
        KNN(k=0).fit(random_ratings(0))
    with pytest.raises(RuntimeError, match="not fitted"):
        ItemKNN().predict(pd.DataFrame({"user": [1], "item": [2]}))
    for rho in (0, -1.0, float("nan"), float("inf"), "2", True):
        with pytest.raises(ConfigError, match="amplification must be a number > 0"):
            KNN(amplification=rho).fit(random_ratings(0))


def test_recommend_for_some_users_equals_their_rows_of_the_full_run(small_requests, monkeypatch):
    train = random_ratings(9, n_users=40, n_items=25, density=0.2)
    model = ItemKNN(k=4, neighbourhood="global", block_size=5).fit(train)
    full = model.recommend(n=5).compute()
    some = model.recommend(users=[100, 139, 4242], n=5).compute()
    want = full[full["user"].isin([100, 139])]
    known = some[some["user"] != 4242]
    pd.testing.assert_frame_equal(known.sort_values(["user", "rank"]).reset_index(drop=True),
                                  want.sort_values(["user", "rank"]).reset_index(drop=True))
    monkeypatch.setattr(dcf.predict.topn, "FEW_ROWS", 1)  # a task's rows past it: its whole block, then kept
    many = [139, 102, 100, 101, 120, 121]
    pd.testing.assert_frame_equal(model.recommend(users=many, n=5).compute().reset_index(drop=True),
                                  full[full["user"].isin(many)].reset_index(drop=True))
    stranger = model.recommend(users=[4242], n=5).compute()  # unknown: the popularity list, flagged
    assert (stranger["fallback"] == "unknown_user").all() and len(stranger) == 5
    pd.testing.assert_frame_equal(stranger.reset_index(drop=True),
                                  some[some["user"] == 4242].reset_index(drop=True))
    nb = model.neighbours(ids=[501, 505], n=3)
    table = model.neighbours()
    pd.testing.assert_frame_equal(nb.reset_index(drop=True),
                                  table[table["entity"].isin([501, 505]) & (table["rank"] <= 3)]
                                  .reset_index(drop=True))


@pytest.mark.parametrize("based", ["item", "user"])
@pytest.mark.parametrize("neighbourhood", ["rated", "global"])
@pytest.mark.parametrize("measure", ["cosine", "full-cosine", "pearson", "adjusted-cosine", "centred-cosine",
                                     "jaccard", "lift", "llr"])
def test_rows_and_tiles_methods_give_identical_models(based, neighbourhood, measure):
    from dcf.datasets import synthetic

    # user-based: half the users (the tiles then cut users, the slow side to tile), still 14 blocks
    users, ratings = (600, 6000) if based == "item" else (300, 3000)
    df = synthetic(users=users, items=120, ratings=ratings, seed=4).frame.compute()
    params = dict(based=based, k=7, neighbourhood=neighbourhood, similarity=measure, min_support=2,
                  shrinkage=1.5, block_size=23, significance=0.0 if measure == "cosine" else 5.0,
                  min_similarity=0.0 if measure == "cosine" else 0.05)
    rows, tiles = (KNN(method=m, **params).fit(df) for m in ("rows", "tiles"))
    assert (rows.method_, tiles.method_) == ("rows", "tiles")
    for a, b in zip(dask.compute(rows.neighbours_.idx, rows.neighbours_.sim),
                    dask.compute(tiles.neighbours_.idx, tiles.neighbours_.sim)):
        np.testing.assert_array_equal(a, b)
    if neighbourhood == "rated":
        a, b = (m.similarity_rows_.compute() for m in (rows, tiles))
        np.testing.assert_array_equal(*(x.toarray() if hasattr(x, "toarray") else x for x in (a, b)))
    a, b = (m.predict(df.iloc[:400]).compute().sort_values(["user", "item"]).reset_index(drop=True)
            for m in (rows, tiles))  # the grid cells (and so the row order) may differ
    pd.testing.assert_frame_equal(a, b)


def test_method_falls_back_to_tiles_when_the_shared_matrix_does_not_fit():
    from dcf.similarity import method, shared_bytes

    budget = (3e9, 1, 6e9, 0)  # 3 GB workers, idle
    assert method(None, 10**6, 10**9) == "rows"  # no limit known
    assert method(budget, 10**6, 20 * 10**6) == "rows"  # 20M ratings: 248 MB per worker
    assert shared_bytes(10**6, 20 * 10**6) == pytest.approx(248e6, rel=0.01)
    assert method(budget, 10**6, 10**8) == "tiles"  # 100M ratings: 1.2 GB, over a quarter


@pytest.mark.parametrize("based", ["item", "user"])
@pytest.mark.parametrize("ranking,rho", [("sum", 1.0), ("normalised-sum", 1.0), ("sum", 2.0),
                                         ("normalised-sum", 0.5)])
def test_sum_ranking_equals_ratings_times_the_neighbour_matrix(based, ranking, rho):
    from dcf.datasets import synthetic

    df = synthetic(users=300, items=80, ratings=3000, seed=5).frame.compute()
    model = KNN(based=based, k=6, neighbourhood="global", block_size=17, amplification=rho).fit(df)
    recs = model.recommend(n=5, ranking=ranking).compute()
    users = model.matrix_.users.to_raw(np.arange(len(model.matrix_.users)))
    items = model.matrix_.items.to_raw(np.arange(len(model.matrix_.items)))
    R = model.matrix_.by_user.compute().toarray()
    W = model.neighbours_.W.compute().toarray() ** rho  # case amplification (listed s > 0)
    if ranking == "normalised-sum" and based == "item":  # every list scaled to sum to one
        W = W / np.where(W.sum(1, keepdims=True) > 0, W.sum(1, keepdims=True), 1.0)
    scores = R @ W if based == "item" else W @ R  # item: sum_j r_uj s_ji over j's lists
    pop = (R > 0).sum(0)
    rank = np.argsort(np.lexsort((np.arange(len(pop)), -pop)))
    got = recs.groupby("user")
    assert len(recs) == 5 * len(users)
    for u in range(len(users)):
        cand = [i for i in range(len(items)) if R[u, i] == 0 and scores[u, i] > 0]
        best = sorted(cand, key=lambda i: (-scores[u, i], rank[i]))[:5]
        mine = got.get_group(users[u]).sort_values("rank")
        scored = mine[mine["fallback"] == "none"]
        assert [items.tolist().index(i) for i in scored["item"]] == best
        np.testing.assert_allclose(scored["score"], scores[u, best], rtol=1e-12)
        assert (mine.loc[mine["fallback"] == "popular", "score"] == 0).all()


def test_frames_keep_their_model_blocks_alive_after_the_model_is_dropped(dist_client):
    # chained fit(...).predict(...).compute(): the model is gone before the graph is sent;
    # with optimised to_delayed the graphs held keys, not Futures, and the persisted blocks
    # were released ("lost dependencies", seen under load in the notebook test)
    import gc
    import time

    from dcf.datasets import synthetic

    df = synthetic(users=400, items=90, ratings=4000, seed=6).frame.compute()
    with dask.config.set(scheduler=dist_client):
        frames = []
        # mean-centred: persisted means; baseline: persisted biases too (a tuple of them once
        # kept only their keys, and both frames failed with "lost dependencies")
        for prediction in ("mean-centred", "baseline"):
            frames.append((ItemKNN(k=5, block_size=20, prediction=prediction).fit(df).predict(df.iloc[:60]), 60))
            frames.append((ItemKNN(k=5, neighbourhood="global", block_size=20, prediction=prediction).fit(df)
                           .recommend(n=3), 3 * df["user"].nunique()))
        gc.collect()
        time.sleep(1.0)  # let the releases reach the scheduler
        for frame, rows in frames:
            assert len(frame.compute()) == rows


@given(st.lists(st.floats(0, 1e6), min_size=1, max_size=60), st.integers(1, 12))
@settings(max_examples=80, deadline=None)
def test_balanced_cuts_cover_every_entity_in_even_ranges(work, groups):
    from dcf.similarity import balanced_cuts

    cuts = balanced_cuts(np.array(work), groups)
    assert cuts[0] == 0 and cuts[-1] == len(work) and np.all(np.diff(cuts) > 0)
    assert len(cuts) - 1 <= groups
    w = np.array(work) + 1.0
    sums = np.add.reduceat(w, cuts[:-1])
    # no range carries more than its share plus the one entity that crossed the line
    assert sums.max() <= w.sum() / groups + w.max() + 1e-6 * w.sum()


def test_entity_stats_equal_a_dense_count():
    from dcf.similarity import PAIR_COST, entity_stats

    rng = np.random.default_rng(7)
    R = rng.choice([0.0, 0.0, 0.0, 1.0, 2.5, 5.0], size=(40, 13))
    Q = da.from_array(sp.csr_matrix(R), chunks=(9, 13), asarray=False)
    (lo, hi, total, count), work = entity_stats(Q).compute(scheduler="sync")
    rated = R > 0
    assert (lo, hi, total, count) == (R[rated].min(), R[rated].max(), R[rated].sum(), rated.sum())
    # an item's cost in the rows method: the ratings of each of its raters, summed, plus a
    # fixed cost a rating
    np.testing.assert_array_equal(work, rated.T.astype(float) @ (rated.sum(1) + PAIR_COST))


@pytest.mark.parametrize("centred", [False, True])
@pytest.mark.parametrize("where", [None, "two workers"])
def test_prepare_gives_the_stats_and_the_shared_matrix_in_one_pass(centred, where):
    from dcf.similarity import entity_stats, prepare, shared_matrix

    rng = np.random.default_rng(3)
    R = rng.choice([0.0, 0.0, 1.0, 2.5, 5.0], size=(40, 13))
    raw = da.from_array(sp.csr_matrix(R), chunks=(9, 13), asarray=False)
    def centre(b):  # same structure, other values (as a centred measure's residuals)
        b = b.copy()
        b.data = b.data * 0.5 - 0.25
        return b

    Q = raw.map_blocks(centre, dtype=float) if centred else raw
    if where:  # blocks 0, 2, 4 on one worker with two threads, 1 and 3 on another with one
        where = [("a", 2), ("b", 1), ("a", 2), ("b", 1), ("a", 2)]
    stats, runs = prepare(raw, Q, pack=True, where=where)
    assert len(runs) == (3 if where else raw.numblocks[0])  # a task per thread of a worker, or per block
    (got_stats, got_work), got = dask.compute(stats, shared_matrix(Q, True, runs), scheduler="sync")
    (want_stats, want_work), want = dask.compute(entity_stats(raw), shared_matrix(Q, True), scheduler="sync")
    assert got_stats == want_stats
    np.testing.assert_array_equal(got_work, want_work)
    assert got.shape == want.shape
    for a, b in zip(got, want):
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b)
    # the shared matrix is of Q's values (in block order), the stats of the raw ratings
    assert got.table.min() == (0.25 if centred else 1.0)
    np.testing.assert_array_equal(_dense_of(got), R * 0.5 - 0.25 * (R > 0) if centred else R)


def _dense_of(Q):
    """The dense array of a (possibly packed) CompactCSR."""
    from dcf import kernels

    plain = kernels.unpacked(Q)
    return sp.csr_matrix((plain.data.astype(float), plain.indices, plain.indptr), shape=Q.shape).toarray()


def test_placement_names_the_worker_holding_each_chunk(dist_client):
    from dcf.cluster import placement

    X = da.from_array(sp.csr_matrix(np.eye(12)), chunks=(3, 12), asarray=False)
    with dask.config.set(scheduler=dist_client):
        assert placement(X) is None  # not persisted
        X = X.persist()
        where = placement(X)
    holders = dist_client.who_has(distributed.futures_of(X))
    workers = dist_client.scheduler_info()["workers"]
    assert [w for w, _ in where] == [holders[k][0] for k in [key for (key,) in X.__dask_keys__()]]
    assert all(t == workers[w]["nthreads"] for w, t in where)
    with dask.config.set(scheduler="sync"):
        assert placement(X) is None


@pytest.mark.parametrize("measure", ["full-cosine", "cosine"])
def test_even_rows_tasks_read_nothing_but_the_shared_matrix(measure):
    # what lets Dask queue them and hand them out as threads free up (root-ish tasks):
    # a task that read P's chunks was sent to the chunks' worker up front
    from dask.core import get_dependencies

    from dcf.similarity import entity_stats, similarity_by_rows

    rng = np.random.default_rng(5)
    R = rng.choice([0.0, 0.0, 1.0, 2.5, 5.0], size=(60, 24))
    Q = da.from_array(sp.csr_matrix(R), chunks=(13, 24), asarray=False)
    P = da.from_array(sp.csr_matrix(R.T), chunks=(7, 60), asarray=False)
    work = entity_stats(Q).compute(scheduler="sync")[1]
    cuts = np.array([0, 5, 11, 24])  # whole rows: the cuts of whole_row_cuts, given as they are
    for groups, whole in ((3, False), (None, False), (3, True), (cuts, True)):
        bounds, _, blocks = similarity_by_rows(P, Q, 4, SimilaritySettings(measure), work=work, groups=groups, whole_rows=whole)
        graph = dict(blocks[0][0].dask)
        task = [key for key in graph if str(key).startswith("similarity-block")][0]
        reads = {str(d).split("-")[0] + "-" + str(d).split("-")[1] for d in get_dependencies(graph, task)}
        if groups is not None:  # whole rows too: the rated neighbourhood's tasks were one a chunk of P
            assert len(bounds) == 4 and reads <= {"similarity-others", "similarity-norms"}
            assert np.ndim(groups) == 0 or (bounds == cuts).all()
        else:  # one task per chunk of P: it reads the chunk
            assert any(not r.startswith("similarity-") for r in reads)
        lists = dask.compute(*[b[:2] for b in blocks], scheduler="sync")
        sim = np.concatenate([v for _, v in lists])
        np.testing.assert_allclose(sim, ref.topk(ref.similarity(R.T, measure), 4)[1], rtol=1e-12)
        if whole:  # the same whole rows, bit for bit, as one task a chunk of P gives them
            rows = sp.vstack([sp.csr_matrix(b) for b in dask.compute(*[b[2] for b in blocks], scheduler="sync")])
            _, _, chunked = similarity_by_rows(P, Q, 4, SimilaritySettings(measure), whole_rows=True)
            want = sp.vstack([sp.csr_matrix(b) for b in dask.compute(*[b[2] for b in chunked], scheduler="sync")])
            np.testing.assert_array_equal(rows.toarray(), want.toarray())


def test_a_shared_input_is_copied_to_every_worker(dist_client):
    from dcf.cluster import everywhere

    with dask.config.set(scheduler=dist_client):
        shared = everywhere(dask.delayed(np.arange)(1000, dask_key_name="shared-input-test"))
        holders = dist_client.who_has(list(distributed.futures_of(shared)))
        assert len(holders["shared-input-test"]) == len(dist_client.scheduler_info()["workers"]) == 2
        assert shared.compute().sum() == 499500
    with dask.config.set(scheduler="sync"):  # a forced local scheduler: nothing persisted
        d = dask.delayed(np.arange)(3)
        assert everywhere(d) is d


@pytest.mark.parametrize("based,ranking", [("item", "prediction"), ("item", "sum"), ("user", "sum")])
def test_excluded_items_are_never_recommended_and_lists_stay_full(based, ranking):
    from dcf.datasets import synthetic

    df = synthetic(users=200, items=60, ratings=2000, seed=8).frame.compute()
    model = KNN(based=based, k=6, neighbourhood="global", block_size=13).fit(df)
    full = model.recommend(n=8, ranking=ranking).compute()
    banned = full["item"].value_counts().index[:3].tolist() + ["no-such-item"]
    got = model.recommend(n=8, ranking=ranking, exclude=banned).compute()
    assert not got["item"].isin(banned).any()
    assert len(got) == len(full)  # every list refilled to n
    for user, mine in got.groupby("user"):
        before = full[(full["user"] == user) & (full["fallback"] == "none")].sort_values("rank")
        kept = before[~before["item"].isin(banned)]
        scored = mine[mine["fallback"] == "none"].sort_values("rank")
        # the scored items keep their order and scores; the freed places go further down
        assert scored["item"].tolist()[:len(kept)] == kept["item"].tolist()
        np.testing.assert_allclose(scored["score"].to_numpy()[:len(kept)], kept["score"].to_numpy())


@pytest.mark.parametrize("params,ranking", [
    (dict(prediction="weighted"), "prediction"),
    (dict(prediction="mean-centred", min_k=2), "prediction"),
    (dict(prediction="baseline", similarity="pearson-baseline", shrinkage=10.0), "prediction"),
    (dict(prediction="weighted", similarity="full-cosine"), "sum"),
    (dict(prediction="weighted"), "normalised-sum"),
    (dict(prediction="baseline", similarity="centred-cosine", amplification=2.0), "prediction"),
    (dict(prediction="weighted", amplification=2.0), "normalised-sum"),
])
def test_recommend_for_history_equals_recommend_of_a_fitted_user_with_those_ratings(params, ranking):
    data = random_ratings(5, n_users=30, n_items=25, density=0.3)
    with dask.config.set(scheduler="sync"):
        model = ItemKNN(k=5, neighbourhood="global", block_size=6, **params).fit(data)
        some = [101, 117, 129]
        want = model.recommend(users=some, n=6, ranking=ranking, exclude=[503]).compute()
        history = data[data["user"].isin(some)].sample(frac=1.0, random_state=0)  # any row order
        got = model.recommend_for_history(history, n=6, ranking=ranking, exclude=[503])
        # a new id with user 101's ratings (and an item the model never saw) gets 101's list
        new = data[data["user"] == 101].assign(user="someone-new")
        new = pd.concat([new, pd.DataFrame({"user": ["someone-new"], "item": [99999], "rating": [5.0]})])
        fresh = model.recommend_for_history(new, n=6, ranking=ranking, exclude=[503])
    key = ["user", "rank"]
    pd.testing.assert_frame_equal(got.sort_values(key).reset_index(drop=True),
                                  want.sort_values(key).reset_index(drop=True), check_dtype=False)
    mine = want[want["user"] == 101].reset_index(drop=True)
    pd.testing.assert_frame_equal(fresh.drop(columns="user"), mine.drop(columns="user"), check_dtype=False)
    assert (fresh["user"] == "someone-new").all() and 503 not in set(got["item"])


def test_recommend_for_history_rejects_what_it_cannot_serve():
    from dcf.errors import ConfigError, DataError

    data = random_ratings(5, n_users=20, n_items=12, density=0.3)
    with dask.config.set(scheduler="sync"):
        model = ItemKNN(k=3).fit(data)
        with pytest.raises(DataError, match=r"history.*rows 1 and 3"):
            model.recommend_for_history(pd.DataFrame({"user": [1, 1, 1], "item": [500, 501, 500],
                                                      "rating": [4.0, 3.0, 2.0]}))
        with pytest.raises(DataError, match="history:2"):
            model.recommend_for_history(pd.DataFrame({"user": [1, 1], "item": [500, 501],
                                                      "rating": [4.0, -3.0]}))
        with pytest.raises(ConfigError, match="item-based"):
            UserKNN(k=3).fit(data).recommend_for_history(data.head(3))
