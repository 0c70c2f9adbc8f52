"""Time each stage of the dcf batch pipeline, and the same model in scikit-surprise.

    python benchmarks/stages.py                       # paper-shaped synthetic data
    python benchmarks/stages.py --data movielens:ml-100k/u1.base --test movielens:ml-100k/u1.test

Prints the machine, versions, data shape and command first, then per stage the
median (min-max) wall seconds over ``--repeat`` runs after one warm-up run on
the same cluster, and, when scikit-surprise is installed, its fit and predict
time for the same model on the same split with the ratio dcf / surprise
measured in this run.  Graph construction is timed apart from compute for the
prediction and Top-N stages.  Runs outside the test suite.
"""

from __future__ import annotations

import argparse
import sys
import time

import dask
import numpy as np
import pandas as pd

from _report import environment

from dcf import cluster, evaluate
from dcf.config import ClusterConfig, RunConfig
from dcf.run import Stages, execute


def header(cfg) -> str:
    return "\n".join([
        environment(),
        f"cluster : {cfg.cluster.workers} workers x {cfg.cluster.threads_per_worker} threads, "
        f"{cfg.cluster.memory_limit} each",
        f"model   : {cfg.based}-based {cfg.similarity}, k={cfg.k}, {cfg.neighbourhood}, "
        f"{cfg.prediction}, top-{cfg.top_n}",
    ])


def surprise_time(train: pd.DataFrame, test: pd.DataFrame, cfg: RunConfig):
    try:
        import surprise
    except ImportError:
        return None
    # surprise breaks similarity ties by the order of each user's ratings in its input;
    # dcf breaks them by ascending id: give surprise the ratings in that order
    train = train.assign(_u=train["user"].astype(np.int64) if _ints(train["user"]) else train["user"],
                         _i=train["item"].astype(np.int64) if _ints(train["item"]) else train["item"])
    train = train.sort_values(["_u", "_i"])
    t0 = time.perf_counter()
    reader = surprise.Reader(rating_scale=(train["rating"].min(), train["rating"].max()))
    data = surprise.Dataset.load_from_df(train[["user", "item", "rating"]].astype(
        {"user": str, "item": str}), reader)
    cls = surprise.KNNBasic if cfg.prediction == "weighted" else surprise.KNNWithMeans
    algo = cls(k=cfg.k, sim_options={"name": "cosine", "user_based": cfg.based == "user"},
               verbose=False).fit(data.build_full_trainset())
    t1 = time.perf_counter()
    est = np.array([algo.predict(str(u), str(i)).est for u, i in zip(test["user"], test["item"])])
    t2 = time.perf_counter()
    return {"fit": t1 - t0, "predict": t2 - t1, "est": est}


def _ints(col) -> bool:
    return pd.to_numeric(col.astype(str), errors="coerce").notna().all()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="synthetic")
    p.add_argument("--test")
    p.add_argument("--based", default="item", choices=["item", "user"])
    p.add_argument("--neighbourhood", default="rated", choices=["rated", "global"])
    p.add_argument("--prediction", default="weighted", choices=["weighted", "mean-centred"])
    p.add_argument("--k", type=int, default=50)
    p.add_argument("--top-n", type=int, default=20)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads-per-worker", type=int, default=2)
    p.add_argument("--memory-limit", default="3GB")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--no-surprise", action="store_true", help="skip the scikit-surprise peer")
    args = p.parse_args(argv)
    cfg = RunConfig(data=args.data, test=args.test, based=args.based, k=args.k,
                    neighbourhood=args.neighbourhood, prediction=args.prediction,
                    top_n=args.top_n, progress=False,
                    cluster=ClusterConfig(workers=args.workers,
                                          threads_per_worker=args.threads_per_worker,
                                          memory_limit=args.memory_limit,
                                          dashboard_address="127.0.0.1:0"))
    print(header(cfg), flush=True)
    runs = []
    with cluster.connect(cfg.cluster) as client:
        warm = RunConfig(data="synthetic:users=2000,items=300,ratings=20000", k=10, progress=False)
        execute(warm, Stages(False))  # warm-up: worker imports, first-call costs
        for _ in range(args.repeat):
            res = None  # release the previous run's persisted model: same keys, no reuse
            client.run(lambda: __import__("gc").collect())
            stage = Stages(False)
            res = execute(cfg, stage)
            runs.append(stage.seconds)
        preds, recs = res["predictions"], res["recommendations"]
        n_users, n_items = res["matrix"].shape
        stored = int(res["reports"][0]["stored"])
        res = None
        print(f"data    : {cfg.data} -> {n_users:,} users x {n_items:,} items, "
              f"{stored:,} training ratings, {len(preds):,} test pairs, "
              f"{len(recs):,} recommendations")
    table = pd.DataFrame(runs)
    table["total"] = table.sum(axis=1)
    print(f"\nwall seconds over {args.repeat} runs (median, min-max):")
    for col in table.columns:
        s = table[col]
        print(f"  {col:<11} {s.median():8.2f}   ({s.min():.2f}-{s.max():.2f})")
    mae = evaluate.mae(preds["rating"], preds["prediction"])
    print(f"\nMAE {mae:.5f}, RMSE {evaluate.rmse(preds['rating'], preds['prediction']):.5f}")
    if not args.no_surprise and args.neighbourhood == "rated":
        with dask.config.set(scheduler="sync"):
            from dcf.datasets import open_source
            from dcf import split

            data = open_source(cfg.data)
            if cfg.test:
                train = pd.concat(dask.compute(*data.parts))
            else:
                tr, _ = split.random_split(data.parts, cfg.test_fraction, cfg.seed)
                train = pd.concat(dask.compute(*tr))
        peer = surprise_time(train, preds, cfg)
        if peer is None:
            print("surprise: not installed (pip install scikit-surprise) - peer skipped")
        else:
            dcf_fit = table["matrix"].median() + table["neighbours"].median()
            dcf_pred = table["prediction"].median()
            diff = np.abs(peer["est"] - preds["prediction"].to_numpy()).max()
            print(f"\nscikit-surprise (1 process), same split: fit {peer['fit']:.2f} s, "
                  f"predict {peer['predict']:.2f} s, max |dcf - surprise| = {diff:.2e}")
            print(f"ratios dcf / surprise: fit {dcf_fit / peer['fit']:.3f}, "
                  f"predict {dcf_pred / peer['predict']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
