"""The columns the fast top-k scan scores directly from their co-counts (``jaccard``,
``llr``: no fixed multiple of an estimate), and the cut under an estimate it keeps columns
over (:func:`dcf.kernels.rows.norms_topk`)."""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

from .general import llr_ratio
from .measures import LLR

__all__ = ["Exact", "cut_under", "direct_score"]


class Exact(NamedTuple):
    """How :func:`~dcf.kernels.rows.norms_topk` scores a column from its sum of products
    ``c``: ``mode`` :data:`~dcf.kernels.measures.JACCARD` (``c / ((a + b) - c)``) or
    :data:`~dcf.kernels.measures.LLR` (:func:`~dcf.kernels.general.llr_similarity` of
    ``c``, both counts, the number of ``others`` and its ``xlogx`` table), where the
    similarity is not a fixed multiple of ``c / b`` and is scored directly; any other mode:
    ``c / (a b)`` (a norm-divided measure, estimated by ``c / b``).  ``counts``: every
    entity's number of raters for llr (int32: a column's count and margin were two float64
    lines a column), else empty.  ``scale``: each other's factor, multiplied into both
    values of each of its products (bm25's idf: the shared matrix then holds the weights
    without it; :func:`~dcf.kernels.rows.similarity_rows`), or empty for none."""

    mode: int
    others: float
    xlogx: np.ndarray
    counts: np.ndarray
    scale: np.ndarray


@numba.njit(cache=True, nogil=True, inline="always")
def cut_under(x, ratios):  # pragma: no cover - compiled
    """A cut under the estimate ``x``: less 1e-9 of it (far above an estimate's rounding),
    and for llr's ratios (``ratios``) less the widest run of ratios that round to one
    similarity near ``x`` (``1 - 1 / (1 + x)`` moves by ``1 / (1 + x)^2`` a unit of ``x``:
    a few units in the last place of 1, times ``(1 + x)^2``)."""
    return x * (1.0 - 1e-9) - ((1.0 + x) * (1.0 + x) * 2.0 ** -48 if ratios else 0.0)


@numba.njit(cache=True, nogil=True, inline="always")
def direct_score(exact, c, na, nb, j, margin_a):  # pragma: no cover - compiled
    """The score of column ``j`` scored directly (:class:`Exact`): ``jaccard``'s similarity,
    the general loop's double; ``llr``'s ratio, from the counts (``margin_a``: the row's
    margin), whose :func:`~dcf.kernels.general.llr_of_ratio` is the general loop's."""
    if exact.mode == LLR:
        return llr_ratio(int(c), int(na), np.int64(exact.counts[j]), int(exact.others), exact.xlogx, margin_a)
    den = (na + nb) - c
    return c / den if den > 0 else 0.0
