"""dcf.predict called directly: pair predictions and Top-N blocks from hand-made inputs, against the
dense reference (similarities and neighbour tables come from tests/reference.py, not from dcf)."""

import dask
import dask.array as da
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reference as ref
from conftest import random_ratings
import dcf.predict.topn as topn
from dcf.ids import IdMap
from dcf.predict import (PREDICTION_META, RECOMMENDATION_META, ListRules, ScoringData, ScoringRule, predict_pairs,
                         recommend_blocks, recommend_histories)


def _csr_chunks(X, size):
    return da.from_array(sp.csr_matrix(X), chunks=(size or X.shape[0], X.shape[1]), asarray=False)


def _table_matrix(table, n):
    idx, sim = table
    W = np.zeros((len(idx), n))
    for x in range(len(idx)):
        W[x, idx[x][idx[x] >= 0]] = sim[x][idx[x] >= 0]
    return W


pytestmark = pytest.mark.usefixtures("sync")


@pytest.fixture(scope="module")
def data():
    """(train R, user ids, item ids, test pairs incl. unknown ids)."""
    df = random_ratings(61, n_users=22, n_items=16, density=0.3)
    test = df.sample(frac=0.2, random_state=3)
    train = df.drop(test.index)
    R, users, items = ref.dense(train)
    extra = pd.DataFrame({"user": [users[0], 999, 999], "item": [12345, items[1], 12345], "rating": 3.0})
    pairs = pd.concat([test, extra], ignore_index=True)
    return R, users, items, pairs


def _inputs(R, based, measure, neighbourhood, k, s_size):
    """S (dense rows, or the reference top-k table as CSR W), Q, entity means."""
    P = R.T if based == "item" else R
    S = ref.similarity(P, measure)
    table = ref.topk(S, k)
    if neighbourhood == "rated":
        S_arr = da.from_array(S, chunks=(s_size or len(S), len(S)))
    else:
        S_arr = _csr_chunks(_table_matrix(table, len(S)), s_size)
    means = np.array([row[row > 0].mean() for row in P])
    return S, table[0], S_arr, means


CASES = [
    dict(based="item", prediction="weighted", neighbourhood="rated", k=3),
    dict(based="user", prediction="mean-centred", neighbourhood="rated", k=4, min_k=2),
    dict(based="item", prediction="mean-centred", neighbourhood="global", k=4, measure="full-cosine"),
    dict(based="user", prediction="weighted", neighbourhood="global", k=3, amplification=0.5),
    dict(based="item", prediction="baseline", neighbourhood="rated", k=4, amplification=2.0),
    dict(based="user", prediction="baseline", neighbourhood="global", k=3, min_k=2),
]


@pytest.mark.parametrize("s_size,q_size,max_cells", [(1, 1, None), (4, 5, None), (None, None, None),
                                                      (2, 3, 4)])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_predict_pairs_match_reference(data, case, s_size, q_size, max_cells):
    R, users, items, pairs = data
    based, k = case["based"], case["k"]
    S, table, S_arr, means = _inputs(R, based, case.get("measure", "cosine"), case["neighbourhood"], k, s_size)
    Q = _csr_chunks(R if based == "item" else R.T, q_size)  # others x entities
    bias = ref.biases(R)
    lo, hi = R[R > 0].min(), R[R > 0].max()
    parts = [dask.delayed(pairs.iloc[:10]), dask.delayed(pairs.iloc[10:])]
    rule = ScoringRule(based, case["prediction"], k, case.get("min_k", 1), case.get("amplification", 1.0))
    data = ScoringData((lo, hi), R[R > 0].mean(), dask.delayed(means),
                       biases=bias if case["prediction"] == "baseline" else None)
    out = predict_pairs(parts, users=IdMap(users), items=IdMap(items), S=S_arr, Q=Q, rule=rule, data=data,
                        token="t", max_cells=max_cells)
    assert list(out.columns) == list(PREDICTION_META.columns)
    got = out.compute().reset_index(drop=True)
    assert len(got) == len(pairs)
    got = got.set_index(["user", "item"]).loc[list(zip(pairs["user"], pairs["item"]))]
    codes = list(zip(IdMap(users).to_codes(pairs["user"].to_numpy()), IdMap(items).to_codes(pairs["item"].to_numpy())))
    expected = ref.predict(R, S, codes, based=based, k=k, prediction=case["prediction"],
                           neighbourhood=case["neighbourhood"], min_k=case.get("min_k", 1), table=table,
                           bias=bias, amplification=case.get("amplification", 1.0))
    np.testing.assert_allclose(got["prediction"], [e[0] for e in expected], rtol=0, atol=1e-12)
    assert got["neighbours"].tolist() == [e[1] for e in expected]
    assert got["fallback"].astype(str).tolist() == [e[2] for e in expected]
    np.testing.assert_array_equal(got["rating"], pairs["rating"])
    assert (got["fallback"] == "none").any()  # real neighbourhoods, not only fallbacks


