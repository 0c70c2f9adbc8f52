"""Latency of single requests: the documented API against the in-process snapshot (issue 23).

    DCF_DATA=../shared/data python benchmarks/serving.py                     # ML-100K u1.base
    python benchmarks/serving.py --data synthetic:users=100000,items=3900,ratings=690000,seed=0

Fits item cosine (k = 40, ``--neighbourhood``, default rated; ``--ranking``) on a local cluster
(``--workers`` x 1 thread, the default 2) and times, one request at a time, for users and
items drawn at random (seed 0):

* ``recommend(users=[u], n=10).compute()`` on the cluster (the documented call);
* the same with the synchronous scheduler, no cluster (``in-process``);
* ``Snapshot(model).recommend(u, n=10)`` (``dcf.serving``: the arrays held in this process,
  the Top-N task's own function on one user), plain and with an allow-list of 100 items and
  ``explain=True``;
* ``neighbours(ids=[i], n=10)`` and ``Snapshot.similar(i, n=10)``.

Prints p50 / p99 / max in milliseconds over ``--requests`` calls (after 3 unmeasured ones)
and the snapshot's build time and size. Latency on a shared 2-core VM is noisy: compare
rows of one run.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

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
        row("cluster: recommend(users=[u]).compute()",
            _timed(lambda r: model.recommend(users=[pick_u[r]], n=10, ranking=args.ranking).compute(),
                   args.cluster_requests))
        row("cluster: neighbours(ids=[i])",
            _timed(lambda r: model.neighbours(ids=[pick_i[r]], n=10), args.cluster_requests))
        t = time.perf_counter()
        snap = Snapshot(model)
        build = time.perf_counter() - t
    print(f"snapshot: built in {build:.2f} s, {snap.nbytes / 1e6:.1f} MB held", flush=True)
    allow = items[rng.integers(0, len(items), 100)]
    row("snapshot: recommend(u)", _timed(lambda r: snap.recommend(pick_u[r], n=10, ranking=args.ranking),
                                          args.requests))
    row("snapshot: recommend(u, items=100 ids, explain)",
        _timed(lambda r: snap.recommend(pick_u[r], n=10, ranking=args.ranking, items=allow,
                                        explain=True), args.requests))
    row("snapshot: similar(i)", _timed(lambda r: snap.similar(pick_i[r], n=10), args.requests))
    with dask.config.set(scheduler="sync"):
        local = ItemKNN(k=40, neighbourhood=args.neighbourhood).fit(
            read_ratings(source) if args.data == "ml-100k" else open_source(source))
        row("in-process: recommend(users=[u]).compute()",
            _timed(lambda r: local.recommend(users=[pick_u[r]], n=10, ranking=args.ranking).compute(),
                   args.cluster_requests))
        row("in-process: neighbours(ids=[i])",
            _timed(lambda r: local.neighbours(ids=[pick_i[r]], n=10), args.cluster_requests))
    return 0


if __name__ == "__main__":
    sys.exit(main())
