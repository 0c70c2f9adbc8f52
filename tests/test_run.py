"""The batch job: outputs, exit codes, atomic output, and the surprise parity contract."""

import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from dcf.compile import fingerprint
from dcf.run import main

SMALL = "synthetic:users=1500,items=200,ratings=15000,seed=1"


@pytest.fixture(scope="module")
def scheduler():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, memory_limit="1GB", processes=True,
                      host="127.0.0.1", dashboard_address="127.0.0.1:0") as cluster:
        yield cluster.scheduler_address


def _run(scheduler, *args):
    return main(["--scheduler", scheduler, "--no-progress", *map(str, args)])


def test_outputs_and_top_n_contract(scheduler, tmp_path):
    out = tmp_path / "out"
    assert _run(scheduler, "--data", SMALL, "--top-n", 20, "--k", 20, "--out", out) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    preds = pd.read_parquet(out / "predictions.parquet")
    recs = pd.read_parquet(out / "recommendations.parquet")
    assert list(preds.columns) == ["user", "item", "rating", "prediction", "neighbours", "fallback"]
    assert list(recs.columns) == ["user", "rank", "item", "score", "fallback"]
    assert preds["prediction"].notna().all() and recs["score"].notna().all()
    assert metrics["mae"] == pytest.approx(np.abs(preds["rating"] - preds["prediction"]).mean())
    for key in ("rmse", "precision@20", "recall@20", "ndcg@20", "map@20", "coverage", "seconds", "cluster",
                "config", "fallbacks", "counts"):
        assert key in metrics
    assert metrics["evaluation"].startswith("random 10% of the ratings as test, seed 0")
    assert "relevant = test rating >= 4, rated items excluded" in metrics["evaluation"]
    read = metrics["counts"]["read"]
    assert metrics["counts"]["train_ratings"] + metrics["counts"]["test_pairs"] == read["lines"] == 15000
    # Top-20: 20 distinct unrated items for every training user
    per_user = recs.groupby("user")
    assert per_user.ngroups == metrics["counts"]["users"]
    assert (per_user.size() == 20).all() and (per_user["item"].nunique() == 20).all()
    from dcf.datasets import synthetic
    import dask

    full = pd.concat(dask.compute(*synthetic(users=1500, items=200, ratings=15000, seed=1).parts))
    train = full.merge(preds[["user", "item"]], how="left", indicator=True)
    train = train[train["_merge"] == "left_only"]
    rated = set(zip(train["user"].astype(int), train["item"].astype(int)))
    assert not any((int(u), int(i)) in rated for u, i in zip(recs["user"], recs["item"]))
    assert metrics["config"]["k"] == 20 and metrics["cluster"]["workers"] == 2
    # the baselines on the same split: the item means' MAE by pandas, popularity's lists ranked
    base = metrics["baselines"]
    assert set(base) == {"popularity", "item-mean", "user-mean", "baseline"}
    means = preds["item"].astype(int).map(train.groupby(train["item"].astype(int))["rating"].mean())
    item_mean = means.fillna(train["rating"].mean()).clip(train["rating"].min(), train["rating"].max())
    assert base["item-mean"]["mae"] == pytest.approx(np.abs(preds["rating"] - item_mean).mean(), rel=1e-12)
    assert 0 < base["popularity"]["precision@20"] <= 1 and "mae" not in base["popularity"]
    assert all(np.isfinite(base[name]["rmse"]) for name in ("item-mean", "user-mean", "baseline"))


def test_no_baselines_leaves_them_out(scheduler, tmp_path, capsys):
    out = tmp_path / "out"
    assert _run(scheduler, "--data", SMALL, "--k", 10, "--out", out, "--no-baselines") == 0
    assert "baselines" not in json.loads((out / "metrics.json").read_text())
    assert not [line for line in capsys.readouterr().out.splitlines() if line.startswith("baselines")]
    assert _run(scheduler, "--data", SMALL, "--k", 10, "--out", out) == 0
    assert [line for line in capsys.readouterr().out.splitlines() if line.startswith("baselines")
            and "popularity P@20" in line]


