import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dcf.compile import mark_ready

ROOT = Path(__file__).resolve().parents[1]
# Tests read MovieLens from ../shared/data unless DCF_DATA says otherwise; they never download.
os.environ.setdefault("DCF_DATA", str((ROOT.parent / "shared" / "data").resolve()))
# The kernels are compiled once, before any test, as a user does after installing
# (``python -m dcf.compile``; its stamp where the user's DCF_CACHE or cache folder says, so
# a later session only checks it): on a fresh installation (CI) the first tests' workers
# otherwise each compiled the same kernels at once, on 2 cores (the first cluster test
# took 60 s against 10 s, the warm-up test 37 s against 5 s).  A compile that fails or
# runs out of time only costs time: the tests' processes compile what they use.
try:
    subprocess.run([sys.executable, "-m", "dcf.compile", "--quiet"], stdin=subprocess.DEVNULL, timeout=900,
                   check=False)
except subprocess.TimeoutExpired:
    print("conftest: python -m dcf.compile ran past 900 s; the tests compile what they use", file=sys.stderr)
# The compiled kernels' stamp (dcf.compile) lives in a folder of the test session's own,
# recorded as done: jobs started by tests do not run the compile first (their workers load
# or compile what they use, as in a session without dcf.compile); the tests of the
# compile itself (tests/test_compile.py, the default-cluster job in tests/test_run.py)
# point DCF_CACHE at empty folders of their own.
_CACHE = tempfile.mkdtemp(prefix="dcf-test-cache-")
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
os.environ["DCF_CACHE"] = _CACHE
mark_ready()


def random_ratings(seed, n_users=30, n_items=20, density=0.3, scale=(1, 5), half=False):
    """A small random ratings frame (every user and item appears at least once)."""
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < density
    mask[np.arange(n_users), rng.integers(0, n_items, n_users)] = True
    mask[rng.integers(0, n_users, n_items), np.arange(n_items)] = True
    u, i = np.nonzero(mask)
    step = 0.5 if half else 1.0
    r = rng.choice(np.arange(scale[0], scale[1] + step / 2, step), size=len(u))
    return pd.DataFrame({"user": u + 100, "item": i + 500, "rating": r.astype(float)})


@pytest.fixture
def sync():
    """Dask's synchronous scheduler for the test (stage modules use it for speed; a test
    that needs a cluster asks for ``dist_client`` as well, which takes precedence in its
    own ``dask.config.set``)."""
    import dask

    with dask.config.set(scheduler="sync"):
        yield


@pytest.fixture(scope="session")
def ml100k():
    folder = Path(os.environ["DCF_DATA"]) / "ml-100k"
    if not (folder / "u1.base").exists():
        pytest.skip(f"MovieLens 100K not found in {folder} (set DCF_DATA to the folder holding ml-100k/)")
    return folder


@pytest.fixture(scope="session")
def dist_cluster():
    """An in-process distributed cluster, 2 workers x 1 thread, started once."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        yield cluster


@pytest.fixture
def dist_client(dist_cluster):
    """A client of that cluster, the default client only during the test that asks for it.

    A session-long client stayed the default after its first test, so every later test's
    ``compute()`` went through the distributed scheduler: 4x slower (measured on
    tests/test_refresh.py), and a test behaved differently alone than in the suite."""
    from distributed import Client

    with Client(dist_cluster) as client:
        yield client


@pytest.fixture(params=["held", "graph"])
def small_requests(request, monkeypatch):
    """How a fitted model answers a request for a few users, pairs or items: from the
    model held in this process (``held``, what small models do), or as a task graph over
    its blocks (``graph``, what a model over ``dcf.serving.HELD_BYTES`` does)."""
    import dcf.serving

    if request.param == "graph":
        monkeypatch.setattr(dcf.serving, "HELD_BYTES", 0)
    return request.param


@pytest.fixture(scope="module")
def one_worker_scheduler():
    """The address of a local cluster of one worker process (2 threads) for a module's
    commands (``python -m dcf.evaluate``, ``python -m dcf.tune`` run in-process)."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, memory_limit="1GB", processes=True,
                      host="127.0.0.1", dashboard_address="127.0.0.1:0") as cluster:
        yield cluster.scheduler_address
