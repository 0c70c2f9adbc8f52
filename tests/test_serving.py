"""The in-process fast query path (:class:`dcf.serving.Snapshot`): every answer is the
model's own, for every scoring rule and request rule, from a fitted or a loaded model."""

import dask
import numpy as np
import pandas as pd
import pytest

import dcf
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
def test_a_snapshot_answers_as_the_model_does(params, ranking):
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


def test_a_loaded_model_serves_the_same_and_explains(tmp_path):
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
