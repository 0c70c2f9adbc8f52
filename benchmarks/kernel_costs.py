"""What the rows kernel's time is made of: the cost model that cuts the fit's even tasks.

    python benchmarks/kernel_costs.py --data <Parquet folder or source>   # e.g. the 20M set

Times the fast top-k kernel (``full-cosine``, k=50, one thread, in this process) on
``--ranges`` random consecutive ranges of entities (items), each once warm, and fits by
non-negative least squares ``time = a * products + b * pairs + c * rows * n``: products are the
multiply-adds (the sum of the raters' row lengths), pairs the entity's ratings (each
fetches one row of the shared matrix), rows * n the columns the top-k scan passes over.
Prints the three costs in ns, their ratios to a product (what
``dcf.similarity.PAIR_COST`` and ``SCAN_COST`` are set from), the share of the time
each explains, and the fit's relative error.  Then, by that model, the most expensive of
eight tasks over the mean when the entities are cut by products alone and by the model.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _report import environment


def main(argv=None) -> int:
    import dask
    import pandas as pd

    from dcf import kernels
    from dcf.datasets import open_source
    from dcf.similarity import PAIR_COST, SCAN_COST, balanced_cuts

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="synthetic:users=200000,items=5000,ratings=2000000")
    p.add_argument("--k", type=int, default=50)
    p.add_argument("--ranges", type=int, default=150)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    print(environment(), flush=True)
    df = pd.concat(dask.compute(*open_source(args.data).parts, scheduler="threads"))
    u = pd.factorize(df["user"].to_numpy(), sort=True)[0]
    i = pd.factorize(df["item"].to_numpy(), sort=True)[0]
    m, n = int(u.max()) + 1, int(i.max()) + 1
    Q = kernels.csr_from_triplets(u, i, df["rating"].to_numpy(np.float64), (m, n))[0]  # as dcf builds blocks
    P = Q.T.tocsr()
    P.sort_indices()
    print(f"data    : {m:,} users x {n:,} items x {Q.nnz:,} ratings ({args.data})", flush=True)
    norms = kernels.row_norms(P)
    shared = kernels.compact_stack([Q], pack=True)
    products = np.asarray(P @ np.diff(Q.indptr).astype(np.float64)).ravel()
    pairs = np.diff(P.indptr).astype(np.float64)
    rng = np.random.default_rng(args.seed)
    cuts = np.unique(np.concatenate([[0, n], rng.choice(n, min(args.ranges, n - 1), replace=False)]))
    X, y = [], []
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        Pa = P[lo:hi]
        for rep in range(2):  # the first call warms the caches for this range
            t = time.perf_counter()
            kernels.similarity_rows(Pa, shared, lo, kernels.SimilaritySettings("full-cosine"), k=args.k,
                                    norms_a=norms[lo:hi], norms=norms)
            took = time.perf_counter() - t
        X.append([products[lo:hi].sum(), pairs[lo:hi].sum(), (hi - lo) * n])
        y.append(took)
    X, y = np.array(X), np.array(y)
    from scipy.optimize import nnls

    scale = X.max(axis=0)  # non-negative least squares on columns of like size
    coef = nnls(X / scale, y)[0] / scale
    print(f"cost    : {coef[0] * 1e9:.3f} ns a product, {coef[1] * 1e9:.1f} ns a pair, "
          f"{coef[2] * 1e9:.3f} ns a column scanned")
    print(f"ratios  : a pair = {coef[1] / coef[0]:.0f} products (PAIR_COST {PAIR_COST:.0f}), "
          f"a column scanned = {coef[2] / coef[0]:.1f} (SCAN_COST {SCAN_COST:.0f})")
    share = (X * coef).sum(axis=0) / y.sum()
    err = np.abs(y - X @ coef) / y
    print(f"share   : products {share[0]:.2f}, pairs {share[1]:.2f}, scan {share[2]:.2f}; "
          f"fit error median {np.median(err):.3f}, 90th percentile {np.quantile(err, 0.9):.3f}; "
          f"{y.sum():.2f} s over {len(y)} ranges")
    model = coef[0] * products + coef[1] * pairs + coef[2] * n
    for name, work in (("products alone", products),
                       ("dcf's cost model", products + PAIR_COST * pairs + SCAN_COST * n)):
        b = balanced_cuts(work, 8)
        per = np.array([model[a:z].sum() for a, z in zip(b[:-1], b[1:])])
        print(f"8 tasks cut by {name}: slowest / mean = {per.max() / per.mean():.3f} (by the fitted model)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
