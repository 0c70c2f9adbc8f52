"""The fit's kernel time as the catalogue grows, at fixed users, ratings and sum of n_u^2, beside the peers'.

    python benchmarks/catalogue.py                       # 300k users, 6M ratings; 20k, 150k, 1M items
    python benchmarks/catalogue.py --items 20000,150000 --peers none
    python benchmarks/catalogue.py --ways dense,tracked --sample 2000   # the old full scan too, on a sample

For each catalogue size the same users (log-normal activity, seeded) rate items drawn
from a Zipf popularity (rank^-a over the catalogue, ids shuffled); the matrix holds the
rated items only, as a fit's does (``rated_items``: 622,608 of the 1M).  The fast top-k
kernel (``full-cosine``, k=50, global lists, one thread, in this process, on the
shared matrix as the fit builds it: packed where its values fit) runs
over every item, in ``--calls`` ranges of equal work as a fit's tasks take them, after
an untimed call that compiles it for the matrix's types; the time is the calls', each
leaving its table as a fit's task does (stacking them, 1.2 s at 1M items, was timed
before 2026-12-04 and is not a fit's work).  The peers run on the same
matrix, one thread each, in the same run: implicit's ``CosineRecommender(K=50).fit`` and
similaripy's ``cosine(k=50)`` (``--peers``; a peer that is not installed is skipped).
Every tool runs ``--repeat`` times, alternating; the median is kept.

``--ways dense,tracked`` also times every row scanning every column (``TRACK_BELOW = 0``,
what the kernel did before issue 21) against the default choice per row
(:data:`dcf.kernels.rows.TRACK_BELOW`), with the same lists (checked); the dense way takes
half an hour at 1M items, so ``--sample N`` times N random items instead and scales the
rows' part to every item (the time of a call on no row, its allocations, counted once a
call, not scaled).

Prints machine, versions, the shapes, each tool's seconds, dcf's ratio to each peer and
each tool's growth against the smallest catalogue; writes ``catalogue.csv``,
``catalogue.md`` and the curve, ``catalogue.png`` (time against catalogue size, log-log,
every tool, with issue 21's goal of at most 1.5x the smallest catalogue's time), to
``benchmarks/results/`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import functools
import time
import warnings
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
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=300_000)
    p.add_argument("--ratings", type=int, default=6_000_000)
    p.add_argument("--items", default="20000,150000,1000000")
    p.add_argument("--sample", type=int, default=0, help="items timed per catalogue size (0: every item)")
    p.add_argument("--calls", type=int, default=8, help="kernel calls over every item (a fit's tasks)")
    p.add_argument("--k", type=int, default=50)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ways", default="tracked", help="dense, tracked or both")
    p.add_argument("--peers", default="implicit,similaripy", help="implicit, similaripy, both or none")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = p.parse_args(argv)
    print(environment(), flush=True)
    from dcf.kernels import rows as kernel_rows

    ways = [(w, {"dense": 0.0, "tracked": kernel_rows.TRACK_BELOW}[w]) for w in args.ways.split(",")]
    peers = _peers(args.peers, args.k)
    rows = []
    for items in (int(x) for x in args.items.split(",")):
        u, i = ratings(args.users, items, args.ratings, args.seed)
        values = 1.0 + (u * 7 + i * 3) % 5  # ratings 1..5, a fixed function of the pair
        # the items nobody rated are no column of a fit's matrix (its id map holds the rated
        # ones): 38 % of a 1M-item Zipf catalogue with 5M ratings. Kept as empty columns (before
        # 2026-12-04) they spread the rated ones apart, which no fit sees
        rated, i = np.unique(i, return_inverse=True)
        Q = sp.csr_matrix((values, (u, i)), shape=(args.users, len(rated)))
        Q.sort_indices()
        kernel = Kernel(Q, args)
        runs = {**{way: functools.partial(kernel.run, track) for way, track in ways},
                **{name: functools.partial(fit, Q) for name, fit in peers.items()}}
        for way, track in ways:  # compiled for this matrix's types, untimed
            kernel.run(track, warm=True)
        times = {name: [] for name in runs}
        lists = {}
        for _ in range(args.repeat):
            for name, run in runs.items():
                t = time.perf_counter()
                out = run()
                times[name].append(time.perf_counter() - t)
                if name in dict(ways):  # stacked untimed: a fit keeps each call's table as a block
                    lists[name] = (np.vstack([o[0] for o in out]), np.vstack([o[1] for o in out]))
                del out
        same = len(lists) < 2 or all(np.array_equal(a, b) for a, b in zip(lists["dense"], lists["tracked"]))
        counts = np.diff(Q.indptr)
        row = {"items": items, "rated_items": len(rated), "users": args.users, "ratings": len(u),
               "sum_nu2": float((counts ** 2).sum()),
               "packed": kernel.packed, "timed_items": kernel.timed,
               **{f"{name}_s": kernel.scaled(np.median(t)) if name in dict(ways) else float(np.median(t))
                  for name, t in times.items()}, "same_lists": same}
        for peer in peers:
            row[f"dcf_over_{peer}"] = row[f"{ways[-1][0]}_s"] / row[f"{peer}_s"]
        rows.append(row)
        print(f"items {items:>9,} ({len(rated):,} rated): ratings {len(u):,}, sum n_u^2 {row['sum_nu2']:.3g}: "
              + ", ".join(f"{name} {row[f'{name}_s']:.2f} s" for name in times)
              + " (runs " + " / ".join(name + " " + ", ".join(f"{x:.2f}" for x in ts) for name, ts in times.items())
              + f"), same lists: {same}", flush=True)
    table = pd.DataFrame(rows)
    tools = [w for w, _ in ways] + list(peers)
    for name in tools:
        table[f"{name}_growth"] = table[f"{name}_s"] / table[f"{name}_s"].iloc[0]
    print(markdown(table, ".3g"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "catalogue.csv", index=False)
    (out / "catalogue.md").write_text(environment() + "\n\n" + markdown(table, ".3g") + "\n")
    plot(table, tools, out / "catalogue.png", args)
    return 0 if table["same_lists"].all() else 1


class Kernel:
    """dcf's fast top-k kernel over one catalogue's matrix ``Q`` (users x items), timed
    over every item in ``args.calls`` ranges of equal work, or over a sample."""

    def __init__(self, Q, args):
        from dcf import kernels

        self.kernels, self.k = kernels, args.k
        self.settings = kernels.SimilaritySettings("full-cosine")
        n = Q.shape[1]
        self.P = Q.T.tocsr()
        self.norms = kernels.entity_totals(self.P, "full-cosine")
        self.shared = kernels.compact_stack([Q], pack=True)  # as the fit packs it, where it can
        self.packed = self.shared.packed is not None
        if args.sample:
            self.rows = np.sort(np.random.default_rng(args.seed + 3).choice(n, min(args.sample, n), replace=False))
            self.cuts = [(self.rows, self.P[self.rows])]
            self.scale, self.calls = n / len(self.rows), args.calls
        else:  # ranges of equal work (products, one per item besides), as the fit cuts its tasks
            work = np.diff(Q.indptr)[self.P.indices].astype(np.float64)
            per_item = np.bincount(np.repeat(np.arange(n), np.diff(self.P.indptr)), work, minlength=n)
            cum = np.concatenate([[0.0], np.cumsum(per_item + 1.0)])
            bounds = np.unique(np.searchsorted(cum, cum[-1] * np.arange(args.calls + 1) / args.calls))
            bounds[0], bounds[-1] = 0, n
            self.cuts = [(np.arange(a, b), self.P[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
            self.scale, self.calls = 1.0, len(self.cuts)
        self.timed = sum(len(r) for r, _ in self.cuts)
        self.idle = 0.0

    def run(self, track, warm=False):
        """Each call's ``(ids, similarities)`` table over the timed items (``track``: the
        kernel's TRACK_BELOW), as a fit's tasks leave them (not stacked)."""
        from dcf.kernels import rows as kernel_rows

        with mock.patch.object(kernel_rows, "TRACK_BELOW", track):
            if warm:
                r, Pa = self.cuts[0]
                self._call(r[:20], Pa[:20])
                t = time.perf_counter()
                self._call(r[:0], Pa[:0])
                self.idle = time.perf_counter() - t
                return None
            return [self._call(r, Pa) for r, Pa in self.cuts]

    def _call(self, rows, Pa):
        _, idx, sim = self.kernels.similarity_rows(Pa, self.shared, rows, self.settings, self.k,
                                                   norms_a=self.norms[rows], norms=self.norms)
        return idx, sim

    def scaled(self, seconds: float) -> float:
        """Seconds over every item: a sample's rows' part scaled, a call's own cost once a call."""
        if self.scale == 1.0:
            return float(seconds)
        return float((seconds - self.idle) * self.scale + self.idle * self.calls)


