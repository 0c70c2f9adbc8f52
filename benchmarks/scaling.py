"""The paper's Figure 1: recommendation time against the number of worker nodes.

    python benchmarks/scaling.py --workers 1 2 3                       # strong scaling, paper data
    python benchmarks/scaling.py --workers 1 2 4 8 --threads-per-worker 1 --weak
    python benchmarks/scaling.py --data movielens:ml-100k/u1.base --test movielens:ml-100k/u1.test

For each worker count a fresh local cluster (processes, loopback) runs one warm-up job
and then ``--repeat`` full batch pipelines (``dcf.run.execute``: load, matrix,
neighbours, prediction, Top-N). Per run it records wall seconds per stage, the peak
memory of the largest worker (sampled every 0.2 s), the number of tasks and the bytes
workers sent each other. The summary gives median and spread, speed-up and parallel
efficiency against the smallest worker count. ``--weak`` grows the synthetic users and
ratings with the worker count (items fixed). Writes ``scaling-<name>.{csv,md,png,html}``.
"""

from __future__ import annotations

import argparse
import re
import sys
import threading
from pathlib import Path

import pandas as pd
from _report import environment, markdown, save
from distributed import Client, LocalCluster, get_task_stream

from dcf.config import RunConfig
from dcf.run import Stages, execute

STAGES = ["load", "matrix", "neighbours", "prediction", "top-n"]


class PeakMemory:
    """Samples every worker's process memory from the scheduler; keeps the maxima."""

    def __init__(self, client: Client, every: float = 0.2):
        self.client, self.every, self.peak = client, every, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                for addr, w in self.client.scheduler_info(n_workers=-1)["workers"].items():
                    mem = w.get("metrics", {}).get("memory", 0)
                    self.peak[addr] = max(self.peak.get(addr, 0), mem)
            except Exception:  # noqa: BLE001 - sampling must never break the run
                pass
            self._stop.wait(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _sent(dask_worker) -> int:
    return int(getattr(dask_worker, "transfer_outgoing_bytes_total", 0))


def one_run(client: Client, cfg: RunConfig) -> dict:
    before = sum(client.run(_sent).values())
    stage = Stages(False)
    with PeakMemory(client) as mem, get_task_stream(client=client) as ts:
        res = execute(cfg, stage)
    n_pred = len(res["predictions"])
    del res
    after = sum(client.run(_sent).values())
    row = {s: stage.seconds.get(s, 0.0) for s in STAGES}
    row.update(total=sum(row.values()), peak_worker_gb=max(mem.peak.values(), default=0) / 1e9,
               tasks=len(ts.data), transferred_mb=(after - before) / 1e6, test_pairs=n_pred)
    return row


def data_for(args, workers: int) -> str:
    if not args.weak:
        return args.data
    u, i, r = args.weak_base
    return f"synthetic:users={u * workers},items={i},ratings={r * workers},seed=0"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="synthetic")
    p.add_argument("--test")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--threads-per-worker", type=int, default=2)
    p.add_argument("--memory-limit", default="3GB")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--k", type=int, default=50)
    p.add_argument("--neighbourhood", default="rated", choices=["rated", "global"])
    p.add_argument("--similarity", default="cosine", choices=["cosine", "full-cosine"])
    p.add_argument("--ranking", default="prediction", choices=["prediction", "sum"])
    p.add_argument("--weak", action="store_true", help="data grows with the worker count")
    p.add_argument("--weak-base", type=int, nargs=3, default=[50_000, 3_900, 345_000],
                   metavar=("USERS", "ITEMS", "RATINGS"), help="synthetic shape per worker")
    p.add_argument("--name", help="output name")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = p.parse_args(argv)
    print(environment(), flush=True)
    mode = "weak" if args.weak else "strong"
    name = args.name or (f"{mode}-" + re.sub(r"[^A-Za-z0-9.-]+", "-",
                                             args.data.split("/")[-1].split(":")[-1]).strip("-"))
    print(f"setup   : {mode} scaling, workers {args.workers} x {args.threads_per_worker} threads, "
          f"{args.memory_limit} each; k={args.k}, {args.neighbourhood}, {args.similarity}, ranking {args.ranking}; {args.repeat} runs after a warm-up",
          flush=True)
    rows = []
    for w in args.workers:
        cfg = RunConfig(data=data_for(args, w), test=args.test, k=args.k,
                        neighbourhood=args.neighbourhood, similarity=args.similarity,
                        ranking=args.ranking, progress=False)
        with LocalCluster(n_workers=w, threads_per_worker=args.threads_per_worker,
                          memory_limit=args.memory_limit, host="127.0.0.1",
                          dashboard_address="127.0.0.1:0", processes=True) as lc, Client(lc) as client:
            execute(RunConfig(data="synthetic:users=2000,items=300,ratings=20000", k=10,
                              progress=False), Stages(False))  # warm-up
            for r in range(args.repeat):
                row = one_run(client, cfg)
                row.update(workers=w, run=r, data=cfg.data)
                rows.append(row)
                print(f"  {w} workers, run {r}: {row['total']:.2f} s "
                      f"({', '.join(f'{s} {row[s]:.2f}' for s in STAGES)}), "
                      f"peak worker {row['peak_worker_gb']:.2f} GB, {row['tasks']} tasks, "
                      f"{row['transferred_mb']:.0f} MB moved", flush=True)
    raw = pd.DataFrame(rows)
    g = raw.groupby("workers")
    summary = g[STAGES + ["total"]].median()
    summary["total_min"] = g["total"].min()
    summary["total_max"] = g["total"].max()
    base_w = summary.index.min()
    base = summary.loc[base_w, "total"]
    if args.weak:  # ideal weak scaling keeps time constant
        summary["efficiency"] = base / summary["total"]
    else:
        summary["speedup"] = base / summary["total"]
        summary["efficiency"] = summary["speedup"] * base_w / summary.index
    summary["peak_worker_gb"] = g["peak_worker_gb"].max()
    summary["tasks"] = g["tasks"].median().astype(int)
    summary["transferred_mb"] = g["transferred_mb"].median()
    summary = summary.reset_index()
    stem = args.out / f"scaling-{name}"
    raw.to_csv(stem.with_name(stem.name + "-runs.csv"), index=False)
    save(summary, stem, x="workers", series={s: s for s in STAGES + ["total"]},
         title=f"Time against the number of workers ({mode} scaling, {name})",
         xlabel="workers", ylabel="seconds (median)")
    print("\n" + markdown(summary, ".2f"))
    print(f"\nwritten: {stem}.{{csv,md,png,html}} and {stem.name}-runs.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
