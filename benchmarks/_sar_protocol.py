"""``accuracy.py --protocol sar``: implicit-feedback Top-N quality on ML-100K as Microsoft
Recommenders' SAR table measures it (issue 22).

The protocol of that table: every rating an interaction, its value the weight; 75/25 split
stratified by user (here :func:`dcf.split.user_holdout`, a seeded hash of each pair, so
not SAR's own shuffle); top 10, seen items removed; precision, recall, NDCG at 10 and MAP
(:func:`dcf.evaluate.ranking_metrics`, every test item relevant).  Run side by side on the
same split: every dcf measure (item-based, ``feedback="implicit"``, global lists of ``k``,
``ranking="sum"``), SAR's jaccard scoring written out (affinity x similarity over every
pair), each without time decay and with each of ``--half-lives`` (days: SAR's
``time_decay_coefficient``, dcf's ``half_life``; the reference the latest training event),
and implicit's ``CosineRecommender``,
``BM25Recommender`` and ``TFIDFRecommender`` (K = ``k``) where implicit is installed.
SAR's published ML-100K figures (with its 30-day time decay) are P@10 0.331, NDCG@10 0.382.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import scipy.sparse as sp

from _report import environment, markdown

MEASURES = ("full-cosine", "cosine", "jaccard", "cooccurrence", "lift", "llr", "bm25", "tfidf", "conditional")
PUBLISHED = {"precision": 0.331, "ndcg": 0.382}  # SAR on ML-100K, Microsoft Recommenders' table


def _lists(scores: np.ndarray, seen: sp.csr_matrix, users, items, n: int) -> pd.DataFrame:
    """Top-``n`` unseen items per user from dense scores (users x items)."""
    scores = scores.copy()
    r, c = seen.nonzero()
    scores[r, c] = -np.inf
    top = np.argsort(-scores, axis=1, kind="stable")[:, :n]
    rows = np.repeat(np.arange(len(users)), n)
    return pd.DataFrame({"user": users[rows], "rank": np.tile(np.arange(1, n + 1), len(users)),
                         "item": items[top.ravel()]})


def _affinity(train: pd.DataFrame, u, i, shape, half_life) -> sp.csr_matrix:
    """SAR's affinity: the weights, decayed (``half_life`` days, from the latest event) and
    summed per pair where a half-life is given."""
    w = train["rating"].to_numpy()
    if half_life is not None:
        t = train["time"].to_numpy(np.float64)
        w = w * np.power(0.5, (t.max() - t) / (half_life * 24 * 60 * 60))
    return sp.csr_matrix((w, (u, i)), shape=shape)


def _sar_jaccard(A: sp.csr_matrix) -> np.ndarray:
    """SAR's scores: affinity ``A`` times jaccard over binarised co-occurrence."""
    H = (A > 0).astype(np.float64)
    C = (H.T @ H).toarray()
    d = np.diag(C)
    with np.errstate(divide="ignore", invalid="ignore"):
        S = np.nan_to_num(C / (d[:, None] + d[None, :] - C))
    return np.asarray(A @ S)