def test_bad_input_exits_2_with_one_line_and_keeps_old_output(scheduler, tmp_path, capsys):
    out = tmp_path / "out"
    assert _run(scheduler, "--data", SMALL, "--out", out, "--k", 5) == 0
    before = (out / "metrics.json").read_text()
    bad = tmp_path / "bad.data"
    bad.write_text("1\t2\t3\n2\t3\t4\n3\t4\tfive\n")
    capsys.readouterr()
    assert _run(scheduler, "--data", bad, "--out", out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"dcf: error: {bad}:3: rating is not a number: 'five' (pass "
                       "on_bad_lines='skip' / --skip-bad-lines to drop such lines and count them)")
    assert not any("Traceback" in line for line in err)
    assert (out / "metrics.json").read_text() == before
    assert not list(tmp_path.glob(".out.partial-*"))


def test_skip_bad_lines_counts_rows(scheduler, tmp_path):
    data = tmp_path / "r.csv"
    rows = [f"{u},{i},{1 + (u * i) % 5}" for u in range(60) for i in range(30) if (u + i) % 3]
    data.write_text("user,item,rating\n" + "\n".join(rows + ["7,7,zero", "8,8,", "9,9,-1"]) + "\n")
    out = tmp_path / "out"
    assert _run(scheduler, "--data", data, "--skip-bad-lines", "--out", out, "--k", 5) == 0
    read = json.loads((out / "metrics.json").read_text())["counts"]["read"]
    assert read["skipped"] == 2 and read["missing"] == 1
    assert read["rows"] + read["skipped"] + read["missing"] == read["lines"] == len(rows) + 3