def _peers(names: str, k: int) -> dict:
    """``{name: fit(Q)}`` of the peers asked for that are installed, one thread each."""
    found = {}
    for name in [n for n in names.split(",") if n and n != "none"]:
        try:
            if name == "implicit":
                from implicit.nearest_neighbours import CosineRecommender

                def implicit_fit(Q, model=CosineRecommender):
                    with warnings.catch_warnings():  # its notice that it converts the matrix (timed)
                        warnings.simplefilter("ignore")
                        return model(K=k, num_threads=1).fit(Q, show_progress=False)

                found[name] = implicit_fit
            elif name == "similaripy":
                import similaripy

                found[name] = lambda Q: similaripy.cosine(Q.T.tocsr(), k=k, num_threads=1, verbose=False)
            else:
                raise SystemExit(f"catalogue.py: unknown peer {name!r} (implicit, similaripy)")
        except ImportError:
            print(f"{name}: not installed, skipped", flush=True)
    return found


def plot(table: pd.DataFrame, ways: list[str], path: Path, args) -> None:
    """The curve: seconds against catalogue size (log-log), each tool, and the goal (1.5x
    the smallest catalogue's time of dcf's default way)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    labels = {"dense": "dcf, every column scanned (before issue 21)", "tracked": "dcf (default)",
              "implicit": "implicit CosineRecommender.fit", "similaripy": "similaripy cosine"}
    for way in ways:
        ax.plot(table["items"], table[f"{way}_s"], marker="o", label=labels[way])
        for x, y in zip(table["items"], table[f"{way}_s"]):
            ax.annotate(f"{y:.3g} s", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    base = table[f"{'tracked' if 'tracked' in ways else ways[0]}_s"].iloc[0]
    ax.axhline(1.5 * base, color="grey", linestyle="--", linewidth=1, label="goal: dcf at most 1.5x its smallest catalogue")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("items in the catalogue (the matrix holds the rated ones)")
    ax.set_ylabel("seconds, one thread, every item")
    ax.set_title(f"full-cosine top-{args.k}, {args.users:,} users, ~{args.ratings / 1e6:g}M ratings", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
