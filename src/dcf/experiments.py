"""Experiments over fitted models: the paper's Figure 2 (MAE against k), and the
warm-up benchmarks run before they time anything.

The similarity is computed once, at the largest k; every other row of the
sweep is derived from that fit (:meth:`dcf.model.KNN.derive`), so a sweep
costs one fit plus one prediction pass per setting.
"""

from __future__ import annotations

import time

import dask
import pandas as pd
from sklearn.base import clone

from . import evaluate
from .datasets import synthetic
from .cluster import gather_frame
from .model import KNN

__all__ = ["neighbour_sweep", "warm_up", "warm_here"]

COLUMNS = ["k", "neighbourhood", "prediction", "mae", "rmse", "fallback_share", "precision",
           "recall", "ndcg", "coverage", "predict_seconds", "top_n_seconds"]


def neighbour_sweep(train, test, ks, *, estimator: KNN | None = None, neighbourhoods=("rated", "global"),
                    predictions=("weighted", "mean-centred"), top_n=20, relevance=4.0,
                    ranking="prediction"):
    """Quality for every k, neighbourhood rule and prediction formula.

    Parameters
    ----------
    train, test : anything :meth:`KNN.fit` / :meth:`KNN.predict` accept
        (``test`` must carry ratings).
    ks : iterable of int
    estimator : KNN, optional
        The unfitted estimator whose parameters the sweep keeps (``based``, the
        similarity and its settings, ...); ``k``, ``neighbourhood`` and ``prediction``
        are the sweep's.  Default: ``KNN()`` (item-based, cosine).

    Returns
    -------
    (pandas.DataFrame, dict)
        One row per (k, neighbourhood, prediction) with ``mae``, ``rmse``,
        ``fallback_share`` (test pairs predicted by a fallback), ranking
        metrics of the Top-``top_n`` (relevant = test rating >= ``relevance``),
        catalogue ``coverage`` of the Top-N, and seconds; and a dict with the
        fit time and sizes.  Top-N scores always use the global rule, so the
        ranking columns depend on k and the prediction formula only (``ranking``:
        see :meth:`KNN.recommend`).  Without ``"rated"`` in ``neighbourhoods`` the
        one fit keeps only the top-k lists, not whole similarity rows: what large
        data needs.
    """
    ks = sorted({int(k) for k in ks})
    t0 = time.perf_counter()
    base = clone(KNN() if estimator is None else estimator).set_params(
        k=ks[-1], neighbourhood="rated" if "rated" in neighbourhoods else "global",
        # fitted once with the biases when any setting needs them
        prediction="baseline" if "baseline" in predictions else "weighted").fit(train)
    info = {"fit_seconds": time.perf_counter() - t0, "users": base.matrix_.shape[0],
            "items": base.matrix_.shape[1], "k_max": ks[-1]}
    rows, ranked = [], {}
    for k in ks:
        for prediction in predictions:
            model = base.derive(k=k, prediction=prediction)
            t = time.perf_counter()
            recs = gather_frame(model.recommend(n=top_n, ranking=ranking))
            top_s = time.perf_counter() - t
            for neighbourhood in neighbourhoods:
                m = model.derive(neighbourhood=neighbourhood)
                t = time.perf_counter()
                p = gather_frame(m.predict(test))
                pred_s = time.perf_counter() - t
                if (k, prediction) not in ranked:
                    ranked[(k, prediction)] = evaluate.ranking_metrics(
                        recs, p[["user", "item", "rating"]], top_n, relevance)
                r = ranked[(k, prediction)]
                rows.append({"k": k, "neighbourhood": neighbourhood, "prediction": prediction,
                             "mae": evaluate.mae(p["rating"], p["prediction"]),
                             "rmse": evaluate.rmse(p["rating"], p["prediction"]),
                             "fallback_share": float((p["fallback"] != "none").mean()),
                             "precision": r["precision"], "recall": r["recall"], "ndcg": r["ndcg"],
                             "coverage": evaluate.catalogue_coverage(recs, info["items"]),
                             "predict_seconds": pred_s, "top_n_seconds": top_s})
    info["n_test"] = int(len(p))
    return pd.DataFrame(rows, columns=COLUMNS), info


def warm_up(client, similarities=("full-cosine", "cosine")) -> None:
    """Load the compiled kernels in every worker now, each worker on its own: a tiny
    fit and Top-N under the local scheduler in each.

    numba compiles a kernel (or loads it from its cache) on its first call in a
    process, some tenths of a second each; a fit on a fresh cluster would otherwise
    pay it part way, on whichever worker first runs each kernel.  A fit run through
    the cluster does not reach every kernel on every worker (a worker's blocks are
    prepared by one task there, the norms by one task somewhere).  Benchmarks call
    this so that their timings are of the steady state."""
    client.run(warm_here, list(similarities))


def warm_here(similarities) -> None:
    """:func:`warm_up`'s work in one process: a tiny fit and Top-N per similarity."""
    frame = synthetic(users=300, items=60, ratings=3000, seed=0).frame.compute(scheduler="sync")
    with dask.config.set(scheduler="sync"):
        for similarity in similarities:
            model = KNN(k=5, neighbourhood="global", similarity=similarity).fit(frame)
            for ranking in ("sum", "prediction"):
                model.recommend(n=5, ranking=ranking).compute()
