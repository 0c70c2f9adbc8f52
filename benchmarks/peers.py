"""dcf against its peers on the same data, the same split, in the same run.

    python benchmarks/peers.py --data movielens:ml-100k/u1.base --test movielens:ml-100k/u1.test --k 40
    python benchmarks/peers.py --data synthetic --k 50              # paper-shaped, 1:9 split

Peers (each skipped, with the reason, when not installed: ``pip install ".[bench]"``):

* scikit-surprise ``KNNBasic`` / ``KNNWithMeans``, item cosine, k neighbours (rated rule);
* implicit ``CosineRecommender(K=k)`` (ranking only);
* PySpark ``local[n]`` running the paper's pipeline: co-rated cosine by a self-join on users,
  each item's top-k list, weighted-average prediction, Top-N from the same lists.

Every tool runs in its own process; ``peak_gb`` adds the peak resident memory (VmHWM) of
its processes (dcf: driver + workers; PySpark: driver + JVM). Metrics come from the same ``dcf.evaluate``
functions on each tool's outputs: MAE/RMSE where it predicts ratings, precision/NDCG@N
where it ranks (relevant = test rating >= 4, rated items excluded). Writes
``peers-<name>.{csv,md}``; ratios are dcf / peer for the matching stage.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _report import environment, markdown, peak_rss_gb

HERE = Path(__file__).parent


# ------------------------------------------------------------------ data, shared by every child

def load_split(args):
    import dask

    from dcf import split
    from dcf.datasets import open_source

    with dask.config.set(scheduler="sync"):
        data = open_source(args.data)
        if args.test:
            train = pd.concat(dask.compute(*data.parts), ignore_index=True)
            test = pd.concat(dask.compute(*open_source(args.test).parts), ignore_index=True)
        else:
            tr, te = split.random_split(data.parts, 0.1, args.seed)
            train = pd.concat(dask.compute(*tr), ignore_index=True)
            test = pd.concat(dask.compute(*te), ignore_index=True)
    # canonical integer ids where they are integers (all built-in data)
    for df in (train, test):
        for c in ("user", "item"):
            df[c] = _ints(df[c])
    return train[["user", "item", "rating"]], test[["user", "item", "rating"]]


def _ints(col):
    num = pd.to_numeric(col.astype(str), errors="coerce")
    return num.astype(np.int64) if num.notna().all() else col.astype(str)


def quality(args, test, preds=None, recs=None) -> dict:
    from dcf import evaluate

    out = {}
    if preds is not None:
        m = test.merge(preds, on=["user", "item"], how="left", suffixes=("", "_p"))
        out["mae"] = evaluate.mae(m["rating"], m["prediction"])
        out["rmse"] = evaluate.rmse(m["rating"], m["prediction"])
    if recs is not None:
        r = evaluate.ranking_metrics(recs, test, args.top_n, 4.0)
        out[f"precision@{args.top_n}"] = r["precision"]
        out[f"ndcg@{args.top_n}"] = r["ndcg"]
    return out


# ------------------------------------------------------------------ peers (child processes)

def run_dcf(args, train, test):
    from dcf import cluster
    from dcf.config import ClusterConfig
    from dcf.model import KNN

    cfg = ClusterConfig(workers=args.workers, threads_per_worker=args.threads_per_worker,
                        memory_limit=args.memory_limit, dashboard_address="127.0.0.1:0")
    rows = []
    with cluster.connect(cfg) as client:
        KNN(k=5).fit(train.iloc[:2000]).predict(test.iloc[:100]).compute()  # warm-up
        for nb in ("rated", "global"):
            t0 = time.perf_counter()
            model = KNN(k=args.k, neighbourhood=nb).fit(train)
            cluster.wait_for(model.neighbours_.W, model.similarity_rows_)
            t1 = time.perf_counter()
            preds = model.predict(test).compute()
            t2 = time.perf_counter()
            recs = model.recommend(n=args.top_n).compute()
            t3 = time.perf_counter()
            workers = client.run(peak_rss_gb)
            rows.append({"tool": "dcf", "model": f"ItemKNN cosine k={args.k} {nb}, weighted",
                         "fit_s": t1 - t0, "predict_s": t2 - t1, "top_n_s": t3 - t2,
                         "peak_gb": peak_rss_gb() + sum(workers.values()),
                         **quality(args, test, preds[["user", "item", "prediction"]], recs)})
            del model
    return rows


def run_dcf_batch(args, train, test):
    """``python -m dcf.run`` end to end on the same split (its own cluster), two settings:
    the paper's (co-rated cosine, global lists, Top-N by predicted rating) and implicit's
    (full-vector cosine, global lists, Top-N by ``ranking=sum``).  ``end_to_end_s`` = the
    job's own stage seconds (load .. outputs); ``wall_s`` adds Python start-up and the
    cluster's start and stop."""
    import tempfile

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train.to_parquet(tmp / "train.parquet", index=False)
        test.to_parquet(tmp / "test.parquet", index=False)
        settings = {"paper rule": ["--similarity", "cosine", "--ranking", "prediction"],
                    "implicit's rule": ["--similarity", "full-cosine", "--ranking", "sum"]}
        for label, extra in settings.items():
            out = tmp / "out"
            cmd = [sys.executable, "-m", "dcf.run", "--data", str(tmp / "train.parquet"), "--test",
                   str(tmp / "test.parquet"), "--k", str(args.k), "--top-n", str(args.top_n),
                   "--neighbourhood", "global", "--workers", str(args.workers), "--threads-per-worker",
                   str(args.threads_per_worker), "--memory-limit", args.memory_limit,
                   "--dashboard-address", "127.0.0.1:0", "--no-progress", "--no-baselines",  # as the peers
                   "--out", str(out), *extra]
            t = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            wall = time.perf_counter() - t
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr.strip().splitlines()[-1])
            m = json.loads((out / "metrics.json").read_text())
            sec = m["seconds"]
            preds = pd.read_parquet(out / "predictions.parquet")
            recs = pd.read_parquet(out / "recommendations.parquet")
            for df in (preds, recs):
                for c in ("user", "item"):
                    df[c] = _ints(df[c])
            rows.append({"tool": "dcf-batch", "model": f"python -m dcf.run, {label}, k={args.k} global",
                         "fit_s": sec["matrix"] + sec["neighbours"], "predict_s": sec["prediction"],
                         "top_n_s": sec["top-n"], "end_to_end_s": sum(sec.values()), "wall_s": wall,
                         **quality(args, test, preds[["user", "item", "prediction"]], recs)})
    return rows


