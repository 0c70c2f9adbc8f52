"""The ``rated`` neighbourhood's fit (whole similarity rows kept) as the catalogue grows, at
fixed users, ratings and sum of n_u^2.

    python benchmarks/whole_rows.py                          # 1,000 users, 100k ratings; 5k to 320k items
    python benchmarks/whole_rows.py --items 5000,20000,80000 --repeat 1

``ItemKNN(similarity="cosine", neighbourhood="rated", k=50).fit`` (dcf's defaults, the
paper's: whole rows of co-rated cosine, kept for prediction) in this process, with no
cluster (Dask's threads, as in a notebook), after an untimed fit that compiles the
kernels.  The ratings are ``catalogue.py``'s: the same users with the same activity rate
items of a Zipf popularity over each catalogue size.  The rows' work and their output
follow the pairs of items that share a rater (at most sum n_u^2), not the catalogue: the
fit's time should not grow with it.  Beside it, implicit's ``CosineRecommender(K=50).fit``
on the same matrix, one thread, for scale only: it keeps top-K lists, not whole rows.

Prints machine, versions, the shapes, each fit's median seconds, the non-zero similarities
kept and the growth against the smallest catalogue; writes ``whole_rows.md`` to
``benchmarks/results/`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import scipy.sparse as sp
from _report import environment, markdown
from catalogue import ratings


def _dcf_fit(frame: pd.DataFrame):
    from dcf import ItemKNN

    t = time.perf_counter()
    model = ItemKNN(similarity="cosine", neighbourhood="rated", k=50).fit(frame)
    seconds = time.perf_counter() - t
    kept = sum(int(b.nnz if sp.issparse(b) else np.count_nonzero(b))
               for b in dask.compute(*model.similarity_rows_.to_delayed().ravel().tolist()))
    return seconds, kept


def _implicit_fit(frame: pd.DataFrame, items: int):
    try:
        from implicit.nearest_neighbours import CosineRecommender
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    warnings.filterwarnings("ignore", message="Method expects CSR input")  # implicit's own transpose
    users = int(frame.user.max()) + 1
    X = sp.csr_matrix((frame.rating.to_numpy(), (frame.user.to_numpy(), frame.item.to_numpy())), shape=(users, items))
    with threadpool_limits(1):
        t = time.perf_counter()
        CosineRecommender(K=50, num_threads=1).fit(X, show_progress=False)
        return time.perf_counter() - t


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=1_000)
    p.add_argument("--ratings", type=int, default=100_000)
    p.add_argument("--items", default="5000,20000,80000,320000")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = p.parse_args(argv)
    print(environment(), flush=True)
    _dcf_fit(pd.DataFrame({"user": [0, 0, 1], "item": [0, 1, 1], "rating": [1.0, 2.0, 3.0]}))  # compiles
    rows = []
    for items in [int(x) for x in args.items.split(",")]:
        u, i = ratings(args.users, items, args.ratings, args.seed)
        frame = pd.DataFrame({"user": u, "item": i, "rating": (1 + (u * 7 + i) % 5).astype(np.float64)})
        n_u = np.bincount(u)
        runs = [(_dcf_fit(frame), _implicit_fit(frame, items)) for _ in range(args.repeat)]
        row = {"items": items, "users": args.users, "ratings": len(frame), "sum_nu2": int((n_u.astype(np.int64) ** 2).sum()),
               "dcf_s": float(np.median([r[0][0] for r in runs])), "kept_similarities": runs[0][0][1],
               "implicit_s": (float(np.median([r[1] for r in runs])) if runs[0][1] is not None else np.nan)}
        rows.append(row)
        print(f"items {items:>9,}  ratings {row['ratings']:,}  sum n_u^2 {row['sum_nu2']:,}  dcf rated fit "
              f"{row['dcf_s']:7.2f} s ({row['kept_similarities']:,} similarities kept)  implicit {row['implicit_s']:6.2f} s",
              flush=True)
    table = pd.DataFrame(rows)
    table["dcf_growth"] = table.dcf_s / table.dcf_s.iloc[0]
    print(table.to_string(index=False))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "whole_rows.md").write_text(environment() + "\n\n" + markdown(table, ".3f") + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
