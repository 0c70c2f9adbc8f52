"""Whole similarity rows of a block of entities, straight from the shared matrix.

:func:`similarity_rows` and its two compiled loops: the general one
(:func:`~dcf.kernels.general.sim_rows`, every measure, dense or CSR rows and / or top-k
lists, in :mod:`~dcf.kernels.general`) and the fast top-k scan of the norm-divided
measures (:func:`norms_topk`, see :func:`dcf.kernels.measures.fast_topk`), the arguments
they take grouped (:class:`~dcf.kernels.general.Rules`, how a pair is scored;
:class:`RowsOut`, what they fill), with the tuning constants they run with.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
import scipy.sparse as sp

from .codec import CompactCSR, compact_csr, entries, unpacked
from .direct import at_rest, cut_under, direct_score, exact_for, ratio_under
from .general import Rules, llr_margin, llr_of_ratio, sim_rows, xlogx_table
from .measures import BINARY, COOCCURRENCE, DOT, JACCARD, LLR, PEARSON, SimilaritySettings, measure_mode
from .prefetch import prefetch, prefetch_lines, prefetch_row
from .select import above, best_k, emit, keep, kth_largest, offer, ranked, scored
from .sparse import CsrArrays, csr_arrays

__all__ = ["PREFETCH_AHEAD", "SELECT_BLOCK", "TRACK_BELOW", "FLOOR_SAMPLE", "RANKED_MAX", "RowsOut", "Scan",
           "similarity_rows", "norms_topk"]

PREFETCH_AHEAD = 4  # rows ahead: the row pointer at 2x, the row itself at 1x (measured best)
SELECT_BLOCK = 32  # columns a top-k scan skips at once when their largest estimate is under the cut
# the fast top-k path lists the columns a row touches and scans only those when the row takes
# fewer products than this per column (else it scans every column, no bookkeeping). Measured
# (benchmarks/catalogue.py): at 20k items 0.25 took 0.86 of the dense scan's time (0.1: 0.90,
# 0.5: 0.89, 1: 0.94, 2: 0.98); at 150k items 0.25 to 2 took the same
TRACK_BELOW = 0.25
# a tracked row's first floor: the k-th largest estimate of this many of its columns, evenly
# spaced (any subset's k-th largest is at most the row's: a floor, however the sample falls)
FLOOR_SAMPLE = 512
# a tracked row's last candidates (about k) are written at their ranks, m x m comparisons,
# up to 2k of them and this many; past it (a large k, or many tied at the cut) a heap sorts
# them, m log k (k = 1,000: the ranks took 1.8x the heap's time, k = 200: 0.8x)
RANKED_MAX = 256


class RowsOut(NamedTuple):
    """What the rows loops fill: dense ``rows`` where ``dense`` (else ``(0, 0)``), and the
    top-k table ``top_i`` / ``top_s`` (k columns, 0 for none).  ``csr``: :func:`sim_rows`
    also returns the whole rows as CSR arrays (their non-zero similarities and the
    diagonal)."""

    dense: bool
    rows: np.ndarray
    top_i: np.ndarray
    top_s: np.ndarray
    csr: bool


class Scan(NamedTuple):
    """How :func:`norms_topk` walks a row: prefetching ``ahead`` rows, scanning ``block``
    columns at once, tracking touched columns of rows under ``track_below`` products per
    column, a tracked row's first floor drawn from ``sample`` of its columns (at least k),
    its last candidates written at their ranks where at most ``ranked``, else through a heap
    (:data:`PREFETCH_AHEAD`, :data:`SELECT_BLOCK`, :data:`TRACK_BELOW`, :data:`FLOOR_SAMPLE`,
    :data:`RANKED_MAX`)."""

    ahead: int
    block: int
    track_below: float
    sample: int
    ranked: int


def similarity_rows(Pa, Q, row0, settings=SimilaritySettings(), k=None, norms_a=None, norms=None, dense=False,
                    csr=False, scale=None):
    """Whole similarity rows of a block of entities, straight from the ratings.

    The same values as :func:`similarity_tile` over every block, bit for bit,
    computed row by row with one dense accumulator per measure term (the
    sparse-accumulator product: cost = sum over the others of (ratings in the
    block) x (ratings in total), no work per empty pair, no tile to merge).
    The loop is bound by fetching the rows of ``Q``; they are prefetched a few
    rows ahead.

    Parameters
    ----------
    Pa : scipy.sparse.csr_matrix (na, m)
        Entity rows ``row0 .. row0 + na`` over the others (users for item CF).
    row0 : int or (na,) int array
        The first row's entity id, or every row's (rows of scattered entities:
        an incremental refresh recomputes only some).
    Q : scipy.sparse.csr_matrix or CompactCSR (m, n), sorted indices
        Every entity's ratings, others x entities (the whole matrix).
    settings : SimilaritySettings
        The measure and its ``min_support``, ``shrinkage``, ``significance`` and
        ``min_similarity``, as in :func:`similarity_tile`.
    k : int, optional
        Also return the top-``k`` table (as :func:`topk_rows` gives it, self
        excluded unless ``settings.include_self``).
    norms_a, norms : (na,), (n,) float64, optional
        :func:`entity_totals` of ``Pa`` and of every entity, needed where
        :func:`needs_norms` (row norms, or numbers of ratings for ``jaccard``, ``lift`` and ``llr``).
    dense : bool
        Return the dense ``(na, n)`` rows (diagonal = 1, as surprise does; with
        ``settings.include_self``, the entity's own similarity).
    scale : (m,) float64, optional
        Each other's factor on every value, its own and the block's (the fast top-k path
        only): each product is ``(Pa[i, u] * scale[u]) * (Q[u, j] * scale[u])``, the very
        doubles of the matrices so weighed (bm25's idf, :func:`dcf.fitted.split_bm25`).
    csr : bool
        With ``dense``, return those rows as a CSR matrix with sorted indices instead:
        the non-zero similarities and the diagonal, the same values.  Its time and
        memory follow the pairs that share a rater, not ``na x n`` (a 70k-item
        catalogue's ``rated`` fit: 95 s of zeroing, writing and scanning dense rows
        for 80k ratings before).

    Returns
    -------
    rows or None, idx or None, sim or None
    """
    s = settings
    mode, min_support, offset = measure_mode(s.measure, s.min_support, s.shrinkage)
    if not isinstance(Q, CompactCSR):
        Q = compact_csr(Q)
    csr = bool(dense and csr)
    dense = bool(dense and not csr)
    fast = s.fast_topk(dense or csr, k)
    if scale is not None and not fast:
        raise ValueError("a scale applies on the fast top-k path only (lists, no whole rows)")
    if not fast:
        Q = unpacked(Q)
    na, n = Pa.shape[0], Q.shape[1]
    totals = s.spec.needs_norms
    if totals and (norms_a is None or norms is None):
        raise ValueError(f"{s.measure} needs norms_a and norms (kernels.entity_totals)")
    norms = s.column_totals(norms)  # conditional: the column's popularity discounted
    ids = np.asarray(row0, np.int64)
    if ids.ndim == 0:
        ids = np.arange(int(row0), int(row0) + na, dtype=np.int64)
    elif ids.shape != (na,):
        raise ValueError(f"row0 gives {ids.shape[0]} entity ids for {na} rows")
    # the entity each row leaves out of its list and gives a diagonal of 1: none with include_self
    me = np.full(na, -1, np.int64) if s.include_self else ids
    kk = 0 if k is None else int(k)
    out = RowsOut(dense, np.zeros((na, n) if dense else (0, 0)), np.full((na, kk), -1, np.int64),
                  np.zeros((na, kk)), csr)
    a = csr_arrays(Pa)
    if mode in BINARY:  # who rated: every value read as 1
        a = a._replace(val=np.ones(Pa.nnz))
    if fast:
        e = entries(Q)
        if mode in BINARY:  # and the shared matrix's (cooccurrence, lift)
            e = e._replace(table=np.ones_like(e.table)) if e.is_packed else e._replace(val=np.ones_like(e.val))
        if mode in (DOT, COOCCURRENCE):  # the sum itself: the fast path over norms of 1 (x / 1.0 is x)
            norms_a, norms = np.ones(na), np.ones(n)
        norms_a, norms = np.asarray(norms_a, np.float64), np.asarray(norms, np.float64)
        exact = exact_for(mode, Pa.shape[1], norms, scale)
        norms_topk(a, e, me, norms_a, norms, _inverse(norms), float(s.min_similarity), out,
                   Scan(PREFETCH_AHEAD, SELECT_BLOCK, float(TRACK_BELOW), int(FLOOR_SAMPLE), int(RANKED_MAX)), exact)
        return None, out.top_i, out.top_s
    count = min_support > 1 or s.shrinkage > 0 or s.significance > 0 or mode == PEARSON
    q_val = np.ones(Q.indices.shape[0], np.float32) if mode in BINARY else Q.data
    rules = Rules(mode, count, float(min_support), float(s.shrinkage), offset, float(s.significance),
                  float(s.min_similarity), float(Pa.shape[1]))
    empty = np.zeros(0)
    ptr, idx, val = sim_rows(a, CsrArrays(Q.indptr, Q.indices, q_val), me, n, rules,
                             np.asarray(norms_a, np.float64) if totals else empty,
                             np.asarray(norms, np.float64) if totals else empty,
                             xlogx_table(Pa.shape[1]) if mode == LLR else empty, out, PREFETCH_AHEAD)
    rows = out.rows if dense else None
    if csr:  # each row's columns come in the order the accumulator met them
        rows = sp.csr_matrix((val, idx, ptr), shape=(na, n))
        rows.sort_indices()
    return rows, (out.top_i if k is not None else None), (out.top_s if k is not None else None)


def _inverse(norms):
    out = np.zeros_like(norms)
    np.divide(1.0, norms, out=out, where=norms > 0)
    return out


@numba.njit(cache=True, nogil=True)
def norms_topk(a, e, ids, norms_a, norms, inv, min_similarity, out, scan, exact):  # pragma: no cover - compiled
    """Top-k rows of a norm-divided measure (see :func:`dcf.kernels.measures.fast_topk`)
    into ``out.top_i`` / ``out.top_s`` (:class:`RowsOut`): rows ``a`` of the block
    (:class:`~dcf.kernels.sparse.CsrArrays`) against the shared matrix's
    :class:`~dcf.kernels.codec.Entries` ``e`` (its packed entries and table where
    ``e.is_packed``, else its columns and values), ``inv`` = ``1 / norms`` (0 where
    a norm is 0), walked as :class:`Scan` ``scan`` says.

    Each row's products are summed into a dense accumulator.  A cheap estimate
    ``prod * (1 / norm_j)`` of a column's similarity times the row's norm is then
    compared with a cut, less a 1e-9 margin (far above the estimate's rounding); only
    the columns that pass compute the exact ``prod / (norm_i * norm_j)`` of the general
    kernel and are offered to the list, so the lists are the same bit for bit.  The cut
    starts at a floor under the row's k-th estimate, so a row offers its list about k
    columns instead of about k log(n / k) from a cut that starts at 0 (measured on the
    20M set: 54 instead of 322 a row, each insert costing some 150 ns); once the list is
    full, the cut follows its k-th similarity.

    Two ways to find the columns, chosen per row by its number of products (the sum of
    its raters' row lengths), with the same lists either way:

    * dense (a row with many products): no bookkeeping of the columns touched; every
      column's estimate is computed, the floor is the k-th largest of the estimates'
      maxima over blocks of ``scan.block`` columns (k distinct columns), and only the
      blocks whose maximum passes are scanned.  Cost per row: its products plus the
      number of columns.
    * tracked (fewer than ``scan.track_below`` products per column): a column is listed
      when a product first touches it; only the listed ones are estimated and cleared.
      A first floor is the k-th largest estimate of ``scan.sample`` of them, evenly spaced
      (:func:`~dcf.kernels.select.kth_largest`: a subset's k-th largest is at most the
      row's); one pass keeps the columns over it, branch-free, with their sums (about
      k x t / sample of the t listed); the k-th largest of those is the row's own, and
      a second cut leaves about k (more where many tie at the cut: cut to the k first by
      :func:`~dcf.kernels.select.best_k`), whose exact similarities are written at their
      ranks (:func:`~dcf.kernels.select.ranked`; a k past ``scan.ranked``, through a heap:
      :func:`~dcf.kernels.select.keep` and :func:`~dcf.kernels.select.emit`).  Cost per
      row: its products and a flag each, never the number of columns: a large catalogue
      does not make the fit quadratic in the number of items.  (The e-commerce shape, all
      rows, one thread: a quickselect over every listed estimate and a heap of the best
      3.0 s, this 2.4-2.5 s, the same lists; a heap's sifts were half the selection's
      time, each step a branch to mispredict.)

    ``jaccard`` and ``llr`` (``exact.mode``, :class:`~dcf.kernels.direct.Exact`) are no
    fixed multiple of the estimate: their "estimate" is scored directly from the co-count,
    the whole products of binarised values (:func:`~dcf.kernels.direct.direct_score`:
    jaccard's similarity itself; llr's log-likelihood ratio, of which the similarity is a
    non-decreasing function, taken only for the columns listed; its cuts lowered by the runs
    of ratios that round to one similarity, :func:`~dcf.kernels.direct.cut_under`; its
    counts carried in the accumulator: the e-commerce shape's llr, one thread, 2.58-2.65
    against 2.96-3.15 s before the three), cut and offered the same way, so
    that the lists are the general loop's bit for bit; a column no product touched scores
    0 (as in the general loop, which never sees it)."""
    p_ptr, p_idx, p_val = a.ptr, a.idx, a.val
    q_ptr, q_idx, q_val, q_packed, table, packed = e.ptr, e.idx, e.val, e.packed, e.table, e.is_packed
    shift, mask = e.bits, (1 << e.bits) - 1
    ahead, block = scan.ahead, scan.block
    top_i, top_s = out.top_i, out.top_s
    n = norms.shape[0]
    k = top_i.shape[1]
    nb = (n + block - 1) // block
    limit = scan.track_below * n
    prod = exact.rest.copy() if exact.bits > 0 else np.zeros(n)
    est = np.empty(n)
    peak = np.empty(nb)  # each block's largest estimate
    scratch = np.empty(max(nb, n))
    seen = np.zeros(n, np.int8)
    touched = np.empty(n + 1, np.int64)  # one more: each product writes before it counts
    hs, hj = np.empty(k), np.empty(k, np.int64)  # a tracked row's best, as a heap (too many to rank)
    cj, cp = np.empty(n, np.int64), np.empty(n)  # a tracked row's columns over its cut, their sums
    sample = max(scan.sample, k)
    direct = exact.mode == JACCARD or exact.mode == LLR  # scored directly
    ratios = exact.mode == LLR  # a tracked row's llr columns ranked by their ratios
    scaled = len(exact.scale) > 0
    for i in range(len(p_ptr) - 1):
        lo, hi = p_ptr[i], p_ptr[i + 1]
        work = 0
        for p in range(lo, hi):
            work += q_ptr[p_idx[p] + 1] - q_ptr[p_idx[p]]
        track = work < limit
        t = 0
        for p in range(lo, hi):
            if p + 2 * ahead < hi:
                prefetch(q_ptr, p_idx[p + 2 * ahead])
            if p + ahead < hi:
                if packed:
                    v = p_idx[p + ahead]
                    prefetch_lines(q_packed, q_ptr[v], q_ptr[v + 1])
                else:
                    prefetch_row(q_ptr, q_idx, q_val, p_idx[p + ahead])
            u = p_idx[p]
            f = exact.scale[u] if scaled else 1.0  # (x * 1.0 is x)
            r = p_val[p] * f
            if track and packed:
                for q in range(q_ptr[u], q_ptr[u + 1]):
                    x = np.int64(q_packed[q])
                    j = x & mask
                    touched[t] = j  # kept only the first time (no branch to mispredict)
                    t += 1 - seen[j]
                    seen[j] = 1
                    prod[j] += r * (table[x >> shift] * f)
            elif track:
                for q in range(q_ptr[u], q_ptr[u + 1]):
                    j = q_idx[q]
                    touched[t] = j
                    t += 1 - seen[j]
                    seen[j] = 1
                    prod[j] += r * (np.float64(q_val[q]) * f)
            elif packed:
                for q in range(q_ptr[u], q_ptr[u + 1]):
                    x = np.int64(q_packed[q])
                    prod[x & mask] += r * (table[x >> shift] * f)
            else:
                for q in range(q_ptr[u], q_ptr[u + 1]):
                    prod[q_idx[q]] += r * (np.float64(q_val[q]) * f)
        me, na = ids[i], norms_a[i]
        scale = 1.0 if direct else na  # an estimate over the similarity
        margin_a = llr_margin(na, exact.others, exact.xlogx) if exact.mode == LLR else 0.0
        if track:  # the touched columns only: a floor, the columns over it (all cleared), their list
            cut, step, again = 0.0, t, t  # again: the next column sampled (none: t)
            if t > k:  # the k-th largest estimate of a sample of the columns: at most the row's
                # (the estimate written out here and below: an inlined helper taking the arrays ran 3.5x slower)
                step = (t + sample - 1) // sample
                drawn = 0
                for c in range(0, t, step):
                    j = touched[c]
                    y = 0.0 if j == me else direct_score(exact, prod[j], na, norms[j], j, margin_a) if direct \
                        else prod[j] * inv[j]
                    scratch[drawn] = y
                    est[c] = y  # a direct similarity is read again below, not scored twice (a third of them)
                    drawn += 1
                if drawn >= k:
                    cut = max(0.0, cut_under(kth_largest(scratch, drawn, k), ratios))  # only s > 0 is listed
                again = 0 if direct else t
            m = 0
            for c in range(t):  # branch-free but for a sampled column: every one written, kept by counting it
                j = touched[c]
                if c == again:  # est[c] is not yet overwritten: the writes below stay at m <= c
                    y = est[c]
                    again += step
                else:
                    y = 0.0 if j == me else direct_score(exact, prod[j], na, norms[j], j, margin_a) if direct \
                        else prod[j] * inv[j]
                cj[m] = j
                est[m] = y
                cp[m] = prod[j]
                m += y > cut
                prod[j] = at_rest(exact, prod[j])
                seen[j] = 0
            if m > k:  # the row's own k-th largest estimate, and the columns over it
                scratch[:m] = est[:m]
                cut = max(cut, cut_under(kth_largest(scratch, m, k), ratios))
                m = above(cut, cj, est, cp, m)
            if ratios:
                for c in range(m):
                    est[c] = llr_of_ratio(est[c])
            m = scored(direct, cj, est, cp, m, na, norms, min_similarity)
            if m > k and k <= scan.ranked:  # ties at the cut (integer sums): exactly the k first
                m = best_k(est, cj, m, k, scratch, touched)
            if m <= min(2 * k, scan.ranked):
                ranked(est, cj, m, top_i, top_s, i)
            else:  # a long list (k over scan.ranked)
                have = 0
                for c in range(m):
                    have = keep(hs, hj, have, cj[c], est[c], min_similarity)
                emit(hs, hj, have, top_i, top_s, i)
            continue
        if direct:
            for j in range(n):
                both = prod[j]  # the co-count
                if exact.bits > 0:  # the resting counts taken out, read in order, and put back
                    both -= exact.rest[j]
                    prod[j] = exact.rest[j]
                est[j] = direct_score(exact, both, na, norms[j], j, margin_a, False) if both > 0 else 0.0
        else:
            for j in range(n):  # vectorised
                est[j] = prod[j] * inv[j]
        if 0 <= me < n:
            est[me] = 0.0  # never listed
        for b in range(nb):
            top = 0.0
            for j in range(b * block, min(b * block + block, n)):
                top = est[j] if est[j] > top else top
            peak[b] = top
        cut = 0.0
        if nb > k:  # the k-th largest block peak: a floor under the row's k-th estimate
            scratch[:nb] = peak
            cut = cut_under(np.partition(scratch[:nb], nb - k)[nb - k], ratios)
        have = 0
        for b in range(nb):
            if peak[b] > cut:  # one mostly-untaken branch per block
                for j in range(b * block, min(b * block + block, n)):
                    if est[j] > cut and ratios:  # the cut stays a ratio: the list's k-th similarity's
                        have, _ = offer(top_i, top_s, i, have, j, llr_of_ratio(est[j]), 1.0, min_similarity, 0.0)
                        cut = max(cut, ratio_under(top_s[i, k - 1])) if have == k else cut
                    elif est[j] > cut:
                        have, cut = offer(top_i, top_s, i, have, j, est[j] if direct else prod[j] / (na * norms[j]),
                                          scale, min_similarity, cut)
        if exact.bits == 0:  # (else already at rest)
            prod[:] = 0.0

