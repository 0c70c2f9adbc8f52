"""The columns the fast top-k scan scores directly from their co-counts (``jaccard``,
``llr``: no fixed multiple of an estimate), and the cut under an estimate it keeps columns
over (:func:`dcf.kernels.rows.norms_topk`).

llr's columns carry their counts in the scan's accumulator: a column at rest holds
``b << bits`` (``b`` its number of raters, ``2^bits`` over the number of others), each
product adds 1, so one read gives both counts (a read of an array of counts for every
touched column was 0.25 of the e-commerce shape's 1.9 s of tracked rows, one thread).
Exact doubles while ``b 2^bits + c < 2^53``: up to :data:`REST_BITS_MAX`; past it
(2^26 others) the counts are read from their array."""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

from .general import llr_ratio, xlogx_table
from .measures import LLR

__all__ = ["REST_BITS_MAX", "Exact", "exact_for", "cut_under", "ratio_under", "direct_score", "at_rest"]

REST_BITS_MAX = 26


class Exact(NamedTuple):
    """How :func:`~dcf.kernels.rows.norms_topk` scores a column from its sum of products
    ``c``: ``mode`` :data:`~dcf.kernels.measures.JACCARD` (``c / ((a + b) - c)``) or
    :data:`~dcf.kernels.measures.LLR` (:func:`~dcf.kernels.general.llr_similarity` of
    ``c``, both counts, the number of ``others`` and its ``xlogx`` table), where the
    similarity is not a fixed multiple of ``c / b`` and is scored directly; any other mode:
    ``c / (a b)`` (a norm-divided measure, estimated by ``c / b``).  ``counts``: every
    entity's number of raters for llr (int32: a column's count and margin were two float64
    lines a column), else empty; ``bits`` and ``rest``: llr's resting accumulator (``counts
    << bits`` as float64; ``bits`` 0 and ``rest`` empty for none).  ``scale``: each other's
    factor, multiplied into both values of each of its products (bm25's idf: the shared
    matrix then holds the weights without it; :func:`~dcf.kernels.rows.similarity_rows`),
    or empty for none."""

    mode: int
    others: float
    xlogx: np.ndarray
    counts: np.ndarray
    scale: np.ndarray
    bits: int
    rest: np.ndarray


@numba.njit(cache=True, nogil=True, inline="always")
def cut_under(x, ratios):  # pragma: no cover - compiled
    """A cut under the estimate ``x``: less 1e-9 of it (far above an estimate's rounding),
    and for llr's ratios (``ratios``) less the widest run of ratios that round to one
    similarity near ``x`` (``1 - 1 / (1 + x)`` moves by ``1 / (1 + x)^2`` a unit of ``x``:
    a few units in the last place of 1, times ``(1 + x)^2``)."""
    return x * (1.0 - 1e-9) - ((1.0 + x) * (1.0 + x) * 2.0 ** -48 if ratios else 0.0)


@numba.njit(cache=True, nogil=True, inline="always")
def ratio_under(s):  # pragma: no cover - compiled
    """A cut under every llr ratio whose similarity is ``s`` or more (a full list's k-th:
    the dense scan's cut): ``s / (1 - s)``, the ratio of which ``s`` is the similarity,
    lowered as :func:`cut_under` lowers it (the division alone may land a unit in the last
    place above the lowest ratio of similarity ``s``); no cut (-inf) at ``s`` 1."""
    return cut_under(s / (1.0 - s), True) if s < 1.0 else -np.inf


@numba.njit(cache=True, nogil=True, inline="always")
def direct_score(exact, c, na, nb, j, margin_a, in_sum=True):  # pragma: no cover - compiled
    """The score of column ``j`` scored directly (:class:`Exact`) from its sum ``c``:
    ``jaccard``'s similarity, the general loop's double; ``llr``'s ratio, from the counts
    (``margin_a``: the row's margin), whose :func:`~dcf.kernels.general.llr_of_ratio` is
    the general loop's.  ``in_sum``: ``c`` still holds the column's resting count (where
    ``exact.bits``); False where the caller took it out."""
    if exact.mode == LLR and exact.bits > 0 and in_sum:
        v = np.int64(c)
        return llr_ratio(v & ((1 << exact.bits) - 1), int(na), v >> exact.bits, int(exact.others), exact.xlogx,
                         margin_a)
    if exact.mode == LLR:
        return llr_ratio(int(c), int(na), np.int64(exact.counts[j]), int(exact.others), exact.xlogx, margin_a)
    den = (na + nb) - c
    return c / den if den > 0 else 0.0


@numba.njit(cache=True, nogil=True, inline="always")
def at_rest(exact, v):  # pragma: no cover - compiled
    """The accumulator's value at rest for the column whose accumulated value is ``v``
    (its count alone; 0 without ``exact.bits``)."""
    return float((np.int64(v) >> exact.bits) << exact.bits) if exact.bits > 0 else 0.0


def exact_for(mode, others, norms, scale=None) -> Exact:
    """The :class:`Exact` of a scan in ``mode`` over ``others`` others, every entity's
    ``norms`` (numbers of raters for llr) and ``scale`` (or None)."""
    llr = mode == LLR
    counts = np.asarray(norms).astype(np.int32) if llr else np.zeros(0, np.int32)  # whole numbers: exact
    bits = int(others).bit_length() if llr else 0
    bits = bits if bits <= REST_BITS_MAX else 0
    return Exact(mode, float(others), xlogx_table(others) if llr else np.zeros(0), counts,
                 np.zeros(0) if scale is None else np.asarray(scale, np.float64), bits,
                 (counts.astype(np.int64) << bits).astype(np.float64) if bits else np.zeros(0))
