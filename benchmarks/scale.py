"""Scale and speed: dcf against implicit on the same synthetic data, in one run (issue 6).

    python benchmarks/scale.py                                  # goal 1: 20M ratings, 2 x 1 thread x 3 GB
    python benchmarks/scale.py --shapes 50000,20000,1000000 250000,20000,5000000 \\
        1000000,20000,20000000 --name growth                    # goal 3: cost growth
    python benchmarks/scale.py --shapes 20000,2000,200000 --name small   # minutes-scale check

For every shape (users, items, ratings: Zipf item popularity, log-normal user activity,
the ``dcf.datasets`` generator, cached as Parquet under ``--cache``) it runs, each in its
own process so that peaks are separate:

* **dcf** on a fresh local cluster (``--workers`` x ``--threads-per-worker``,
  ``--memory-limit`` each): load + matrix build (persisted), fit = similarity + top-k
  neighbours (``--similarity``, default ``full-cosine``, the measure implicit's
  ``CosineRecommender`` uses), and Top-N for every user with ``ranking="sum"`` (implicit's
  rule) kept on the workers; optionally also the paper's ``ranking="prediction"``.
  Peak worker memory is sampled (RSS of each worker process, every 0.1 s); restarts are
  seen as changed worker addresses, spilling from the workers' spill counters.
* **implicit** ``CosineRecommender(K=k)`` with ``workers x threads`` threads: fit, then
  ``recommend`` for every user, rated items filtered.

Ratios are dcf / implicit. Both tools' Top-N lists for a sample of users are compared
(mean overlap of the item sets). Writes ``scale-<name>.{csv,md,png,html}`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _report import Sampler, environment, markdown, peak_rss_gb, save

HERE = Path(__file__).parent
SAMPLE_USERS = 20_000


def data_path(cache: Path, users: int, items: int, ratings: int, seed: int) -> Path:
    """The cached Parquet folder for a shape, generated (2 processes) when missing."""
    path = cache / f"synthetic-{users}-{items}-{ratings}-{seed}"
    if not path.exists():
        import dask

        from dcf.datasets import write_synthetic

        t = time.perf_counter()
        with dask.config.set(scheduler="processes", num_workers=2):
            write_synthetic(path, users=users, items=items, ratings=ratings, seed=seed)
        print(f"  generated {path} in {time.perf_counter() - t:.1f} s", flush=True)
    return path


def csr_from_parquet(path: Path):
    import scipy.sparse as sp

    df = pd.concat([pd.read_parquet(f) for f in sorted(path.glob("*.parquet"))], ignore_index=True)
    users, u = np.unique(df["user"].to_numpy(), return_inverse=True)
    items, i = np.unique(df["item"].to_numpy(), return_inverse=True)
    m = sp.csr_matrix((df["rating"].to_numpy(np.float64), (u, i)), shape=(len(users), len(items)))
    m.sort_indices()
    return m, users, items


class RssSampler(Sampler):
    """Peak RSS of a set of processes, sampled on a thread."""

    def __init__(self, pids, every=0.1):
        import psutil

        super().__init__(every)
        self.procs = [psutil.Process(p) for p in pids]
        self.peak = {p.pid: 0 for p in self.procs}

    def read(self):
        for p in self.procs:
            try:
                self.peak[p.pid] = max(self.peak[p.pid], p.memory_info().rss)
            except Exception:  # noqa: BLE001 - a process may be gone
                pass


def _spilled(dask_worker) -> int:
    total = getattr(dask_worker.data, "spilled_total", None)
    return int(getattr(total, "disk", 0) or 0) if total is not None else 0


# ------------------------------------------------------------------ children

def child_dcf(args, path: Path, out: Path) -> dict:
    from distributed import wait

    from dcf import cluster, experiments
    from dcf.config import ClusterConfig
    from dcf.datasets import open_source
    from dcf.matrix import build_matrix
    from dcf.model import KNN

    cfg = ClusterConfig(workers=args.workers, threads_per_worker=args.threads_per_worker,
                        memory_limit=args.memory_limit, dashboard_address="127.0.0.1:0")
    row = {}
    with cluster.connect(cfg) as client:
        warm = KNN(k=5, neighbourhood="global", similarity=args.similarity).fit(
            open_source("synthetic:users=2000,items=300,ratings=20000"))
        for ranking in ("sum", "prediction"):  # compiles the kernels in every worker
            warm.recommend(n=5, ranking=ranking).compute()
        del warm
        experiments.warm_up(client, [args.similarity])  # every kernel loaded in every worker
        before = set(client.scheduler_info()["workers"])
        pids = list(client.run(os.getpid).values())
        with RssSampler(pids) as rss:
            t0 = time.perf_counter()
            model = KNN(k=args.k, neighbourhood="global", similarity=args.similarity)
            data = open_source(str(path))
            matrix = build_matrix(data.parts, source=str(path), min_blocks=2 * args.workers *
                                  args.threads_per_worker, entity_block_limit=model.entity_block_limit())
            matrix.persist()
            # the whole matrix, its statistics included, as implicit's fit is given a built CSR
            wait([matrix.by_user, matrix.by_item, matrix.user_sum, matrix.user_count, matrix.item_sum,
                  matrix.item_count, matrix.report])
            t1 = time.perf_counter()
            model.fit(matrix)
            wait([model.neighbours_.W])
            t2 = time.perf_counter()
            recs = model.recommend(n=args.top_n, ranking="sum").persist()
            wait(recs)
            t3 = time.perf_counter()
            n_recs = int(recs.map_partitions(len).sum().compute())
            sample = recs[recs["user"] <= SAMPLE_USERS].compute()
            del recs
            t4 = t5 = time.perf_counter()
            if args.paper_rule:
                t4 = time.perf_counter()
                paper = model.recommend(n=args.top_n, ranking="prediction").persist()
                wait(paper)
                t5 = time.perf_counter()
                del paper
        after = set(client.scheduler_info()["workers"])
        spilled = sum(client.run(_spilled).values())
        row.update(
            load_matrix_s=t1 - t0, fit_s=t2 - t1, top_n_s=t3 - t2,
            top_n_prediction_s=(t5 - t4) if args.paper_rule else None,
            peak_worker_gb=max(rss.peak.values()) / 1e9, restarted=len(before - after),
            spilled_mb=spilled / 1e6, recommendations=n_recs, method=model.method_,
            item_block=int(max(matrix.by_item.chunks[0])))
    sample[["user", "item"]].to_parquet(out / "dcf-sample.parquet")
    return row


def child_implicit(args, path: Path, out: Path) -> dict:
    from implicit.nearest_neighbours import CosineRecommender

    ui, users, items = csr_from_parquet(path)
    threads = args.workers * args.threads_per_worker
    model = CosineRecommender(K=args.k, num_threads=threads)
    t0 = time.perf_counter()
    model.fit(ui, show_progress=False)
    t1 = time.perf_counter()
    ids, _ = model.recommend(np.arange(ui.shape[0]), ui, N=args.top_n, filter_already_liked_items=True)
    t2 = time.perf_counter()
    keep = users <= SAMPLE_USERS
    sample = pd.DataFrame({"user": np.repeat(users[keep], ids.shape[1]),
                           "item": items[np.clip(ids[keep].ravel(), 0, None)]})[ids[keep].ravel() >= 0]
    sample.to_parquet(out / "implicit-sample.parquet")
    return {"fit_s": t1 - t0, "top_n_s": t2 - t1, "peak_gb": peak_rss_gb(), "threads": threads}


def run_child(tool: str, args, path: Path, out: Path) -> dict | None:
    cmd = [sys.executable, __file__, "--child", tool, "--child-data", str(path), "--child-out", str(out),
           "--k", str(args.k), "--top-n", str(args.top_n), "--workers", str(args.workers),
           "--threads-per-worker", str(args.threads_per_worker), "--memory-limit", args.memory_limit,
           "--similarity", args.similarity] + (["--paper-rule"] if args.paper_rule else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        print(f"  {tool} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}", flush=True)
        return None
    return json.loads(lines[-1])


def overlap(out: Path) -> float | None:
    try:
        a = pd.read_parquet(out / "dcf-sample.parquet")
        b = pd.read_parquet(out / "implicit-sample.parquet")
    except OSError:
        return None
    a = a.astype({"user": np.int64, "item": np.int64}).groupby("user")["item"].apply(set)
    b = b.astype({"user": np.int64, "item": np.int64}).groupby("user")["item"].apply(set)
    common = a.index.intersection(b.index)
    return float(np.mean([len(a[u] & b[u]) / max(len(b[u]), 1) for u in common])) if len(common) else None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", nargs="+", default=["1000000,20000,20000000"],
                   help="USERS,ITEMS,RATINGS per data set")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--k", type=int, default=50)
    p.add_argument("--top-n", type=int, default=20)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads-per-worker", type=int, default=1)
    p.add_argument("--memory-limit", default="3GB")
    p.add_argument("--similarity", default="full-cosine", choices=["cosine", "full-cosine"])
    p.add_argument("--paper-rule", action="store_true",
                   help="also time Top-N by the paper's predicted-rating rule")
    p.add_argument("--peers", nargs="*", default=["implicit"], choices=["implicit"])
    p.add_argument("--cache", type=Path, default=Path(os.environ.get("DCF_BENCH_CACHE",
                                                                     tempfile.gettempdir())) / "dcf-bench")
    p.add_argument("--name", default="20m")
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--child-data", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        fn = {"dcf": child_dcf, "implicit": child_implicit}[args.child]
        print(json.dumps(fn(args, args.child_data, args.child_out)), flush=True)
        return 0

    print(environment(), flush=True)
    print(f"setup   : dcf on {args.workers} workers x {args.threads_per_worker} thread(s), "
          f"{args.memory_limit} each; implicit with {args.workers * args.threads_per_worker} threads; "
          f"{args.similarity}, k={args.k}, top-{args.top_n} for every user", flush=True)
    args.cache.mkdir(parents=True, exist_ok=True)
    rows = []
    for shape in args.shapes:
        users, items, ratings = (int(float(x)) for x in shape.split(","))
        path = data_path(args.cache, users, items, ratings, args.seed)
        m, _, _ = csr_from_parquet(path)
        n_u = np.diff(m.indptr).astype(np.float64)
        work = float((n_u ** 2).sum())
        del m
        print(f"data    : {users:,} users x {items:,} items x {ratings:,} ratings "
              f"(sum n_u^2 = {work:.3g}), {path}", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            dcf = run_child("dcf", args, path, out)
            imp = run_child("implicit", args, path, out) if "implicit" in args.peers else None
            agree = overlap(out) if imp and dcf else None
        row = {"users": users, "items": items, "ratings": ratings, "sum_nu2": work}
        if dcf:
            row.update({f"dcf_{k}": v for k, v in dcf.items()})
        if imp:
            row.update({f"implicit_{k}": v for k, v in imp.items()})
        if dcf and imp:
            row.update(fit_ratio=dcf["fit_s"] / imp["fit_s"], top_n_ratio=dcf["top_n_s"] / imp["top_n_s"],
                       top_n_overlap=agree)
        print("  " + json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}),
              flush=True)
        rows.append(row)
    df = pd.DataFrame(rows)
    stem = args.out / f"scale-{args.name}"
    series = {"dcf fit": "dcf_fit_s", "dcf top-n": "dcf_top_n_s"}
    if "implicit_fit_s" in df:
        series.update({"implicit fit": "implicit_fit_s", "implicit top-n": "implicit_top_n_s"})
    save(df, stem, x="ratings", series=series, title=f"Time against data size ({args.name})",
         xlabel="ratings", ylabel="seconds")
    print("\n" + markdown(df, ".3f"))
    print(f"\nwritten: {stem}.{{csv,md,png,html}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
