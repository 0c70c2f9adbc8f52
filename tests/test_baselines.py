"""The baselines beside every model (:mod:`dcf.evaluate.baselines`): item and user means by
pandas, the baseline predictor by surprise's ``BaselineOnly``, the popularity lists by a
plain loop, and the same split as the model's."""

import dask
import numpy as np
import pandas as pd
import pytest

from conftest import random_ratings
from dcf import ItemKNN, UserKNN
from dcf.evaluate import cross_validate
from dcf.evaluate.baselines import BASELINES, baseline_figures, baseline_predictions, popularity_lists


def _split(seed):
    data = random_ratings(seed, n_users=30, n_items=20, density=0.35)
    test = data.sample(frac=0.2, random_state=seed)
    train = data.drop(test.index).reset_index(drop=True)
    strangers = pd.DataFrame({"user": [9999, 100], "item": [500, 99999], "rating": [3.0, 4.0]})
    return train, pd.concat([test, strangers], ignore_index=True)


@pytest.mark.parametrize("seed", [5, 6])
def test_mean_and_baseline_predictions_equal_pandas_and_surprise(seed):
    surprise = pytest.importorskip("surprise", reason="scikit-surprise is not installed (test extra)")
    train, test = _split(seed)
    with dask.config.set(scheduler="sync"):
        got = baseline_predictions(UserKNN(k=4).fit(train), test)
    mu, lo, hi = train["rating"].mean(), train["rating"].min(), train["rating"].max()
    for name, col in (("item-mean", "item"), ("user-mean", "user")):
        want = test[col].map(train.groupby(col)["rating"].mean()).fillna(mu).clip(lo, hi)
        np.testing.assert_allclose(got[name], want, rtol=0, atol=1e-12)
    data = surprise.Dataset.load_from_df(train[["user", "item", "rating"]], surprise.Reader(rating_scale=(lo, hi)))
    algo = surprise.BaselineOnly(bsl_options={"method": "als", "n_epochs": 10, "reg_u": 15, "reg_i": 10},
                                 verbose=False).fit(data.build_full_trainset())
    theirs = [algo.predict(u, i).est for u, i in zip(test["user"], test["item"])]
    np.testing.assert_allclose(got["baseline"], theirs, rtol=0, atol=1e-9)


def test_popularity_lists_are_the_most_rated_unrated_items():
    train, test = _split(7)
    with dask.config.set(scheduler="sync"):
        model = ItemKNN(k=4).fit(train)
        lists = popularity_lists(model, 6)
        figures = baseline_figures(model, test, 6, 4.0)
    count = train.groupby("item").size()
    order = sorted(count.index, key=lambda i: (-count[i], i))  # ties to the lower id (ids are coded in order)
    for user, rated in train.groupby("user")["item"]:
        want = [i for i in order if i not in set(rated)][:6]
        assert lists.loc[lists["user"] == user].sort_values("rank")["item"].tolist() == want
    assert list(figures["baseline"]) == list(BASELINES)
    pop = figures.set_index("baseline").loc["popularity"]
    assert np.isnan(pop["mae"]) and 0 <= pop["precision"] <= 1 and pop["users"] > 0
    assert figures.set_index("baseline").loc[["item-mean", "user-mean", "baseline"], "precision"].isna().all()


def test_cross_validation_scores_the_baselines_on_each_fold():
    data = random_ratings(46, n_users=30, n_items=20, density=0.35)
    with dask.config.set(scheduler="sync"):
        result = cross_validate(ItemKNN(k=5), data, folds=3, n=5)
        from dcf.evaluate import fold_sources
        train, test = fold_sources(data, 3)[1]
        model = ItemKNN(k=5).fit(train)
        truth = model.predict(test).compute()[["user", "item", "rating"]]
        want = baseline_figures(model, truth, 5, 4.0)
    got = result.baselines[result.baselines["fold"] == 2].drop(columns="fold").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want)
    assert len(result.baselines) == 3 * len(BASELINES)
    assert "means over the folds" in result.table() and "the model" in result.table()
    assert cross_validate(ItemKNN(k=5), data, folds=3, n=5, baselines=False).baselines is None
