"""Issue 19's rules for the batch job: dcf replaces only what it wrote, every setting is
checked before the cluster starts, outputs are strict, and no wait is unbounded."""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dcf.errors import ConfigError
from dcf.folders import MARKER, MODEL, RUN_OUTPUT, atomic_folder, check_folder
from dcf.run import main, strict_json, uniform_ids

SMALL = "synthetic:users=300,items=50,ratings=3000,seed=1"
# nothing listens here: a check that let a case through would fail with "cannot reach the
# scheduler" instead of the rule's own message, so each case proves it ran before the cluster
NOWHERE = "tcp://127.0.0.1:9"


def _tree(folder: Path) -> dict:
    """Every file under ``folder`` (symlinks not followed) and a hash of its bytes."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            p = Path(root, name)
            out[str(p.relative_to(folder))] = (hashlib.sha256(p.read_bytes()).hexdigest()
                                               if p.is_file() and not p.is_symlink() else os.readlink(p))
    return out


def _refused(capsys, *args, scheduler=NOWHERE) -> str:
    """The one line the job prints when it refuses ``args`` (exit 2), before any cluster."""
    rc = main([*(["--scheduler", scheduler] if scheduler else []), "--data", SMALL, "--no-progress",
               *map(str, args)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2, err
    assert len(err) == 1 and err[0].startswith("dcf: error: ") and "Traceback" not in err[0]
    return err[0]


@pytest.fixture
def users_files(tmp_path):
    """A folder of somebody's work, with a data file in it."""
    home = tmp_path / "work"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    (home / "u.data").write_text("1\t1\t5\n1\t2\t3\n2\t1\t4\n2\t2\t2\n")
    (home / "sub").mkdir()
    (home / "sub" / "notes.md").write_text("notes")
    return home


# ---------------------------------------------------------------- 1. --out and save

@pytest.mark.parametrize("case", ["dot", "empty", "input-folder", "input-file", "symlink", "file",
                                  "foreign-files", "parent-is-file", "home", "unwritable"])
def test_out_never_replaces_what_dcf_did_not_write(case, users_files, tmp_path, monkeypatch, capsys):
    before = _tree(tmp_path)
    data = users_files / "u.data"
    out, expect = {
        "dot": (".", "is the current directory"),
        "empty": ("", "empty"),
        "input-folder": (users_files, "holds the input"),
        "input-file": (data, "holds the input"),
        "symlink": (tmp_path / "link", "is a symbolic link"),
        "file": (users_files / "thesis.tex", "is a file, not a folder"),
        "foreign-files": (users_files / "sub", "holds files dcf did not write (notes.md)"),
        "parent-is-file": (users_files / "thesis.tex" / "out", "is a file, not a folder"),
        "home": (users_files.parent, "is the home folder or holds it"),
        "unwritable": ("/proc/dcf-out", "cannot write in /proc"),
    }[case]
    monkeypatch.chdir(users_files if case == "dot" else "/")
    monkeypatch.setenv("HOME", str(users_files if case == "home" else tmp_path / "nobody"))
    if case == "symlink":
        (tmp_path / "link").symlink_to(users_files / "sub")
        before = _tree(tmp_path)
    err = _refused(capsys, "--data", data, "--out", out)
    assert expect in err
    assert _tree(tmp_path) == before  # nothing created, moved or deleted
    assert not [p for p in tmp_path.rglob(".*") if "partial" in p.name or "old" in p.name]