def test_config_file_and_errors(scheduler, tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text(f'data = "{SMALL}"\nk = 7\ntop_n = 5\n[cluster]\nwait_for_workers = 1\n')
    out = tmp_path / "out"
    assert _run(scheduler, "--config", cfg, "--out", out, "--top-n", 3) == 0
    conf = json.loads((out / "metrics.json").read_text())["config"]
    assert conf["k"] == 7 and conf["top_n"] == 3
    cfg.write_text("neighbors = 3\n")
    assert _run(scheduler, "--config", cfg, "--out", out) == 2
    assert "unknown setting(s) neighbors" in capsys.readouterr().err
    assert _run(scheduler, "--data", SMALL, "--amplification", 0, "--out", out) == 2
    assert "amplification must be a number > 0, not 0.0" in capsys.readouterr().err
    assert _run(scheduler, "--data", tmp_path / "nope.csv", "--out", out) == 2
    assert "no such file" in capsys.readouterr().err


def test_a_missing_input_file_fails_before_the_cluster_starts(tmp_path, capsys):
    # no scheduler given: had the job got as far as starting a cluster, it would say so
    for flags in (["--data", str(tmp_path / "nope.tsv")], ["--data", SMALL, "--test", str(tmp_path / "no.tsv")]):
        assert main([*flags, "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert f"dcf: error: {tmp_path}/no" in err and "no such file or folder" in err
        assert "starting" not in err and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_ml100k_cli_matches_surprise_knnbasic(scheduler, ml100k, tmp_path):
    surprise = pytest.importorskip("surprise", reason="scikit-surprise is not installed")
    out = tmp_path / "out"
    assert _run(scheduler, "--data", ml100k / "u1.base", "--test", ml100k / "u1.test", "--based",
                "item", "--similarity", "cosine", "--k", 40, "--neighbourhood", "rated",
                "--prediction", "weighted", "--out", out) == 0
    preds = pd.read_parquet(out / "predictions.parquet")
    reader = surprise.Reader(line_format="user item rating timestamp", sep="\t")
    trainset = surprise.Dataset.load_from_file(str(ml100k / "u1.base"), reader).build_full_trainset()
    algo = surprise.KNNBasic(k=40, sim_options={"name": "cosine", "user_based": False},
                             verbose=False).fit(trainset)
    est = [algo.predict(str(u), str(i)).est for u, i in zip(preds["user"], preds["item"])]
    np.testing.assert_allclose(preds["prediction"], est, rtol=0, atol=1e-9)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["mae"] == pytest.approx(0.82714, abs=5e-6)
    assert len(preds) == 20_000
    assert metrics["evaluation"].startswith("test file ") and "u1.test" in metrics["evaluation"]


@pytest.mark.slow
def test_python_m_dcf_run_default_cluster(tmp_path):
    # the first job of an installation (no compiled kernels recorded): it says so before
    # anything else, compiles them once while the cluster starts, and records it
    cache = tmp_path / "cache"
    env = {**os.environ, "DCF_CACHE": str(cache)}
    proc = subprocess.run(
        [sys.executable, "-m", "dcf.run", "--data", SMALL, "--out", str(tmp_path / "o"), "--k", "10",
         "--dashboard-address", "127.0.0.1:0", "--memory-limit", "1GB"],
        capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "dashboard http://127.0.0.1:" in proc.stderr and "(2 workers)" in proc.stderr
    # a line before the cluster starts, so the first seconds are not silent
    compiling = proc.stderr.index("compiling the kernels, once for this installation")
    starting = proc.stderr.index("starting 2 workers x 2 threads (1GB each) ...")
    assert compiling < starting < proc.stderr.index("dashboard http://")
    assert proc.stderr.index("kernels compiled in") < proc.stderr.index("  load ")
    assert "MAE" in proc.stdout
    assert (tmp_path / "o" / "recommendations.parquet").exists()
    assert [f.name for f in (cache / "compiled").iterdir()] == [fingerprint()]
    # the next job finds them compiled (what the job asks before it compiles)
    check = subprocess.run([sys.executable, "-m", "dcf.compile", "--check"], capture_output=True, text=True,
                           timeout=60, env=env)
    assert check.returncode == 0 and "are compiled" in check.stdout


def test_performance_report_and_readable_task_names(scheduler, tmp_path):
    report = tmp_path / "report.html"
    out = tmp_path / "out"
    assert _run(scheduler, "--data", SMALL, "--out", out, "--k", 5,
                "--performance-report", report) == 0
    html = report.read_text()
    assert "Dask Performance Report" in html
    for stage in ("similarity-block", "similarity-others", "neighbour-matrix", "predict-cell",
                  "recommend-block", "matrix-user-block", "synthetic"):
        assert stage in html, stage


def test_baseline_flags_reach_the_model(scheduler, tmp_path):
    # the recommended rating settings from the command line: the job's predictions equal
    # the Python API's with the same parameters
    import dask

    from dcf import KNN, split
    from dcf.datasets import open_source

    out = tmp_path / "out"
    assert _run(scheduler, "--data", SMALL, "--similarity", "pearson-baseline", "--shrinkage", 50,
                "--prediction", "baseline", "--k", 9, "--reg-item", 2, "--reg-user", 5,
                "--baseline-epochs", 4, "--ranking", "normalised-sum", "--amplification", 2.5,
                "--out", out) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    conf = metrics["config"]
    assert (conf["reg_item"], conf["reg_user"], conf["baseline_epochs"], conf["amplification"]) == (2, 5, 4, 2.5)
    preds = pd.read_parquet(out / "predictions.parquet").sort_values(["user", "item"])
    with dask.config.set(scheduler="sync"):
        train, test = split.random_split(open_source(SMALL).parts, 0.1, 0)
        train = pd.concat(dask.compute(*train), ignore_index=True)
        test = pd.concat(dask.compute(*test), ignore_index=True)
        model = KNN(k=9, similarity="pearson-baseline", shrinkage=50, prediction="baseline",
                    reg_item=2, reg_user=5, baseline_epochs=4, amplification=2.5).fit(train)
        want = model.predict(test).compute().sort_values(["user", "item"])
    np.testing.assert_allclose(preds["prediction"].to_numpy(), want["prediction"].to_numpy(), atol=1e-12)
    assert (metrics["fallbacks"].get("baseline", 0) == int((want["fallback"] == "baseline").sum()))


def test_measure_flags_reach_the_model(scheduler, tmp_path):
    import dask

    from dcf import KNN, split
    from dcf.datasets import open_source

    out = tmp_path / "out"
    assert _run(scheduler, "--data", SMALL, "--similarity", "adjusted-cosine", "--significance", 10,
                "--min-similarity", 0.1, "--k", 7, "--neighbourhood", "global", "--write-neighbours",
                "--out", out) == 0
    conf = json.loads((out / "metrics.json").read_text())["config"]
    assert (conf["similarity"], conf["significance"], conf["min_similarity"]) == ("adjusted-cosine", 10, 0.1)
    nb = pd.read_parquet(out / "neighbours.parquet").sort_values(["entity", "rank"]).reset_index(drop=True)
    with dask.config.set(scheduler="sync"):
        train, _ = split.random_split(open_source(SMALL).parts, 0.1, 0)
        train = pd.concat(dask.compute(*train), ignore_index=True)
        model = KNN(k=7, similarity="adjusted-cosine", significance=10, min_similarity=0.1,
                    neighbourhood="global").fit(train)
        want = model.neighbours().sort_values(["entity", "rank"]).reset_index(drop=True)
    assert nb["similarity"].min() >= 0.1
    pd.testing.assert_frame_equal(nb, want, check_dtype=False)


def test_write_neighbours_gives_every_items_list(scheduler, tmp_path):
    out = tmp_path / "out"
    assert _run(scheduler, "--data", SMALL, "--k", 6, "--neighbourhood", "global", "--write-neighbours",
                "--out", out) == 0
    nb = pd.read_parquet(out / "neighbours.parquet")
    assert list(nb.columns) == ["entity", "rank", "neighbour", "similarity"]
    assert nb.groupby("entity")["rank"].max().max() == 6 and (nb["entity"] != nb["neighbour"]).all()
    ranked = nb.sort_values(["entity", "rank"])
    assert (ranked.groupby("entity")["similarity"].diff().dropna() <= 0).all()  # best first
    assert nb["entity"].nunique() == json.loads((out / "metrics.json").read_text())["counts"]["items"]
    assert _run(scheduler, "--data", SMALL, "--k", 6, "--out", tmp_path / "plain") == 0
    assert not (tmp_path / "plain" / "neighbours.parquet").exists()


def test_a_long_stage_shows_its_progress(monkeypatch, capsys):
    from dcf.run import pipeline

    monkeypatch.setattr(pipeline.Stages, "TICK", 0.05)
    stage = pipeline.Stages(True)
    with stage("neighbours"):
        time.sleep(0.32)
    err = capsys.readouterr().err
    marks = re.findall(r" (\d+) s(?:: [\d,]+ tasks to go)? \.\.\.", err)
    assert err.startswith("  neighbours   ...") and len(marks) >= 3, err
    assert re.search(r"\.\.\.\s+\d+\.\d\d s\n$", err), err  # the stage's time comes last
    assert 0.32 <= stage.seconds["neighbours"] < 5
    quiet = pipeline.Stages(False)
    with quiet("matrix"):
        time.sleep(0.12)
    assert capsys.readouterr().err == "" and quiet.seconds["matrix"] >= 0.12


@pytest.mark.parametrize("status", [0, 1, 2])
def test_the_command_exits_with_mains_status_after_freezing_the_collector(monkeypatch, status):
    import gc

    from dcf.run import cli

    monkeypatch.setattr(cli, "main", lambda: status)
    try:
        with pytest.raises(SystemExit) as exit_:
            cli.entry()
        # frozen: the interpreter's final collections skip what the job's modules hold
        assert exit_.value.code == status and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_a_signal_that_lands_in_a_collector_callback_is_delivered_again(capsys):
    # Python drops an exception raised inside a weakref or collector callback, printing
    # "Exception ignored in ..." and a traceback naming dcf (seen once in the interrupt
    # test, in distributed's GC callback): the job delivers the signal again instead
    import gc
    import signal
    import weakref

    from dcf.run.signals import STOP, handled, on_signal

    class Thing:
        pass

    with handled():
        thing = Thing()
        keep = weakref.ref(thing, lambda ref: on_signal(signal.SIGINT, sys._getframe()))
        with pytest.raises(KeyboardInterrupt):
            del thing  # the callback raises there; Python drops it
            gc.collect()
            for _ in range(100):  # the signal delivered again interrupts this, within 10 s
                time.sleep(0.1)
        assert STOP["signal"] == signal.SIGINT
    assert keep() is None
    assert "Exception ignored" not in capsys.readouterr().err


def test_implicit_feedback_job_on_a_click_log(scheduler, tmp_path, capsys):
    import dask

    from dcf import ItemKNN, split
    from dcf.datasets import open_source

    rng = np.random.default_rng(2)
    clicks = pd.DataFrame({"user": rng.integers(0, 300, 6000), "item": rng.integers(0, 80, 6000)})
    data = tmp_path / "clicks.tsv"
    clicks.to_csv(data, sep="\t", header=False, index=False)
    out = tmp_path / "out"
    assert _run(scheduler, "--data", data, "--feedback", "implicit", "--similarity", "bm25", "--include-self",
                "--k", 6, "--neighbourhood", "global", "--write-neighbours", "--top-n", 5, "--out", out) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["mae"] is None and metrics["rmse"] is None and "no rating to predict" in metrics["not_measured"]["mae"]
    assert "skipped: implicit feedback" in printed
    assert metrics["ranking"] == "sum" and metrics["relevance_threshold"] == 0
    assert "relevant = every test event" in metrics["evaluation"]
    counts = metrics["counts"]
    pairs = clicks.value_counts(["user", "item"])
    assert counts["pairs"] + counts["test_pairs"] == len(pairs)  # a pair's events stay on one side
    assert counts["pairs"] == counts["train_ratings"] < counts["events"] < len(clicks)
    preds = pd.read_parquet(out / "predictions.parquet")  # one row a held-out pair, its events summed
    assert not preds.duplicated(["user", "item"]).any() and len(preds) == counts["test_pairs"]
    np.testing.assert_array_equal(preds["rating"].to_numpy(),
                                  pairs.loc[list(zip(preds["user"], preds["item"]))].to_numpy(np.float64))
    assert metrics["precision@5"] > 0
    nb = pd.read_parquet(out / "neighbours.parquet").sort_values(["entity", "rank"]).reset_index(drop=True)
    with dask.config.set(scheduler="sync"):
        source = open_source(str(data), feedback="implicit")
        train, _ = split.random_split(source.parts, 0.1, 0)
        train = pd.concat(dask.compute(*train), ignore_index=True)
        model = ItemKNN(feedback="implicit", similarity="bm25", include_self=True, k=6,
                        neighbourhood="global").fit(train)
        want = model.neighbours().sort_values(["entity", "rank"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(nb, want, check_dtype=False)


def test_time_decay_job_scores_as_the_estimator_does(scheduler, tmp_path, capsys):
    import dask

    from dcf import ItemKNN, split
    from dcf.datasets import open_source

    rng = np.random.default_rng(4)
    clicks = pd.DataFrame({"user": rng.integers(0, 200, 4000), "item": rng.integers(0, 60, 4000),
                           "weight": rng.integers(1, 4, 4000), "time": rng.integers(1_600_000_000, 1_630_000_000, 4000)})
    data = tmp_path / "clicks.tsv"
    clicks.to_csv(data, sep="\t", header=False, index=False)
    out = tmp_path / "out"
    assert _run(scheduler, "--data", data, "--feedback", "implicit", "--similarity", "cosine", "--half-life", 7,
                "--reference-time", "2021-09-01", "--k", 10, "--neighbourhood", "global", "--top-n", 5,
                "--out", out) == 0
    assert "half-life 7 days from 2021-09-01T00:00:00+00:00, in the scores" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["time_decay"] == {"half_life_days": 7.0, "reference_time": 1630454400.0,
                                     "reference_time_utc": "2021-09-01T00:00:00+00:00", "decay_similarity": False}
    recs = pd.read_parquet(out / "recommendations.parquet")
    with dask.config.set(scheduler="sync"):
        train, _ = split.random_split(open_source(str(data), feedback="implicit").parts, 0.1, 0)
        train = pd.concat(dask.compute(*train), ignore_index=True)
        model = ItemKNN(feedback="implicit", similarity="cosine", k=10, neighbourhood="global", half_life=7,
                        reference_time=1630454400).fit(train)
        want = model.recommend(n=5).compute()
    np.testing.assert_allclose(recs["score"].to_numpy(), want["score"].to_numpy(), rtol=1e-12)
    assert (recs["item"].to_numpy() == want["item"].to_numpy()).all()
    assert _run(scheduler, "--data", data, "--half-life", 7, "--out", tmp_path / "o2") == 2  # explicit: refused


def test_items_file_and_keep_rated_reach_the_recommendations(scheduler, tmp_path, capsys):
    import dask

    from dcf import ItemKNN, split
    from dcf.datasets import open_source

    rng = np.random.default_rng(5)
    clicks = pd.DataFrame({"user": rng.integers(0, 200, 4000), "item": rng.integers(0, 60, 4000)})
    data = tmp_path / "clicks.tsv"
    clicks.to_csv(data, sep="\t", header=False, index=False)
    allow = [3, 7, 11, 19, 23, 42, 59]
    items = tmp_path / "in-stock.txt"
    items.write_text("\n".join(str(i) for i in allow) + "\n\n  12345  \n")  # a blank line; an id never seen
    out = tmp_path / "out"
    assert _run(scheduler, "--data", data, "--feedback", "implicit", "--k", 8, "--neighbourhood", "global",
                "--top-n", 4, "--items", items, "--keep-rated", "--out", out) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["candidates"] == {"file": str(items), "ids": 8, "known": 7}
    assert "rated items kept, only the items of" in metrics["evaluation"]
    assert "7 of the 8 ids in" in printed
    recs = pd.read_parquet(out / "recommendations.parquet")
    assert set(recs["item"]) <= set(allow) and (recs.groupby("user").size() == 4).all()
    with dask.config.set(scheduler="sync"):  # the estimator with the same rules gives the same lists
        train, _ = split.random_split(open_source(str(data), feedback="implicit").parts, 0.1, 0)
        frame = pd.concat(dask.compute(*train), ignore_index=True)
        model = ItemKNN(feedback="implicit", k=8, neighbourhood="global").fit(frame)
        want = model.recommend(n=4, items=allow, filter_rated=False).compute()
    key = ["user", "rank"]
    pd.testing.assert_frame_equal(recs.sort_values(key).reset_index(drop=True),
                                  want.sort_values(key).reset_index(drop=True), check_dtype=False,
                                  check_categorical=False)
    rated = set(zip(frame["user"], frame["item"]))
    assert any((u, i) in rated for u, i in zip(recs["user"], recs["item"]))  # kept: re-purchases listed
    items.write_text("3\nseven\n")
    assert _run(scheduler, "--data", data, "--feedback", "implicit", "--items", items, "--out", out) == 2
    assert f"{items}:2: item id 'seven' is not an integer" in capsys.readouterr().err
    assert _run(scheduler, "--data", data, "--items", tmp_path / "none.txt", "--out", out) == 2
    assert "none.txt: no such file" in capsys.readouterr().err


def test_explain_writes_each_recommendations_rated_items(scheduler, tmp_path, capsys):
    out = tmp_path / "out"
    assert _run(scheduler, "--data", SMALL, "--k", 10, "--neighbourhood", "global", "--ranking", "sum",
                "--top-n", 5, "--explain", "--out", out) == 0
    recs = pd.read_parquet(out / "recommendations.parquet")
    assert list(recs.columns) == ["user", "rank", "item", "score", "fallback", "because"]
    scored = recs[recs["fallback"] == "none"]
    assert len(scored) and scored["because"].map(len).between(1, 3).all()
    first = scored["because"].iloc[0]
    assert isinstance(first[0]["item"], (int, np.integer)) and 0 < first[0]["share"] <= 1
    shares = scored["because"].map(lambda why: sum(b["share"] for b in why))
    assert (shares <= 1 + 1e-9).all()
    assert _run(scheduler, "--data", SMALL, "--based", "user", "--explain", "--out", out) == 2
    assert "--explain names the rated items behind a score: item-based" in capsys.readouterr().err


def test_an_items_file_is_checked_line_by_line(scheduler, tmp_path, capsys):
    out = tmp_path / "out"
    items = tmp_path / "items.txt"
    for body, line, why in ((b"1\n\xff\xfe2\n", 2, "is not UTF-8 text"), (b"1\n2\n1_0\n", 3, "item id '1_0' is not an integer"),
                            ("5\n\u0663\n".encode(), 2, "is not an integer")):
        items.write_bytes(body)
        assert _run(scheduler, "--data", SMALL, "--items", items, "--out", out) == 2
        err = capsys.readouterr().err
        assert f"{items}:{line}: " in err and why in err and "Traceback" not in err
    # a file without an id, or whose ids are none of the model's: every list would be empty
    for body, why in ((b"\n  \n", "holds no item id"), (b"999998\n999999\n", "none of its 2 ids is an item")):
        items.write_bytes(body)
        assert _run(scheduler, "--data", SMALL, "--items", items, "--out", out) == 2
        err = capsys.readouterr().err
        assert f"{items}: {why}" in err and "Traceback" not in err


def test_splits_by_time(scheduler, tmp_path, capsys):
    rng = np.random.default_rng(4)
    rows = pd.DataFrame({"user": rng.integers(0, 60, 1500), "item": rng.integers(0, 40, 1500),
                         "rating": rng.integers(1, 6, 1500).astype(float)}).drop_duplicates(["user", "item"])
    rows["time"] = rng.integers(8 * 10**8, 9 * 10**8, len(rows))
    rows.to_csv(tmp_path / "r.tsv", sep="\t", header=False, index=False)
    out = tmp_path / "out"
    assert _run(scheduler, "--data", tmp_path / "r.tsv", "--split", "time", "--test-fraction", 0.2, "--k", 5,
                "--out", out) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    preds = pd.read_parquet(out / "predictions.parquet")
    cut = np.sort(rows["time"].to_numpy())[int(np.floor(0.8 * len(rows)))]
    assert metrics["counts"]["test_pairs"] == int((rows["time"] >= cut).sum())
    assert metrics["evaluation"].startswith("the latest 20% of the ratings by time as test")
    late = set(zip(rows.loc[rows["time"] >= cut, "user"], rows.loc[rows["time"] >= cut, "item"]))
    assert set(zip(preds["user"].astype(int), preds["item"].astype(int))) == late
    assert _run(scheduler, "--data", tmp_path / "r.tsv", "--split", "last", "--holdout", 2, "--k", 5,
                "--out", out) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    sizes = rows.groupby("user").size()
    assert metrics["counts"]["test_pairs"] == 2 * int((sizes > 2).sum())
    assert "each user's 2 latest rating(s) as test" in metrics["evaluation"]
    capsys.readouterr()
    assert _run(scheduler, "--data", SMALL, "--split", "time", "--out", tmp_path / "o2") == 2
    assert "no time column" in capsys.readouterr().err
    assert _run(scheduler, "--data", tmp_path / "r.tsv", "--test", tmp_path / "r.tsv", "--split", "last",
                "--out", tmp_path / "o3") == 2
    assert "drop one" in capsys.readouterr().err
    assert _run(scheduler, "--data", tmp_path / "r.tsv", "--holdout", 3, "--out", tmp_path / "o3") == 2
    assert "applies to split 'last' only" in capsys.readouterr().err
    assert _run(scheduler, "--data", tmp_path / "r.tsv", "--split", "last", "--holdout", 10**6,
                "--out", tmp_path / "o3") == 2
    assert "held out no rating" in capsys.readouterr().err
