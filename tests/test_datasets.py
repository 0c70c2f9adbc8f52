"""The synthetic generator and the MovieLens loader."""

import io
import urllib.error
import urllib.request

import dask
import pandas as pd
import pytest

import dcf.datasets
from dcf import ItemKNN, evaluate, split
from dcf.datasets import movielens_path, open_source, synthetic, write_synthetic
from dcf.errors import ConfigError, DataError


def _frame(r):
    with dask.config.set(scheduler="sync"):
        return pd.concat(dask.compute(*r.parts), ignore_index=True)


def test_shape_is_exact_distinct_and_seeded():
    a = _frame(synthetic(users=2000, items=300, ratings=20_000, seed=3, users_per_partition=700))
    b = _frame(synthetic(users=2000, items=300, ratings=20_000, seed=3, users_per_partition=2000))
    c = _frame(synthetic(users=2000, items=300, ratings=20_000, seed=4))
    assert len(a) == 20_000 and a["user"].nunique() == 2000
    assert not a.duplicated(["user", "item"]).any()
    assert a["rating"].isin([1, 2, 3, 4, 5]).all()
    assert a["line"].tolist() == list(range(1, 20_001))
    assert len(b) == 20_000 and not a[["user", "item"]].equals(c[["user", "item"]])
    pop = a.groupby("item").size().sort_values(ascending=False)
    assert pop.iloc[:30].sum() > 0.2 * len(a)  # a long tail: few items, many ratings


def test_neighbours_carry_signal():
    r = synthetic(users=3000, items=300, ratings=40_000, seed=1)
    with dask.config.set(scheduler="threads"):
        tr, te = split.random_split(r.parts, 0.1, 0)
        train = pd.concat(dask.compute(*tr))
        test = pd.concat(dask.compute(*te))
        maes = []
        for k in (1, 3, 30):
            p = ItemKNN(k=k, prediction="mean-centred").fit(train).predict(test).compute()
            maes.append(evaluate.mae(p["rating"], p["prediction"]))
    item_mean = test["item"].map(train.groupby("item")["rating"].mean()).fillna(train["rating"].mean())
    baseline = evaluate.mae(test["rating"], item_mean)
    assert maes[0] > maes[1] > maes[2]  # MAE falls as k grows
    assert maes[2] < baseline - 0.05  # and clearly beats the item-mean baseline


def test_write_synthetic_parquet_roundtrip(tmp_path):
    path = write_synthetic(tmp_path / "syn", users=500, items=50, ratings=3000, seed=2,
                           users_per_partition=200)
    r = open_source(path)
    assert r.source.format == "parquet" and len(r.parts) == 3
    assert len(_frame(r)) == 3000


def test_source_strings():
    r = open_source("synthetic:users=100,items=20,ratings=500,seed=5")
    assert len(_frame(r)) == 500
    with pytest.raises(ConfigError):
        open_source("synthetic:people=3")
    with pytest.raises(ConfigError):
        synthetic(users=10, items=10, ratings=5)


def test_movielens_reads_data_dir_and_never_downloads_in_tests(ml100k, tmp_path, monkeypatch):
    assert movielens_path("ml-100k", "u1.base", download=False) == ml100k / "u1.base"
    assert len(_frame(open_source("movielens:ml-100k/u1.test"))) == 20_000
    monkeypatch.setenv("DCF_DATA", str(tmp_path))
    with pytest.raises(DataError, match="not found"):
        movielens_path("ml-100k", download=False)


@pytest.mark.parametrize("body", [None, b"not a zip archive"])
def test_a_failed_download_is_one_clear_error_and_leaves_nothing(tmp_path, monkeypatch, body):
    # no network (the urlopen stub raises as urllib does offline), or a broken archive
    def urlopen(url, timeout):
        assert timeout == dcf.datasets.DOWNLOAD_TIMEOUT  # every wait on the server is bounded
        if body is None:
            raise urllib.error.URLError("[Errno -2] Name or service not known")
        return io.BytesIO(body)
    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    monkeypatch.setenv("DCF_DATA", str(tmp_path / "data"))
    with pytest.raises(DataError, match="could not download ml-100k from https://files.grouplens.org") as err:
        movielens_path("ml-100k")
    assert "DCF_DATA" in str(err.value) and str(tmp_path / "data" / "ml-100k") in str(err.value)
    assert list((tmp_path / "data").iterdir()) == []  # no partial archive or folder left
