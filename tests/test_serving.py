"""The in-process fast query path (:class:`dcf.serving.Snapshot`): every answer is the
model's own, for every scoring rule and request rule, from a fitted or a loaded model."""

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import dcf
import dcf.serving
from conftest import random_ratings
from dcf.errors import ConfigError
from dcf.model import KNN
from dcf.serving import Snapshot

KEY = ["user", "rank"]


def _same(got, want):
    pd.testing.assert_frame_equal(got.sort_values(KEY).reset_index(drop=True),
                                  want.sort_values(KEY).reset_index(drop=True), check_dtype=False)


@pytest.mark.parametrize("params,ranking", [
    (dict(based="item", prediction="weighted"), "prediction"),
    (dict(based="item", prediction="mean-centred", min_k=2), "prediction"),
    (dict(based="item", prediction="baseline", similarity="pearson-baseline"), "prediction"),
    (dict(based="item", amplification=2.0), "normalised-sum"),
    (dict(based="item", similarity="full-cosine"), "sum"),
    (dict(based="user", prediction="mean-centred", neighbourhood="global"), "prediction"),
    (dict(based="user", amplification=0.5), "sum"),
])
def test_a_snapshot_answers_as_the_model_does(params, ranking, monkeypatch):
    monkeypatch.setattr(dcf.serving, "HELD_BYTES", 0)  # the model's answers: its task graphs
    train = random_ratings(21, n_users=40, n_items=30, density=0.25)
    with dask.config.set(scheduler="sync"):
        model = KNN(k=5, block_size=7, **{"neighbourhood": "global", **params}).fit(train)
        snap = Snapshot(model)
        some = [100, 113, 139, 107, "stranger"]
        _same(snap.recommend(some, n=6, ranking=ranking), model.recommend(some, n=6, ranking=ranking).compute())
        rules = dict(items=sorted(set(train["item"]))[::3], exclude=[503], filter_rated=False)
        _same(snap.recommend(some, n=4, ranking=ranking, **rules),
              model.recommend(some, n=4, ranking=ranking, **rules).compute())
        one = snap.recommend(113, n=3, ranking=ranking)
        _same(one, model.recommend(113, n=3, ranking=ranking).compute())
        ids = [500, 517, 99999] if params["based"] == "item" else [100, 139]
        pd.testing.assert_frame_equal(snap.similar(ids, n=3).reset_index(drop=True),
                                      model.neighbours(ids=ids, n=3).reset_index(drop=True), check_dtype=False)
    assert snap.nbytes > 0


def test_a_loaded_model_serves_the_same_and_explains(tmp_path, monkeypatch):
    monkeypatch.setattr(dcf.serving, "HELD_BYTES", 0)
    train = random_ratings(22, n_users=30, n_items=25, density=0.3)
    with dask.config.set(scheduler="sync"):
        model = KNN(k=4, neighbourhood="global").fit(train)
        model.save(tmp_path / "model")
        snap = Snapshot(dcf.load(tmp_path / "model"))
        want = model.recommend([101, 122], n=5, ranking="sum", explain=True).compute()
        got = snap.recommend([101, 122], n=5, ranking="sum", explain=True)
    _same(got, want)
    assert got["because"].map(len).gt(0).any()
    with pytest.raises(ConfigError, match="does not know user"):
        snap.recommend(["nobody"], strict=True)
    empty = snap.recommend([], n=3)
    assert empty.empty and list(empty.columns) == ["user", "rank", "item", "score", "fallback"]
    assert snap.similar(["no-such-item"]).empty
    assert np.isfinite(got["score"]).all()


def _pairs(train, seed):
    """Distinct pairs in no order, some rated in ``train``, some of an unknown user or item."""
    rng = np.random.default_rng(seed)
    users, items = sorted(set(train["user"])) + ["stranger"], sorted(set(train["item"])) + [99999]
    pairs = pd.DataFrame({"user": rng.choice(np.array(users, dtype=object), 60),
                          "item": rng.choice(np.array(items, dtype=object), 60)}).drop_duplicates()
    return pairs.assign(rating=rng.integers(1, 6, len(pairs)).astype(float)).sample(frac=1, random_state=seed)


