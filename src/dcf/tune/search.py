"""Search settings with nested validation: :func:`tune`.

For every outer fold, the training ratings are split again (a seeded pair hash, ``inner``
of them held out for validation); every candidate of the grid is fitted on the inner
training ratings and scored on the validation ratings; the best is refitted on the whole
outer training ratings and scored once on the outer test ratings, which no choice has
seen.  The candidates that differ only in what :meth:`dcf.model.KNN.derive` changes (``k``,
``neighbourhood``, ``prediction``, ``min_k``, ``amplification``) and in the Top-N
``ranking`` share one fit: the similarity is computed once per setting that changes it, at
the largest ``k``, and the rest is derived.  Those fits run side by side on the cluster
(``parallel``): each is a task graph, and the scheduler interleaves their tasks across the
workers.

dask-ml's ``GridSearchCV`` fits every candidate on its own (it cannot share one similarity
between the values of ``k``) and scores with ``score()`` (one metric); ``tune`` keeps the
shared fits and ranks by MAE or by precision at ``n``.
"""

from __future__ import annotations

import itertools
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import dask
import numpy as np
import pandas as pd

from ..errors import ConfigError, DataError
from ..evaluate import fold_sources, mae, ranking_metrics
from ..fitted import DERIVABLE
from ..split import random_split
from .. import io as dio

__all__ = ["tune", "TuneResult", "METRICS"]

METRICS = {"mae": "lower", "precision": "higher"}  # what a candidate is ranked by


@dataclass
class TuneResult:
    """What :func:`tune` found.

    Attributes
    ----------
    candidates : DataFrame, one row per fold and candidate: its settings and validation score
    folds : DataFrame, one row per outer fold: the chosen settings, their validation score
        and their score on the fold's test ratings
    best : dict, the candidate with the best mean validation score over the folds
    protocol : str, the validation protocol in words
    seconds : float, the search's wall time
    """

    candidates: pd.DataFrame
    folds: pd.DataFrame
    best: dict
    protocol: str
    seconds: float


def tune(estimator, grid: dict, data=None, folds=3, *, metric: str = "mae", n: int = 20, threshold: float = 4.0,
         inner: float = 0.2, seed: int = 0, parallel: bool = True) -> TuneResult:
    """Choose ``estimator``'s settings among ``grid`` (name -> values; every combination is
    a candidate; ``ranking`` is the Top-N order) by nested validation on ``data`` split into
    ``folds`` hash folds, or on the given ``(train, test)`` pairs (see
    :func:`dcf.evaluate.cross_validate`); ``metric`` is ``mae`` or ``precision`` (at ``n``,
    relevant = rating at least ``threshold``)."""
    if metric not in METRICS:
        raise ConfigError(f"metric {metric!r} is not one of {', '.join(METRICS)}")
    if not grid or any(not isinstance(v, (list, tuple)) or not v for v in grid.values()):
        raise ConfigError("grid must name each setting with a non-empty list of values")
    unknown = set(grid) - set(estimator.get_params()) - {"ranking"}
    if unknown:
        raise ConfigError(f"grid names settings the estimator does not have: {', '.join(sorted(unknown))}")
    if metric == "mae" and getattr(estimator, "feedback", "explicit") == "implicit":
        raise ConfigError("metric 'mae' needs ratings to predict; implicit feedback is tuned by 'precision'")
    if metric == "mae" and "ranking" in grid:
        raise ConfigError("the Top-N ranking does not change the MAE: tune it with metric='precision'")
    if not 0 < inner < 1:
        raise ConfigError(f"inner must be a share between 0 and 1, not {inner!r}")
    names = list(grid)
    candidates = [dict(zip(names, values)) for values in itertools.product(*grid.values())]
    start = time.perf_counter()
    rows, chosen = [], []
    for f, (train, test) in enumerate(fold_sources(data, folds, seed), start=1):
        fit_on, valid = _inner_split(train, inner, seed)
        scores = _search(estimator, candidates, fit_on, valid, (metric, n, threshold), parallel)
        rows += [{"fold": f, **c, "validation": s} for c, s in zip(candidates, scores)]
        if np.isnan(np.asarray(scores, np.float64)).all():
            raise DataError(f"fold {f}", f"no candidate has a validation {metric}: its held-out ratings hold no "
                                         "test pair" + ("" if metric == "mae" else " with a relevant rating"))
        at = int(np.nanargmin(scores) if METRICS[metric] == "lower" else np.nanargmax(scores))
        test_score = _scored(_fitted(estimator, candidates[at], train), candidates[at], test, (metric, n, threshold))
        chosen.append({"fold": f, **candidates[at], "validation": scores[at], "test": test_score})
    table = pd.DataFrame(rows)
    means = table.groupby(names, sort=False, dropna=False)["validation"].mean().reset_index()
    pick = means["validation"].idxmin() if METRICS[metric] == "lower" else means["validation"].idxmax()
    protocol = (f"nested: each of {len(chosen)} outer folds' training ratings split again ({inner:.0%} held out for "
                f"validation, pair hash, seed {seed}); the best of {len(candidates)} candidates by validation "
                f"{metric} refitted on the fold's training ratings and scored on its test ratings")
    return TuneResult(table, pd.DataFrame(chosen), {k: _plain(means.at[pick, k]) for k in names},
                      protocol, time.perf_counter() - start)


