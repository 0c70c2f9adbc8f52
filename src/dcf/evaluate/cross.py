"""Cross-validation of an estimator: :func:`cross_validate` fits a fresh copy of it on each
fold's training ratings and scores its predictions and Top-N lists on the fold's test
ratings, as surprise's ``cross_validate`` and LensKit's batch evaluation do.

Folds are either ``k`` hash folds of one set of ratings (:func:`dcf.split.kfold`: a seeded
hash of the pair, so the same folds on every run and every chunking) or predefined pairs
of (train, test) files or frames, such as MovieLens 100K's u1-u5
(:func:`dcf.datasets.movielens_folds`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import dask
import numpy as np
import pandas as pd

from .. import io as dio
from ..errors import ConfigError, DataError
from ..split import kfold
from .baselines import baseline_figures, item_counts
from .metrics import (USER_METRICS, average_popularity, catalogue_coverage, integer_ids, mae, ranking_metrics, rmse,
                      user_metrics)

__all__ = ["cross_validate", "CrossValidation", "FOLD_COLUMNS", "fold_sources", "held_out_events"]

# one row per fold: the errors of the predictions, the Top-N measures at n, and the times
FOLD_COLUMNS = ["fold", "mae", "rmse", "precision", "recall", "ndcg", "map", "mrr", "hit_rate", "coverage",
                "popularity", "users", "test_pairs", "fit_time", "test_time"]


@dataclass
class CrossValidation:
    """What :func:`cross_validate` measured.

    Attributes
    ----------
    folds : DataFrame, one row per fold (:data:`FOLD_COLUMNS`): MAE and RMSE of the
        predictions, precision, recall, NDCG, MAP, MRR and hit rate at ``n`` (over the
        users with a relevant test item), catalogue coverage and popularity bias of the
        lists, the users evaluated, the test pairs, and the fit and test seconds.
    users : DataFrame, one row per fold and user with a test rating: ``fold, user,
        test_pairs, mae, rmse`` and the Top-N measures of :func:`dcf.evaluate.user_metrics`
        (NaN for a user without a relevant item): the rows a paired comparison of two
        settings reads.
    n, threshold : the cut-off and the relevance threshold used.
    baselines : DataFrame or None, one row per fold and baseline (popularity, item mean,
        user mean, the baseline predictor: :mod:`dcf.evaluate.baselines`) on the same split.
    """

    folds: pd.DataFrame
    users: pd.DataFrame
    n: int | None
    threshold: float
    baselines: pd.DataFrame | None = None

    def summary(self) -> pd.DataFrame:
        """Mean and standard deviation (ddof 0, as surprise reports it) of every measure
        over the folds: one row each, ``mean`` and ``std``."""
        numbers = self.folds.drop(columns="fold").astype(np.float64)
        return pd.DataFrame({"mean": numbers.mean(), "std": numbers.std(ddof=0)})

    def table(self) -> str:
        """The folds and their mean +/- std as text, one column per fold."""
        shown = self.folds.set_index("fold").T.astype(object)
        stats = self.summary()
        counts = {"users", "test_pairs"}  # whole numbers, shown as such
        for name in shown.index:
            shown.loc[name] = [f"{v:,.0f}" if name in counts else f"{v:.4f}" for v in shown.loc[name]]
        shown["mean +/- std"] = [f"{m:,.1f} +/- {s:,.1f}" if name in counts else f"{m:.4f} +/- {s:.4f}"
                                 for name, m, s in zip(stats.index, stats["mean"], stats["std"])]
        text = shown.to_string()
        if self.baselines is not None:  # each baseline's mean over the folds, beside the model's
            means = self.baselines.drop(columns="fold").groupby("baseline", sort=False).mean()
            means.loc["the model"] = stats["mean"]
            shown = means[["mae", "rmse", "precision", "ndcg", "mrr", "coverage", "popularity"]]
            text += "\n\nmeans over the folds\n" + shown.to_string(float_format=lambda v: f"{v:.4f}", na_rep="-")
        return text


def fold_sources(data=None, folds=5, seed: int = 0, reader=None) -> list:
    """``(train, test)`` of each fold: ``folds`` hash folds of ``data`` (an int), or the
    given pairs (a list of ``(train, test)``, each a path, :class:`dcf.io.Ratings` or a
    frame; paths read with ``reader``, default :func:`dcf.io.read_ratings`)."""
    read = reader or dio.read_ratings
    if isinstance(folds, (int, np.integer)) and not isinstance(folds, bool):
        folds = int(folds)
        if data is None:
            raise ConfigError("cross_validate needs the ratings to split (data=...) for folds=K")
        if int(folds) < 2:
            raise ConfigError(f"folds must be at least 2, not {folds}")
        if isinstance(data, (str, os.PathLike)):
            data = read(data)
        if isinstance(data, pd.DataFrame):  # split in this process: the folds stay pandas frames
            pairs = kfold([dask.delayed(data.reset_index(drop=True))], int(folds), seed)
            return [tuple(pd.concat(dask.compute(*side), ignore_index=True) for side in pair) for pair in pairs]
        if not isinstance(data, dio.Ratings):
            raise ConfigError(f"cross_validate splits a path, dcf.io.Ratings or pandas DataFrame, not "
                              f"{type(data).__name__}")
        return kfold(data, int(folds), seed)
    if data is not None:
        raise ConfigError("give either data=... with folds=K, or folds=[(train, test), ...], not both")
    if isinstance(folds, (bool, float, np.floating, str)):
        raise ConfigError(f"folds must be a whole number of at least 2 or a list of (train, test) pairs, not {folds!r}")
    try:
        pairs = [tuple(pair) for pair in folds]
    except TypeError:
        raise ConfigError(f"folds must be a number of folds or a list of (train, test) pairs, not {folds!r}") from None
    if not pairs or any(len(p) != 2 for p in pairs):
        raise ConfigError("folds must be a non-empty list of (train, test) pairs")
    return [tuple(read(x) if isinstance(x, (str, os.PathLike)) else x for x in pair) for pair in pairs]


def cross_validate(estimator, data=None, folds=5, *, n: int | None = 20, threshold: float | None = None,
                   seed: int = 0, baselines: bool = True) -> CrossValidation:
    """Fit a fresh copy of ``estimator`` (its parameters, none of its fitted state) on each
    fold's training ratings; score its predictions of the test ratings (MAE, RMSE) and its
    Top-``n`` lists of the training users against the test items rated ``>= threshold``.
    For implicit feedback (``estimator.feedback == "implicit"``) there are no ratings to
    predict: MAE and RMSE are NaN and, unless ``threshold`` is given, every test event
    is relevant (a pair's events summed, as the fit sums them).

    Parameters
    ----------
    estimator : a dcf estimator (:class:`dcf.ItemKNN`, :class:`dcf.UserKNN`, :class:`dcf.KNN`)
    data : path, :class:`dcf.io.Ratings` or pandas DataFrame, split into ``folds`` hash folds
    folds : int (default 5) or list of ``(train, test)`` pairs (paths, Ratings or frames),
        for instance :func:`dcf.datasets.movielens_folds` (MovieLens 100K's u1-u5)
    n : int or None
        The lists' length (None: predictions only, no lists).
    threshold : float, optional
        A test rating at least this is a relevant item (default 4; implicit feedback:
        every test event).
    seed : int
        The hash folds' seed.
    baselines : bool
        Also score the baselines (:mod:`dcf.evaluate.baselines`) on each fold.

    Returns
    -------
    CrossValidation
        ``folds`` (a row per fold), ``users`` (a row per fold and user), ``summary()``.

    >>> result = cross_validate(ItemKNN(k=40), folds=movielens_folds())   # doctest: +SKIP
    >>> result.summary().loc["mae"]                                        # doctest: +SKIP
    """
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1):
        raise ConfigError(f"n must be a whole number of at least 1 (or None: no lists), not {n!r}")
    implicit = getattr(estimator, "feedback", "explicit") == "implicit"
    threshold = float(threshold) if threshold is not None else (0.0 if implicit else 4.0)
    rows, users, others = [], [], []
    for f, (train, test) in enumerate(fold_sources(data, folds, seed), start=1):
        row, per_user, model, truth = _one_fold(estimator, train, test, n, threshold)
        if row["test_pairs"] == 0:  # nothing measured: no figure, rather than zeros averaged in
            raise DataError(f"fold {f}", "has no test ratings (more folds than the ratings fill, or an empty test "
                                         "file); use fewer folds")
        rows.append({"fold": f, **row})
        users.append(per_user.assign(fold=f))
        if baselines:
            others.append(baseline_figures(model, truth, n, threshold).assign(fold=f))
    per_user = pd.concat(users, ignore_index=True)
    per_user = per_user[["fold"] + [c for c in per_user.columns if c != "fold"]]
    if others:
        others = pd.concat(others, ignore_index=True)
        others = others[["fold"] + [c for c in others.columns if c != "fold"]]
    return CrossValidation(pd.DataFrame(rows, columns=FOLD_COLUMNS), per_user, n, threshold,
                           others if baselines else None)


def _one_fold(estimator, train, test, n, threshold):
    model = type(estimator)(**estimator.get_params(deep=False))
    t = time.perf_counter()
    model.fit(train)
    fit_time = time.perf_counter() - t
    t = time.perf_counter()
    if model.feedback == "implicit":  # events: nothing to predict; a pair's events summed
        preds = held_out_events(test).assign(prediction=np.nan)
    else:
        preds = model.predict(test).compute()
    recs = model.recommend(n=n).compute() if n is not None else None
    test_time = time.perf_counter() - t
    truth, guess = preds["rating"].to_numpy(np.float64), preds["prediction"].to_numpy(np.float64)
    implicit = model.feedback == "implicit"
    row = {"mae": np.nan if implicit else mae(truth, guess), "rmse": np.nan if implicit else rmse(truth, guess),
           "test_pairs": len(preds),
           "fit_time": fit_time, "test_time": test_time}
    errors = preds.assign(abs_error=np.abs(truth - guess), sq_error=(truth - guess) ** 2)
    per_user = errors.groupby("user", sort=True).agg(test_pairs=("rating", "size"), mae=("abs_error", "mean"),
                                                      sq=("sq_error", "mean"))
    per_user = per_user.assign(rmse=np.sqrt(per_user.pop("sq"))).reset_index()
    if recs is None:
        return {**row, **dict.fromkeys(["precision", "recall", "ndcg", "map", "mrr", "hit_rate", "coverage",
                                        "popularity", "users"], np.nan)}, per_user.assign(
            **{c: np.nan for c in USER_METRICS[1:]}).astype({"hit": "boolean"}), model, truth_of(preds)
    ranked = ranking_metrics(recs, preds, n, threshold)
    row.update({k: ranked[k] for k in ("precision", "recall", "ndcg", "map", "mrr", "hit_rate", "users")},
               coverage=catalogue_coverage(recs, len(model.matrix_.items)),
               popularity=average_popularity(recs, item_counts(model), len(model.matrix_.users)))
    listed = user_metrics(recs, preds, n, threshold)
    if not len(listed):
        return row, per_user.assign(**{c: np.nan for c in USER_METRICS[1:]}).astype({"hit": "boolean"}), model, \
            truth_of(preds)
    ints = integer_ids(per_user["user"])  # the ids as user_metrics compares them: integers, else text
    key = ints if listed["user"].dtype.kind == "i" and ints is not None else per_user["user"].astype(str)
    merged = pd.DataFrame({"key": key}).merge(listed.rename(columns={"user": "key"}), on="key", how="left")
    merged["hit"] = merged["hit"].astype("boolean")  # missing (no relevant item), not False
    return row, pd.concat([per_user, merged.drop(columns="key")], axis=1), model, truth_of(preds)


def held_out_events(test) -> pd.DataFrame:
    """A fold's test events (a frame, dask frame or :class:`dcf.io.Ratings`) as one row a
    (user, item) pair, ``rating`` the sum of its events' weights (1 each without one)."""
    if isinstance(test, dio.Ratings):
        frame = pd.concat(dask.compute(*test.parts), ignore_index=True)
    else:
        frame = test.compute() if hasattr(test, "compute") else test
    frame = frame if "rating" in frame else frame.assign(rating=1.0)
    return frame.groupby(["user", "item"], sort=False, as_index=False)["rating"].sum()


def truth_of(preds: pd.DataFrame) -> pd.DataFrame:
    """The test pairs and their ratings, from a fold's predictions (or summed events)."""
    return preds[["user", "item", "rating"]]