def run_surprise(args, train, test):
    import surprise

    # surprise breaks ties by the order of a user's ratings; dcf by id: give it id order
    train = train.sort_values(["user", "item"])
    rows = []
    for cls, formula in ((surprise.KNNBasic, "weighted"), (surprise.KNNWithMeans, "mean-centred")):
        t0 = time.perf_counter()
        reader = surprise.Reader(rating_scale=(train["rating"].min(), train["rating"].max()))
        ts = surprise.Dataset.load_from_df(train.astype({"user": str, "item": str}), reader)
        algo = cls(k=args.k, sim_options={"name": "cosine", "user_based": False}, verbose=False)
        algo.fit(ts.build_full_trainset())
        t1 = time.perf_counter()
        est = [algo.predict(str(u), str(i)).est for u, i in zip(test["user"], test["item"])]
        t2 = time.perf_counter()
        preds = test[["user", "item"]].assign(prediction=est)
        rows.append({"tool": "surprise", "model": f"{cls.__name__} cosine k={args.k} (rated), {formula}",
                     "fit_s": t1 - t0, "predict_s": t2 - t1, "top_n_s": None, "peak_gb": peak_rss_gb(),
                     **quality(args, test, preds)})
    return rows


def run_implicit(args, train, test):
    import scipy.sparse as sp
    from implicit.nearest_neighbours import CosineRecommender

    users = np.sort(train["user"].unique())
    items = np.sort(train["item"].unique())
    ui = sp.csr_matrix((train["rating"].to_numpy(np.float64),
                        (np.searchsorted(users, train["user"]), np.searchsorted(items, train["item"]))),
                       shape=(len(users), len(items)))
    model = CosineRecommender(K=args.k, num_threads=args.threads_per_worker * args.workers)
    t0 = time.perf_counter()
    model.fit(ui, show_progress=False)
    t1 = time.perf_counter()
    ids, _ = model.recommend(np.arange(len(users)), ui, N=args.top_n, filter_already_liked_items=True)
    t2 = time.perf_counter()
    recs = pd.DataFrame({"user": np.repeat(users, ids.shape[1]), "rank": np.tile(np.arange(1, ids.shape[1] + 1), len(users)),
                         "item": items[np.clip(ids.ravel(), 0, None)]})[ids.ravel() >= 0]
    return [{"tool": "implicit", "model": f"CosineRecommender K={args.k}", "fit_s": t1 - t0,
             "predict_s": None, "top_n_s": t2 - t1, "peak_gb": peak_rss_gb(),
             **quality(args, test, None, recs)}]


