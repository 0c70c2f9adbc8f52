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


def test_ready_needs_the_cache_folder_the_stamp_names(tmp_path, monkeypatch):
    # a user (or a cleaner) deleting numba's folder after the compile: the job compiles
    # again, with its notice, instead of each worker compiling in silence
    monkeypatch.setenv("DCF_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "numba" / "dcf-kernels-x"
    (folder / "kernels_abc").mkdir(parents=True)
    index = folder / "kernels_abc" / "rows.norms_topk-1.py311.nbi"
    index.write_bytes(b"")
    mark_ready(folder)
    assert ready()
    index.unlink()
    assert not ready()  # emptied
    shutil.rmtree(folder)
    assert not ready()  # gone
    mark_ready()  # no folder known (numba chose its own): the stamp alone
    assert ready()


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


def test_the_kernels_cache_folder_follows_every_kernel_source(tmp_path, monkeypatch):
    import numba

    from dcf.kernels import cache, select
    copy = tmp_path / "kernels"
    shutil.copytree(cache.SOURCES, copy, ignore=shutil.ignore_patterns("__pycache__"))
    same = cache.sources_stamp(copy)
    assert cache.sources_stamp(copy) == same and len(same) == 16
    (copy / "select.py").write_text((copy / "select.py").read_text() + "\n")  # a helper, not the caller's file
    assert cache.sources_stamp(copy) != same
    # under the user's NUMBA_CACHE_DIR, else dcf's cache folder; numba's own choice where unwritable
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "numba"))
    assert cache.cache_folder() == tmp_path / "numba" / f"dcf-kernels-{cache.sources_stamp()}"
    monkeypatch.delenv("NUMBA_CACHE_DIR")
    monkeypatch.setenv("DCF_CACHE", str(tmp_path / "dcf"))
    assert cache.cache_folder().parent == tmp_path / "dcf" / "numba"
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("DCF_CACHE", str(blocked))
    assert cache.cache_folder() is None and blocked.read_text() == "not a folder"
    with cache.kernel_cache() as folder:
        assert folder is None
    # this session's kernels keep their code in their folder; numba's setting is its own again
    assert f"dcf-kernels-{cache.sources_stamp()}" in select.best_k._cache._cache_path
    assert numba.config.CACHE_DIR == os.environ.get("NUMBA_CACHE_DIR", "")


@pytest.mark.slow
def test_a_changed_helper_is_compiled_again_in_the_kernels_that_call_it(tmp_path):
    # numba's cache checks only the file defining a function: rows.norms_topk kept the old
    # code of select.best_k after a change to select.py alone (a checkout's tests then ran
    # the old helper). A copy of the package, run, its helper made to keep one tied
    # candidate too few, run again: the second run sees the change
    src = tmp_path / "src"
    shutil.copytree(compiled.KERNELS.parent, src / "dcf", ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env.update(PYTHONPATH=str(src), DCF_CACHE=str(tmp_path / "cache"))
    code = ("import numpy as np, scipy.sparse as sp\n"
            "from dcf import kernels\n"
            "kernels.rows.TRACK_BELOW = float('inf')\n"  # the touched columns tracked, their ties cut by best_k
            "X = sp.csr_matrix(np.ones((12, 6)))\n"  # every pair co-rated by all six: all tied
            "chosen = kernels.SimilaritySettings('cooccurrence')\n"
            "ones = np.ones(12)\n"
            "_, idx, _ = kernels.similarity_rows(X, sp.csr_matrix(X.T), 0, chosen, k=3, norms_a=ones, norms=ones)\n"
            "print(kernels.__file__, idx[0].tolist())\n")
    first = _python(code, env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.split() == [str(src / "dcf" / "kernels" / "__init__.py"), "[1,", "2,", "3]"]
    select = src / "dcf" / "kernels" / "select.py"
    text = select.read_text()
    assert text.count("g += y <= last") == 1
    select.write_text(text.replace("g += y <= last", "g += y < last"))
    second = _python(code, env)
    assert second.returncode == 0, second.stderr
    assert second.stdout.split()[1:] == ["[1,", "2,", "-1]"]


def _aged(path, days):
    t = path.stat().st_mtime - days * 86400
    os.utime(path, (t, t))


def test_prune_removes_only_unused_kernel_folders_of_other_sources(tmp_path, monkeypatch):
    # what piled up with every upgrade or edit of the kernels (27 folders, 84 MB on the
    # development machine): removed after 30 days unused; nothing else in the folder
    from dcf.kernels import cache
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    current = cache.cache_folder()
    old, young = tmp_path / "dcf-kernels-0123456789abcdef", tmp_path / "dcf-kernels-fedcba9876543210"
    for folder in (old, young):
        (folder / "sub").mkdir(parents=True)
        (folder / "sub" / "k.nbi").write_bytes(b"x" * 1000)
    others = [tmp_path / "dcf-kernels-notes", tmp_path / "dcf-kernels-0123456789ABCDEF", tmp_path / "numba-own"]
    for folder in others:
        folder.mkdir()
    elsewhere = tmp_path.parent / f"{tmp_path.name}-kept"
    elsewhere.mkdir()
    (elsewhere / "data").write_text("someone's")
    link = tmp_path / "dcf-kernels-aaaaaaaaaaaaaaaa"
    link.symlink_to(elsewhere, target_is_directory=True)
    for path in (old, current, *others):
        _aged(path, 45)
    _aged(young, 10)
    removed = cache.prune()
    assert removed == [(old, 1000)]
    assert not old.exists() and young.is_dir() and current.is_dir() and all(p.is_dir() for p in others)
    assert link.is_symlink() and (elsewhere / "data").read_text() == "someone's"
    # the folder a process defines its kernels in is marked used then
    _aged(current, 45)
    assert cache.cache_folder() == current and cache.prune() == []
    # every one but the current, at once (--clean)
    assert [p for p, _ in cache.prune(None)] == [young]
    assert current.is_dir() and all(p.is_dir() for p in others) and (elsewhere / "data").exists()
    from dcf.compile import __main__ as command
    assert command.UNUSED_DAYS == cache.UNUSED_DAYS


def test_clean_removes_earlier_kernels_without_a_compile(tmp_path):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba"), "DCF_CACHE": str(tmp_path / "dcf")}
    earlier = tmp_path / "numba" / "dcf-kernels-0123456789abcdef"
    earlier.mkdir(parents=True)
    (earlier / "k.nbi").write_bytes(b"x" * 2**20)
    mark = _python(["-c", "from dcf.compile import mark_ready; mark_ready()"], env)  # as if compiled here
    assert mark.returncode == 0, mark.stderr
    out = _python(["-m", "dcf.compile", "--clean"], env)
    assert out.returncode == 0, out.stderr
    assert not earlier.exists()
    assert "removed 1 folder(s) of earlier kernels (1 MB)" in out.stdout