def test_out_that_dcf_wrote_is_replaced_and_only_its_files(tmp_path):
    out = tmp_path / "out"
    with atomic_folder(out, RUN_OUTPUT) as staging:
        (staging / "metrics.json").write_text('{"dcf_version": "x", "n": 1}')
        (staging / "predictions.parquet").write_bytes(b"1")
    assert (out / MARKER).is_file()
    with atomic_folder(out, RUN_OUTPUT) as staging:
        (staging / "metrics.json").write_text('{"dcf_version": "x", "n": 2}')
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "metrics.json"]
    assert json.loads((out / "metrics.json").read_text())["n"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_output_of_an_older_dcf_without_the_marker_is_still_dcfs(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.json").write_text('{"dcf_version": "0.0.9", "config": {}, "counts": {}, "mae": 1}')
    (out / "recommendations.parquet").write_bytes(b"old")
    assert check_folder(out, RUN_OUTPUT) == out
    (out / "metrics.json").write_text('{"mine": true}')  # a user's own metrics.json: not dcf's
    with pytest.raises(ConfigError, match="holds files dcf did not write"):
        check_folder(out, RUN_OUTPUT)


def test_a_file_added_during_the_run_stops_the_swap_and_survives(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ConfigError, match="holds files dcf did not write \\(mine.txt\\)"):
        with atomic_folder(out, RUN_OUTPUT) as staging:
            (staging / "metrics.json").write_text("{}")
            (out / "mine.txt").write_text("added while the job ran")
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # staging removed


def test_stale_folders_of_others_are_left_alone(tmp_path):
    out = tmp_path / "out"
    theirs = tmp_path / ".out.partial-999999999"  # a dead pid, but not a folder dcf made
    theirs.mkdir()
    (theirs / "keep.txt").write_text("x")
    with atomic_folder(out, RUN_OUTPUT) as staging:
        (staging / "metrics.json").write_text("{}")
    assert (theirs / "keep.txt").read_text() == "x"


def test_save_obeys_the_same_rule(users_files, tmp_path, monkeypatch):
    import dask

    from dcf import ItemKNN, load

    frame = pd.DataFrame({"user": [1, 1, 2, 2, 3], "item": [1, 2, 1, 2, 3], "rating": [5.0, 3, 4, 2, 1]})
    with dask.config.set(scheduler="sync"):
        model = ItemKNN(k=2).fit(frame)
        before = _tree(users_files)
        for target, expect in ((users_files, "holds files dcf did not write"),
                               (users_files / "thesis.tex", "is a file")):
            with pytest.raises(ConfigError, match=expect):
                model.save(target)
        monkeypatch.chdir(users_files)
        with pytest.raises(ConfigError, match="current directory"):
            model.save(".")
        assert _tree(users_files) == before
        folder = tmp_path / "model"
        model.save(folder)
        model.save(folder)  # a model dcf saved is replaced
        assert (folder / MARKER).is_file() and load(folder).neighbours_.k == 2
    out = tmp_path / "run-output"
    with atomic_folder(out, RUN_OUTPUT) as staging:
        (staging / "metrics.json").write_text('{"dcf_version": "x"}')
    with pytest.raises(ConfigError, match="holds files dcf did not write"):
        check_folder(out, MODEL, what="save")  # a batch job's output is not a model folder


def test_performance_report_replaces_only_a_report(users_files, tmp_path, capsys):
    err = _refused(capsys, "--out", tmp_path / "o", "--performance-report", users_files / "thesis.tex")
    assert "is not a Dask performance report" in err
    err = _refused(capsys, "--out", tmp_path / "o", "--performance-report", tmp_path / "o" / "r.html")
    assert "is inside --out" in err
    assert (users_files / "thesis.tex").read_text() == "years of work"


def _dcf_output(folder: Path) -> Path:
    """A folder as an earlier run of the batch job leaves it."""
    with atomic_folder(folder, RUN_OUTPUT) as staging:
        (staging / "metrics.json").write_text('{"dcf_version": "x"}')
    return folder


@pytest.mark.parametrize("disguise", ["marker-is-a-folder", "marker-is-a-symlink", "marker-of-another-kind",
                                      "marker-and-a-users-file"])
def test_leftovers_named_like_dcfs_are_only_removed_when_they_are_dcfs(disguise, tmp_path):
    stale = tmp_path / (".out.old-999999999" if disguise == "marker-of-another-kind" else ".out.partial-999999999")
    stale.mkdir()
    (stale / "metrics.json").write_text('{"mine": 1}')
    if disguise == "marker-is-a-folder":
        (stale / MARKER).mkdir()
    elif disguise == "marker-is-a-symlink":
        (tmp_path / "elsewhere").write_text('{"kind": "batch-job output"}')
        (stale / MARKER).symlink_to(tmp_path / "elsewhere")
    elif disguise == "marker-of-another-kind":
        (stale / MARKER).write_text('{"kind": "saved model"}')
    else:
        (stale / MARKER).write_text('{"kind": "batch-job output"}')
        (stale / "notes.txt").write_text("mine")
    before = _tree(stale)
    with atomic_folder(tmp_path / "out", RUN_OUTPUT) as staging:
        (staging / "metrics.json").write_text("{}")
    assert _tree(stale) == before and (tmp_path / "out" / "metrics.json").read_text() == "{}"


def test_an_out_name_with_glob_characters_touches_no_other_output(tmp_path):
    other = _dcf_output(tmp_path / "xyz")
    os.replace(other, tmp_path / ".xyz.old-999999999")  # another output, moved aside by a killed run
    for name in ("x*", "x[1]", "x?z"):
        with atomic_folder(tmp_path / name, RUN_OUTPUT) as staging:
            (staging / "metrics.json").write_text("{}")
    assert (tmp_path / ".xyz.old-999999999" / "metrics.json").exists()


def test_replacing_an_empty_folder_keeps_its_mode_and_owner(tmp_path):
    out = tmp_path / "private"
    out.mkdir(mode=0o700)
    os.chmod(out, 0o700)
    st = out.stat()
    with atomic_folder(out, RUN_OUTPUT) as staging:
        (staging / "metrics.json").write_text("{}")
    after = out.stat()
    assert (after.st_mode & 0o7777, after.st_uid, after.st_gid) == (0o700, st.st_uid, st.st_gid)


def test_a_hand_written_signature_does_not_make_a_folder_dcfs(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "dcf-model.json").write_text('{"format": "dcf-knn"}')
    (folder / "users.parquet").write_text("the user's own")
    with pytest.raises(ConfigError, match="holds files dcf did not write"):
        check_folder(folder, MODEL, what="save")
    out = tmp_path / "o"
    out.mkdir()
    (out / "metrics.json").write_text('{"dcf_version": "mine"}')  # not a batch job's metrics
    with pytest.raises(ConfigError, match="holds files dcf did not write"):
        check_folder(out, RUN_OUTPUT)


def test_paths_through_symbolic_links_are_checked_as_resolved(users_files, tmp_path, monkeypatch, capsys):
    here = users_files / "sub" / "empty"
    here.mkdir()
    (tmp_path / "L").symlink_to(users_files / "sub")
    monkeypatch.chdir(here)
    assert "is the current directory" in _refused(capsys, "--out", tmp_path / "L" / "empty")
    monkeypatch.chdir("/")
    out = _dcf_output(tmp_path / "o")
    (tmp_path / "M").symlink_to(out)
    data = users_files / "u.data"
    err = _refused(capsys, "--data", data, "--test", tmp_path / "M" / "metrics.json", "--out", out)
    assert "holds the input" in err
    err = _refused(capsys, "--data", data, "--out", out, "--performance-report", tmp_path / "M" / "r.html")
    assert "is inside --out" in err
    err = _refused(capsys, "--data", data, "--test", f"file://{data}", "--out", tmp_path / "o3")
    assert "is the training data itself" in err


def test_out_inside_an_input_folder_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir("/")
    data = tmp_path / "parts"
    data.mkdir()
    pd.DataFrame({"user": [1, 2], "item": [1, 2], "rating": [1.0, 2.0]}).to_parquet(data / "part.0.parquet")
    assert "is inside the input folder" in _refused(capsys, "--data", data, "--out", data / "out")


def test_report_and_out_cannot_be_one_path_and_a_mere_mention_is_no_report(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir("/")
    assert "is inside --out" in _refused(capsys, "--out", tmp_path / "o", "--performance-report", tmp_path / "o")
    words = tmp_path / "words.txt"
    words.write_text("My notes on the <title>Dask Performance Report</title> tool.")
    err = _refused(capsys, "--out", tmp_path / "o", "--performance-report", words)
    assert "is not a Dask performance report" in err and words.read_text().startswith("My notes")


def test_a_name_too_long_for_the_filesystem_fails_before_the_job(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir("/")
    err = _refused(capsys, "--out", tmp_path / ("a" * 250))
    assert "cannot write in" in err and "File name too long" in err


# ---------------------------------------------------------------- 6. settings

@pytest.mark.parametrize("toml, expect", [
    ('skip_bad_lines = "no"', "skip_bad_lines must be true or false, not 'no'"),
    ('k = "10"', "k must be an integer, not '10'"),
    ("k = 10.0", "k must be an integer, not 10.0"),
    ("top_n = true", "top_n must be an integer, not True"),
    ("relevance = nan", "relevance must be a finite number or nothing, not nan"),
    ("shrinkage = inf", "shrinkage must be a finite number, not inf"),
    ('out = 5', "out must be text, not 5"),
    ("[cluster]\nworkers = 2.5", "workers must be an integer, not 2.5"),
    ("cluster = 5", "cluster must be a table"),
    ('[cluster]\nmemory_limit = "1e400GB"', "memory_limit '1e400GB' is not a size"),
    ("[cluster]\nthreads_per_worker = 99999999999999999999", "between 1 and 4,096"),
    ('[cluster]\nstall_timeout = "soon"', "stall_timeout must be a finite number"),
])
def test_config_file_values_are_typed(toml, expect, tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text(toml + "\n")
    assert expect in _refused(capsys, "--config", cfg, "--out", tmp_path / "o", scheduler=None)


@pytest.mark.parametrize("args, expect", [
    (["--relevance", "nan"], "relevance must be a finite number or nothing, not nan"),
    (["--test-fraction", "nan"], "test_fraction must be a finite number, not nan"),
    (["--test-fraction", "1"], "test_fraction must be between 0 and 1"),
    (["--min-similarity", "inf"], "min_similarity must be a finite number"),
    (["--k", "1000000000"], "k must be an integer between 1 and 10,000"),
    (["--top-n", "123456789"], "top_n must be an integer between 1 and 10,000"),
    (["--workers", "3"], "--workers set the local cluster dcf starts; with --scheduler"),
    (["--memory-limit", "9GB", "--dashboard-address", ":0"],
     "--memory-limit, --dashboard-address set the local cluster"),
])
def test_flags_are_checked_before_the_cluster_starts(args, expect, tmp_path, capsys):
    assert expect in _refused(capsys, "--out", tmp_path / "o", *args)


@pytest.mark.parametrize("args, expect", [
    (["--memory-limit", "banana"], "memory_limit 'banana' is not a size"),
    (["--dashboard-address", "nonsense"], "dashboard_address 'nonsense' is not HOST:PORT"),
    (["--threads-per-worker", "0"], "threads_per_worker must be an integer between 1 and 4,096"),
    (["--memory-limit", "1e400GB"], "memory_limit '1e400GB' is not a size"),
    (["--performance-report", ""], "performance_report is empty"),
    (["--scheduler", ""], "scheduler is empty"),
])
def test_local_cluster_settings_are_checked_before_it_starts(args, expect, tmp_path, capsys):
    assert expect in _refused(capsys, "--out", tmp_path / "o", *args, scheduler=None)


def test_a_dashboard_port_without_a_host_stays_on_the_clusters_host():
    from dcf.config import ClusterConfig

    assert ClusterConfig(dashboard_address=":0").dashboard_address == "127.0.0.1:0"
    assert ClusterConfig(host="10.0.0.5", dashboard_address=":8787").dashboard_address == "10.0.0.5:8787"


def test_wait_for_workers_needs_a_scheduler(tmp_path, capsys):
    rc = main(["--wait-for-workers", "2", "--out", str(tmp_path / "o"), "--no-progress"])
    assert rc == 2 and "--wait-for-workers needs --scheduler" in capsys.readouterr().err


def test_a_test_set_equal_to_the_training_set_is_refused(users_files, tmp_path, capsys):
    data = users_files / "u.data"
    (tmp_path / "same.data").hardlink_to(data)
    for test in (data, tmp_path / "same.data", users_files / "sub" / ".." / "u.data"):
        err = _refused(capsys, "--data", data, "--test", test, "--out", tmp_path / "o")
        assert "is the training data itself" in err


# ---------------------------------------------------------------- 7. strict outputs

def test_strict_json_writes_null_with_the_reason():
    metrics = {"mae": float("nan"), "rmse": float("inf"), "precision@20": np.float64("nan"),
               "counts": {"read": {"rows": np.int64(3)}}, "rating_range": [1.0, float("inf")],
               "ok": 0.5, "flag": np.bool_(True)}
    out = strict_json(metrics)
    text = json.dumps(out, allow_nan=False)  # strict: raises on NaN or Infinity
    back = json.loads(text)
    assert back["mae"] is None and back["rmse"] is None and back["precision@20"] is None
    assert back["rating_range"] == [1.0, None] and back["ok"] == 0.5 and back["flag"] is True
    assert back["counts"]["read"]["rows"] == 3
    assert set(back["undefined"]) == {"mae", "rmse", "precision@20", "rating_range[1]"}
    assert back["undefined"]["rmse"].startswith("infinite: ")
    assert "relevant" in back["undefined"]["precision@20"]


def _strict_load(path: Path) -> dict:
    def refuse(name):
        raise AssertionError(f"{path} holds {name}: not strict JSON")
    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture(scope="module")
def scheduler():
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as lc:
        yield lc.scheduler_address


@pytest.mark.parametrize("ratings", [["1\t1\t5", "2\t2\t3"], ["1\t1\t1e308", "1\t2\t1e308", "2\t1\t1e308"]])
def test_metrics_json_is_strict_json_for_tiny_and_huge_data(ratings, scheduler, tmp_path):
    data = tmp_path / "r.data"
    data.write_text("\n".join(ratings) + "\n")
    test = tmp_path / "t.data"
    test.write_text("1\t2\t4\n2\t1\t1e308\n")
    out = tmp_path / "out"
    assert main(["--scheduler", scheduler, "--data", str(data), "--test", str(test), "--out", str(out),
                 "--no-progress", "--k", "2", "--top-n", "2"]) == 0
    metrics = _strict_load(out / "metrics.json")
    undefined = metrics.get("undefined", {})
    for key, value in metrics.items():
        if isinstance(value, float) or value is None and key in ("mae", "rmse"):
            assert value is None and key in undefined or math.isfinite(value)
    assert undefined, "these data leave some metric undefined"


def test_ranking_metrics_with_no_relevant_test_rating_are_undefined_not_zero(scheduler, tmp_path, capsys):
    # every test rating under the relevance threshold: no user to average over, so the
    # ranking metrics are null with their reason (they were 0.0, as if the lists missed)
    data, test = tmp_path / "r.data", tmp_path / "t.data"
    data.write_text("".join(f"{u}\t{i}\t{1 + (u * i) % 5}\n" for u in range(1, 9) for i in range(1, 7) if (u + i) % 3))
    test.write_text("1\t3\t1\n2\t2\t2\n4\t5\t3\n")
    out = tmp_path / "out"
    assert main(["--scheduler", scheduler, "--data", str(data), "--test", str(test), "--out", str(out),
                 "--no-progress", "--k", "2", "--top-n", "3", "--no-baselines"]) == 0
    metrics = _strict_load(out / "metrics.json")
    assert metrics["ranking_users"] == 0
    for key in ("precision@3", "recall@3", "ndcg@3", "map@3"):
        assert metrics[key] is None, key
    assert "relevant" in metrics["undefined"]["precision@3"]
    assert metrics["mae"] is not None and math.isfinite(metrics["mae"])
    assert "undefined" in capsys.readouterr().out


def test_id_columns_have_one_type_in_every_output(scheduler, tmp_path):
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"user": rng.integers(0, 60, 900).astype(float),
                          "item": rng.integers(0, 30, 900).astype(float),
                          "rating": rng.integers(1, 6, 900).astype(float)}).drop_duplicates(["user", "item"])
    train.to_parquet(tmp_path / "train.parquet", index=False)
    pd.DataFrame({"user": [1.0, 999.5], "item": [2.0, 3.0], "rating": [3.0, 4.0]}).to_parquet(
        tmp_path / "test.parquet", index=False)
    out = tmp_path / "out"
    assert main(["--scheduler", scheduler, "--data", str(tmp_path / "train.parquet"), "--test",
                 str(tmp_path / "test.parquet"), "--out", str(out), "--no-progress", "--k", "5",
                 "--write-neighbours"]) == 0
    preds, recs, nbrs = (pd.read_parquet(out / f"{n}.parquet") for n in ("predictions", "recommendations",
                                                                          "neighbours"))
    for frame, col in ((preds, "user"), (preds, "item"), (recs, "user"), (recs, "item"),
                       (nbrs, "entity"), (nbrs, "neighbour")):
        assert pd.api.types.is_string_dtype(frame[col]), (col, frame[col].dtype)
    assert "1.0" in set(preds["user"]) and "1.0" in set(recs["user"])


def test_integer_ids_stay_integers_unless_a_file_needs_text():
    preds = pd.DataFrame({"user": np.array([1, 2]), "item": np.array([5, 6])})
    recs = pd.DataFrame({"user": np.array([1, 1]), "item": np.array([5, 7])})
    p, r, _ = uniform_ids(preds, recs)
    assert p["user"].dtype == np.int64 and r["item"].dtype == np.int64
    preds = pd.DataFrame({"user": np.array([1, "x"], dtype=object), "item": np.array([5, 2**64], dtype=object)})
    p, r, _ = uniform_ids(preds, recs)
    assert list(p["user"]) == ["1", "x"] and list(r["user"]) == ["1", "1"]  # users: text in both
    assert list(p["item"]) == ["5", str(2**64)] and list(r["item"]) == ["5", "7"]


def test_output_files_read_back_equal_and_encode_every_column_but_the_floats(tmp_path):
    import pyarrow.parquet as pq

    from dcf.predict.topn import because_lists
    from dcf.run.outputs import write_parquet

    frame = pd.DataFrame({"user": np.array([3, 3, 9]), "item": np.array(["a", "b", "a"], dtype=object),
                          "score": [0.5, 0.25, 0.125],
                          "fallback": pd.Categorical(["none", "popular", "none"], categories=["none", "popular"]),
                          "because": because_lists(np.array(["b", "c", "c"], dtype=object), [0.75, 0.25, 1.0],
                                                   np.array([2, 0, 1]))})
    write_parquet(frame, tmp_path / "f.parquet")
    back = pd.read_parquet(tmp_path / "f.parquet")  # the lists as pandas reads any list column: objects
    assert back["because"].dtype == object
    assert [[dict(b) for b in why] for why in back["because"]] == \
        [[{"item": "b", "share": 0.75}, {"item": "c", "share": 0.25}], [], [{"item": "c", "share": 1.0}]]
    pd.testing.assert_frame_equal(back.drop(columns="because").astype({"item": object}),
                                  frame.drop(columns="because").astype({"item": object}))
    chunks = pq.ParquetFile(tmp_path / "f.parquet").metadata.row_group(0)
    dictionary = {chunks.column(i).path_in_schema: chunks.column(i).has_dictionary_page
                  for i in range(chunks.num_columns)}
    assert dictionary == {"user": True, "item": True, "score": False, "fallback": True,
                          "because.list.element.item": True, "because.list.element.share": False}


def _slow_parquet(monkeypatch, delay: float):
    """Make dcf.run.outputs write each Parquet file ``delay`` seconds late; returns the
    event set as the first one starts and the list of ``(file, its folder still there)``
    appended as each is written."""
    import threading

    import dcf.run.outputs as outputs

    started, written = threading.Event(), []
    real = outputs.write_parquet

    def slow_write(frame, path):
        started.set()
        time.sleep(delay)
        real(frame, path)
        written.append((path.name, path.parent.exists()))

    monkeypatch.setattr(outputs, "write_parquet", slow_write)
    return started, written


def test_metrics_are_computed_while_the_files_are_written_and_a_failure_keeps_the_old_output(tmp_path, monkeypatch):
    # the Parquet files are written by a thread while the metrics are computed; a failure of
    # either leaves the earlier output as it was, and the staging folder is removed only
    # once the writing thread has finished (nothing is written into a removed folder)
    from types import SimpleNamespace

    import dcf.run.outputs as outputs

    preds = pd.DataFrame({"user": np.array([1, 2]), "item": np.array([5, 6]), "prediction": [3.5, 4.0]})
    recs = pd.DataFrame({"user": np.array([1, 1]), "rank": np.array([1, 2]), "item": np.array([5, 7]),
                         "score": [2.0, 1.0]})
    stage = SimpleNamespace(seconds={"output": 0.1})
    writing, written = _slow_parquet(monkeypatch, 0.3)

    def metrics():
        assert writing.wait(10), "the files were not being written while the metrics were computed"
        return {"MAE": 0.5}

    out = tmp_path / "out"
    got = outputs.write_outputs(out, preds, recs, metrics, stage)
    assert got == {"MAE": 0.5, "seconds": {"output": 0.1}}
    assert json.loads((out / "metrics.json").read_text())["MAE"] == 0.5
    pd.testing.assert_frame_equal(pd.read_parquet(out / "recommendations.parquet"), recs)
    before = sorted(p.name for p in out.iterdir())

    def failing():
        assert writing.wait(10)
        raise ValueError("metrics failed")

    writing.clear()
    written.clear()
    with pytest.raises(ValueError, match="metrics failed"):
        outputs.write_outputs(out, preds, recs, failing, stage)
    assert written == [("predictions.parquet", True), ("recommendations.parquet", True)]  # before the removal
    assert sorted(p.name for p in out.iterdir()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging folder left

    def broken(frame, path):
        raise OSError("disk full")

    monkeypatch.setattr(outputs, "write_parquet", broken)
    with pytest.raises(OSError, match="disk full"):
        outputs.write_outputs(out, preds, recs, lambda: {"MAE": 0.1}, stage)
    assert json.loads((out / "metrics.json").read_text())["MAE"] == 0.5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_second_interrupt_while_the_files_are_written_still_waits_for_the_writing_thread(tmp_path, monkeypatch):
    # Ctrl-C twice (or a SIGTERM after a SIGINT): the staging folder outlives the writing
    # thread, the interrupt is raised once it has ended, and no staging folder is left
    import signal
    import threading
    from types import SimpleNamespace

    import dcf.run.outputs as outputs

    preds = pd.DataFrame({"user": np.array([1]), "item": np.array([5]), "prediction": [3.5]})
    recs = pd.DataFrame({"user": np.array([1]), "rank": np.array([1]), "item": np.array([7]), "score": [1.0]})
    started, written = _slow_parquet(monkeypatch, 0.4)

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    def metrics():
        assert started.wait(10)
        threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGUSR1)).start()  # arrives during the wait
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGUSR1, interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            outputs.write_outputs(tmp_path / "out", preds, recs, metrics, SimpleNamespace(seconds={}))
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert written == [("predictions.parquet", True), ("recommendations.parquet", True)]
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- 9. bounded waits

def test_a_stalled_cluster_fails_at_the_stall_limit(tmp_path, capsys):
    from distributed import LocalCluster
    from distributed.core import Status

    # memory_limit=0: no memory monitor, so the paused worker stays paused
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, memory_limit=0,
                      dashboard_address=None) as lc:
        worker = next(iter(lc.workers.values()))
        lc.loop.add_callback(lambda: setattr(worker, "status", Status.paused))
        deadline = time.monotonic() + 10
        while lc.scheduler.workers and next(iter(lc.scheduler.workers.values())).status != Status.paused:
            assert time.monotonic() < deadline, "the worker never paused"
            time.sleep(0.05)
        t = time.monotonic()
        rc = main(["--scheduler", lc.scheduler_address, "--data", SMALL, "--stall-timeout", "2",
                   "--out", str(tmp_path / "o"), "--no-progress"])
        took = time.monotonic() - t
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 1 and took < 30
    assert err.startswith("dcf: failed: no task started or finished for 2 s")
    assert "1 of 1 workers are paused" in err and "--stall-timeout" in err
    assert not (tmp_path / "o").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_killing_the_scheduler_is_one_line_and_exit_1(tmp_path):
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen(["dask", "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--dashboard-address", "127.0.0.1:0"], stderr=subprocess.DEVNULL)]
    try:
        procs.append(subprocess.Popen(["dask", "worker", address, "--nthreads", "1", "--host",
                                       "127.0.0.1", "--memory-limit", "2GB"], stderr=subprocess.DEVNULL))
        job = subprocess.Popen([sys.executable, "-m", "dcf.run", "--scheduler", address,
                                "--wait-for-workers", "1", "--data",
                                "synthetic:users=20000,items=1500,ratings=400000,seed=1", "--k", "20",
                                "--out", str(tmp_path / "o")], stderr=subprocess.PIPE, text=True)
        procs.append(job)
        seen, deadline = "", time.monotonic() + 120
        while "neighbours" not in seen and time.monotonic() < deadline and job.poll() is None:
            seen += job.stderr.read(1)
        assert "neighbours" in seen, seen
        procs[0].kill()
        rest = job.stderr.read()
        assert job.wait(timeout=120) == 1
    finally:
        for p in procs:
            p.kill()
            p.wait(timeout=30)
    lines = (seen + rest).strip().splitlines()
    assert lines[-1].startswith(f"dcf: failed: the scheduler at {address} was lost during the run")
    assert not any("Traceback" in ln or "ERROR" in ln or "memory" in ln for ln in lines), lines
    assert not (tmp_path / "o").exists()
