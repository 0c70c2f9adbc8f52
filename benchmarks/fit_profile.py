"""Where a fit's time goes: Dask's task stream of one fresh ``KNN.fit``, summarised.

    python benchmarks/fit_profile.py --data <Parquet folder or source>   # e.g. the 20M set

Builds and persists the matrix, then fits once (global lists, k=50, full cosine by
default) inside ``get_task_stream`` and prints, per task-name prefix, the count, summed
seconds and first/last time after the fit started, each worker's busy seconds, and the
similarity tasks per worker in start order (``index:seconds@start``), which shows idle
workers and gaps between tasks.  ``--repeat N`` fits N times on the same matrix and
prints every fit's time (the stream is of the last): for comparing two commits, run
each in turn, alternating, on this noisy shared host.
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
import time

import numpy as np

from _report import environment


def main(argv=None) -> int:
    from distributed import get_task_stream, wait

    from dcf import cluster, experiments
    from dcf.config import ClusterConfig
    from dcf.datasets import open_source
    from dcf.matrix import build_matrix
    from dcf.model import KNN

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="synthetic")
    p.add_argument("--k", type=int, default=50)
    p.add_argument("--similarity", default="full-cosine")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads-per-worker", type=int, default=1)
    p.add_argument("--memory-limit", default="3GB")
    p.add_argument("--repeat", type=int, default=1,
                   help="fit this many times on the same persisted matrix (A/B runs); the stream is of the last")
    args = p.parse_args(argv)
    print(environment(), flush=True)
    cfg = ClusterConfig(workers=args.workers, threads_per_worker=args.threads_per_worker,
                        memory_limit=args.memory_limit, dashboard_address="127.0.0.1:0")
    with cluster.connect(cfg) as client:
        warm = KNN(k=5, neighbourhood="global", similarity=args.similarity).fit(
            open_source("synthetic:users=2000,items=300,ratings=20000"))
        del warm
        experiments.warm_up(client, [args.similarity])  # every kernel loaded in every worker
        model = KNN(k=args.k, neighbourhood="global", similarity=args.similarity)
        data = open_source(args.data)
        matrix = build_matrix(data.parts, source=args.data, min_blocks=2 * args.workers * args.threads_per_worker,
                              entity_block_limit=model.entity_block_limit())
        matrix.persist()
        wait([matrix.by_user, matrix.by_item, matrix.user_sum, matrix.user_count, matrix.item_sum,
              matrix.item_count, matrix.report])
        times = []
        for _ in range(args.repeat - 1):  # earlier fits: timed only, then released
            t0 = time.perf_counter()
            model.fit(matrix)
            wait([model.neighbours_.W])
            times.append(time.perf_counter() - t0)
            model = KNN(k=args.k, neighbourhood="global", similarity=args.similarity)
            time.sleep(1.0)  # the released keys are forgotten before the next fit
        with get_task_stream(client) as ts:
            t0, w0 = time.perf_counter(), time.time()
            model.fit(matrix)
            wait([model.neighbours_.W])
            took = time.perf_counter() - t0
    times.append(took)
    print(f"fit {took:.2f} s ({model.method_}, {matrix.shape[0]:,} x {matrix.shape[1]:,})")
    if len(times) > 1:
        print("fits:", " ".join(f"{t:.2f}" for t in times), f"median {float(np.median(times)):.2f} s")
    rows = sorted((ss["start"] - w0, ss["stop"] - w0, ss["action"], str(d["key"] if isinstance(d["key"], str)
                                                                         else d["key"][0]), d["worker"])
                  for d in ts.data for ss in d["startstops"])
    agg = collections.defaultdict(lambda: [0, 0.0, float("inf"), 0.0])
    busy = collections.Counter()
    for start, stop, action, key, worker in rows:
        g = agg[re.sub(r"-[0-9a-f]{32}.*", "", key) + "/" + action]
        g[0] += 1
        g[1] += stop - start
        g[2], g[3] = min(g[2], start), max(g[3], stop)
        if action == "compute":
            busy[worker] += stop - start
    for name, (n, total, first, last) in sorted(agg.items(), key=lambda kv: kv[1][2]):
        print(f"{name:50s} n={n:4d} sum={total:6.2f} first={first:6.2f} last={last:6.2f}")
    print("busy seconds per worker:", {w: round(b, 2) for w, b in busy.items()})
    blocks = [r for r in rows if "similarity-block" in r[3] and r[2] == "compute"]
    for worker in sorted({r[4] for r in blocks}):
        mine = [r for r in blocks if r[4] == worker]
        print(worker, " ".join(f"{r[3].rsplit('-', 1)[1]}:{r[1] - r[0]:.2f}@{r[0]:.1f}" for r in mine))
    return 0


if __name__ == "__main__":
    sys.exit(main())