@given(st.integers(1, 16), st.integers(1, 22), st.sampled_from([None, 1, 2, 5]),
       st.sampled_from(["weighted", "mean-centred", "baseline"]))
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_predict_pairs_same_bits_for_any_blocks(data, s_size, q_size, max_cells, prediction):
    R, users, items, pairs = data
    _, _, S_whole, means = _inputs(R, "item", "cosine", "rated", 3, None)
    S_arr = S_whole.rechunk((s_size, S_whole.shape[1]))
    kw = dict(users=IdMap(users), items=IdMap(items), rule=ScoringRule("item", prediction, 3, 1),
              data=ScoringData((1.0, 5.0), R[R > 0].mean(), means,
                               biases=ref.biases(R) if prediction == "baseline" else None))
    parts = [dask.delayed(pairs)]
    with dask.config.set(scheduler="sync"):
        one = predict_pairs(parts, S=S_whole, Q=_csr_chunks(R, None), **kw).compute()
        many = predict_pairs(parts, S=S_arr, Q=_csr_chunks(R, q_size), max_cells=max_cells, **kw).compute()
    key = ["user", "item"]
    pd.testing.assert_frame_equal(many.sort_values(key).reset_index(drop=True),
                                  one.sort_values(key).reset_index(drop=True), check_exact=True)


def test_predict_pairs_without_ratings_and_unknown_pairs(data):
    R, users, items, _ = data
    _, _, S_arr, means = _inputs(R, "item", "cosine", "rated", 3, 5)
    pairs = pd.DataFrame({"user": [999, users[2]], "item": [items[0], 777]})
    out = predict_pairs([dask.delayed(pairs)], users=IdMap(users), items=IdMap(items), S=S_arr,
                        Q=_csr_chunks(R, 6), rule=ScoringRule("item", "weighted", 3, 1),
                        data=ScoringData((1.0, 5.0), 3.5, means), with_rating=False)
    assert list(out.columns) == [c for c in PREDICTION_META.columns if c != "rating"]
    got = out.compute()
    assert got["prediction"].tolist() == [3.5, 3.5] and got["neighbours"].tolist() == [0, 0]
    assert (got["fallback"] == "global_mean").all()


def _ref_recs(R, based, k, n, prediction, min_k=1, amplification=1.0, ranking="prediction"):
    P = R.T if based == "item" else R
    table = ref.topk(ref.similarity(P), k)
    return table, ref.recommend(R, table, n, based=based, prediction=prediction, min_k=min_k,
                                bias=ref.biases(R), amplification=amplification)


def _recommend(R, users, items, table, based, n, prediction, r_size, w_size, min_k=1, amplification=1.0,
               ranking="prediction", **kw):
    P = R.T if based == "item" else R
    W = _csr_chunks(_table_matrix(table, len(P)), w_size)
    rule = ScoringRule(based, prediction, 1, min_k, amplification, ranking)
    data = ScoringData((R[R > 0].min(), R[R > 0].max()), R[R > 0].mean(), np.array([r[r > 0].mean() for r in P]),
                       dask.delayed(np.array([c[c > 0].mean() for c in R.T])), (R > 0).sum(axis=0),
                       ref.biases(R) if prediction == "baseline" else None)
    return recommend_blocks(users=IdMap(users), items=IdMap(items), by_user=_csr_chunks(R, r_size), W=W,
                            rule=rule, data=data, n=n, token="t", **kw)


