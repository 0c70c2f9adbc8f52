"""The neighbours sweep: reuse changes nothing, and it reproduces surprise at every k."""

import dask
import numpy as np
import pandas as pd
import pytest

from conftest import random_ratings
from dcf import ConfigError, KNN, read_ratings
from dcf.experiments import neighbour_sweep


@pytest.mark.parametrize("based", ["item", "user"])
def test_derived_models_equal_fresh_fits(based):
    data = random_ratings(17, n_users=30, n_items=25, density=0.3)
    test = data.sample(frac=0.2, random_state=2)
    train = data.drop(test.index)
    with dask.config.set(scheduler="sync"):
        big = KNN(based=based, k=8, block_size=7).fit(train)
        for k in (1, 3, 8):
            for nb in ("rated", "global"):
                for pred in ("weighted", "mean-centred"):
                    fresh = KNN(based=based, k=k, neighbourhood=nb, prediction=pred,
                                block_size=7).fit(train)
                    derived = big.derive(k=k, neighbourhood=nb, prediction=pred)
                    a = fresh.predict(test).compute().sort_values(["user", "item"])
                    b = derived.predict(test).compute().sort_values(["user", "item"])
                    np.testing.assert_array_equal(a["prediction"], b["prediction"])
                    ra = fresh.recommend(n=5).compute()
                    rb = derived.recommend(n=5).compute()
                    pd.testing.assert_frame_equal(ra.reset_index(drop=True), rb.reset_index(drop=True))
        with pytest.raises(ConfigError, match="exceeds the fitted k"):
            big.derive(k=9)
        with pytest.raises(ConfigError, match="refit"):
            big.derive(similarity="full-cosine")


@pytest.mark.parametrize("based", ["item", "user"])
def test_derived_amplification_equals_a_fresh_fit_and_changes_the_predictions(based):
    data = random_ratings(19, n_users=30, n_items=25, density=0.3)
    test = data.sample(frac=0.2, random_state=3)
    train = data.drop(test.index)
    with dask.config.set(scheduler="sync"):
        plain = KNN(based=based, k=6, prediction="baseline", block_size=7).fit(train)
        for rho in (0.5, 2.0):
            fresh = KNN(based=based, k=6, prediction="baseline", block_size=7, amplification=rho).fit(train)
            derived = plain.derive(amplification=rho)
            a, b, c = (m.predict(test).compute().sort_values(["user", "item"]) for m in (fresh, derived, plain))
            np.testing.assert_array_equal(a["prediction"], b["prediction"])
            np.testing.assert_array_equal(a["neighbours"], c["neighbours"])  # the same neighbours
            assert np.abs(a["prediction"].to_numpy() - c["prediction"].to_numpy()).max() > 1e-3
            pd.testing.assert_frame_equal(fresh.recommend(n=5).compute().reset_index(drop=True),
                                          derived.recommend(n=5).compute().reset_index(drop=True))


@pytest.mark.slow
def test_sweep_matches_surprise_at_every_k(ml100k):
    surprise = pytest.importorskip("surprise", reason="scikit-surprise is not installed")
    ks = [5, 20, 40]
    with dask.config.set(scheduler="threads"):
        table, info = neighbour_sweep(read_ratings(ml100k / "u1.base"), read_ratings(ml100k / "u1.test"),
                                      ks, neighbourhoods=("rated",), top_n=10)
    reader = surprise.Reader(line_format="user item rating timestamp", sep="\t")
    trainset = surprise.Dataset.load_from_file(str(ml100k / "u1.base"), reader).build_full_trainset()
    test = pd.read_csv(ml100k / "u1.test", sep="\t", names=["u", "i", "r", "t"])
    for k in ks:
        for name, cls in (("weighted", surprise.KNNBasic), ("mean-centred", surprise.KNNWithMeans)):
            algo = cls(k=k, sim_options={"name": "cosine", "user_based": False}, verbose=False)
            algo.fit(trainset)
            est = np.array([algo.predict(str(u), str(i)).est for u, i in zip(test["u"], test["i"])])
            want = np.mean(np.abs(est - test["r"].to_numpy()))
            got = table.query("k == @k and prediction == @name")["mae"].item()
            assert got == pytest.approx(want, abs=1e-12), (k, name)
    assert info["k_max"] == 40 and len(table) == len(ks) * 2
    assert table["coverage"].between(0, 1).all() and table["precision"].between(0, 1).all()


def test_a_global_only_sweep_equals_the_global_rows_of_the_full_sweep():
    data = random_ratings(23, n_users=40, n_items=30, density=0.3)
    test = data.sample(frac=0.2, random_state=3)
    train = data.drop(test.index)
    with dask.config.set(scheduler="sync"):
        full, _ = neighbour_sweep(train, test, [2, 5], top_n=4)
        only, _ = neighbour_sweep(train, test, [2, 5], top_n=4, neighbourhoods=("global",))
        summed, _ = neighbour_sweep(train, test, [2, 5], top_n=4, neighbourhoods=("global",),
                                    ranking="sum")
    cols = ["k", "prediction", "mae", "rmse", "fallback_share", "precision", "ndcg", "coverage"]
    want = full[full["neighbourhood"] == "global"][cols].reset_index(drop=True)
    pd.testing.assert_frame_equal(only[cols].reset_index(drop=True), want)
    assert (only["neighbourhood"] == "global").all() and len(only) == 4
    # the ranking rule changes the Top-N columns only
    pd.testing.assert_frame_equal(summed[["k", "prediction", "mae"]], only[["k", "prediction", "mae"]])
