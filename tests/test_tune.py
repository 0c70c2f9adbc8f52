"""Tuning (:mod:`dcf.tune`): the shared fits score every candidate as its own fit would,
the choice never sees the test ratings, and the command writes what it found."""

import dask
import numpy as np
import pandas as pd
import pytest

from conftest import random_ratings
from dcf import KNN
from dcf.errors import ConfigError
from dcf.evaluate import fold_sources, mae, ranking_metrics
from dcf.split import random_split
from dcf.tune import tune

GRID = {"similarity": ["cosine", "centred-cosine"], "k": [3, 6], "amplification": [1.0, 2.0],
        "prediction": ["weighted", "mean-centred"]}


def _inner(train, share=0.2, seed=0):
    two = random_split([dask.delayed(train.reset_index(drop=True))], share, seed + 1)
    return tuple(pd.concat(dask.compute(*side), ignore_index=True) for side in two)


def test_shared_fits_score_each_candidate_as_its_own_fit_and_the_test_is_untouched():
    data = random_ratings(51, n_users=40, n_items=25, density=0.3)
    with dask.config.set(scheduler="sync"):
        result = tune(KNN(neighbourhood="global"), GRID, data, folds=2, metric="mae", parallel=False)
        for f, (train, test) in enumerate(fold_sources(data, 2), start=1):
            fit_on, valid = _inner(train)
            rows = result.candidates[result.candidates["fold"] == f]
            for row in rows.itertuples():
                model = KNN(neighbourhood="global", similarity=row.similarity, k=row.k, amplification=row.amplification,
                            prediction=row.prediction).fit(fit_on)
                preds = model.predict(valid).compute()
                assert row.validation == pytest.approx(mae(preds["rating"], preds["prediction"]), abs=1e-12)
            best = rows.loc[rows["validation"].idxmin()]
            chosen = result.folds[result.folds["fold"] == f].iloc[0]
            assert chosen["validation"] == best["validation"] and chosen["k"] == best["k"]
            refit = KNN(neighbourhood="global", similarity=best["similarity"], k=int(best["k"]),
                        amplification=best["amplification"], prediction=best["prediction"]).fit(train)
            preds = refit.predict(test).compute()
            assert chosen["test"] == pytest.approx(mae(preds["rating"], preds["prediction"]), abs=1e-12)
    means = result.candidates.groupby(list(GRID))["validation"].mean()
    assert tuple(result.best[k] for k in GRID) == means.idxmin() and isinstance(result.best["k"], int)
    assert "nested" in result.protocol and len(result.candidates) == 2 * 16


def test_ranking_search_in_parallel_equals_one_by_one():
    data = random_ratings(52, n_users=40, n_items=25, density=0.3)
    grid = {"similarity": ["full-cosine", "jaccard"], "k": [4, 8], "ranking": ["sum", "normalised-sum"]}
    with dask.config.set(scheduler="sync"):
        one = tune(KNN(neighbourhood="global"), grid, data, folds=2, metric="precision", n=5, threshold=3,
                   parallel=False)
    with dask.config.set(scheduler="threads"):
        many = tune(KNN(neighbourhood="global"), grid, data, folds=2, metric="precision", n=5, threshold=3)
    pd.testing.assert_frame_equal(one.candidates, many.candidates)
    with dask.config.set(scheduler="sync"):
        train, _ = fold_sources(data, 2)[0]
        fit_on, valid = _inner(train)
        model = KNN(neighbourhood="global", similarity="jaccard", k=8).fit(fit_on)
        recs = model.recommend(n=5, ranking="normalised-sum").compute()
    row = one.candidates.query("fold == 1 and similarity == 'jaccard' and k == 8 and ranking == 'normalised-sum'")
    assert row["validation"].iloc[0] == ranking_metrics(recs, valid, 5, 3)["precision"]


def test_bad_grids_are_refused():
    data = random_ratings(53)
    for grid, words in (({}, "non-empty"), ({"k": []}, "non-empty"), ({"colour": ["red"]}, "does not have"),
                        ({"k": 3}, "non-empty")):
        with pytest.raises(ConfigError, match=words):
            tune(KNN(), grid, data)
    with pytest.raises(ConfigError, match="metric"):
        tune(KNN(), {"k": [3]}, data, metric="auc")
    with pytest.raises(ConfigError, match="implicit feedback is tuned by 'precision'"):
        tune(KNN(feedback="implicit"), {"k": [3]}, data)
    with pytest.raises(ConfigError, match="ranking does not change the MAE"):
        tune(KNN(), {"ranking": ["sum", "prediction"]}, data)


def test_the_command_writes_its_choice(one_worker_scheduler, tmp_path, capsys):
    import json

    from dcf.tune.__main__ import main

    data = random_ratings(54, n_users=40, n_items=25, density=0.3)
    data.to_csv(tmp_path / "r.tsv", sep="\t", header=False, index=False)
    common = ["--scheduler", one_worker_scheduler, "--no-progress", "--data", str(tmp_path / "r.tsv")]
    out = tmp_path / "t"
    assert main([*common, "--grid", "k=3,6", "amplification=1,2", "--folds", "2", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    with dask.config.set(scheduler="sync"):
        want = tune(KNN(k=50), {"k": [3, 6], "amplification": [1.0, 2.0]}, data, folds=2)
    assert summary["best"] == want.best and len(pd.read_csv(out / "candidates.csv")) == 8
    np.testing.assert_allclose(pd.read_csv(out / "folds.csv")["test"], want.folds["test"], rtol=1e-12)
    assert "best (mean validation mae" in capsys.readouterr().out
    for flags, words in ((["--grid", "k=a,b"], "takes int"), (["--grid", "colour=1"], "a setting of the run"),
                         (["--grid", "k=3", "--test", "x"], "the batch job's"),
                         (["--grid", "k=3", "k=6"], "names k twice"), (["--grid", "k=3,,6"], "an empty value"),
                         (["--grid", "k=99999999"], "k must be an integer between 1 and 10,000")):
        assert main([*common, *flags, "--out", str(out)]) == 2
        assert words in capsys.readouterr().err


def test_a_search_with_nothing_to_score_says_so():
    # no rating reaches the relevance threshold: every validation precision is undefined
    # (NaN, no longer 0.0), and the search says why instead of nanargmax's "All-NaN slice"
    from dcf.errors import DataError

    data = random_ratings(53, n_users=30, n_items=20, density=0.35)
    with dask.config.set(scheduler="sync"), pytest.raises(DataError, match="no candidate has a validation precision"):
        tune(KNN(neighbourhood="global"), {"k": [3, 5]}, data, folds=2, metric="precision", n=5, threshold=6,
             parallel=False)
