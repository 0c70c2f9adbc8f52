"""The kernels compiled once per installation (dcf.compile): the stamp that says so, the
command that compiles them, and a later process that loads every kernel instead."""

import json
import os
import shutil
import subprocess
import sys

import pytest

import dcf.compile as compiled
from dcf.compile import fingerprint, mark_ready, ready, stamp_dir


def test_ready_follows_the_stamp_the_kernel_sources_and_numbas_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("DCF_CACHE", str(tmp_path / "cache"))
    assert stamp_dir() == tmp_path / "cache" / "compiled"
    assert not ready()
    stamp = mark_ready()
    assert ready() and stamp.parent == stamp_dir() and stamp.name == fingerprint()
    assert [f.name for f in stamp_dir().iterdir()] == [stamp.name]  # no temporary file left
    # another numba setting compiles other code
    monkeypatch.setenv("NUMBA_OPT", "1")
    assert not ready()
    monkeypatch.delenv("NUMBA_OPT")
    assert ready()
    # an edited kernel source (what numba's cache checks: size and time) is not compiled
    copy = tmp_path / "kernels"
    shutil.copytree(compiled.KERNELS, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(compiled, "KERNELS", copy)
    same = fingerprint()
    (copy / "rows.py").write_text((copy / "rows.py").read_text() + "\n")
    assert fingerprint() != same


def test_a_stamp_that_cannot_be_written_raises_and_leaves_nothing(tmp_path, monkeypatch):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("DCF_CACHE", str(blocked))
    with pytest.raises(OSError):
        mark_ready()
    assert blocked.read_text() == "not a folder"


def test_the_check_imports_neither_numba_nor_dask():
    # the test session and the batch job ask before anything heavy is imported (0.4 s
    # against 3.4 s when the command imported the estimator to answer)
    probe = subprocess.run([sys.executable, "-c",
                            "import sys\n"
                            "from dcf.compile.__main__ import main\n"
                            "main(['--check', '--quiet'])\n"
                            "print(sorted(m for m in ('numba', 'dask', 'pandas', 'dcf.model') if m in sys.modules))"],
                           capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "[]"


def _python(code_or_args, env, **kw):
    args = ["-c", code_or_args] if isinstance(code_or_args, str) else code_or_args
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=540, **kw)


@pytest.mark.slow
def test_the_command_compiles_every_kernel_once_and_a_later_process_only_loads_them(tmp_path):
    env = {**os.environ, "DCF_CACHE": str(tmp_path / "cache")}
    check = _python(["-m", "dcf.compile", "--check"], env)
    assert check.returncode == 1 and "not compiled" in check.stdout
    done = _python(["-m", "dcf.compile"], env)
    assert done.returncode == 0, done.stderr
    assert "compiled" in done.stdout and str(tmp_path / "cache" / "compiled") in done.stdout
    assert _python(["-m", "dcf.compile", "--check"], env).returncode == 0
    again = _python(["-m", "dcf.compile"], env)  # recorded: nothing to do
    assert again.returncode == 0 and "are compiled" in again.stdout
    # a new process running the same fits compiles nothing: every kernel signature it
    # reaches comes from numba's on-disk cache (a kernel without cache=True would fail here)
    probe = _python(
        "import json\n"
        "from dcf.compile.exercise import dispatchers, exercise\n"
        "n = exercise()\n"
        "print(json.dumps({'signatures': n, 'missed': sorted(\n"
        "    f'{name} {sig}' for name, d in dispatchers().items() for sig in d.signatures\n"
        "    if d.stats.cache_hits[sig] == 0)}))\n", env)
    assert probe.returncode == 0, probe.stderr
    seen = json.loads(probe.stdout.strip().splitlines()[-1])
    assert seen["signatures"] >= 10 and seen["missed"] == []


@pytest.mark.slow
def test_jobs_on_a_cluster_after_the_command_compile_nothing(tmp_path):
    # in a fresh numba cache: after `python -m dcf.compile`, batch jobs on the default
    # cluster (two worker processes: a task's inputs from the other worker arrive
    # read-only, which numba compiles separately) save no compiled code. Before, the
    # first job compiled pair scoring for read-only pairs, the events' summing, and the
    # explanations' loop inside its stages (5-6 s each time)
    env = {**os.environ, "DCF_CACHE": str(tmp_path / "stamp"), "NUMBA_CACHE_DIR": str(tmp_path / "numba"),
           "NUMBA_DEBUG_CACHE": "1"}
    done = _python(["-m", "dcf.compile", "--quiet"], env)
    assert done.returncode == 0, done.stderr
    data = "synthetic:users=2000,items=300,ratings=20000,seed=1"
    for i, options in enumerate([[], ["--explain", "--ranking", "sum", "--neighbourhood", "global",
                                      "--similarity", "full-cosine"],
                                 ["--prediction", "mean-centred", "--neighbourhood", "global"]]):
        job = _python(["-m", "dcf.run", "--data", data, "--out", str(tmp_path / f"out{i}"), "--no-progress",
                       "--dashboard-address", "127.0.0.1:0", *options], env)
        assert job.returncode == 0, job.stderr[-2000:]
        assert "[cache] index loaded" in job.stderr + job.stdout  # the workers' cache lines do reach us
        saved = sorted({line.rsplit("/", 1)[-1] for line in (job.stderr + job.stdout).splitlines()
                        if "[cache] data saved" in line})
        assert saved == [], (options, saved)
