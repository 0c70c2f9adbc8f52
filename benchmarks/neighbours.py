"""The paper's Figure 2: MAE against the number of neighbours, every rule and formula.

    python benchmarks/neighbours.py --data movielens:ml-100k/u1.base --test movielens:ml-100k/u1.test
    python benchmarks/neighbours.py --data synthetic                     # paper-shaped, 1:9 split

The similarity is computed once at the largest k and reused for every k
(``dcf.experiments.neighbour_sweep``).  Writes ``neighbours-<name>.{csv,md,png,html}`` into
``--out`` (default benchmarks/results) and prints the table.  On the 2-core machine the
ML-100K sweep takes about a minute; ``--ks 5 20 50`` is a quicker small setting.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from _report import environment, markdown, save

from dcf import cluster, split
from dcf.config import ClusterConfig
from dcf.datasets import open_source
from dcf.experiments import neighbour_sweep
from dcf.model import KNN

DEFAULT_KS = [5, 10, 20, 30, 40, 50, 60, 80, 100]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="synthetic")
    p.add_argument("--test", help="explicit test set; else a seeded 1:9 random split")
    p.add_argument("--ks", type=int, nargs="+", default=DEFAULT_KS)
    p.add_argument("--based", default="item", choices=["item", "user"])
    p.add_argument("--similarity", default="cosine", choices=["cosine", "full-cosine", "pearson-baseline"])
    p.add_argument("--min-support", type=int, default=1)
    p.add_argument("--shrinkage", type=float, default=0.0)
    p.add_argument("--predictions", nargs="+", default=["weighted", "mean-centred"],
                   choices=["weighted", "mean-centred", "baseline"])
    p.add_argument("--top-n", type=int, default=20)
    p.add_argument("--relevance", type=float, default=4.0, help="relevant = test rating >= this")
    p.add_argument("--neighbourhoods", nargs="+", default=["rated", "global"], choices=["rated", "global"],
                   help="'global' alone fits only the top-k lists (for large data)")
    p.add_argument("--ranking", default="prediction", choices=["prediction", "sum"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads-per-worker", type=int, default=2)
    p.add_argument("--memory-limit", default="3GB")
    p.add_argument("--name", help="output name (default: from --data)")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = p.parse_args(argv)
    print(environment())
    name = args.name or re.sub(r"[^A-Za-z0-9.-]+", "-", args.data.split("/")[-1].split(":")[-1]).strip("-")
    cfg = ClusterConfig(workers=args.workers, threads_per_worker=args.threads_per_worker,
                        memory_limit=args.memory_limit, dashboard_address="127.0.0.1:0")
    with cluster.connect(cfg):
        data = open_source(args.data)
        if args.test:
            train, test = data, open_source(args.test)
        else:
            train, test = split.random_split(data, 0.1, args.seed)
        t = time.perf_counter()
        estimator = KNN(based=args.based, similarity=args.similarity, min_support=args.min_support,
                        shrinkage=args.shrinkage)
        table, info = neighbour_sweep(train, test, args.ks, estimator=estimator,
                                      predictions=tuple(args.predictions),
                                      top_n=args.top_n, relevance=args.relevance,
                                      neighbourhoods=tuple(args.neighbourhoods),
                                      ranking=args.ranking)
        total = time.perf_counter() - t
    print(f"data    : {args.data} ({'test ' + args.test if args.test else '1:9 split, seed ' + str(args.seed)}) "
          f"-> {info['users']:,} users x {info['items']:,} items, {info['n_test']:,} test pairs; "
          f"top-{args.top_n} relevant = test rating >= {args.relevance:g}, rated items excluded")
    print(f"model   : {args.based}-based {args.similarity}, min_support {args.min_support}, "
          f"shrinkage {args.shrinkage}; "
          f"one fit at k={info['k_max']} ({info['fit_seconds']:.1f} s), sweep total {total:.1f} s")
    wide = table.pivot_table(index="k", columns=["neighbourhood", "prediction"], values="mae")
    wide.columns = [f"{nb} {pr}" for nb, pr in wide.columns]
    wide = wide.reset_index()
    stem = args.out / f"neighbours-{name}"
    save(wide, stem, x="k", series={c: c for c in wide.columns if c != "k"},
         title=f"MAE against the number of neighbours ({name})", xlabel="neighbours k",
         ylabel="MAE")
    table.to_csv(stem.with_name(stem.name + "-all.csv"), index=False)
    cols = ["k", "neighbourhood", "prediction", "mae", "rmse", "fallback_share", "precision",
            "ndcg", "coverage"]
    print("\n" + markdown(table[cols]))
    print(f"\nwritten: {stem}.{{csv,md,png,html}} and {stem.name}-all.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
