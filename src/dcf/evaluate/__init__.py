"""Evaluation: quality metrics from outputs and truth (never from models), and
cross-validation of an estimator.

- :mod:`~dcf.evaluate.metrics` -- MAE, RMSE, the Top-N measures (mean and per user),
  catalogue coverage and the lists' popularity bias;
- :mod:`~dcf.evaluate.cross` -- :func:`cross_validate`: fit and score an estimator on
  hash folds or predefined ones (MovieLens u1-u5), per fold, mean +/- std and per user.
"""

from __future__ import annotations

from .cross import FOLD_COLUMNS, CrossValidation, cross_validate, fold_sources
from .metrics import (USER_METRICS, average_popularity, catalogue_coverage, integer_ids, mae, ranking_metrics, rmse,
                      user_metrics)

__all__ = ["mae", "rmse", "ranking_metrics", "user_metrics", "USER_METRICS", "catalogue_coverage",
           "average_popularity", "integer_ids", "cross_validate", "CrossValidation", "FOLD_COLUMNS", "fold_sources"]
