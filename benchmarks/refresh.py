"""Incremental refresh against a full refit: rows recomputed, time, and equality (issue 7).

    python benchmarks/refresh.py                                   # ML-100K, newest ratings as batches
    python benchmarks/refresh.py --data synthetic --batches 100 1000 10000
    python benchmarks/refresh.py --data synthetic --size 250000 20000 5000000 --measures cosine

The model is fitted on every rating but the newest B (ML-100K, by timestamp: what a service
sees when it refreshes) or but B held out at random (the paper-shaped synthetic set,
``--data synthetic``; seed 0). Then it is brought up to date three ways, in the same run:

* ``model.refresh(batch)``;
* ``fit`` on all the ratings;
* ``fit`` on the merged rating matrix as the refresh built it (``refit_matrix``): the
  similarities and the rest of a fit without reading and checking the ratings, which
  at these sizes take most of a refit.

All three are timed ``--repeats`` times, rotating which runs first; the table gives the
medians and the ratios. It also reports the share of similarity rows the refresh
recomputed whole, and the share it patched: the columns of the touched entities alone,
for the measures that read a whole entity's norm. Every refreshed model is checked
against the refit: the neighbour lists and similarities must be equal, bit for bit.

All run on the local threaded scheduler; read the ratios, not the seconds, on a shared,
noisy machine.

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
    p.add_argument("--size", type=int, nargs=3, metavar=("USERS", "ITEMS", "RATINGS"),
                   help="with --data synthetic: another size than the paper-shaped set's")
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
            size = dict(zip(("users", "items", "ratings"), args.size)) if args.size else {}
            df = synthetic(**size).frame.compute().reset_index(drop=True)
        df = df.sample(frac=1.0, random_state=0).reset_index(drop=True)
        where = (f"synthetic {'paper-shaped' if not args.size else 'x'.join(map(str, args.size))}: "
                 f"{len(df):,} ratings; a batch = B random ratings (seed 0)")
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
                t_refresh, t_refit, t_matrix = [], [], []
                got = model.refresh(new)
                for r in range(args.repeats):
                    order = ("refresh", "refit", "matrix")
                    for what in order[r % 3:] + order[:r % 3]:
                        t = time.perf_counter()
                        if what == "refresh":
                            got = model.refresh(new)
                            got.neighbours_.idx.compute()
                            t_refresh.append(time.perf_counter() - t)
                        elif what == "refit":
                            want = KNN(**params).fit(df)
                            want.neighbours_.idx.compute()
                            t_refit.append(time.perf_counter() - t)
                        else:  # the similarities alone: a refit from the merged matrix, built
                            KNN(**params).fit(got.matrix_).neighbours_.idx.compute()
                            t_matrix.append(time.perf_counter() - t)
                same = all(np.array_equal(a, b) for a, b in zip(
                    dask.compute(got.neighbours_.idx, got.neighbours_.sim),
                    dask.compute(want.neighbours_.idx, want.neighbours_.sim)))
                rep = got.refresh_report_
                row = {"measure": measure, "batch": b, "changed": rep["changed"],
                       "new_users": rep["new_users"], "new_items": rep["new_items"],
                       "recomputed_share": rep["recomputed_share"],
                       "patched_share": rep["patched"] / rep["entities"], "refit_s": float(np.median(t_refit)),
                       "refit_matrix_s": float(np.median(t_matrix)),
                       "refresh_s": float(np.median(t_refresh)),
                       "refresh/refit": float(np.median(t_refresh) / np.median(t_refit)),
                       "refresh/refit_matrix": float(np.median(t_refresh) / np.median(t_matrix)),
                       "equal_to_refit": same}
                rows.append(row)
                print(f"  {measure:<15} B={b:<6} rows recomputed {rep['recomputed_share']:6.1%}  "
                      f"patched {row['patched_share']:6.1%}  "
                      f"refit {row['refit_s']:6.2f} s  refresh {row['refresh_s']:6.2f} s  "
                      f"ratio {row['refresh/refit']:.2f}, to a refit from the matrix "
                      f"{row['refresh/refit_matrix']:.2f}  equal {same}", flush=True)
                if not same:
                    print("  the refreshed model differs from the refit: a bug", file=sys.stderr)
    table = pd.DataFrame(rows)
    stem = args.out / (f"refresh-{args.data}" + (f"-{args.size[2] // 10**6}m" if args.size else ""))
    stem.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(stem.with_suffix(".csv"), index=False)
    stem.with_suffix(".md").write_text(markdown(table, ".3f") + "\n")
    print("\n" + markdown(table, ".3f"))
    print(f"\nwritten: {stem}.{{csv,md}}")
    return 0 if table["equal_to_refit"].all() else 1


if __name__ == "__main__":
    sys.exit(main())
