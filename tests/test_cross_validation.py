"""Cross-validation (:func:`dcf.evaluate.cross_validate`) and scikit-learn's ``score``: the
folds against surprise's ``cross_validate`` on MovieLens 100K's u1-u5, hash folds that
partition the ratings, every figure against the fold fitted by hand, and
``sklearn.model_selection.cross_val_score`` on the estimator."""

import dask
import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from conftest import random_ratings
from dcf import KNN, ItemKNN
from dcf.datasets import movielens_folds
from dcf.errors import ConfigError, DataError
from dcf.evaluate import FOLD_COLUMNS, cross_validate, mae, ranking_metrics, rmse


@pytest.mark.slow
@pytest.mark.parametrize("based,prediction", [("item", "weighted"), ("item", "mean-centred"),
                                              ("user", "weighted"), ("user", "mean-centred")])
def test_u1_to_u5_equal_surprises_cross_validate_fold_by_fold(ml100k, based, prediction):
    surprise = pytest.importorskip("surprise", reason="scikit-surprise is not installed (test extra)")
    reader = surprise.Reader(line_format="user item rating timestamp", sep="\t", rating_scale=(1, 5))
    folds = [(str(ml100k / f"u{f}.base"), str(ml100k / f"u{f}.test")) for f in range(1, 6)]
    data = surprise.Dataset.load_from_folds(folds, reader=reader)
    algo = (surprise.KNNBasic if prediction == "weighted" else surprise.KNNWithMeans)(
        k=40, sim_options={"name": "cosine", "user_based": based == "user"}, verbose=False)
    theirs = surprise.model_selection.cross_validate(algo, data, measures=["mae", "rmse"],
                                                     cv=surprise.model_selection.PredefinedKFold())
    with dask.config.set(scheduler="threads"):
        ours = cross_validate(KNN(based=based, prediction=prediction, k=40), folds=movielens_folds(), n=None)
    np.testing.assert_allclose(ours.folds["mae"], theirs["test_mae"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(ours.folds["rmse"], theirs["test_rmse"], rtol=0, atol=1e-9)
    assert ours.folds["test_pairs"].tolist() == [20_000] * 5


def test_hash_folds_partition_the_ratings_and_each_fold_is_the_model_fitted_by_hand():
    data = random_ratings(41, n_users=30, n_items=20, density=0.35)
    with dask.config.set(scheduler="sync"):
        result = cross_validate(ItemKNN(k=5, neighbourhood="global"), data, folds=3, n=4, seed=7)
        again = cross_validate(ItemKNN(k=5, neighbourhood="global"), data.sample(frac=1, random_state=1), folds=3,
                               n=4, seed=7)
        from dcf.evaluate import fold_sources
        sources = fold_sources(data, 3, seed=7)
        tests = pd.concat([test for _, test in sources])
        assert sorted(zip(tests["user"], tests["item"])) == sorted(zip(data["user"], data["item"]))  # a partition
        for (train, test), row in zip(sources, result.folds.itertuples()):
            model = ItemKNN(k=5, neighbourhood="global").fit(train)
            preds = model.predict(test).compute()
            recs = model.recommend(n=4).compute()
            assert row.mae == mae(preds["rating"], preds["prediction"])
            assert row.rmse == rmse(preds["rating"], preds["prediction"])
            ranked = ranking_metrics(recs, preds, 4, 4.0)
            assert (row.precision, row.ndcg, row.mrr, row.hit_rate, row.users) == (
                ranked["precision"], ranked["ndcg"], ranked["mrr"], ranked["hit_rate"], ranked["users"])
            assert row.coverage == recs["item"].nunique() / train["item"].nunique()
            counts = train.groupby("item").size()
            assert row.popularity == pytest.approx(np.mean(counts.reindex(recs["item"]).to_numpy()
                                                           / train["user"].nunique()), abs=1e-12)
    assert list(result.folds.columns) == FOLD_COLUMNS and result.folds["fold"].tolist() == [1, 2, 3]
    # the folds are decided by the pairs, not by the rows' order
    pd.testing.assert_frame_equal(result.folds.drop(columns=["fit_time", "test_time"]),
                                  again.folds.drop(columns=["fit_time", "test_time"]))
    users = result.users
    assert users.groupby("fold")["test_pairs"].sum().tolist() == result.folds["test_pairs"].tolist()
    weighted = (users["mae"] * users["test_pairs"]).groupby(users["fold"]).sum() / result.folds.set_index("fold")[
        "test_pairs"]
    np.testing.assert_allclose(weighted, result.folds["mae"], rtol=1e-12)
    ranked_users = users.dropna(subset=["precision"])
    assert ranked_users.groupby("fold").size().tolist() == result.folds["users"].tolist()
    np.testing.assert_allclose(ranked_users.groupby("fold")["rr"].mean(), result.folds["mrr"], rtol=1e-12)
    summary = result.summary()
    assert summary.loc["mae", "mean"] == pytest.approx(result.folds["mae"].mean(), abs=1e-15)
    assert summary.loc["rmse", "std"] == pytest.approx(np.std(result.folds["rmse"]), abs=1e-15)
    assert "mean +/- std" in result.table()


def test_predefined_folds_as_frames_and_bad_folds():
    data = random_ratings(42, n_users=20, n_items=15, density=0.4)
    half = data.sample(frac=0.5, random_state=0)
    rest = data.drop(half.index)
    with dask.config.set(scheduler="sync"):
        result = cross_validate(ItemKNN(k=3), folds=[(half, rest), (rest, half)], n=None)
        assert result.folds["test_pairs"].tolist() == [len(rest), len(half)]
        assert result.folds["precision"].isna().all() and result.users["precision"].isna().all()
        for bad, words in ((dict(data=data, folds=1), "at least 2"), (dict(folds=3), "needs the ratings"),
                           (dict(data=data, folds=[(half, rest)]), "not both"), (dict(folds=[(half,)]), "pairs"),
                           (dict(data=data, n=0), "n must be"), (dict(data=[1, 2]), "splits a path"),
                           (dict(folds=2.5), "whole number of at least 2"), (dict(folds=True), "whole number")):
            with pytest.raises(ConfigError, match=words):
                cross_validate(ItemKNN(k=3), **bad)
        with pytest.raises(DataError, match="fold .* has no test ratings"):  # more folds than ratings fill
            cross_validate(ItemKNN(k=3), data.head(4), folds=10, n=None)


def test_score_lets_scikit_learn_rank_settings():
    from sklearn.model_selection import KFold, cross_val_score

    data = random_ratings(43, n_users=30, n_items=20, density=0.35)
    with dask.config.set(scheduler="sync"):
        scores = cross_val_score(ItemKNN(k=5), data, cv=KFold(3, shuffle=True, random_state=0))
        for (tr, te), got in zip(KFold(3, shuffle=True, random_state=0).split(data), scores):
            preds = ItemKNN(k=5).fit(data.iloc[tr]).predict(data.iloc[te]).compute()
            assert got == -mae(preds["rating"], preds["prediction"])  # greater is better
        events = data.drop(columns="rating")
        model = ItemKNN(k=5, feedback="implicit", similarity="cooccurrence").fit(events.iloc[:150])
        test = events.iloc[150:]
        recs = model.recommend(list(dict.fromkeys(test["user"])), n=20).compute()
        want = ranking_metrics(recs, test.assign(rating=1.0), 20, 1.0)["precision"]
    assert model.score(test) == want and 0 < want <= 1


def test_implicit_feedback_folds_rank_every_test_event():
    data = random_ratings(44, n_users=30, n_items=20, density=0.35).drop(columns="rating")
    with dask.config.set(scheduler="sync"):
        result = cross_validate(ItemKNN(k=5, feedback="implicit", similarity="cooccurrence"), data, folds=3, n=5)
        from dcf.evaluate import fold_sources
        for (train, test), row in zip(fold_sources(data, 3), result.folds.itertuples()):
            recs = ItemKNN(k=5, feedback="implicit", similarity="cooccurrence").fit(train).recommend(n=5).compute()
            assert row.precision == ranking_metrics(recs, test.assign(rating=1.0), 5, 0.0)["precision"]
            assert row.users == test["user"].nunique()
    assert result.folds["mae"].isna().all() and result.threshold == 0.0
    assert result.users["hit"].dtype == "boolean"


def test_the_command_writes_the_folds_and_refuses_what_does_not_apply(one_worker_scheduler, tmp_path, capsys):
    import json

    from dcf.evaluate.__main__ import main

    data = random_ratings(45, n_users=40, n_items=25, density=0.3)
    data.to_csv(tmp_path / "r.tsv", sep="\t", header=False, index=False)
    out = tmp_path / "cv"
    common = ["--scheduler", one_worker_scheduler, "--no-progress", "--k", "5", "--top-n", "4"]
    assert main([*common, "--data", str(tmp_path / "r.tsv"), "--folds", "3", "--seed", "2", "--out", str(out)]) == 0
    with dask.config.set(scheduler="sync"):
        want = cross_validate(KNN(k=5), data, folds=3, n=4, seed=2)
    got = pd.read_csv(out / "folds.csv")
    np.testing.assert_allclose(got[["mae", "rmse", "precision", "ndcg", "mrr"]],
                               want.folds[["mae", "rmse", "precision", "ndcg", "mrr"]], rtol=1e-12)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mean"]["mae"] == pytest.approx(want.folds["mae"].mean(), rel=1e-12)
    users = pq.read_table(out / "users.parquet")
    assert users.num_rows == len(want.users)
    # a measure that does not apply (no relevant test item) is missing, never NaN
    undefined = want.users["precision"].isna()
    assert undefined.any() and not undefined.all()
    for col in ("mae", "rmse", "precision", "recall", "ndcg", "ap", "rr"):
        values = users.column(col)
        assert not pc.any(pc.is_nan(values)).as_py()
        assert values.null_count == int(want.users[col].isna().sum())
    assert pc.min(users.column("relevant")).as_py() == 0 and users.column("relevant").null_count == 0
    printed = capsys.readouterr().out
    assert "mean +/- std" in printed and "means over the folds" in printed  # the baselines beside the model
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    for flags, words in ((["--folds", "3", "--test", str(tmp_path / "r.tsv")], "--test: the batch job's"),
                         (["--folds", "3", "--fold-files", "a", "b"], "not both"),
                         (["--fold-files", str(tmp_path / "r.tsv")], "TRAIN TEST pairs"),
                         (["--fold-files", str(tmp_path / "r.tsv"), str(tmp_path / "." / "r.tsv")],
                          "fold 1's test file"),
                         (["--folds", "3", "--out", str(foreign)], "notes.txt"),
                         (["--folds", "0"], "--folds must be at least 2")):
        args = [*common, "--data", str(tmp_path / "r.tsv"), *flags]
        assert main(args if "--out" in flags else [*args, "--out", str(out)]) == 2
        assert words in capsys.readouterr().err
    assert (foreign / "notes.txt").read_text() == "keep me" and (out / "folds.csv").exists()
    # --no-baselines: the model's figures only
    assert main([*common, "--data", str(tmp_path / "r.tsv"), "--folds", "2", "--out", str(out), "--no-baselines"]) == 0
    printed = capsys.readouterr().out
    assert "mean +/- std" in printed and "means over the folds" not in printed
    assert "baselines" not in json.loads((out / "summary.json").read_text()) or \
        not json.loads((out / "summary.json").read_text())["baselines"]


def test_dask_ml_grid_search_takes_the_estimators():
    from dask_ml.model_selection import GridSearchCV
    from sklearn.model_selection import KFold

    data = random_ratings(47, n_users=30, n_items=20, density=0.35)
    assert not hasattr(KNN(), "idx_")  # unfitted attributes are absent, as scikit-learn's are
    with pytest.raises(RuntimeError, match="not fitted"):
        KNN().idx_
    split = KFold(2, shuffle=True, random_state=0)
    with dask.config.set(scheduler="sync"):
        search = GridSearchCV(ItemKNN(neighbourhood="global"), {"k": [3, 6]}, cv=split, refit=False,
                              scheduler="sync").fit(data)
        for c, params in enumerate(search.cv_results_["params"]):
            want = []
            for tr, te in split.split(data):
                preds = ItemKNN(neighbourhood="global", **params).fit(data.iloc[tr]).predict(data.iloc[te]).compute()
                want.append(-mae(preds["rating"], preds["prediction"]))
            assert search.cv_results_["mean_test_score"][c] == pytest.approx(np.mean(want), abs=1e-12)
