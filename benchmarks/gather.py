"""Bringing a frame's parts from the workers to the client: as pandas frames, and packed
(``dcf.cluster.gather_frame``: each part's columns in the fewest bytes, unpacked once).

    python benchmarks/gather.py                          # the three e2e shapes' Top-20 lists
    python benchmarks/gather.py --users 100000 --parts 4 --repeat 5

The parts are Top-N lists as the batch job makes them (``user, rank, item, score,
fallback``: user ids in runs of N, ranks 1..N, item ids below 150,000, float64 scores, a
categorical), computed and held on a local cluster of 2 workers x 2 threads first; then,
alternating ``--repeat`` times, the client fetches them (1) as frames, each as its task
would hand it over, concatenated by ``pd.concat``, and (2) with ``gather_frame``, whose
packing runs on the workers inside the timing.  Both give the same frame (checked).
Prints machine, versions, shapes, bytes on the wire (pickled) and the median seconds.
"""

from __future__ import annotations

import argparse
import pickle
import time

import dask
import numpy as np
import pandas as pd
from _report import environment, markdown

SHAPES = {"paper": (100_000, 4), "ecommerce": (300_000, 8), "20m": (1_000_000, 8)}  # users, parts


def lists(users: int, n: int, seed: int) -> pd.DataFrame:
    """One part's Top-``n`` lists of ``users`` users (seeded)."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "user": np.repeat(rng.integers(0, 10**9, users), n), "rank": np.tile(np.arange(1, n + 1), users),
        "item": rng.integers(0, 150_000, users * n), "score": rng.random(users * n),
        "fallback": pd.Categorical.from_codes((rng.random(users * n) < 0.05).astype(np.int8),
                                              categories=["none", "popular"])})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", nargs="+", choices=sorted(SHAPES), default=list(SHAPES))
    p.add_argument("--users", type=int, help="instead of --shape: this many users ...")
    p.add_argument("--parts", type=int, default=4, help="... in this many parts")
    p.add_argument("--top-n", type=int, default=20)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    print(environment(), flush=True)
    from distributed import Client, LocalCluster, futures_of, wait

    from dcf.cluster import gather_frame
    from dcf.cluster.frames import pack_frame
    from dcf.ids import frame_from_parts

    shapes = {"custom": (args.users, args.parts)} if args.users else {s: SHAPES[s] for s in args.shape}
    rows = []
    with LocalCluster(n_workers=2, threads_per_worker=2, processes=True, dashboard_address=None,
                      memory_limit="6GB") as cluster, Client(cluster) as client:
        for name, (users, parts) in shapes.items():
            each = users // parts
            delayed = [dask.delayed(lists, pure=True)(each, args.top_n, i) for i in range(parts)]
            frame = frame_from_parts(delayed, lists(0, args.top_n, 0), "recommendations").persist()
            wait(frame)
            futures = futures_of(frame)
            sample = lists(each, args.top_n, 0)
            wire_frame = len(pickle.dumps(sample, protocol=5)) * parts
            wire_packed = len(pickle.dumps(pack_frame(sample), protocol=5)) * parts
            times = {"frames": [], "packed": []}
            for _ in range(args.repeat):
                t = time.perf_counter()
                plain = pd.concat(client.gather(futures), ignore_index=True)
                times["frames"].append(time.perf_counter() - t)
                t = time.perf_counter()
                packed = gather_frame(frame)
                times["packed"].append(time.perf_counter() - t)
                pd.testing.assert_frame_equal(packed, plain, check_exact=True)
                del plain, packed
            med = {k: float(np.median(v)) for k, v in times.items()}
            rows.append({"shape": name, "users": users, "rows": users * args.top_n, "parts": parts,
                         "frames MB": wire_frame / 1e6, "packed MB": wire_packed / 1e6,
                         "frames s": med["frames"], "packed s": med["packed"],
                         "packed / frames": med["packed"] / med["frames"],
                         "rounds frames": " ".join(f"{x:.3f}" for x in times["frames"]),
                         "rounds packed": " ".join(f"{x:.3f}" for x in times["packed"])})
            print(markdown(pd.DataFrame(rows[-1:]), ".3g"), flush=True)
            client.cancel(futures)
            del frame, futures
    print()
    print(markdown(pd.DataFrame(rows), ".3g"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
