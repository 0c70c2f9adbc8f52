"""Incremental refresh against a full refit: rows recomputed, time, and equality (issue 7).

    python benchmarks/refresh.py                                   # ML-100K, newest ratings as batches
    python benchmarks/refresh.py --data synthetic --batches 100 1000 10000
    python benchmarks/refresh.py --measures cosine full-cosine --repeats 3

The model is fitted on every rating but the newest B (ML-100K, by timestamp: what a service
sees when it refreshes) or but B held out at random (the paper-shaped synthetic set,
``--data synthetic``; seed 0). Then it is brought up to date two ways, in the same run:

* ``model.refresh(batch)``;
* ``fit`` on all the ratings.

Both are timed, alternating which runs first, ``--repeats`` times; the table gives the
medians and their ratio. It also reports the share of similarity rows the refresh
recomputed. Every refreshed model is checked against the refit: the neighbour lists and
similarities must be equal, bit for bit.

Both run on the local threaded scheduler. The refit's time is the first figure, the
refresh's the second; the ratio is the one to read on this shared, noisy machine.

Writes ``refresh-<data>.{csv,md}`` into ``--out``. MovieLens must be in ``$DCF_DATA/ml-100k``.
Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import dask
import numpy as np
import pandas as pd
from _report import environment, markdown

HERE = Path(__file__).parent


def main(argv=None) -> int:
    from dcf.datasets import movielens_path, synthetic
    from dcf.errors import DataError
    from dcf.model import KNN

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", choices=["ml-100k", "synthetic"], default="ml-100k")
    p.add_argument("--batches", type=int, nargs="+", default=[10, 100, 1000, 10000])
    p.add_argument("--measures", nargs="+", default=["cosine", "full-cosine", "centred-cosine"])
    p.add_argument("--neighbourhood", choices=["rated", "global"], default="global")
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args(argv)
    if args.data == "ml-100k":
        try:  # never downloads: MovieLens may not be redistributed
            path = movielens_path("ml-100k", "u.data", download=False)
        except DataError as exc:
            print(f"MovieLens 100K: {exc}; set DCF_DATA to the folder holding ml-100k/", file=sys.stderr)
            return 2
        df = pd.read_csv(path, sep="\t", names=["user", "item", "rating", "time"])
        df = df.sort_values("time", kind="stable").drop(columns="time").reset_index(drop=True)
        where = f"{path}: {len(df):,} ratings; a batch = the newest B by timestamp"
    else:
        with dask.config.set(scheduler="threads"):
            df = synthetic().frame.compute().reset_index(drop=True)
        df = df.sample(frac=1.0, random_state=0).reset_index(drop=True)
        where = f"synthetic paper-shaped: {len(df):,} ratings; a batch = B random ratings (seed 0)"
    print(environment(), flush=True)
    print(f"data    : {where}", flush=True)
    print(f"model   : item-based, k={args.k}, neighbourhood {args.neighbourhood}", flush=True)
    rows = []
    with dask.config.set(scheduler="threads"):
        for measure in args.measures:
            params = dict(similarity=measure, k=args.k, neighbourhood=args.neighbourhood)
            for b in sorted(args.batches):
                old, new = df.iloc[:-b], df.iloc[-b:].reset_index(drop=True)
                model = KNN(**params).fit(old)
                t_refresh, t_refit = [], []
                for r in range(args.repeats):
                    order = ("refresh", "refit") if r % 2 == 0 else ("refit", "refresh")
                    for what in order:
                        t = time.perf_counter()
                        if what == "refresh":
                            got = model.refresh(new)
                            got.neighbours_.idx.compute()
                            t_refresh.append(time.perf_counter() - t)
                        else:
                            want = KNN(**params).fit(df)
                            want.neighbours_.idx.compute()
                            t_refit.append(time.perf_counter() - t)
                same = all(np.array_equal(a, b) for a, b in zip(
                    dask.compute(got.neighbours_.idx, got.neighbours_.sim),
                    dask.compute(want.neighbours_.idx, want.neighbours_.sim)))
                rep = got.refresh_report_
                row = {"measure": measure, "batch": b, "changed": rep["changed"],
                       "new_users": rep["new_users"], "new_items": rep["new_items"],
                       "recomputed_share": rep["recomputed_share"], "refit_s": float(np.median(t_refit)),
                       "refresh_s": float(np.median(t_refresh)),
                       "refresh/refit": float(np.median(t_refresh) / np.median(t_refit)),
                       "equal_to_refit": same}
                rows.append(row)
                print(f"  {measure:<15} B={b:<6} rows recomputed {rep['recomputed_share']:6.1%}  "
                      f"refit {row['refit_s']:6.2f} s  refresh {row['refresh_s']:6.2f} s  "
                      f"ratio {row['refresh/refit']:.2f}  equal {same}", flush=True)
                if not same:
                    print("  the refreshed model differs from the refit: a bug", file=sys.stderr)
    table = pd.DataFrame(rows)
    stem = args.out / f"refresh-{args.data}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(stem.with_suffix(".csv"), index=False)
    stem.with_suffix(".md").write_text(markdown(table, ".3f") + "\n")
    print("\n" + markdown(table, ".3f"))
    print(f"\nwritten: {stem}.{{csv,md}}")
    return 0 if table["equal_to_refit"].all() else 1


if __name__ == "__main__":
    sys.exit(main())
