"""Top-N recommendations per row: selection among scored columns, or scores and selection fused.

Rated columns are excluded, and so is every column the popularity order leaves out (a
request's allow-list or exclusions: the order lists the candidates); ties go to the more
popular column, and rows with fewer than N candidates are filled in by popularity.  The
compiled loops take the lists they fill as one :class:`TopNTable` (each row built in a
:class:`RowList` first), and :func:`recommend_rows`'s loop its scoring as one
:class:`ScoreRule`.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

from .fill import filled_lists
from .prefetch import prefetch, prefetch_row
from .sparse import CsrArrays, csr_arrays, owned

__all__ = ["TopNTable", "ScoreRule", "RowList", "top_n", "recommend_rows"]

LIST_AHEAD = 4  # terms ahead whose neighbour lists are prefetched (the pointer at 2x)
# the prediction ranking sums a row's terms one range of this many columns at a time, so
# that the range's sums (24 bytes a column) stay in a core's cache: 117k items of 1.2M
# ratings, one thread, 4,000 users: 6.3-6.5 s summed whole, 4.7-4.9 s by 16k (32k: 4.9-5.0,
# 8k: 4.8-4.9); a catalogue of at most this many columns is one range, as before
COLUMN_TILE = 16_384
# ...where the row's list entries are at least this many times its terms x ranges: each range
# revisits every term (a huge catalogue's many ranges would cost more than they save)
TILE_WORTH = 8


class TopNTable(NamedTuple):
    """The ``(r, n)`` Top-N lists the compiled loops fill: columns ``cols`` (-1 where
    none), scores ``vals``, and each row's count of listed columns ``have``."""

    cols: np.ndarray
    vals: np.ndarray
    have: np.ndarray


class ScoreRule(NamedTuple):
    """How :func:`recommend_rows`'s loop scores a column: the similarity is ``A``'s value
    where ``sim_left`` else ``B``'s; at least ``min_k`` terms (a float); the score
    clipped to ``lo .. hi``; ``divide`` False ranks by the weighted sum itself."""

    sim_left: bool
    min_k: float
    lo: float
    hi: float
    divide: bool


def top_n(indptr, indices, scores, valid, rated, n, order):
    """Top-N columns per row among the scored, unrated ones, filled in by popularity.

    Parameters
    ----------
    indptr, indices, scores, valid : CSR-style arrays of the candidate entries
        (r + 1,), (e,), (e,) float64 and (e,) bool: entry e of row i is column
        ``indices[e]`` with ``scores[e]``, used only where ``valid[e]``; column
        order within a row does not matter.
    rated : scipy.sparse.csr_matrix (r, m); its stored entries are excluded
    n : int
    order : (c,) int64 distinct columns, most popular first: the candidates (every column
        where it is a permutation; one it leaves out is never listed); it breaks ties
        between equal scores and orders the filled-in columns.

    Returns
    -------
    cols : (r, n) int64, ``-1`` where a row has fewer than n unrated columns
    vals : (r, n) float64, the score (0 where filled in or padded)
    filled : (r, n) bool, True where the column was filled in by popularity
    """
    r, m = rated.shape
    rank_of, out = _output_table(r, m, order, n)
    pattern = _pattern(rated)
    candidates = CsrArrays(owned(indptr, np.int64), owned(indices, np.int64), owned(scores, np.float64))
    _topn_rows(candidates, owned(valid, np.bool_), pattern, rank_of, out, np.zeros(m, np.bool_), _row_list(n))
    return filled_lists(out, pattern, order)


