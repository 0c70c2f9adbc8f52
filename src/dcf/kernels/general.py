"""The general loop of the rows method: whole similarity rows of a block of entities
from the shared matrix for any measure, as dense rows, CSR rows and / or top-k lists
(:func:`sim_rows`, called by :func:`dcf.kernels.rows.similarity_rows`), with
:class:`Rules`, how it scores a pair."""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

from .prefetch import prefetch, prefetch_row
from .select import emit, keep

__all__ = ["Rules", "sim_rows", "xlogx_table", "llr_similarity", "llr_similarities", "llr_margin", "llr_ratio",
           "llr_of_ratio"]


class Rules(NamedTuple):
    """How :func:`sim_rows` scores a pair: the measure's ``mode`` (``measure_mode``), whether
    co-raters are counted (``count``), and ``min_support``, ``shrinkage``, the shrinkage's
    ``offset``, ``significance`` and ``min_similarity``, and the number of ``others`` (the
    columns of the block's rows: ``llr`` reads it), all floats."""

    mode: int
    count: bool
    min_support: float
    shrinkage: float
    offset: float
    significance: float
    min_similarity: float
    others: float


def xlogx_table(total: int) -> np.ndarray:
    """``k log k`` for every count ``k = 0 .. total`` (0 for 0), by NumPy: :func:`llr_similarity`
    reads its logarithms from here, so that the rows kernel, the tiles and the tests'
    reference add and subtract the same doubles (a logarithm computed in two compiled
    loops differed in its last bits, and the ratio's cancellations made that 1e-13)."""
    k = np.arange(int(total) + 1, dtype=np.float64)
    return k * np.log(np.where(k > 0, k, 1.0))


@numba.njit(cache=True, nogil=True)
def llr_similarity(both, a, b, total, xlogx):  # pragma: no cover - compiled
    """Mahout's ``LogLikelihoodSimilarity`` of two entities rated by ``a`` and ``b`` of
    ``total`` others, ``both`` of them by both (all whole numbers, as floats): the
    log-likelihood ratio ``L`` of the 2 x 2 table (Dunning 1993, as Mahout's
    ``LogLikelihood.logLikelihoodRatio`` sums it: the unnormalised entropies of rows,
    columns and table, ``xLogX(sum) - xLogX(x1) - xLogX(x2) ...``), then
    ``1 - 1 / (1 + L)``.  ``xlogx``: :func:`xlogx_table` of ``total``.  The table's two
    one-sided counts are added before they are subtracted, so that the similarity of
    (x, y) and of (y, x) are the same double (the tiles mirror their transposes)."""
    return llr_of_ratio(llr_ratio(int(both), int(a), int(b), int(total), xlogx, llr_margin(a, total, xlogx)))


@numba.njit(cache=True, nogil=True, inline="always")
def llr_margin(count, total, xlogx):  # pragma: no cover - compiled
    """The unnormalised entropy of one margin of the 2 x 2 table, an entity rated by
    ``count`` of ``total`` others: ``xLogX(total) - xLogX(count) - xLogX(total - count)``
    (the table's row sums for ``b``, its column sums for ``a``: one entity's alone, so
    the fast path computes it once a row)."""
    return xlogx[int(total)] - xlogx[int(count)] - xlogx[int(total) - int(count)]


@numba.njit(cache=True, nogil=True, inline="always")
def llr_ratio(both, a, b, total, xlogx, cols):  # pragma: no cover - compiled
    """The log-likelihood ratio ``L`` of :func:`llr_similarity`, of whole counts (integers)
    given ``cols``, :func:`llr_margin` of ``a`` (0 where rounding makes it negative).
    ``b``'s margin is read here: its two table entries share cache lines with the table's
    ``b - both`` and ``total - a - b + both`` where the counts are small, where an array of
    every entity's margins was one more line a column (the fast path's e-commerce llr, one
    thread: 8 % quicker)."""
    rows = xlogx[total] - xlogx[b] - xlogx[total - b]
    table = xlogx[total] - xlogx[both] - (xlogx[b - both] + xlogx[a - both]) - xlogx[total - a - b + both]
    return 0.0 if rows + cols < table else 2.0 * (rows + cols - table)  # < : rounding


@numba.njit(cache=True, nogil=True, inline="always")
def llr_of_ratio(ratio):  # pragma: no cover - compiled
    """Mahout's similarity of a log-likelihood ratio, ``1 - 1 / (1 + L)``: non-decreasing
    in ``L`` (each step a correctly rounded operation), so the fast path ranks columns by
    ``L`` and divides for the few it lists."""
    return 1.0 - 1.0 / (1.0 + ratio)


@numba.njit(cache=True, nogil=True)
def llr_similarities(both, a, b, total, xlogx):  # pragma: no cover - compiled
    """:func:`llr_similarity` of every ``both[x, y]`` with ``a[x]`` and ``b[y]`` (the tiles'
    form)."""
    out = np.empty(both.shape)
    for x in range(both.shape[0]):
        for y in range(both.shape[1]):
            out[x, y] = llr_similarity(both[x, y], a[x], b[y], total, xlogx)
    return out