@pytest.mark.parametrize("r_size,w_size,pieces", [(1, 1, 1), (5, 4, 1), (None, None, 1), (5, 4, 2), (None, None, 3)])
@pytest.mark.parametrize("case", [
    dict(based="item", prediction="weighted", k=3),
    dict(based="user", prediction="mean-centred", k=4, min_k=2),
    dict(based="item", prediction="baseline", k=4, amplification=2.0),
    # min_k=2: with one neighbour, user-based baseline scores of different items can be equal in exact
    # arithmetic (b_u - b_v + r_vi) and then differ only by rounding, so the popularity tie-break is noise
    dict(based="user", prediction="baseline", k=3, min_k=2),
    dict(based="item", prediction="mean-centred", k=5, min_k=2, amplification=0.5),
], ids=lambda c: "-".join(str(v) for v in c.values()))
def test_recommend_blocks_match_reference(data, case, r_size, w_size, pieces, monkeypatch):
    R, users, items, _ = data
    based, n = case["based"], 6
    table, (expected, item_means) = _ref_recs(R, based, case["k"], n, case["prediction"], case.get("min_k", 1),
                                              case.get("amplification", 1.0))
    monkeypatch.setattr(topn, "MIN_PIECE_ROWS", 1)  # blocks of a few users cut too
    monkeypatch.setattr(topn, "_pieces", lambda rule, n_blocks: pieces)
    out = _recommend(R, users, items, table, based, n, case["prediction"], r_size, w_size,
                     min_k=case.get("min_k", 1), amplification=case.get("amplification", 1.0))
    blocks = len(_csr_chunks(R, r_size).chunks[0])
    assert out.npartitions == (blocks if pieces == 1 else sum(min(pieces, c) for c in _csr_chunks(R, r_size).chunks[0]))
    assert list(out.columns) == list(RECOMMENDATION_META.columns)
    got = out.compute()
    assert len(got) == n * len(users)
    for u, exp in enumerate(expected):
        mine = got[got["user"] == users[u]].sort_values("rank")
        assert mine["rank"].tolist() == list(range(1, n + 1))
        assert mine["item"].tolist() == [items[i] for i, _ in exp]
        assert (mine["fallback"] == "popular").tolist() == [s is None for _, s in exp]
        np.testing.assert_allclose(mine["score"], [item_means[i] if s is None else s for i, s in exp], atol=1e-12)


def test_recommend_blocks_only_for_the_asked_blocks_and_never_excluded_items(data):
    R, users, items, _ = data
    n_items = len(items)
    table, (expected, _) = _ref_recs(R, "item", 3, n_items, "weighted")
    out = _recommend(R, users, items, table, "item", n_items, "weighted", 5, 4, min_k=1, blocks={1, 3},
                     rules=ListRules(exclude=np.array([0, 7])))
    got = out.compute()
    assert sorted(set(got["user"])) == list(users[5:10]) + list(users[15:20])
    assert not got["item"].isin([items[0], items[7]]).any()
    for u in list(range(5, 10)) + list(range(15, 20)):
        mine = got[got["user"] == users[u]].sort_values("rank")
        # every unrated item is listed: the reference's order with the excluded ones left out
        assert mine["item"].tolist() == [items[i] for i, _ in expected[u] if i not in (0, 7)]


