"""Latency of single requests: the documented API against the in-process snapshot (issue 23).

    DCF_DATA=../shared/data python benchmarks/serving.py                     # ML-100K u1.base
    python benchmarks/serving.py --data synthetic:users=100000,items=3900,ratings=690000,seed=0

Fits item cosine (k = 40, ``--neighbourhood``, default rated; ``--ranking``) on a local cluster
(``--workers`` x 1 thread, the default 2) and times, one request at a time, for users, items
and pairs drawn at random (seed 0):

* Dask's own floor on that cluster: ``client.submit(len, [1]).result()``;
* the documented calls on the cluster, ``.compute()`` included: ``recommend(users=[u], n=10)``,
  ``predict(one pair)``, ``neighbours(ids=[i], n=10)`` and ``recommend_for_history(3
  ratings)``, answered from the model the client holds (``dcf.serving.held``; the first
  call's wait, which gathers it, is printed apart), then ``recommend`` and ``predict`` as
  task graphs (``dcf.serving.HELD_BYTES = 0``: what a model too large to hold does);
* the same documented calls in-process (a model fitted with the synchronous scheduler);
* ``Snapshot(model)`` (``dcf.serving``): ``recommend(u, n=10)``, plain and with an allow-list
  of 100 items and ``explain=True``, ``similar(i, n=10)`` and ``predict`` of one pair;
* the service (``python -m dcf.serve`` on the saved model, loopback): ``GET /recommend``,
  ``GET /similar`` and ``GET /predict`` one at a time from this process (``urllib``, a new
  connection each), then its throughput: ``--clients`` threads (8) sending ``/recommend``
  for ``--seconds`` (30), every answer checked to be a 200.

Prints p50 / p99 / max in milliseconds over ``--requests`` calls (after 3 unmeasured ones)
and the snapshot's build time and size. Latency on a shared 2-core VM is noisy: compare
rows of one run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

from _report import environment


def _timed(call, requests: int) -> np.ndarray:
    for _ in range(3):
        call(0)
    out = np.empty(requests)
    for r in range(requests):
        t = time.perf_counter()
        call(r)
        out[r] = (time.perf_counter() - t) * 1e3
    return out


def _service(folder, pick_u, pick_i, args, row) -> None:
    """Latency and throughput of ``python -m dcf.serve folder`` (its own process, killed after)."""
    import urllib.parse
    import urllib.request

    proc = subprocess.Popen([sys.executable, "-m", "dcf.serve", str(folder), "--port", "0"], stdout=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        line = proc.stdout.readline().strip()  # "serving FOLDER on http://127.0.0.1:PORT"
        base = line.rsplit(" ", 1)[-1]
        if not base.startswith("http://"):
            print(f"  service: did not start ({line!r})", flush=True)
            return

        def get(path):
            with urllib.request.urlopen(base + path, timeout=10) as r:
                if r.status != 200:
                    raise RuntimeError(f"{path}: {r.status}")
                return r.read()

        q = urllib.parse.quote
        row("service: GET /recommend?user=u&n=10",
            _timed(lambda r: get(f"/recommend?user={q(str(pick_u[r]))}&n=10"), args.requests))
        row("service: GET /similar?item=i&n=10",
            _timed(lambda r: get(f"/similar?item={q(str(pick_i[r]))}&n=10"), args.requests))
        row("service: GET /predict?user=u&item=i",
            _timed(lambda r: get(f"/predict?user={q(str(pick_u[r]))}&item={q(str(pick_i[r]))}"), args.requests))
        done, failed, stop = [], [], threading.Event()

        def client(c):
            r = c
            while not stop.is_set():
                try:
                    get(f"/recommend?user={q(str(pick_u[r % len(pick_u)]))}&n=10")
                    done.append(1)
                except Exception as exc:  # counted and shown: a benchmark never hides a failure
                    failed.append(repr(exc))
                r += args.clients
        threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(args.clients)]
        t = time.perf_counter()
        for th in threads:
            th.start()
        time.sleep(args.seconds)
        stop.set()
        for th in threads:
            th.join(15)
        wall = time.perf_counter() - t
        print(f"  service: {args.clients} clients for {wall:.1f} s: {len(done):,} answers, {len(done) / wall:,.0f} "
              f"per second, {len(failed)} failed{(': ' + failed[0]) if failed else ''}", flush=True)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(15)


def _documented(model, where, pick_u, pick_i, args, row) -> None:
    """The documented calls for one user, pair or item: from the model held in this process
    (the default for a small model), then ``recommend`` and ``predict`` as task graphs."""
    import dcf.serving

    pairs = [pd.DataFrame({"user": [u], "item": [i]}) for u, i in zip(pick_u, pick_i)]
    ratings = model.matrix_.items.to_raw(np.arange(3))
    history = pd.DataFrame({"user": "new", "item": ratings, "rating": [5.0, 4.0, 3.0]})
    t = time.perf_counter()
    held = dcf.serving.held(model) is not None  # the first small request's wait: the arrays gathered
    print(f"  {where}: model held in this process: {held}, after {time.perf_counter() - t:.2f} s", flush=True)
    row(f"{where}: recommend(users=[u]).compute()",
        _timed(lambda r: model.recommend(users=[pick_u[r]], n=10, ranking=args.ranking).compute(), args.requests))
    row(f"{where}: predict(one pair).compute()", _timed(lambda r: model.predict(pairs[r]).compute(), args.requests))
    row(f"{where}: neighbours(ids=[i], n=10)", _timed(lambda r: model.neighbours(ids=[pick_i[r]], n=10), args.requests))
    row(f"{where}: recommend_for_history(3 ratings)",
        _timed(lambda r: model.recommend_for_history(history, n=10, ranking=args.ranking), args.requests))
    limit, dcf.serving.HELD_BYTES = dcf.serving.HELD_BYTES, 0
    try:
        row(f"{where}, graph: recommend(users=[u]).compute()",
            _timed(lambda r: model.recommend(users=[pick_u[r]], n=10, ranking=args.ranking).compute(),
                   args.cluster_requests))
        row(f"{where}, graph: predict(one pair).compute()",
            _timed(lambda r: model.predict(pairs[r]).compute(), args.cluster_requests))
    finally:
        dcf.serving.HELD_BYTES = limit


def main(argv=None) -> int:
    import dask

    from dcf import ItemKNN, cluster, read_ratings
    from dcf.config import ClusterConfig
    from dcf.datasets import movielens_path, open_source
    from dcf.errors import DataError
    from dcf.serving import Snapshot

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="ml-100k", help="ml-100k (from DCF_DATA) or any dcf source")
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--cluster-requests", type=int, default=50)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--neighbourhood", default="rated")
    p.add_argument("--ranking", default="prediction")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=30.0)
    args = p.parse_args(argv)
    if args.data == "ml-100k":
        try:
            source = str(movielens_path("ml-100k", "u1.base", download=False))
        except DataError as exc:
            print(f"MovieLens 100K: {exc}; set DCF_DATA to the folder holding ml-100k/", file=sys.stderr)
            return 2
    else:
        source = args.data
    print(environment(), flush=True)
    rows = []

    def row(what, ms):
        rows.append((what, *np.percentile(ms, [50, 99]), ms.max()))
        print(f"  {what:<58s} p50 {rows[-1][1]:8.2f}  p99 {rows[-1][2]:8.2f}  max {rows[-1][3]:8.2f} ms", flush=True)

    cfg = ClusterConfig(workers=args.workers, threads_per_worker=1, memory_limit="3GB",
                        dashboard_address="127.0.0.1:0")
    saved = Path(tempfile.mkdtemp(prefix="dcf-serving-"))  # the saved model's folder, removed after the service
    with cluster.connect(cfg):
        data = read_ratings(source) if args.data == "ml-100k" else open_source(source)
        model = ItemKNN(k=40, neighbourhood=args.neighbourhood).fit(data)
        users = np.asarray(model.matrix_.users.index)
        items = np.asarray(model.matrix_.items.index)
        rng = np.random.default_rng(0)
        pick_u = users[rng.integers(0, len(users), max(args.requests, args.cluster_requests))]
        pick_i = items[rng.integers(0, len(items), max(args.requests, args.cluster_requests))]
        print(f"shape   : {source}: {len(users):,} users x {len(items):,} items; item cosine k=40, "
              f"{args.neighbourhood} lists, ranking {args.ranking}, n=10; {args.workers} workers x 1 thread",
              flush=True)
        print(f"command : python benchmarks/serving.py {' '.join(argv if argv is not None else sys.argv[1:])}",
              flush=True)
        client = cluster.current_client()
        row("floor: client.submit(len, [1]).result()",
            _timed(lambda r: client.submit(len, [r], pure=False).result(), args.requests))
        _documented(model, "cluster", pick_u, pick_i, args, row)
        t = time.perf_counter()
        snap = Snapshot(model)
        build = time.perf_counter() - t
        model.save(saved / "model")  # while the cluster holds the fitted blocks
    print(f"snapshot: built in {build:.2f} s, {snap.nbytes / 1e6:.1f} MB held", flush=True)
    allow = items[rng.integers(0, len(items), 100)]
    pairs = [pd.DataFrame({"user": [u], "item": [i]}) for u, i in zip(pick_u, pick_i)]
    row("snapshot: recommend(u)", _timed(lambda r: snap.recommend(pick_u[r], n=10, ranking=args.ranking),
                                          args.requests))
    row("snapshot: recommend(u, items=100 ids, explain)",
        _timed(lambda r: snap.recommend(pick_u[r], n=10, ranking=args.ranking, items=allow,
                                        explain=True), args.requests))
    row("snapshot: similar(i)", _timed(lambda r: snap.similar(pick_i[r], n=10), args.requests))
    row("snapshot: predict(one pair)", _timed(lambda r: snap.predict(pairs[r]), args.requests))
    try:
        _service(saved / "model", pick_u, pick_i, args, row)
    finally:
        shutil.rmtree(saved, ignore_errors=True)
    with dask.config.set(scheduler="sync"):
        local = ItemKNN(k=40, neighbourhood=args.neighbourhood).fit(
            read_ratings(source) if args.data == "ml-100k" else open_source(source))
        _documented(local, "in-process", pick_u, pick_i, args, row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