def _implicit(A: sp.csr_matrix, k: int, n: int) -> dict:
    try:
        import implicit.nearest_neighbours as nn
    except ImportError:
        print("implicit: not installed, skipped", flush=True)
        return {}
    out = {}
    for name, cls in (("implicit CosineRecommender", nn.CosineRecommender),
                      ("implicit BM25Recommender", nn.BM25Recommender),
                      ("implicit TFIDFRecommender", nn.TFIDFRecommender)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = cls(K=k, num_threads=1)
            model.fit(A, show_progress=False)
            ids, _ = model.recommend(np.arange(A.shape[0]), A, N=n)
        out[name] = ids
    return out


def udata():
    """``(path, frame)`` of ML-100K's ``u.data`` (user, item, rating as float64, time), or
    ``(None, None)`` after saying why (it is never downloaded: MovieLens may not be
    redistributed)."""
    from dcf.datasets import movielens_path
    from dcf.errors import DataError

    try:
        path = movielens_path("ml-100k", "u.data", download=False)
    except DataError as exc:
        print(f"MovieLens 100K: {exc}; set DCF_DATA to the folder holding ml-100k/", file=sys.stderr)
        return None, None
    frame = pd.read_csv(path, sep="\t", names=["user", "item", "rating", "time"])
    return path, frame.astype({"rating": np.float64})


def run(argv=None) -> int:
    from dcf import evaluate, split
    from dcf.model import ItemKNN

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--protocol", choices=["sar"], default="sar")
    p.add_argument("--measures", nargs="+", default=list(MEASURES), choices=list(MEASURES))
    p.add_argument("--ks", type=int, nargs="+", default=[50, 200])
    p.add_argument("--top-n", type=int, default=10)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--half-lives", nargs="+", default=["none", "30"], help="days, or 'none' (no decay)")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = p.parse_args(argv)
    path, frame = udata()
    if frame is None:
        return 2
    print(environment(), flush=True)
    frame = frame[["user", "item", "rating", "time"]]
    frame["line"] = np.arange(1, len(frame) + 1)
    with dask.config.set(scheduler="sync"):
        train, test = split.user_holdout([dask.delayed(frame)], 0.25, args.seed)
        train, test = (pd.concat(dask.compute(*x), ignore_index=True) for x in (train, test))
    train, test = train.drop(columns="line"), test.drop(columns="line")
    n = args.top_n
    print(f"data    : {path}: {len(frame):,} ratings as weighted interactions; per-user 75/25 split "
          f"(seed {args.seed}): {len(train):,} train, {len(test):,} test; top {n}, seen items removed, "
          "every test item relevant", flush=True)
    users, u = np.unique(train["user"].to_numpy(), return_inverse=True)
    items, i = np.unique(train["item"].to_numpy(), return_inverse=True)
    A = sp.csr_matrix((train["rating"].to_numpy(), (u, i)), shape=(len(users), len(items)))
    rows = []

    def score(name, k, recs, seconds):
        m = evaluate.ranking_metrics(recs, test, n, threshold=0.0)
        rows.append({"method": name, "k": k, f"precision@{n}": m["precision"], f"recall@{n}": m["recall"],
                     f"ndcg@{n}": m["ndcg"], "map": m["map"], "users": m["users"], "seconds": round(seconds, 2)})
        print(f"{name:32s} k={str(k):>5s}  P@{n} {m['precision']:.4f}  R@{n} {m['recall']:.4f}  "
              f"NDCG@{n} {m['ndcg']:.4f}  MAP {m['map']:.4f}  ({seconds:.1f} s)", flush=True)

    halves = [None if h == "none" else float(h) for h in args.half_lives]
    for half in halves:
        t = time.perf_counter()
        said = "no decay" if half is None else f"half-life {half:g} d"
        score(f"SAR jaccard (formulas, {said})", "all",
              _lists(_sar_jaccard(_affinity(train, u, i, A.shape, half)), A, users, items, n), time.perf_counter() - t)
    with dask.config.set(scheduler="threads"):
        for k in args.ks:
            for half in halves:
                for measure in args.measures:
                    t = time.perf_counter()
                    model = ItemKNN(feedback="implicit", similarity=measure, k=k, neighbourhood="global",
                                    half_life=half).fit(train if half else train.drop(columns="time"))
                    recs = model.recommend(n=n, ranking="sum").compute()
                    name = f"dcf {measure}" + ("" if half is None else f" (half-life {half:g} d)")
                    score(name, str(k), recs, time.perf_counter() - t)
            t = time.perf_counter()
            for name, ids in _implicit(A, k, n).items():
                keep = ids >= 0
                recs = pd.DataFrame({"user": np.repeat(users, n)[keep.ravel()],
                                     "rank": np.tile(np.arange(1, n + 1), len(users))[keep.ravel()],
                                     "item": items[ids[keep]]})
                score(name, str(k), recs, time.perf_counter() - t)
                t = time.perf_counter()
    table = pd.DataFrame(rows)
    best = table[table["method"].str.startswith("dcf")].sort_values(f"ndcg@{n}").iloc[-1]
    print(f"\nbest dcf: {best['method']} k={best['k']}: P@{n} {best[f'precision@{n}']:.4f} "
          f"(SAR published {PUBLISHED['precision']}), NDCG@{n} {best[f'ndcg@{n}']:.4f} "
          f"(SAR published {PUBLISHED['ndcg']})")
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "accuracy-implicit-ml-100k.csv", index=False)
    (args.out / "accuracy-implicit-ml-100k.md").write_text(markdown(table))
    return 0