def run_spark(args, train, test):
    from pyspark.sql import SparkSession, Window
    from pyspark.sql import functions as F

    spark = (SparkSession.builder.master(f"local[{args.workers * args.threads_per_worker}]")
             .config("spark.driver.memory", "6g").config("spark.sql.shuffle.partitions", "16")
             .config("spark.ui.enabled", "false").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    t0 = time.perf_counter()
    r = spark.createDataFrame(train.astype({"user": str, "item": str})).cache()
    a, b = r.alias("a"), r.alias("b")
    pairs = a.join(b, (F.col("a.user") == F.col("b.user")) & (F.col("a.item") < F.col("b.item")))
    agg = pairs.groupBy(F.col("a.item").alias("i"), F.col("b.item").alias("j")).agg(
        F.sum(F.col("a.rating") * F.col("b.rating")).alias("p"),
        F.sum(F.col("a.rating") ** 2).alias("si"), F.sum(F.col("b.rating") ** 2).alias("sj"))
    sim = agg.select("i", "j", (F.col("p") / F.sqrt(F.col("si") * F.col("sj"))).alias("s"))
    both = sim.unionByName(sim.select(F.col("j").alias("i"), F.col("i").alias("j"), "s"))
    w = Window.partitionBy("i").orderBy(F.desc("s"), F.asc(F.col("j").cast("long")))
    topk = both.filter("s > 0").withColumn("rk", F.row_number().over(w)).filter(F.col("rk") <= args.k).cache()
    topk.count()
    t1 = time.perf_counter()
    gmean = train["rating"].mean()
    tst = spark.createDataFrame(test.astype({"user": str, "item": str})[["user", "item"]])
    rated = r.select(F.col("user").alias("u"), F.col("item").alias("j"), F.col("rating").alias("r"))
    est = (tst.join(topk, tst.item == topk.i).join(rated, (F.col("user") == F.col("u")) & (topk.j == rated.j))
           .groupBy("user", "item").agg((F.sum(F.col("s") * F.col("r")) / F.sum("s")).alias("prediction")))
    preds = est.toPandas()
    t2 = time.perf_counter()
    scores = (rated.join(topk.select(F.col("i"), F.col("j").alias("jj"), "s"), F.col("j") == F.col("jj"))
              .groupBy("u", "i").agg((F.sum(F.col("s") * F.col("r")) / F.sum("s")).alias("score"),
                                     F.sum("s").alias("support"))
              .join(rated.select(F.col("u").alias("u2"), F.col("j").alias("i2")),
                    (F.col("u") == F.col("u2")) & (F.col("i") == F.col("i2")), "left_anti"))
    wu = Window.partitionBy("u").orderBy(F.desc("score"), F.desc("support"), F.asc("i"))
    recs = (scores.withColumn("rank", F.row_number().over(wu)).filter(F.col("rank") <= args.top_n)
            .select(F.col("u").alias("user"), "rank", F.col("i").alias("item")).toPandas())
    t3 = time.perf_counter()
    import psutil

    kids = [peak_rss_gb(c.pid) for c in psutil.Process().children(recursive=True)]
    peak = peak_rss_gb() + sum(k for k in kids if k == k)  # skip processes already gone
    spark.stop()
    preds = test[["user", "item"]].astype(str).merge(preds, on=["user", "item"], how="left")
    preds["prediction"] = preds["prediction"].fillna(gmean).clip(train["rating"].min(), train["rating"].max())
    preds = preds.astype({"user": test["user"].dtype, "item": test["item"].dtype})
    recs = recs.astype({"user": test["user"].dtype, "item": test["item"].dtype})
    return [{"tool": "pyspark", "model": f"paper pipeline k={args.k} (global), weighted",
             "fit_s": t1 - t0, "predict_s": t2 - t1, "top_n_s": t3 - t2, "peak_gb": peak,
             **quality(args, test, preds, recs)}]


PEERS = {"dcf": run_dcf, "dcf-batch": run_dcf_batch, "surprise": run_surprise,
         "implicit": run_implicit, "pyspark": run_spark}
MODULES = {"dcf": "dcf", "dcf-batch": "dcf", "surprise": "surprise", "implicit": "implicit",
           "pyspark": "pyspark"}


def child(args) -> int:
    train, test = load_split(args)
    rows = PEERS[args.peer](args, train, test)
    print("RESULT " + json.dumps(rows), flush=True)
    return 0


def run_child(args, peer: str):
    import importlib.util

    if importlib.util.find_spec(MODULES[peer]) is None:
        return [{"tool": peer, "model": f"skipped: {MODULES[peer]} is not installed (pip install '.[bench]')"}]
    cmd = [sys.executable, __file__, "--peer", peer] + [a for a in sys.argv[1:] if a != "--peer"]
    # own session: a peer that runs out of time is stopped with everything it started
    # (Spark's JVM, dask workers); its address space is capped so that a peer which cannot
    # fit (surprise's dense n x n matrices) fails alone instead of taking the machine down
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=_cap_memory(args.max_memory_gb))
    try:
        out, err = proc.communicate(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return [{"tool": peer, "model": f"did not finish in {args.timeout} s (stopped)"}]
    lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = (err.strip().splitlines() or ["no output"])[-1]
        return [{"tool": peer, "model": f"failed: {tail[:160]}"}]
    return json.loads(lines[-1][len("RESULT "):])


def _cap_memory(gb):
    def cap():
        if gb:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (int(gb * 2**30), int(gb * 2**30)))
    return cap


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="synthetic")
    p.add_argument("--test")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--k", type=int, default=50)
    p.add_argument("--top-n", type=int, default=20)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads-per-worker", type=int, default=1)
    p.add_argument("--memory-limit", default="3GB")
    p.add_argument("--peers", nargs="+", default=list(PEERS), choices=list(PEERS))
    p.add_argument("--timeout", type=int, default=1500, help="seconds per peer (stopped after, reported)")
    p.add_argument("--max-memory-gb", type=float, default=0,
                   help="address-space cap per peer process (0 = none); Java and dask need headroom")
    p.add_argument("--name")
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--peer", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.peer:
        return child(args)
    print(environment(), flush=True)
    cores = args.workers * args.threads_per_worker
    print(f"setup   : {args.data}{' -> ' + args.test if args.test else ' (1:9 split, seed %d)' % args.seed}; "
          f"k={args.k}, top-{args.top_n} (relevant = test rating >= 4, rated items excluded); "
          f"{cores} cores for every tool "
          f"(dcf {args.workers} workers x {args.threads_per_worker} threads, spark local[{cores}])", flush=True)
    rows = []
    for peer in args.peers:
        t = time.perf_counter()
        got = run_child(args, peer)
        for row in got:
            print(f"  {peer:<9} {time.perf_counter() - t:7.1f} s  {row}", flush=True)
        rows += got
    table = pd.DataFrame(rows)
    # ratios against the dcf row computing the same thing: the rated rule for surprise,
    # the global rule (the paper's) for PySpark and implicit
    dcf_rows = table[table["tool"] == "dcf"]
    if len(dcf_rows):
        ref = {t: dcf_rows[dcf_rows["model"].str.contains("global" if t in ("pyspark", "implicit")
                                                          else "rated")].iloc[0]
               for t in table["tool"].unique()}
        for stage in ("fit_s", "predict_s", "top_n_s"):
            table[f"dcf/peer {stage[:-2]}"] = [
                ref[t][stage] / v if t not in ("dcf", "dcf-batch") and isinstance(v, float) and v > 0
                else None
                for t, v in zip(table["tool"], table[stage])]
    # end to end: the batch job against each peer's fit + predict + Top-N, in this run
    batch = table[table["tool"] == "dcf-batch"]
    if len(batch) and "end_to_end_s" in batch and batch["end_to_end_s"].notna().any():
        totals = table[["fit_s", "predict_s", "top_n_s"]].apply(pd.to_numeric, errors="coerce").fillna(0).sum(1)
        for label, ref in zip(("paper", "implicit"), batch["end_to_end_s"].dropna().tolist()):
            table[f"batch ({label} rule)/peer total"] = [
                ref / tot if t in ("pyspark", "implicit") and tot > 0 else None
                for t, tot in zip(table["tool"], totals)]
    name = args.name or re.sub(r"[^A-Za-z0-9.-]+", "-", args.data.split("/")[-1].split(":")[-1]).strip("-")
    stem = args.out / f"peers-{name}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(stem.with_suffix(".csv"), index=False)
    stem.with_suffix(".md").write_text(markdown(table.fillna(""), ".3f") + "\n")
    print("\n" + markdown(table.fillna(""), ".3f"))
    print(f"\nwritten: {stem}.{{csv,md}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