def recommend_rows(A, B, rated, n, order, *, sim_left, min_k=1, adds=(None, None),
                   rating_range=(-np.inf, np.inf), divide=True):
    r"""Top-N by predicted rating for a block of rows, scores and selection fused.

    For row u and column i, over the entries ``A[u, j] B[j, i]`` of the sparse
    product ``A @ B`` (j ascending, as scipy sums):

    .. math::
        \text{num} = \sum_j A_{uj} B_{ji}, \quad
        \text{den} = \sum_j s_{uji}, \quad
        \text{score} = \operatorname{clip}(\text{num} / \text{den} + a_u + c_i)

    where the similarity :math:`s` is ``A``'s value when ``sim_left`` (user-based:
    A = neighbour rows, B = ratings) else ``B``'s (item-based: A = ratings,
    B = transposed neighbour table).  A column needs at least ``max(min_k, 1)``
    terms.  Rated columns are excluded; ties go to the column first in
    ``order``; short rows are filled as :func:`top_n` fills them.  No sparse
    product is built: one dense accumulator per term, O(columns) memory.
    ``divide=False`` ranks by ``num`` itself (no clip, no additions): the
    "sum" ranking.

    Parameters
    ----------
    A : scipy.sparse.csr_matrix (r, K); B : scipy.sparse.csr_matrix (K, m)
        Values already centred where the prediction is mean-centred.
    rated : scipy.sparse.csr_matrix (r, m); its stored entries are excluded
    n : int
    order : (c,) int64 the candidate columns, most popular first (as in :func:`top_n`)
    sim_left : bool
        The similarity is ``A``'s value (user-based), else ``B``'s (item-based).
    min_k : int
        The fewest terms a scored column needs (at least 1).
    adds : ((r,) or None, (m,) or None)
        ``(row_add, col_add)``: the float64 :math:`a_u` and :math:`c_i` added to each
        score (None: zeros).
    rating_range : (low, high)
        What a score is clipped to.
    divide : bool
        False: rank by ``num`` itself.

    Returns
    -------
    cols, vals, filled : as :func:`top_n`
    """
    r, m = rated.shape
    rank_of, out = _output_table(r, m, order, n)
    row_add, col_add = adds
    lo, hi = (float(v) for v in rating_range)
    rule = ScoreRule(bool(sim_left), float(max(int(min_k), 1)), lo, hi, bool(divide))
    pattern = _pattern(rated)
    a, b = csr_arrays(A, np.int64), csr_arrays(B, np.int64)
    if not divide and rule.min_k <= 1 and _positive_products(a, b):
        _recommend_sums(a, b, pattern, rank_of, out, _row_list(n))
    else:
        if m > COLUMN_TILE and not B.has_sorted_indices:  # each range read from where the last stopped
            b = csr_arrays(B.sorted_indices(), np.int64)
        adds = (np.zeros(r) if row_add is None else owned(row_add, np.float64),
                np.zeros(m) if col_add is None else owned(col_add, np.float64))
        _recommend_rows(a, b, pattern, rank_of, rule, adds, out, _row_list(n), (int(COLUMN_TILE), float(TILE_WORTH)))
    return filled_lists(out, pattern, order)


def _positive_products(a: CsrArrays, b: CsrArrays) -> bool:
    """Whether every product of a stored value of ``a`` and one of ``b`` is a positive
    double (the smallest two multiply to one): a column's sum is then 0 only untouched."""
    va, vb = a.val[:a.ptr[-1]], b.val[:b.ptr[-1]]
    if not (len(va) and len(vb)):
        return False
    lo_a, lo_b = va.min(), vb.min()
    with np.errstate(over="ignore", under="ignore"):  # inf is positive, 0 is not
        return bool(lo_a > 0 and lo_b > 0 and lo_a * lo_b > 0)


