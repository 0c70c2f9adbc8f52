"""A fit in a notebook: ``ItemKNN(...).fit(frame)`` with no cluster, against implicit's fit in
the same process (issue 21, goal 5).

    python benchmarks/notebook_fit.py                   # ML-100K u1.base from $DCF_DATA
    python benchmarks/notebook_fit.py --repeat 11 --k 40

The data is MovieLens 100K's ``u1.base`` (80,000 ratings, 943 users, 1,650 items) read with
pandas, from ``$DCF_DATA/ml-100k`` (default ``../shared/data``; MovieLens may not be
redistributed, nothing is downloaded).  dcf fits under Dask's threaded scheduler (no
client), twice per setting before timing; implicit's ``CosineRecommender`` fits the same
ratings as a CSR matrix (its whole-vector cosine is dcf's ``full-cosine`` with global
lists; the co-rated ``cosine`` is a heavier measure implicit does not have).  Prints the
median of ``--repeat`` fits of each and the ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from _report import environment

SETTINGS = [("full-cosine", "global"), ("full-cosine", "rated"), ("cosine", "rated"), ("cosine", "global")]


def _median_seconds(fit, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fit()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--k", type=int, default=40)
    args = p.parse_args(argv)
    print(environment())
    path = Path(os.environ.get("DCF_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    path = path / "ml-100k" / "u1.base"
    if not path.is_file():
        print(f"MovieLens 100K not found at {path}; set DCF_DATA to the folder holding ml-100k/",
              file=sys.stderr)
        return 2
    frame = pd.read_csv(path, sep="\t", names=["user", "item", "rating", "timestamp"])[["user", "item", "rating"]]
    print(f"shape   : {path} ({len(frame):,} ratings, {frame.user.nunique():,} users, "
          f"{frame.item.nunique():,} items); k={args.k}; median of {args.repeat} fits, no cluster")

    from implicit.nearest_neighbours import CosineRecommender

    from dcf import ItemKNN

    warnings.filterwarnings("ignore", message="Method expects CSR input")  # implicit transposes internally
    X = sp.csr_matrix((frame.rating.to_numpy(np.float32), (frame.user.to_numpy(), frame.item.to_numpy())))
    peer = _median_seconds(lambda: CosineRecommender(K=args.k).fit(X, show_progress=False), args.repeat)
    print(f"  implicit CosineRecommender fit   {peer:8.4f} s")
    for similarity, neighbourhood in SETTINGS:
        def fit():
            ItemKNN(k=args.k, similarity=similarity, neighbourhood=neighbourhood).fit(frame)
        fit(), fit()  # compiled kernels loaded, caches warm
        ours = _median_seconds(fit, args.repeat)
        print(f"  dcf {similarity:<12} {neighbourhood:<7}  {ours:8.4f} s   {ours / peer:5.1f}x implicit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