@pytest.mark.parametrize("params", [
    dict(based="item", neighbourhood="global"),
    dict(based="item", prediction="baseline", similarity="pearson-baseline"),
    dict(based="user", prediction="mean-centred"),
    dict(based="user", neighbourhood="global", amplification=2.0),
])
def test_small_requests_are_answered_from_the_held_model_as_the_graph_answers(params, monkeypatch):
    train = random_ratings(23, n_users=40, n_items=30, density=0.25)
    pairs = _pairs(train, 4)
    some = [139, "stranger", 100, 113, 100]
    history = train[train["user"].isin([100, 113])].assign(user=lambda f: f["user"] + 1000)

    def answers(model):
        out = [model.recommend(some, n=6).compute(), model.recommend(113, n=4, exclude=[503]).compute(),
               model.predict(pairs).compute(), model.neighbours(ids=[100, 517, 139, 517, 100], n=3)]
        if params["based"] == "item":
            out.append(model.recommend_for_history(history, n=5))
        return out

    with dask.config.set(scheduler="sync"):
        model = KNN(k=5, block_size=7, **params).fit(train)
        held = answers(model)
        assert dcf.serving.held(model) is not None
        assert model.recommend(some).npartitions == model.predict(pairs).npartitions == 1
        monkeypatch.setattr(dcf.serving, "HELD_BYTES", 0)
        graph = answers(model)
        assert model.predict(pairs).npartitions > 1
    # the pairs' predictions in the pairs' order (the graph's come cell by cell)
    assert held[2][["user", "item"]].values.tolist() == pairs[["user", "item"]].values.tolist()
    graph[2] = pairs[["user", "item"]].merge(graph[2], on=["user", "item"], how="left")
    for got, want in zip(held, graph):
        pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True), check_dtype=False)
    assert held[0]["user"].drop_duplicates().tolist() == [100, 113, 139, "stranger"]  # the model's order


def test_what_is_held_and_what_runs_as_a_graph(monkeypatch):
    train = random_ratings(24, n_users=30, n_items=25, density=0.3)
    with dask.config.set(scheduler="sync"):
        model = KNN(k=4).fit(train)  # rated: predict also holds the dense similarity rows
        snap = dcf.serving.held(model)
        assert snap is not None and dcf.serving.held(model) is snap  # built once
        few = list(range(100, 100 + dcf.serving.FEW_USERS))
        assert dcf.serving.for_request(model, ids=few) is snap
        assert dcf.serving.for_request(model, ids=few + [1]) is None
        assert dcf.serving.for_request(model, ids=(u for u in few)) is snap
        big = pd.DataFrame({"user": [100] * (dcf.serving.FEW_PAIRS + 1), "item": 500})
        assert dcf.serving.for_request(model, pairs=big) is None
        assert dcf.serving.for_request(model, pairs=dd.from_pandas(big.head(3), npartitions=1)) is None
        lists, with_pairs = dcf.serving.held_bytes(model)
        assert lists < with_pairs
        monkeypatch.setattr(dcf.serving, "HELD_BYTES", lists)  # the lists fit, the similarity rows do not
        assert dcf.serving.held(model) is not None and dcf.serving.held(model, pairs=True) is None
        assert model.predict(big.head(3)).npartitions > 1 and model.recommend(100).npartitions == 1
        monkeypatch.setattr(dcf.serving, "HELD_BYTES", lists - 1)
        assert dcf.serving.held(model) is None
        monkeypatch.setattr(dcf.serving, "HELD_BYTES", 256 << 20)
        before = model.recommend(100, n=3, ranking="sum").compute()
        model.fit(train.assign(rating=6 - train["rating"]))  # refitted: the held model is not the old one
        after = model.recommend(100, n=3, ranking="sum").compute()
        monkeypatch.setattr(dcf.serving, "HELD_BYTES", 0)
        pd.testing.assert_frame_equal(after, model.recommend(100, n=3, ranking="sum").compute(), check_dtype=False)
    assert not before.equals(after)


def test_small_requests_on_a_distributed_cluster(dist_client):
    train = random_ratings(25, n_users=30, n_items=25, density=0.3)
    pairs = _pairs(train, 5)
    with dask.config.set(scheduler=dist_client):
        model = KNN(k=4).fit(train)
        held = model.recommend([100, 101], n=5).compute(), model.predict(pairs).compute()
    with dask.config.set(scheduler="sync"):
        local = KNN(k=4).fit(train)
        want = local.recommend([100, 101], n=5).compute(), local.predict(pairs).compute()
    for got, exp in zip(held, want):
        pd.testing.assert_frame_equal(got.reset_index(drop=True), exp.reset_index(drop=True), check_dtype=False)


def test_bad_pairs_are_named_alike_held_or_not(small_requests):
    train = random_ratings(26, n_users=20, n_items=15, density=0.3)
    with dask.config.set(scheduler="sync"):
        model = KNN(k=3).fit(train)
        with pytest.raises(dcf.errors.DataError, match="DataFrame:2: empty user id"):
            model.predict(pd.DataFrame({"user": [100, None, 101], "item": [500, 501, 502]})).compute()
        with pytest.raises(dcf.errors.DataError, match="DataFrame:2: rating is not a number: 'x'"):
            model.predict(pd.DataFrame({"user": [100, 101], "item": [500, 501], "rating": [3.0, "x"]})).compute()
        skipped = KNN(k=3, on_bad_lines="skip").fit(train).predict(
            pd.DataFrame({"user": [100, None, 2 ** 62], "item": [500, 501, -1]})).compute()
    assert skipped["user"].tolist() == [100, 2 ** 62] and skipped["fallback"].tolist()[1] == "global_mean"