def test_top_n_pieces_by_ranking_and_cluster(monkeypatch):
    """Ranked by predicted rating, each user block is cut into about PIECES_PER_THREAD tasks a
    thread; a sum ranking's blocks stay whole; no piece is under MIN_PIECE_ROWS users."""
    monkeypatch.setattr(topn, "parallelism", lambda: 4)
    assert topn._pieces(ScoringRule("item", "weighted", 3, 1), 4) == topn.PIECES_PER_THREAD
    assert topn._pieces(ScoringRule("user", "baseline", 3, 1), 3) == -(-topn.PIECES_PER_THREAD * 4 // 3)
    assert topn._pieces(ScoringRule("item", "weighted", 3, 1, 1.0, "sum"), 4) == 1
    assert topn._pieces(ScoringRule("item", "weighted", 3, 1, 1.0, "normalised-sum"), 4) == 1
    assert topn._pieces(ScoringRule("item", "weighted", 3, 1), 64) == 1
    rows = topn.MIN_PIECE_ROWS
    assert topn._piece_cuts(rows - 1, 4).tolist() == [0, rows - 1]
    assert topn._piece_cuts(2 * rows + 1, 4).tolist() == [0, rows, 2 * rows + 1]
    cuts = topn._piece_cuts(100 * rows + 3, 4)
    assert cuts[0] == 0 and cuts[-1] == 100 * rows + 3 and len(cuts) == 5 and np.ptp(np.diff(cuts)) <= 1


def test_top_n_pieces_of_two_cuts_computed_together_keep_their_own_rows(data, monkeypatch):
    """Two requests cut differently (the cluster's threads changed between them) name
    different tasks: computed together, each keeps its own rows, none twice."""
    R, users, items, _ = data
    table, _ = _ref_recs(R, "item", 3, 4, "weighted")
    monkeypatch.setattr(topn, "MIN_PIECE_ROWS", 1)
    got = []
    for pieces in (2, 3):
        monkeypatch.setattr(topn, "_pieces", lambda rule, n_blocks, p=pieces: p)
        got.append(_recommend(R, users, items, table, "item", 4, "weighted", None, None))
    with dask.config.set(scheduler="sync"):
        two, three = dask.compute(*got)
    assert len(two) == len(three) == 4 * len(users)
    pd.testing.assert_frame_equal(two.reset_index(drop=True), three.reset_index(drop=True))


@pytest.mark.parametrize("ranking", ["sum", "normalised-sum"])
def test_recommend_blocks_sum_rankings_equal_the_dense_product(data, ranking):
    R, users, items, _ = data
    k, n = 4, 5
    table = ref.topk(ref.similarity(R.T), k)
    W = _table_matrix(table, len(items))  # row j: item j's own list
    if ranking == "normalised-sum":
        W = W / np.where(W.sum(axis=1) > 0, W.sum(axis=1), 1.0)[:, None]
    scores, terms = R @ W, (R > 0).astype(float) @ (W > 0)
    got = _recommend(R, users, items, table, "item", n, "weighted", 4, 3, min_k=1, ranking=ranking).compute()
    pop = (R > 0).sum(axis=0)
    for u in range(len(users)):
        cand = [i for i in range(len(items)) if R[u, i] == 0]
        scored = sorted((i for i in cand if terms[u, i] >= 1), key=lambda i: (-scores[u, i], -pop[i], i))
        filled = sorted((i for i in cand if terms[u, i] < 1), key=lambda i: (-pop[i], i))
        want = (scored + filled)[:n]
        mine = got[got["user"] == users[u]].sort_values("rank")
        assert mine["item"].tolist() == [items[i] for i in want]
        np.testing.assert_allclose(mine["score"], [scores[u, i] if i in scored else 0.0 for i in want],
                                   atol=1e-12)


@pytest.mark.parametrize("prediction", ["weighted", "mean-centred"])
def test_recommend_histories_equal_the_fitted_users_lists(data, prediction):
    R, users, items, _ = data
    n = 6
    table, (expected, item_means) = _ref_recs(R, "item", 4, n, prediction)
    rows = [3, 8, 11]
    item_means = np.array([c[c > 0].mean() for c in R.T])
    out = recommend_histories(sp.csr_matrix(R[rows]), IdMap(users[rows]), items=IdMap(items),
                              W=_csr_chunks(_table_matrix(table, len(items)), 5),
                              rule=ScoringRule("item", prediction, 1, 1),
                              data=ScoringData((R[R > 0].min(), R[R > 0].max()), R[R > 0].mean(), item_means,
                                               item_means, (R > 0).sum(axis=0)), n=n, token="h")
    assert isinstance(out, pd.DataFrame) and list(out.columns) == list(RECOMMENDATION_META.columns)
    for u in rows:
        mine = out[out["user"] == users[u]].sort_values("rank")
        assert mine["item"].tolist() == [items[i] for i, _ in expected[u]]
        np.testing.assert_allclose(mine["score"], [item_means[i] if s is None else s for i, s in expected[u]],
                                   atol=1e-12)


def test_predict_and_recommend_on_a_distributed_cluster(data, dist_client):
    R, users, items, pairs = data
    _, _, S_arr, means = _inputs(R, "item", "cosine", "global", 3, 4)
    kw = dict(users=IdMap(users), items=IdMap(items), S=S_arr, Q=_csr_chunks(R, 5),
              rule=ScoringRule("item", "mean-centred", 3, 1),
              data=ScoringData((R[R > 0].min(), R[R > 0].max()), R[R > 0].mean(), means), token="d", max_cells=4)
    parts = [dask.delayed(pairs.iloc[:12]), dask.delayed(pairs.iloc[12:])]
    local = predict_pairs(parts, **kw).compute()
    rec_table, (expected, _) = _ref_recs(R, "user", 3, 4, "weighted")
    with dask.config.set(scheduler=dist_client):
        remote = predict_pairs(parts, **kw).compute()
        recs = _recommend(R, users, items, rec_table, "user", 4, "weighted", 6, 4, min_k=1).compute()
    pd.testing.assert_frame_equal(remote.reset_index(drop=True), local.reset_index(drop=True))
    for u, exp in enumerate(expected):
        mine = recs[recs["user"] == users[u]].sort_values("rank")
        assert mine["item"].tolist() == [items[i] for i, _ in exp]


def test_the_grid_has_a_cell_a_quarter_million_ratings_within_the_threads_bounds():
    from dcf.predict.pairs import RATINGS_PER_CELL, grid_cells

    assert [grid_cells(r, 4) for r in (0, 1, RATINGS_PER_CELL, RATINGS_PER_CELL + 1, 620_000)] == [1, 1, 1, 2, 3]
    assert grid_cells(20 * RATINGS_PER_CELL, 2) == 16  # at least 16 allowed, whatever the threads
    assert grid_cells(20 * RATINGS_PER_CELL, 4) == 16 and grid_cells(40 * RATINGS_PER_CELL, 8) == 32


def test_a_small_models_pairs_are_scored_in_one_cell_with_the_same_predictions():
    from unittest import mock

    from dcf import KNN, serving
    from dcf.predict import pairs as predict_module

    df = random_ratings(5, n_users=40, n_items=30, density=0.3)
    test = df.sample(frac=0.2, random_state=1)

    def cells(frame):
        return sum(1 for key in frame.__dask_graph__() if str(key).startswith("predict-cell-"))

    def rows(frame):  # the pairs come cell by cell
        return frame.compute().sort_values(["user", "item"]).reset_index(drop=True)

    for neighbourhood in ("global", "rated"):
        model = KNN(k=5, neighbourhood=neighbourhood).fit(df.drop(test.index))
        S = model.similarity_rows_ if neighbourhood == "rated" else model.neighbours_.W
        assert S.numblocks[0] * model.matrix_.by_user.numblocks[0] > 1  # a grid to merge
        with mock.patch.object(serving, "FEW_PAIRS", 0):  # the task graph, not the answer held here
            few = model.predict(test[["user", "item"]])
            with mock.patch.object(predict_module, "RATINGS_PER_CELL", 1):  # a cell for every block pair
                many = model.predict(test[["user", "item"]])
        # whole rows are never stacked (the heavier side): a cell a block of them, the ratings stacked
        assert cells(few) == (1 if neighbourhood == "global" else S.numblocks[0])
        assert cells(many) == S.numblocks[0] * model.matrix_.by_user.numblocks[0]
        pd.testing.assert_frame_equal(rows(few), rows(many))
        assert len(rows(few)) == len(test)
