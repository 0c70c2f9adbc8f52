"""A tuning run on the cluster against the same candidates one by one (issue 24).

    DCF_DATA=../shared/data python benchmarks/tuning.py

On a local cluster (``--workers`` x 1 thread, default 2), ML-100K's u1 split as the one outer
fold, ranks a grid of ``bm25`` settings by precision at 20 (the ranking preset's search,
smaller) three ways, each timed from the same start:

* ``dcf.tune``: one fit per setting that changes the similarity, the rest derived, the
  fits side by side on the cluster (``parallel=True``);
* the same, its fits one after the other (``parallel=False``);
* one by one: every candidate fitted on its own and scored, as a plain loop (or dask-ml's
  ``GridSearchCV``, which cannot share a fit between k values) does.

Prints the machine, versions, the grid, the three wall times and their ratios, and checks
that the three give every candidate the same validation score.

Then, in this process (synchronous scheduler), dask-ml's ``GridSearchCV`` on the estimator
(plain 3-fold CV of u1.base, scored by ``score()``: minus the MAE, ``refit=False``) against
``dcf.tune``'s nested search of the same grid (k 20/40/60 x amplification 1/2, 3 outer folds),
each timed, with what each chose.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time

import numpy as np

from _report import environment


def main(argv=None) -> int:
    import dask
    import pandas as pd

    from dcf import KNN, cluster, evaluate, read_ratings
    from dcf.config import ClusterConfig
    from dcf.datasets import movielens_folds
    from dcf.errors import DataError
    from dcf.split import random_split
    from dcf.tune import tune

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)
    try:
        train_path, test_path = movielens_folds()[0]
    except DataError as exc:
        print(f"MovieLens 100K: {exc}; set DCF_DATA to the folder holding ml-100k/", file=sys.stderr)
        return 2
    grid = {"similarity": ["bm25"], "neighbourhood": ["global"], "bm25_k1": [1.2, 2.0], "bm25_b": [0.75, 0.9],
            "k": [100, 200], "amplification": [2.0, 4.0], "ranking": ["normalised-sum"]}
    print(environment(), flush=True)
    print(f"shape   : {train_path} / u1.test; grid {grid}: "
          f"{int(np.prod([len(v) for v in grid.values()]))} candidates; precision@20; {args.workers} workers x 1 thread")
    print(f"command : python benchmarks/tuning.py {' '.join(argv if argv is not None else sys.argv[1:])}", flush=True)
    cfg = ClusterConfig(workers=args.workers, threads_per_worker=1, memory_limit="3GB", dashboard_address="127.0.0.1:0")
    with cluster.connect(cfg):
        folds = [(read_ratings(train_path), read_ratings(test_path))]
        KNN(similarity="bm25", neighbourhood="global", k=10).fit(folds[0][0])  # warm: kernels loaded, data read once
        times, scores = {}, {}
        for name, parallel in (("tune, fits side by side", True), ("tune, fits one after the other", False)):
            t = time.perf_counter()
            result = tune(KNN(), grid, folds=folds, metric="precision", n=20, parallel=parallel)
            times[name] = time.perf_counter() - t
            scores[name] = result.candidates["validation"].to_numpy()
        t = time.perf_counter()
        fit_on, valid = random_split(folds[0][0], 0.2, 1)  # tune's inner split (seed 0 + 1)
        truth = pd.concat(dask.compute(*valid.parts), ignore_index=True)
        names = list(grid)
        alone = []
        for values in itertools.product(*grid.values()):
            c = dict(zip(names, values))
            ranking = c.pop("ranking")
            model = KNN(**c).fit(fit_on)
            recs = model.recommend(n=20, ranking=ranking).compute()
            alone.append(evaluate.ranking_metrics(recs, truth, 20, 4.0)["precision"])
        times["one by one (every candidate its own fit)"] = time.perf_counter() - t
        scores["one by one (every candidate its own fit)"] = np.asarray(alone)
    first = times["tune, fits side by side"]
    for name, seconds in times.items():
        same = np.array_equal(scores[name], scores["tune, fits side by side"])
        print(f"  {name:<44s} {seconds:7.1f} s   {seconds / first:5.2f}x   same scores: {same}", flush=True)
    print(f"best: {result.best}")
    _dask_ml(train_path)
    return 0


def _dask_ml(train_path) -> None:
    """dask-ml's GridSearchCV against dcf.tune on one grid, in this process."""
    import dask
    import pandas as pd
    from dask_ml.model_selection import GridSearchCV
    from sklearn.model_selection import KFold

    from dcf import KNN
    from dcf.tune import tune

    frame = pd.read_csv(train_path, sep="\t", names=["user", "item", "rating", "time"]).drop(columns="time")
    grid = {"k": [20, 40, 60], "amplification": [1.0, 2.0]}
    print(f"dask-ml : u1.base, grid {grid}, 3 folds, synchronous scheduler, MAE", flush=True)
    with dask.config.set(scheduler="sync"):
        t = time.perf_counter()
        search = GridSearchCV(KNN(neighbourhood="global"), grid, cv=KFold(3, shuffle=True, random_state=0),
                              refit=False, scheduler="sync").fit(frame)
        a = time.perf_counter() - t
        best = search.cv_results_["params"][int(np.argmax(search.cv_results_["mean_test_score"]))]
        t = time.perf_counter()
        result = tune(KNN(neighbourhood="global"), grid, frame, folds=3, metric="mae", parallel=False)
        b = time.perf_counter() - t
    print(f"  dask-ml GridSearchCV (18 fits)                 {a:7.1f} s   chose {best}", flush=True)
    print(f"  dcf.tune, nested (3 fits + 3 refits)            {b:7.1f} s   chose {result.best}  "
          f"({b / a:.2f}x)", flush=True)


if __name__ == "__main__":
    sys.exit(main())
