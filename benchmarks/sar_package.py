"""dcf against Microsoft Recommenders' ``SARSingleNode`` itself, on ML-100K (issue 22).

    python -m venv /tmp/sarenv && /tmp/sarenv/bin/pip install --no-deps recommenders \
        && /tmp/sarenv/bin/pip install numpy scipy "pandas<3"
    DCF_DATA=../shared/data python benchmarks/sar_package.py --sar-python /tmp/sarenv/bin/python

The ``recommenders`` package pins pandas < 3 and pulls in much more (STACK.md), so it cannot
share dcf's environment: SAR runs in its own interpreter (``--sar-python``, a child process
given the ratings and writing its item similarity and its user scores, every user and item,
to a file), dcf here.  For each of SAR's similarity types that dcf has (``cooccurrence``,
``jaccard``, ``lift``), without time decay and with it (``--half-lives``: SAR's
``time_decay_coefficient`` in days, ``timedecay_formula=True``, its reference the latest
timestamp; dcf's ``half_life``): SAR's similarity
against dcf's lists (item-based, ``feedback="implicit"``, global lists long enough to hold
every positive similarity; SAR keeps an item's own co-occurrence on its diagonal, dcf
leaves the item out of its list, so the diagonal is not compared), every user's scores of
dcf's Top-10 (``ranking="sum"``) against SAR's ``score(..., remove_seen=True)``, and
whether each user's 10 are SAR's 10 best (up to ties).  Times: SAR's fit plus scoring in
its process, dcf's fit plus Top-10 on the threaded scheduler.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dask
import numpy as np

from _report import environment
from _sar_protocol import udata

KINDS = ("cooccurrence", "jaccard", "lift")

# run by --sar-python: fit SAR, write its similarity and scores ordered by sorted ids
CHILD = r"""
import json, sys, time
import numpy as np
np.NaN = np.nan  # recommenders 1.2.1 still uses the NumPy 1 name
import pandas as pd
from recommenders.models.sar.sar_singlenode import SARSingleNode

frame_path, kind, out, half_life = sys.argv[1:5]
df = pd.read_parquet(frame_path)
t = time.perf_counter()
decay = dict(timedecay_formula=True, time_decay_coefficient=float(half_life)) if half_life != "none" else \
    dict(timedecay_formula=False)
model = SARSingleNode(col_user="user", col_item="item", col_rating="rating", col_timestamp="time",
                      similarity_type=kind, **decay)
model.fit(df)
scores = model.score(df, remove_seen=True)
took = time.perf_counter() - t
users = np.array(sorted(model.user2index)); items = np.array(sorted(model.item2index))
order_u = np.argsort(df["user"].unique())  # score()'s rows come in unique() order
scores = np.asarray(scores)[order_u]
cols = np.array([model.item2index[i] for i in items])
sim = model.item_similarity
sim = sim.toarray() if hasattr(sim, "toarray") else np.asarray(sim)
np.savez(out, sim=sim[np.ix_(cols, cols)], scores=scores[:, cols], users=users, items=items)
print(json.dumps({"seconds": took}))
"""


def _sar(python: str, frame_path: Path, kind: str, out: Path, half_life) -> float:
    done = subprocess.run([python, "-c", CHILD, str(frame_path), kind, str(out),
                           "none" if half_life is None else str(half_life)], capture_output=True,
                          text=True, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"SAR ({python}) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["seconds"]


def main(argv=None) -> int:
    from dcf.model import ItemKNN

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sar-python", required=True, help="an interpreter with recommenders installed")
    p.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    p.add_argument("--top-n", type=int, default=10)
    p.add_argument("--half-lives", nargs="+", default=["none", "30"],
                   help="SAR's time_decay_coefficient = dcf's half_life, days ('none': no decay)")
    args = p.parse_args(argv)
    path, frame = udata()
    if frame is None:
        return 2
    print(environment(), flush=True)
    n = args.top_n
    print(f"data    : {path}: {len(frame):,} ratings, every one an event weighing its rating, with its "
          f"timestamp; top {n}, seen items removed; half-lives {' '.join(args.half_lives)}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        frame_path = Path(tmp) / "ratings.parquet"
        frame.to_parquet(frame_path, index=False)
        for kind, half in ((k, h) for h in args.half_lives for k in args.kinds):
            half_life = None if half == "none" else float(half)
            sar_seconds = _sar(args.sar_python, frame_path, kind, Path(tmp) / f"{kind}.npz", half_life)
            got = np.load(Path(tmp) / f"{kind}.npz")
            sim, scores, users, items = got["sim"], got["scores"], got["users"], got["items"]
            t = time.perf_counter()
            with dask.config.set(scheduler="threads"):
                model = ItemKNN(feedback="implicit", similarity=kind, k=len(items) - 1, neighbourhood="global",
                                half_life=half_life).fit(frame if half_life else frame[["user", "item", "rating"]])
                recs = model.recommend(n=n, ranking="sum").compute()
            dcf_seconds = time.perf_counter() - t
            lists = model.neighbours()
            ours = np.zeros_like(sim)
            ours[np.searchsorted(items, lists["entity"]), np.searchsorted(items, lists["neighbour"])] = \
                lists["similarity"].to_numpy()
            want = sim.copy()
            np.fill_diagonal(want, 0.0)
            want[want < 0] = 0.0
            sim_rel = float(np.max(np.abs(ours - want) / np.maximum(np.abs(want), 1e-300), where=want > 0,
                                   initial=0.0))
            missing = int(np.sum((want > 0) != (ours > 0)))
            recs = recs[recs["fallback"] == "none"]
            r, c = np.searchsorted(users, recs["user"]), np.searchsorted(items, recs["item"])
            theirs = scores[r, c]
            score_rel = float(np.max(np.abs(recs["score"].to_numpy() - theirs) / np.abs(theirs)))
            same = 0
            for code, mine in recs.groupby(r)["score"]:
                best = np.sort(scores[code][np.isfinite(scores[code]) & (scores[code] > 0)])[::-1][:len(mine)]
                same += bool(np.allclose(np.sort(mine.to_numpy())[::-1], best, rtol=1e-9, atol=0))
            print(f"{kind:13s} half-life {half:>4s}: similarity: max rel diff {sim_rel:.1e}, pairs positive in one only {missing}; "
                  f"Top-{n} scores: max rel diff {score_rel:.1e}, users whose {n} are SAR's best "
                  f"{same}/{recs['user'].nunique()}; SAR {sar_seconds:.2f} s, dcf {dcf_seconds:.2f} s "
                  f"({dcf_seconds / sar_seconds:.2f}x)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
