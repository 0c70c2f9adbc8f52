"""Parity with scikit-surprise's KNNBasic / KNNWithMeans (cosine and pearson, item and user
based) and KNNBaseline (pearson_baseline)."""

import dask
import numpy as np
import pandas as pd
import pytest

from conftest import random_ratings
from dcf import KNN, read_ratings

surprise = pytest.importorskip("surprise", reason="scikit-surprise is not installed (test extra)")

VARIANTS = [("item", "weighted"), ("item", "mean-centred"), ("user", "weighted"),
            ("user", "mean-centred")]


def _u1(folder):
    """MovieLens 100K's u1 split as surprise reads it (file order kept)."""
    cols = ["user", "item", "rating", "ts"]
    return tuple(pd.read_csv(folder / f"u1.{part}", sep="\t", names=cols) for part in ("base", "test"))


def _surprise_predictions(train: pd.DataFrame, test: pd.DataFrame, based, prediction, k, scale,
                          measure="cosine"):
    reader = surprise.Reader(rating_scale=scale)
    data = surprise.Dataset.load_from_df(train[["user", "item", "rating"]], reader)
    algo_cls = surprise.KNNBasic if prediction == "weighted" else surprise.KNNWithMeans
    algo = algo_cls(k=k, sim_options={"name": measure, "user_based": based == "user"},
                    verbose=False).fit(data.build_full_trainset())
    return np.array([algo.predict(u, i).est for u, i in zip(test["user"], test["item"])])


@pytest.mark.parametrize("measure", ["cosine", "pearson"])
@pytest.mark.parametrize("based,prediction", VARIANTS)
def test_small_random_data_matches_surprise(based, prediction, measure):
    data = random_ratings(21, n_users=40, n_items=30, density=0.25)
    # surprise breaks similarity ties by the file order of a user's ratings: sort like our ids
    data = data.sort_values(["user", "item"]).reset_index(drop=True)
    test = data.sample(frac=0.15, random_state=3)
    train = data.drop(test.index).reset_index(drop=True)
    test = pd.concat([test, pd.DataFrame({"user": [9999], "item": [500], "rating": [3.0]})])
    expected = _surprise_predictions(train, test, based, prediction, 5, (1, 5), measure)
    with dask.config.set(scheduler="sync"):
        got = KNN(based=based, prediction=prediction, k=5, similarity=measure).fit(train).predict(test).compute()
    got = got.set_index(["user", "item"]).loc[list(zip(test["user"], test["item"]))]
    np.testing.assert_allclose(got["prediction"].to_numpy(), expected, rtol=0, atol=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("based,prediction", VARIANTS)
def test_ml100k_u1_matches_surprise(ml100k, based, prediction):
    train, test = _u1(ml100k)
    expected = _surprise_predictions(train, test, based, prediction, 40, (1, 5))
    with dask.config.set(scheduler="threads"):
        model = KNN(based=based, prediction=prediction, k=40).fit(read_ratings(ml100k / "u1.base"))
        got = model.predict(read_ratings(ml100k / "u1.test")).compute()
    got = got.set_index(["user", "item"]).loc[list(zip(test["user"], test["item"]))]
    np.testing.assert_allclose(got["prediction"].to_numpy(), expected, rtol=0, atol=1e-9)
    if (based, prediction) == ("item", "weighted"):
        assert abs(got["prediction"] - got["rating"]).mean() == pytest.approx(0.82714, abs=5e-6)


@pytest.mark.slow
@pytest.mark.parametrize("based", ["item", "user"])
def test_ml100k_u1_pearson_matches_surprise(ml100k, based):
    train, test = _u1(ml100k)
    expected = _surprise_predictions(train, test, based, "mean-centred", 40, (1, 5), "pearson")
    with dask.config.set(scheduler="threads"):
        model = KNN(based=based, prediction="mean-centred", k=40, similarity="pearson")
        got = model.fit(read_ratings(ml100k / "u1.base")).predict(read_ratings(ml100k / "u1.test")).compute()
    got = got.set_index(["user", "item"]).loc[list(zip(test["user"], test["item"]))]
    np.testing.assert_allclose(got["prediction"].to_numpy(), expected, rtol=0, atol=1e-9)


def _surprise_baseline(train, test, based, k, shrinkage):
    data = surprise.Dataset.load_from_df(train[["user", "item", "rating"]], surprise.Reader(rating_scale=(1, 5)))
    algo = surprise.KNNBaseline(k=k, sim_options={"name": "pearson_baseline", "user_based": based == "user",
                                                  "shrinkage": shrinkage}, verbose=False)
    algo.fit(data.build_full_trainset())
    return np.array([algo.predict(u, i).est for u, i in zip(test["user"], test["item"])])


@pytest.mark.parametrize("based", ["item", "user"])
def test_small_random_data_matches_surprise_knn_baseline(based):
    data = random_ratings(22, n_users=40, n_items=30, density=0.3)
    data = data.sort_values(["user", "item"]).reset_index(drop=True)
    test = data.sample(frac=0.15, random_state=4)
    train = data.drop(test.index).reset_index(drop=True)
    test = pd.concat([test, pd.DataFrame({"user": [9999, 9999, train["user"].iloc[0]],
                                          "item": [500, train["item"].iloc[0], 500], "rating": 3.0})])
    expected = _surprise_baseline(train, test, based, 5, 7.0)
    with dask.config.set(scheduler="sync"):
        got = KNN(based=based, k=5, similarity="pearson-baseline", shrinkage=7.0,
                  prediction="baseline").fit(train).predict(test).compute()
    got = got.set_index(["user", "item"]).loc[list(zip(test["user"], test["item"]))]
    np.testing.assert_allclose(got["prediction"].to_numpy(), expected, rtol=0, atol=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("based", ["item", "user"])
def test_ml100k_u1_matches_surprise_knn_baseline(ml100k, based):
    train, test = _u1(ml100k)
    expected = _surprise_baseline(train, test, based, 40, 100)
    with dask.config.set(scheduler="threads"):
        model = KNN(based=based, k=40, similarity="pearson-baseline", shrinkage=100,
                    prediction="baseline").fit(read_ratings(ml100k / "u1.base"))
        got = model.predict(read_ratings(ml100k / "u1.test")).compute()
    got = got.set_index(["user", "item"]).loc[list(zip(test["user"], test["item"]))]
    np.testing.assert_allclose(got["prediction"].to_numpy(), expected, rtol=0, atol=1e-9)