@numba.njit(cache=True, nogil=True)
def sim_rows(a, q, ids, n, rules, norms_a, norms, xlogx, out, ahead):  # pragma: no cover
    """The general loop of :func:`~dcf.kernels.rows.similarity_rows`: any measure, dense
    or CSR rows and / or top-k lists.  Rows ``a`` of the block and ``q`` of the shared matrix
    (:class:`~dcf.kernels.sparse.CsrArrays`), the block's entity ids ``ids``, ``n``
    entities, the pair's scoring :class:`Rules`, the totals ``norms_a`` / ``norms``
    where the measure divides by them (else empty), ``llr``'s :func:`xlogx_table` (else
    empty), the :class:`RowsOut` to fill,
    and the rows to prefetch ``ahead``.  Returns the CSR arrays ``(ptr, idx, val)``
    of the whole rows where ``out.csr`` (else empty), each row's columns unsorted."""
    p_ptr, p_idx, p_val = a.ptr, a.idx, a.val
    q_ptr, q_idx, q_val = q.ptr, q.idx, q.val
    mode, count, min_support, shrinkage = rules.mode, rules.count, rules.min_support, rules.shrinkage
    offset, significance, min_similarity, others = rules.offset, rules.significance, rules.min_similarity, rules.others
    dense, rows, top_i, top_s = out.dense, out.rows, out.top_i, out.top_s
    squares = mode == 0 or mode == 2  # CO_RATED, PEARSON
    sums = mode == 2
    prod = np.zeros(n)
    freq = np.zeros(n if count else 0)
    sqi = np.zeros(n if squares else 0)
    sqj = np.zeros(n if squares else 0)
    si = np.zeros(n if sums else 0)
    sj = np.zeros(n if sums else 0)
    seen = np.zeros(n, np.bool_)
    touched = np.empty(n, np.int64)
    k = top_i.shape[1]
    hs, hj = np.empty(k), np.empty(k, np.int64)
    csr = out.csr
    c_ptr = np.zeros(len(p_ptr) if csr else 0, np.int64)
    c_idx = np.empty(0, np.int32)
    c_val = np.empty(0)
    nz = 0
    for i in range(len(p_ptr) - 1):
        t = 0
        lo, hi = p_ptr[i], p_ptr[i + 1]
        for p in range(lo, hi):
            if p + 2 * ahead < hi:
                prefetch(q_ptr, p_idx[p + 2 * ahead])
            if p + ahead < hi:
                prefetch_row(q_ptr, q_idx, q_val, p_idx[p + ahead])
            u = p_idx[p]
            r = p_val[p]
            rr = r * r
            for q in range(q_ptr[u], q_ptr[u + 1]):
                j = q_idx[q]
                v = np.float64(q_val[q])
                if not seen[j]:
                    seen[j] = True
                    touched[t] = j
                    t += 1
                prod[j] += r * v
                if count:
                    freq[j] += 1.0
                if squares:
                    sqi[j] += rr
                    sqj[j] += v * v
                if sums:
                    si[j] += r
                    sj[j] += v
        have = 0
        me = ids[i]
        if csr and nz + t + 1 > len(c_idx):  # room for the row: grow by half at least
            grown = max(nz + t + 1, len(c_idx) + len(c_idx) // 2, 1024)
            c_idx, c_val = _grown(c_idx, nz, grown), _grown(c_val, nz, grown)
        for e in range(t):
            j = touched[e]
            seen[j] = False
            f = freq[j] if count else 1.0
            num = prod[j]
            if mode == 0:
                den = np.sqrt(sqi[j] * sqj[j])
            elif mode == 1 or mode == 5:  # NORMS (norms), LIFT (numbers of raters)
                den = norms_a[i] * norms[j]
            elif mode == 2:
                num = f * num - si[j] * sj[j]
                den = np.sqrt((f * sqi[j] - si[j] * si[j]) * (f * sqj[j] - sj[j] * sj[j]))
            elif mode == 3:  # JACCARD
                den = (norms_a[i] + norms[j]) - num
            elif mode == 6:  # LLR: the similarity itself, over 1
                num = llr_similarity(num, norms_a[i], norms[j], others, xlogx)
                den = 1.0
            else:  # COOCCURRENCE (the count itself), DOT (the dot product itself)
                den = 1.0
            s = 0.0
            if f >= min_support and den > 0:
                s = num / den
                if shrinkage > 0:
                    s *= (f - offset) / (f - offset + shrinkage)
                if significance > 0:
                    s *= min(f, significance) / significance
                if min_similarity > 0 and s < min_similarity:
                    s = 0.0
            prod[j] = 0.0
            if count:
                freq[j] = 0.0
            if squares:
                sqi[j] = 0.0
                sqj[j] = 0.0
            if sums:
                si[j] = 0.0
                sj[j] = 0.0
            if dense:
                rows[i, j] = s
            elif csr and s != 0.0 and j != me:
                c_idx[nz] = j
                c_val[nz] = s
                nz += 1
            if k > 0 and j != me:
                have = keep(hs, hj, have, j, s, 0.0)
        emit(hs, hj, have, top_i, top_s, i)
        if dense and 0 <= me < n:
            rows[i, me] = 1.0
        if csr:
            if 0 <= me < n:
                c_idx[nz] = me
                c_val[nz] = 1.0
                nz += 1
            c_ptr[i + 1] = nz
    return c_ptr, c_idx[:nz], c_val[:nz]


@numba.njit(cache=True, nogil=True)
def _grown(a, used, size):  # pragma: no cover
    """``a``'s first ``used`` entries in a new array of ``size``."""
    b = np.empty(size, a.dtype)
    b[:used] = a[:used]
    return b
