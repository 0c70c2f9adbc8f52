"""The bad-input corpus: every case through ``python -m dcf.run`` and through the Python API.

Each case is generated here (no data files in the repository) and states its documented
behaviour: an error naming file, line and problem (exit 2, one line, no traceback), or
rows kept. Line-level problems can instead be skipped on request (``--skip-bad-lines``):
then the run succeeds and metrics.json counts every dropped row, so that
rows read = rows kept + rows rejected, and no output holds a NaN.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field

import dask
import numpy as np
import pandas as pd
import pytest

from dcf import DataError, ItemKNN, read_ratings
from dcf.run import main

# a clean tab-separated body: 30 users x 20 items, 400 ratings, lines 1..400
GOOD = "".join(f"{u}\t{i}\t{1 + (u * 7 + i) % 5}\n"
               for u in range(1, 31) for i in range(1, 21) if (u + i) % 3)
N_GOOD = GOOD.count("\n")
CSV = "user,item,rating\n" + GOOD.replace("\t", ",")


@dataclass
class Case:
    """One corpus entry.

    error: (line or None, regex) the default run must fail with; None = it succeeds.
    skipped: with --skip-bad-lines, how many rows are rejected (None: still an error).
    counts: report counts the successful run must show.
    """

    name: str
    file: str
    content: bytes | None
    error: tuple | None = None
    skipped: int | None = None
    counts: dict = field(default_factory=dict)
    args: tuple = ()


def _b(text: str) -> bytes:
    return text.encode("utf-8")


def _gz(data: bytes) -> bytes:
    return gzip.compress(data)


CASES = [
    Case("too few fields", "few.data", _b(GOOD + "3\t40\n"),
         (N_GOOD + 1, "expected 3 fields, saw 2"), 1),
    Case("too many fields", "many.data", _b(GOOD + "3\t40\t4\t1\t9\n"),
         (N_GOOD + 1, "expected 3 fields, saw 5"), 1),
    Case("non-numeric rating", "word.data", _b(GOOD + "3\t40\tfive\n"),
         (N_GOOD + 1, "rating is not a number: 'five'"), 1),
    Case("NaN rating", "nan.data", _b(GOOD + "3\t40\tnan\n"), (N_GOOD + 1, "rating is NaN"), 1),
    Case("infinite rating", "inf.data", _b(GOOD + "3\t40\t-inf\n"),
         (N_GOOD + 1, "rating is infinite"), 1),
    Case("zero rating", "zero.data", _b(GOOD + "3\t40\t0\n"),
         (N_GOOD + 1, "rating must be positive: '0'"), 1),
    Case("negative rating", "neg.data", _b("3\t40\t-2\n" + GOOD),
         (1, "rating must be positive: '-2'"), 1),
    Case("outside the declared scale", "scale.data", _b(GOOD + "3\t40\t7\n" + "4\t40\t0.5\n"),
         (N_GOOD + 1, r"outside the declared scale \[1, 5\]: '7'"), 2,
         args=("--rating-scale", "1", "5")),
    Case("empty rating field", "blankfield.data", _b(GOOD + "3\t40\t\n"),
         (N_GOOD + 1, "empty rating"), 1, {"missing": 1}),
    Case("conflicting duplicate", "conflict.data", _b(GOOD + "1\t1\t5\n"),
         (N_GOOD + 1, r"conflicting ratings for user 1 item 1: 4 \(line 1\) and 5 \(line 401\)"),
         1, {"conflicts": 1}),
    Case("exact duplicate", "dup.data", _b(GOOD + GOOD.splitlines(True)[5]), None, None),
    Case("mixed delimiter", "mixed.data", _b(GOOD + "3,40,4\n"),
         (N_GOOD + 1, "expected 3 fields, saw 1"), 1),
    Case("unknown delimiter", "semi.txt", _b(GOOD.replace("\t", ";")),
         (1, "cannot tell the format from the first line")),
    Case("empty file", "empty.data", b"", (None, "the file is empty")),
    Case("header only", "header.csv", b"user,item,rating\n", (None, "header but no ratings")),
    Case("binary file", "binary.data", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", (3, "binary file")),
    Case("latin-1 encoding", "latin1.csv", CSV.encode() + "caf\u00e9,2,4\n".encode("latin-1"),
         (N_GOOD + 2, "is not valid UTF-8 text")),
    Case("corrupt gzip", "cut.data.gz", _gz(_b(GOOD))[:100],
         (None, r"cannot be read: the compressed stream ends early \(truncated file\?\)")),
    Case("missing file", "absent.data", None, (None, "no such file or folder")),
    Case("folder without ratings", "folder", None, (None, "folder without")),
    Case("BOM", "bom.csv", _b("\ufeff" + CSV), None, None),
    Case("CRLF and trailing blank lines", "crlf.data", _b(GOOD.replace("\n", "\r\n") + "\r\n\n\n"),
         None, None, {"blank": 3}),
    Case("very large ids", "big.data",
         _b(GOOD + "123456789012345678901234567890\t1\t4\n18446744073709551615\t2\t3\n"), None, None),
    Case("string ids with spaces and unicode", "names.csv",
         _b(CSV.replace("\n1,", "\nJosé Ñ,") + "名前 x,2,4\n\"Smith, J\",3,5\n"), None, None),
    Case("gzip-compressed", "ok.data.gz", _gz(_b(GOOD)), None, None),
]


def _materialise(case: Case, folder) -> str:
    path = folder / case.file
    if case.file == "folder":
        path.mkdir()
        (path / "notes.txt").write_text("not ratings\n")
    elif case.content is not None:
        path.write_bytes(case.content)
    return str(path)


@pytest.fixture(scope="module")
def scheduler():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, memory_limit="1GB", processes=True,
                      host="127.0.0.1", dashboard_address="127.0.0.1:0") as cluster:
        yield cluster.scheduler_address


def _cli(scheduler, capsys, path, out, *extra):
    capsys.readouterr()
    rc = main(["--scheduler", scheduler, "--no-progress", "--k", "5", "--top-n", "5",
               "--data", path, "--out", str(out), *extra])
    return rc, capsys.readouterr().err


def test_the_corpus_has_at_least_20_distinct_cases():
    assert len({c.name for c in CASES}) == len(CASES) >= 20


def _check_outputs(out, expect_rejected: int, counts: dict):
    metrics = json.loads((out / "metrics.json").read_text())
    read = metrics["counts"]["read"]
    preds = pd.read_parquet(out / "predictions.parquet")
    recs = pd.read_parquet(out / "recommendations.parquet")
    assert not preds.isna().any().any() and not recs.isna().any().any()
    # every line read is kept or rejected, and every kept row is trained on or tested
    assert read["lines"] == read["rows"] + read["missing"] + read["skipped"]
    assert read["missing"] + read["skipped"] + read["conflicts"] == expect_rejected
    assert read["rows"] == (metrics["counts"]["train_ratings"] + read["duplicates"]
                            + read["conflicts"] + metrics["counts"]["test_pairs"])
    for key, value in counts.items():
        assert read[key] == value, key
    return metrics


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_cli(case, scheduler, tmp_path, capsys):
    path = _materialise(case, tmp_path)
    out = tmp_path / "out"
    rc, err = _cli(scheduler, capsys, path, out, *case.args)
    assert "Traceback" not in err
    if case.error is None:
        assert rc == 0, err
        _check_outputs(out, 0, case.counts)
        return
    line, problem = case.error
    assert rc == 2 and not out.exists()
    last = err.strip().splitlines()[-1]
    where = path if line is None else f"{path}:{line}"
    assert last.startswith(f"dcf: error: {where}: "), last
    assert re.search(problem, last), last
    rc, err = _cli(scheduler, capsys, path, out, "--skip-bad-lines", *case.args)
    if case.skipped is None:  # a file-level problem: skipping lines cannot help
        assert rc == 2 and re.search(problem, err)
        return
    assert rc == 0, err
    metrics = _check_outputs(out, case.skipped, case.counts)
    assert metrics["counts"]["read"]["lines"] == N_GOOD + case.skipped


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_api(case, tmp_path):
    path = _materialise(case, tmp_path)
    scale = tuple(float(v) for v in case.args[1:3]) if case.args else None
    with dask.config.set(scheduler="sync"):
        if case.error is not None:
            line, problem = case.error
            with pytest.raises(DataError, match=problem) as err:
                model = ItemKNN(k=5).fit(read_ratings(path, rating_scale=scale))
            assert err.value.line == line
            assert err.value.path.endswith(case.file)
            if case.skipped is None:
                return
        data = read_ratings(path, rating_scale=scale, on_bad_lines="skip")
        model = ItemKNN(k=5, on_bad_lines="skip").fit(data)
        report = dask.compute(model.matrix_.report)[0]
        rejected = report["missing"] + report["skipped"] + report["conflicts"]
        assert rejected == (case.skipped or 0)
        assert report["stored"] + report["duplicates"] + report["conflicts"] == report["rows"]
        pairs = pd.DataFrame({"user": model.matrix_.users.to_raw(np.arange(5)),
                              "item": model.matrix_.items.to_raw(np.arange(5))})
        pred = model.predict(pairs).compute()
        assert len(pred) == 5 and pred["prediction"].notna().all()


def test_ids_come_back_exactly(scheduler, tmp_path, capsys):
    """Huge integer ids and unicode names survive to the outputs unchanged."""
    by_name = {c.name: c for c in CASES}
    for name, wanted in (("very large ids", {"123456789012345678901234567890",
                                             "18446744073709551615"}),
                         ("string ids with spaces and unicode", {"José Ñ", "名前 x", "Smith, J"})):
        path = _materialise(by_name[name], tmp_path)
        out = tmp_path / f"out-{len(wanted)}-{name[:4]}"
        rc, err = _cli(scheduler, capsys, path, out, "--test-fraction", "0.3")
        assert rc == 0, err
        seen = set()
        for f in ("recommendations", "predictions"):
            seen |= set(pd.read_parquet(out / f"{f}.parquet")["user"].astype(str))
        assert wanted <= seen


def test_unknown_users_and_items_in_the_test_set(scheduler, tmp_path, capsys):
    train, test = tmp_path / "train.data", tmp_path / "test.data"
    train.write_text(GOOD)
    test.write_text("1\t1\t4\n999\t1\t3\n1\t999\t2\n888\t777\t5\n")
    out = tmp_path / "out"
    rc, err = _cli(scheduler, capsys, str(train), out, "--test", str(test))
    assert rc == 0, err
    preds = pd.read_parquet(out / "predictions.parquet")
    assert len(preds) == 4 and preds["prediction"].notna().all()
    fell_back = preds.set_index(preds["user"].astype(str) + "/" + preds["item"].astype(str))["fallback"]
    assert fell_back["999/1"] != "none" and fell_back["1/999"] != "none"
    assert fell_back["888/777"] == "global_mean"


def test_unreadable_file(scheduler, tmp_path, capsys, monkeypatch):
    path = tmp_path / "secret.data"
    path.write_text(GOOD)
    path.chmod(0)
    if os.geteuid() == 0:  # root reads it anyway: make opening it fail as it would for others
        import builtins

        real_open = builtins.open

        def refuse(file, *args, **kw):
            if os.fspath(file) == str(path):
                raise PermissionError(13, "Permission denied", str(path))
            return real_open(file, *args, **kw)

        monkeypatch.setattr(builtins, "open", refuse)
    rc, err = _cli(scheduler, capsys, str(path), tmp_path / "out")
    assert rc == 2 and "permission" in err.lower() and str(path) in err
    assert err.strip().splitlines()[-1] == f"dcf: error: {path}: permission denied"


def _truncated_gzip(path):
    rng = np.random.default_rng(0)
    text = "".join(f"{u}\t{i}\t{r}\n" for u, i, r in zip(rng.integers(1, 10**6, 100_000),
                                                        rng.integers(1, 10**5, 100_000),
                                                        rng.integers(1, 6, 100_000)))
    packed = gzip.compress(text.encode())
    path.write_bytes(packed[:len(packed) // 2])


def _bool_ratings(path):
    pd.DataFrame({"user": [1, 2], "item": [1, 2], "rating": [True, False]}).to_parquet(path)


@pytest.mark.parametrize("name,make,problem", [
    ("fifo.data", os.mkfifo, "is a FIFO"),
    ("cut.data.gz", _truncated_gzip, r"cannot be read: the compressed stream ends early \(truncated"),
    ("bool.parquet", _bool_ratings, "rating column is boolean, expected numbers"),
], ids=["fifo", "truncated gzip (read task)", "boolean Parquet ratings (read task)"])
def test_inputs_that_hang_or_lie_through_the_command(tmp_path, name, make, problem):
    """``python -m dcf.run``: exit 2 quickly, one line naming the file."""
    path = tmp_path / name
    make(path)
    proc = subprocess.run([sys.executable, "-m", "dcf.run", "--data", str(path), "--no-progress",
                           "--workers", "1", "--dashboard-address", "127.0.0.1:0",
                           "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"dcf: error: {path}: "), last
    assert re.search(problem, last), last
    assert "Traceback" not in proc.stderr and not (tmp_path / "out").exists()


def test_python_m_dcf_run_prints_one_line_without_worker_tracebacks(tmp_path):
    """A worker-side DataError through the real command: one line on stderr."""
    path = tmp_path / "word.data"
    path.write_text(GOOD + "3\t40\tfive\n")
    proc = subprocess.run([sys.executable, "-m", "dcf.run", "--data", str(path), "--no-progress",
                           "--workers", "1", "--dashboard-address", "127.0.0.1:0",
                           "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines[-1].startswith(f"dcf: error: {path}:{N_GOOD + 1}: rating is not a number")
    assert not any("Traceback" in ln or "Compute Failed" in ln for ln in lines), proc.stderr
