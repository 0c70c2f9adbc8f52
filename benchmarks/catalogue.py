"""The fit's kernel time as the catalogue grows, at fixed users, ratings and sum of n_u^2.

    python benchmarks/catalogue.py                       # 300k users, 6M ratings; 20k, 150k, 1M items
    python benchmarks/catalogue.py --items 20000,150000 --sample 2000

For each catalogue size the same users (log-normal activity, seeded) rate items drawn
from a Zipf popularity (rank^-a over the catalogue, ids shuffled).  The fast top-k
kernel (``full-cosine``, k=50, global lists, one thread, in this process, on the
shared matrix as the fit builds it: packed where it has at most 65,536 columns) runs
on a random sample of ``--sample`` items, scaled to every item (a uniform sample of
the items: an unbiased estimate of the sum over all of them), after an untimed call
that compiles it for the matrix's types.  Two ways of the
kernel alternate, ``--repeat`` times each, on the same sample: every row scanning
every column (``TRACK_BELOW = 0``, what the kernel did before issue 21) and the
default choice per row (:data:`dcf.kernels.rows.TRACK_BELOW`).  Both give the same
lists (checked); ``--ways tracked`` times the default alone (the dense way takes half an
hour a run at 1M items).  Prints machine, versions, the shapes, the estimates, their
ratio, and each way's growth against the smallest catalogue; writes ``catalogue.csv``,
``catalogue.md`` and the curve, ``catalogue.png`` (time against catalogue size, log-log,
with issue 21's goal of at most 1.5x the smallest catalogue's time), to
``benchmarks/results/`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import scipy.sparse as sp
from _report import environment, markdown


def ratings(users: int, items: int, n: int, seed: int, zipf: float = 1.0):
    """``(user, item)`` codes of about ``n`` distinct ratings: log-normal activity per
    user (the same for every catalogue size), Zipf popularity over ``items`` (ids
    shuffled), duplicates dropped."""
    rng = np.random.default_rng(seed)
    activity = rng.lognormal(0.0, 1.0, users)
    per_user = np.maximum(1, np.round(activity / activity.sum() * n)).astype(np.int64)
    u = np.repeat(np.arange(users, dtype=np.int64), per_user)
    weights = 1.0 / np.arange(1, items + 1) ** zipf
    ids = np.random.default_rng(seed + 1).permutation(items)
    picks = np.random.default_rng(seed + 2).choice(items, size=len(u), p=weights / weights.sum())
    keys = np.unique(u * items + ids[picks])
    return keys // items, keys % items


def main(argv=None) -> int:
    from dcf import kernels
    from dcf.kernels import rows as kernel_rows
    from dcf.kernels.codec import PACK_LIMIT

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=300_000)
    p.add_argument("--ratings", type=int, default=6_000_000)
    p.add_argument("--items", default="20000,150000,1000000")
    p.add_argument("--sample", type=int, default=3000, help="items timed per catalogue size")
    p.add_argument("--k", type=int, default=50)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ways", default="dense,tracked", help="dense, tracked or both")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = p.parse_args(argv)
    print(environment(), flush=True)
    settings = kernels.SimilaritySettings("full-cosine")
    ways = [(w, {"dense": 0.0, "tracked": kernel_rows.TRACK_BELOW}[w]) for w in args.ways.split(",")]
    rows = []
    for items in (int(x) for x in args.items.split(",")):
        u, i = ratings(args.users, items, args.ratings, args.seed)
        values = 1.0 + (u * 7 + i * 3) % 5  # ratings 1..5, a fixed function of the pair
        Q = sp.csr_matrix((values, (u, i)), shape=(args.users, items))
        Q.sort_indices()
        P = Q.T.tocsr()
        norms = kernels.entity_totals(P, "full-cosine")
        shared = kernels.compact_stack([Q], pack=items <= PACK_LIMIT)
        counts = np.diff(Q.indptr)
        sample = np.sort(np.random.default_rng(args.seed + 3).choice(items, min(args.sample, items), replace=False))
        Pa = P[sample]
        products = float(np.diff(Q.indptr)[Pa.indices].sum())
        for _, track in ways:  # compiled for this matrix's types, untimed
            with mock.patch.object(kernel_rows, "TRACK_BELOW", track):
                kernels.similarity_rows(Pa[:20], shared, sample[:20], settings, args.k, norms_a=norms[sample[:20]],
                                        norms=norms)
        times = {way: [] for way, _ in ways}
        lists = {}
        for _ in range(args.repeat):
            for way, track in ways:
                with mock.patch.object(kernel_rows, "TRACK_BELOW", track):
                    t = time.perf_counter()
                    _, idx, sim = kernels.similarity_rows(Pa, shared, sample, settings, args.k,
                                                          norms_a=norms[sample], norms=norms)
                    times[way].append(time.perf_counter() - t)
                lists[way] = (idx, sim)
        same = len(lists) < 2 or all(np.array_equal(a, b) for a, b in zip(lists["dense"], lists["tracked"]))
        scale = items / len(sample)
        row = {"items": items, "users": args.users, "ratings": len(u), "sum_nu2": float((counts ** 2).sum()),
               "packed": items <= PACK_LIMIT, "sample": len(sample), "sample_products": products,
               **{f"{way}_s": float(np.median(t)) * scale for way, t in times.items()}, "same_lists": same}
        if len(times) == 2:
            row["tracked_over_dense"] = row["tracked_s"] / row["dense_s"]
        rows.append(row)
        runs = " / ".join(f"{way} " + ", ".join(f"{t * scale:.2f}" for t in ts) for way, ts in times.items())
        print(f"items {items:>9,}: ratings {len(u):,}, sum n_u^2 {row['sum_nu2']:.3g}, "
              + ", ".join(f"{way} {row[f'{way}_s']:.2f} s" for way in times)
              + f" (estimated over every item; runs {runs}), same lists: {same}", flush=True)
    table = pd.DataFrame(rows)
    for way, _ in ways:
        table[f"{way}_growth"] = table[f"{way}_s"] / table[f"{way}_s"].iloc[0]
    print(markdown(table, ".3g"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "catalogue.csv", index=False)
    (out / "catalogue.md").write_text(environment() + "\n\n" + markdown(table, ".3g") + "\n")
    plot(table, [w for w, _ in ways], out / "catalogue.png", args)
    return 0 if table["same_lists"].all() else 1


def plot(table: pd.DataFrame, ways: list[str], path: Path, args) -> None:
    """The curve: estimated kernel seconds against catalogue size (log-log), each way, and
    the goal (1.5x the smallest catalogue's time of the default way)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    labels = {"dense": "every column scanned (before issue 21)", "tracked": "tracked columns (default)"}
    for way in ways:
        ax.plot(table["items"], table[f"{way}_s"], marker="o", label=labels[way])
        for x, y in zip(table["items"], table[f"{way}_s"]):
            ax.annotate(f"{y:.3g} s", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    base = table[f"{ways[-1]}_s"].iloc[0]
    ax.axhline(1.5 * base, color="grey", linestyle="--", linewidth=1, label="goal: 1.5x the smallest catalogue")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("items in the catalogue")
    ax.set_ylabel("kernel seconds, one thread (estimated over every item)")
    ax.set_title(f"full-cosine top-{args.k}, {args.users:,} users, ~{args.ratings / 1e6:g}M ratings", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
