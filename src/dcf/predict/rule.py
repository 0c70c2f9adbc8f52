"""What a score is made of: the rule (plain settings) and the fitted numbers it reads.

:class:`ScoringRule` holds the estimator's scoring settings as one frozen, validated
value; :class:`ScoringData` the fitted per-entity numbers (means, counts, biases, the
rating range) a score reads besides the neighbours and the ratings.  :func:`scoring`
takes both from a fitted estimator.  The output tables' columns are here too.
"""

from __future__ import annotations

from dataclasses import dataclass

import dask
import numpy as np
import pandas as pd

__all__ = ["BASED", "PREDICTIONS", "RANKINGS", "FALLBACKS", "RECOMMENDATION_FALLBACKS", "PREDICTION_META",
           "RECOMMENDATION_META",
           "ScoringRule", "ScoringData", "data_task", "scoring"]

BASED = ("item", "user")
PREDICTIONS = ("weighted", "mean-centred", "baseline")
RANKINGS = ("prediction", "sum", "normalised-sum")
FALLBACKS = ("none", "global_mean", "item_mean", "user_mean", "baseline")
# why a recommendation is listed: scored; a popular item filled in (fewer than n scored);
# the popularity list of a user the model does not know
RECOMMENDATION_FALLBACKS = ("none", "popular", "unknown_user")
PREDICTION_META = pd.DataFrame({
    "user": pd.Series([], dtype=object), "item": pd.Series([], dtype=object),
    "rating": pd.Series([], dtype=np.float64), "prediction": pd.Series([], dtype=np.float64),
    "neighbours": pd.Series([], dtype=np.int64),
    "fallback": pd.Categorical([], categories=FALLBACKS)})
RECOMMENDATION_META = pd.DataFrame({
    "user": pd.Series([], dtype=object), "rank": pd.Series([], dtype=np.int64),
    "item": pd.Series([], dtype=object), "score": pd.Series([], dtype=np.float64),
    "fallback": pd.Categorical([], categories=RECOMMENDATION_FALLBACKS)})


@dataclass(frozen=True)
class ScoringRule:
    """How a (user, item) pair is scored, as one validated value that travels whole.

    Attributes
    ----------
    based : {"item", "user"}
        The entity whose neighbours score a pair: the item (item-based CF) or the user.
    prediction : {"weighted", "mean-centred", "baseline"}
        See :mod:`dcf.predict`.
    k : int
        Neighbours a pair prediction takes among its candidates (a global list is cut to
        its ``k`` first by the caller).
    min_k : int
        Fewer neighbours than this: the fallback.
    amplification : float
        Each neighbour weighs :math:`s^\\rho` (1 = off).
    ranking : {"prediction", "sum", "normalised-sum"}
        What orders a Top-N list (see :meth:`dcf.model.KNN.recommend`).
    """

    based: str = "item"
    prediction: str = "weighted"
    k: int = 50
    min_k: int = 1
    amplification: float = 1.0
    ranking: str = "prediction"

    def __post_init__(self):
        for name, allowed in (("based", BASED), ("prediction", PREDICTIONS), ("ranking", RANKINGS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r} is not one of {', '.join(allowed)}")
        for name, low in (("k", 1), ("min_k", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                raise ValueError(f"{name} must be an integer >= {low}, not {v!r}")
            object.__setattr__(self, name, int(v))
        rho = self.amplification
        if isinstance(rho, bool) or not isinstance(rho, (int, float, np.number)) or not np.isfinite(rho) \
                or rho <= 0:
            raise ValueError(f"amplification must be a number > 0, not {rho!r}")
        object.__setattr__(self, "amplification", float(rho))

    @property
    def summed(self) -> bool:
        """Top-N ranks by a sum over the neighbour lists, not by the prediction."""
        return self.ranking in ("sum", "normalised-sum")

    @property
    def fallback(self) -> str:
        """What a mean-centred prediction falls back to: the entity's mean."""
        return "item_mean" if self.based == "item" else "user_mean"


@dataclass(frozen=True)
class ScoringData:
    """The fitted numbers a score reads besides the neighbours and the ratings.

    Fields may be Dask ``Delayed`` values, persisted on the workers: the tasks take
    it as :func:`data_task`, one task that builds it there.

    Attributes
    ----------
    rating_range : (low, high)
        Every score is clipped to it.
    global_mean : float
        The weighted prediction's fallback and the unknown pairs' prediction.
    entity_means : (n_entities,) float64
        The mean-centred prediction's centres.
    item_means, item_count : (n_items,)
        The fill-ins' scores and the popularity order of a Top-N list.
    biases : (global mean, user biases, item biases) or None
        Only for ``prediction="baseline"``.
    """

    rating_range: tuple = (-np.inf, np.inf)
    global_mean: object = 0.0
    entity_means: object = None
    item_means: object = None
    item_count: object = None
    biases: object = None


def data_task(data: ScoringData, token: str):
    """``data`` as one Delayed task (``scoring-data``) that the scoring tasks take.

    Every ``Delayed`` field goes to that task as an argument of its own.  Dask keeps
    the Futures of a persisted ``Delayed`` that is an argument, but not of one nested
    in a tuple or a dataclass (it keeps only the key): a graph then outlives the
    persisted means and biases when its model is dropped before the graph is computed
    (``model.fit(...).predict(...)``) and fails with "lost dependencies".
    """
    mu, user_bias, item_bias = data.biases if data.biases is not None else (None, None, None)
    args = (data.rating_range, data.global_mean, data.entity_means, data.item_means, data.item_count,
            data.biases is not None, mu, user_bias, item_bias)
    return dask.delayed(_assemble, pure=True)(
        *args, dask_key_name=f"scoring-data-{dask.base.tokenize(token, *args)}")


def _assemble(rating_range, global_mean, entity_means, item_means, item_count, with_biases, mu, user_bias,
              item_bias) -> ScoringData:
    return ScoringData(rating_range, global_mean, entity_means, item_means, item_count,
                       (mu, user_bias, item_bias) if with_biases else None)


def scoring(model, ranking: str = "prediction") -> tuple:
    """``(ScoringRule, ScoringData)`` of a fitted estimator (:class:`dcf.model.KNN`)."""
    k = model.k if model.neighbourhood == "rated" else model.k + 1  # a global list is already top-k
    rule = ScoringRule(model.based, model.prediction, k, model.min_k, model.amplification, ranking)
    biases = (model.global_mean_, model.user_bias_, model.item_bias_) if model.prediction == "baseline" else None
    return rule, ScoringData(model.rating_range_, model.global_mean_, model.entity_means_, model.item_means_,
                             model.item_count_, biases)