@numba.njit(cache=True, nogil=True)
def _recommend_rows(a, b, rated, rank_of, rule, adds, out, lst, tiling):  # pragma: no cover
    """:func:`recommend_rows`'s loop: rows ``a`` times ``b`` and ``rated``
    (:class:`~dcf.kernels.sparse.CsrArrays`, int64 indices; ``b``'s rows sorted where
    there is more than one ``tile``) scored by ``rule`` (:class:`ScoreRule`), ``adds`` =
    ``(row_add, col_add)``, into ``out`` (:class:`TopNTable`), each row built in ``lst``
    (:class:`RowList`).  ``tiling`` = ``(tile, worth)``: a row's terms are summed ``tile``
    columns at a time (:data:`COLUMN_TILE`) where its entries are at least ``worth`` x its
    terms x the ranges (:data:`TILE_WORTH`), each term's list read on from where the last
    range stopped: a column's terms are still added in term order, the same doubles."""
    a_ptr, a_idx, a_val, b_ptr, b_idx, b_val = a.ptr, a.idx, a.val, b.ptr, b.idx, b.val
    r_ptr, r_idx = rated.ptr, rated.idx
    sim_left, min_k, lo, hi, divide = rule.sim_left, rule.min_k, rule.lo, rule.hi, rule.divide
    row_add, col_add = adds
    tile, worth = tiling
    m = len(rank_of)
    # num, den and count side by side: a product's three sums share one cache line (three
    # arrays of a large catalogue cost three misses a product: e-commerce's 150k items, 8
    # of its Top-N's 16 ns a product)
    acc = np.zeros((m, 3))
    flag = np.zeros(m, np.bool_)
    touched = np.empty(m, np.int64)
    end = a_ptr[len(a_ptr) - 1]  # the terms' end (scipy lets indices run past it)
    at = np.empty(max(int(np.max(np.diff(a_ptr))), 1) if len(a_ptr) > 1 else 1, np.int64)
    for row in range(len(a_ptr) - 1):
        t = 0
        p0 = a_ptr[row]
        entries = 0
        for p in range(p0, a_ptr[row + 1]):
            at[p - p0] = b_ptr[a_idx[p]]
            entries += b_ptr[a_idx[p] + 1] - b_ptr[a_idx[p]]
        step = tile if entries >= worth * (a_ptr[row + 1] - p0) * ((m + tile - 1) // tile) else max(m, 1)
        for edge in range(step, m + step, step):
            for p in range(p0, a_ptr[row + 1]):
                # the lists a few terms on (the next rows' too: the terms lie end to end)
                # are fetched while this one is summed
                if edge >= m and p + 2 * LIST_AHEAD < end:
                    prefetch(b_ptr, a_idx[p + 2 * LIST_AHEAD])
                if edge >= m and p + LIST_AHEAD < end:
                    prefetch_row(b_ptr, b_idx, b_val, a_idx[p + LIST_AHEAD])
                j = a_idx[p]
                x = a_val[p]
                q, q_end = at[p - p0], b_ptr[j + 1]
                while q < q_end and b_idx[q] < edge:
                    c = b_idx[q]
                    y = b_val[q]
                    if acc[c, 2] == 0.0:
                        touched[t] = c
                        t += 1
                    acc[c, 0] += x * y
                    acc[c, 1] += x if sim_left else y
                    acc[c, 2] += 1.0
                    q += 1
                at[p - p0] = q
        for p in range(r_ptr[row], r_ptr[row + 1]):
            flag[r_idx[p]] = True
        got = 0
        for e in range(t):
            c = touched[e]
            num, den, cnt = acc[c, 0], acc[c, 1], acc[c, 2]
            ok = not flag[c] and cnt >= min_k and den > 0 and rank_of[c] >= 0
            s = 0.0
            if ok:
                s = min(max(num / den + row_add[row] + col_add[c], lo), hi) if divide else num
            acc[c, 0] = 0.0
            acc[c, 1] = 0.0
            acc[c, 2] = 0.0
            if ok:
                got = _push(lst, got, c, s, rank_of[c])
        _flush(lst, got, out, row)
        for p in range(r_ptr[row], r_ptr[row + 1]):
            flag[r_idx[p]] = False


@numba.njit(cache=True, nogil=True)
def _recommend_sums(a, b, rated, rank_of, out, lst):  # pragma: no cover - compiled
    """:func:`_recommend_rows` for the sum ranking where every product is positive (a column
    is scored once touched, its sum then above 0): one 8-byte sum a column, no count and
    no sum of similarities; the same sums in the same order, so the same lists.  8-byte
    sums the sole marker of a touched column, the selection written as in
    :func:`_recommend_rows` (the score chosen where ``ok``, the push under its own ``if
    ok``): e-commerce's Top-20, one thread, 3.3 -> 2.6 s; the push directly under the
    test, the same work otherwise, compiled to a loop of 5.6-6.4 s (benchmarks/RESULTS.md,
    issue 21 step 11)."""
    a_ptr, a_idx, a_val, b_ptr, b_idx, b_val = a.ptr, a.idx, a.val, b.ptr, b.idx, b.val
    r_ptr, r_idx = rated.ptr, rated.idx
    m = len(rank_of)
    acc = np.zeros(m)
    flag = np.zeros(m, np.bool_)
    touched = np.empty(m, np.int64)
    end = a_ptr[len(a_ptr) - 1]
    for row in range(len(a_ptr) - 1):
        t = 0
        for p in range(a_ptr[row], a_ptr[row + 1]):
            if p + 2 * LIST_AHEAD < end:
                prefetch(b_ptr, a_idx[p + 2 * LIST_AHEAD])
            if p + LIST_AHEAD < end:
                prefetch_row(b_ptr, b_idx, b_val, a_idx[p + LIST_AHEAD])
            j = a_idx[p]
            x = a_val[p]
            for q in range(b_ptr[j], b_ptr[j + 1]):
                c = b_idx[q]
                if acc[c] == 0.0:
                    touched[t] = c
                    t += 1
                acc[c] += x * b_val[q]
        for p in range(r_ptr[row], r_ptr[row + 1]):
            flag[r_idx[p]] = True
        got = 0
        for e in range(t):
            c = touched[e]
            num = acc[c]
            ok = not flag[c] and rank_of[c] >= 0
            s = 0.0
            if ok:
                s = num
            acc[c] = 0.0
            if ok:
                got = _push(lst, got, c, s, rank_of[c])
        _flush(lst, got, out, row)
        for p in range(r_ptr[row], r_ptr[row + 1]):
            flag[r_idx[p]] = False


class RowList(NamedTuple):
    """One row's Top-N while it is built: scores ``s``, columns ``c`` and their places in
    the popularity order ``rank`` (n each), sorted, copied to the table once the row is
    done (:func:`_flush`).  Kept apart from the ``(r, n)`` table: pushing into the
    table's 2D rows, the tie rule reading ``rank_of`` of the last listed column each
    time, took 3x the time (0.6 against 0.19 s for a block of 12,500 users of the 20M
    set's shape, 5M candidates; benchmarks/RESULTS.md, issue 21 step 7)."""

    s: np.ndarray
    c: np.ndarray
    rank: np.ndarray


def _row_list(n: int) -> RowList:
    return RowList(np.empty(n), np.empty(n, np.int64), np.empty(n, np.int64))


@numba.njit(cache=True, nogil=True, inline="always")
def _push(lst, have, c, s, rk):  # pragma: no cover - compiled
    """Insert column ``c`` with score ``s`` and popularity place ``rk`` into the sorted
    :class:`RowList` ``lst`` holding ``have`` (score descending, ties to the column first
    in the popularity order); returns the new count."""
    ls, lc, lr = lst.s, lst.c, lst.rank
    n = ls.shape[0]
    if have == n:
        last = ls[n - 1]
        if s < last or (s == last and rk > lr[n - 1]):
            return have
        pos = n - 1
    else:
        pos = have
        have += 1
    while pos > 0:
        pv = ls[pos - 1]
        if s > pv or (s == pv and rk < lr[pos - 1]):
            ls[pos] = pv
            lc[pos] = lc[pos - 1]
            lr[pos] = lr[pos - 1]
            pos -= 1
        else:
            break
    ls[pos] = s
    lc[pos] = c
    lr[pos] = rk
    return have


@numba.njit(cache=True, nogil=True, inline="always")
def _flush(lst, have, out, row):  # pragma: no cover - compiled
    """Copy a finished :class:`RowList` of ``have`` entries into row ``row`` of ``out``."""
    for i in range(have):
        out.cols[row, i] = lst.c[i]
        out.vals[row, i] = lst.s[i]
    out.have[row] = have


@numba.njit(cache=True, nogil=True)
def _topn_rows(candidates, valid, rated, rank_of, out, flag, lst):  # pragma: no cover - compiled
    """:func:`top_n`'s loop: the ``candidates`` (:class:`~dcf.kernels.sparse.CsrArrays`:
    columns and scores) where ``valid`` and not ``rated`` into ``out`` (:class:`TopNTable`),
    each row built in ``lst`` (:class:`RowList`); ``flag`` all False, m long."""
    indptr, indices, scores = candidates.ptr, candidates.idx, candidates.val
    r_indptr, r_indices = rated.ptr, rated.idx
    for row in range(len(indptr) - 1):
        for p in range(r_indptr[row], r_indptr[row + 1]):
            flag[r_indices[p]] = True
        cnt = 0
        for e in range(indptr[row], indptr[row + 1]):
            if not valid[e]:
                continue
            c = indices[e]
            if flag[c] or rank_of[c] < 0:  # rated, or no candidate
                continue
            cnt = _push(lst, cnt, c, scores[e], rank_of[c])
        _flush(lst, cnt, out, row)
        for p in range(r_indptr[row], r_indptr[row + 1]):
            flag[r_indices[p]] = False


def _output_table(r: int, m: int, order, n: int):
    """``(rank_of, table)``: each column's place in ``order`` (-1: not a candidate) and the
    empty ``(r, n)`` :class:`TopNTable` the compiled loops fill."""
    order = np.asarray(order, np.int64)
    rank_of = np.full(m, -1, np.int64)
    rank_of[order] = np.arange(len(order))
    return rank_of, TopNTable(np.full((r, n), -1, np.int64), np.zeros((r, n)), np.zeros(r, np.int64))


def _pattern(rated):
    """The :class:`~dcf.kernels.sparse.CsrArrays` of ``rated``'s pattern: int64 row
    pointers and columns (the values are not read: an empty array)."""
    return CsrArrays(rated.indptr.astype(np.int64), rated.indices.astype(np.int64), np.zeros(0))