def _plain(v):
    return v.item() if isinstance(v, np.generic) else v


def _inner_split(train, share, seed):
    """A fold's training ratings split into (fit, validation), as its own type."""
    if isinstance(train, pd.DataFrame):
        two = random_split([dask.delayed(train.reset_index(drop=True))], share, seed + 1)
        return tuple(pd.concat(dask.compute(*side), ignore_index=True) for side in two)
    if isinstance(train, dio.Ratings):
        return random_split(train, share, seed + 1)
    raise ConfigError(f"tune splits Ratings or pandas frames, not {type(train).__name__}")


def _groups(candidates):
    """Candidates keyed by what needs a fit of its own (everything but the derivable
    settings and the ranking)."""
    out = {}
    for c in candidates:
        key = tuple(sorted((k, repr(v)) for k, v in c.items() if k not in DERIVABLE and k != "ranking"))
        out.setdefault(key, []).append(c)
    return list(out.values())


def _fitted(estimator, settings, train):
    params = {k: v for k, v in settings.items() if k != "ranking"}
    return type(estimator)(**{**estimator.get_params(deep=False), **params}).fit(train)


def _search(estimator, candidates, fit_on, valid, scoring, parallel):
    """Each candidate's validation score, one fit per group (at its largest k, in the
    rated neighbourhood where any of its candidates uses it), the rest derived."""
    def one_group(group):
        base = dict(group[0])
        base["k"] = max(c.get("k", estimator.get_params()["k"]) for c in group)
        if any(c.get("neighbourhood", estimator.get_params()["neighbourhood"]) == "rated" for c in group):
            base["neighbourhood"] = "rated"
        model = _fitted(estimator, base, fit_on)
        out = []
        for c in group:
            change = {k: v for k, v in c.items() if k in DERIVABLE and getattr(model, k) != v}
            out.append((c, _scored(model.derive(**change) if change else model, c, valid, scoring)))
        return out

    groups = _groups(candidates)
    if parallel and len(groups) > 1:
        with ThreadPoolExecutor(max_workers=min(len(groups), 4)) as pool:
            results = [r for part in pool.map(one_group, groups) for r in part]
    else:
        results = [r for g in groups for r in one_group(g)]
    score = {id(c): s for c, s in results}
    return [score[id(c)] for c in candidates]


def _scored(model, settings, test, scoring):
    metric, n, threshold = scoring
    if metric == "mae":
        preds = model.predict(test).compute()
        return mae(preds["rating"], preds["prediction"])
    truth = test if isinstance(test, pd.DataFrame) else pd.concat(dask.compute(*test.parts), ignore_index=True)
    recs = model.recommend(n=n, ranking=settings.get("ranking")).compute()
    return ranking_metrics(recs, truth, n, threshold)["precision"]
