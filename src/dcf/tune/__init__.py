"""Tuning: :func:`tune` searches an estimator's settings by nested validation, sharing one
similarity fit between the candidates that only ``derive`` tells apart
(:mod:`~dcf.tune.search`); ``python -m dcf.tune`` runs it from the shell
(:mod:`~dcf.tune.__main__`)."""

from __future__ import annotations

from .search import METRICS, TuneResult, tune

__all__ = ["tune", "TuneResult", "METRICS"]
