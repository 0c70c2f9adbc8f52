"""Prediction and Top-N: the fitted neighbours turned into scores, as task graphs.

- :mod:`~dcf.predict.rule` -- what a score is made of: :class:`ScoringRule` (the
  settings, one validated value) and :class:`ScoringData` (the fitted means, counts
  and biases it reads), and the output tables' columns;
- :mod:`~dcf.predict.pairs` -- (user, item) pair predictions with their fallbacks, on a
  grid of (entity block, other block) cells (:func:`predict_pairs`);
- :mod:`~dcf.predict.topn` -- Top-N per block of users, or for users given by a rating
  history (:func:`recommend_blocks`, :func:`recommend_histories`), among a request's
  :class:`ListRules` (an allow-list, exclusions, rated items kept or not);
- :mod:`~dcf.predict.requests` -- what the estimator's ``predict``, ``recommend``,
  ``recommend_for_history`` and ``neighbours`` run on a fitted model.
"""

from __future__ import annotations

from .pairs import predict_frame, predict_pairs
from .requests import (check_request, history_recommendations, item_codes, list_rules, model_predictions,
                       model_recommendations, neighbour_lists)
from .rule import (BASED, FALLBACKS, PREDICTION_META, PREDICTIONS, RANKINGS, RECOMMENDATION_FALLBACKS,
                   RECOMMENDATION_META, ScoringData, ScoringRule, scoring)
from .topn import PLAIN_LISTS, ListRules, recommend_blocks, recommend_histories

__all__ = ["BASED", "FALLBACKS", "PREDICTION_META", "PREDICTIONS", "RANKINGS", "RECOMMENDATION_FALLBACKS",
           "RECOMMENDATION_META", "ScoringData", "ScoringRule", "scoring", "predict_pairs", "predict_frame", "ListRules",
           "PLAIN_LISTS", "recommend_blocks", "recommend_histories", "model_predictions", "model_recommendations",
           "history_recommendations", "neighbour_lists", "item_codes", "list_rules", "check_request"]
