"""CSR blocks from ratings, and per-row sums over them.

Building a block from triplets (exact duplicates dropped, conflicts found) or from
events (implicit feedback: each pair's weights summed), a
block's arrays as the compiled loops read them (:class:`CsrArrays`), the
Euclidean norm of every row, a block's who-rated pattern, and the per-column cost
of the rows kernel that the similarity stage balances its tasks by.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
import scipy.sparse as sp

__all__ = ["csr_from_triplets", "csr_from_events", "warm_up", "CsrArrays", "csr_arrays", "owned", "row_norms", "rater_costs", "add_rater_costs", "binary"]


def csr_from_triplets(rows, cols, vals, shape, lines=None):
    """Build a CSR block, dropping exact duplicates and finding conflicts.

    Of the ratings of one (row, column) pair the one of the earliest line is kept
    (the first given, between equal lines); a later one with the same value is an
    exact duplicate, one with another value a conflict. Two stable counting sorts
    (by column, then by row) in a compiled loop: linear in the ratings, where
    sorting them was ``n log n`` (a block of 280k ratings: 90 -> 27 ms).

    Parameters
    ----------
    rows, cols : (n,) int
        Block-local row and column of each rating.
    vals : (n,) float64
    shape : (int, int)
    lines : (n,) int64, optional
        Source line of each rating; duplicates keep the earliest line.

    Returns
    -------
    csr : scipy.sparse.csr_matrix, float64, sorted indices, no duplicates
    duplicates : int
        Exact duplicates dropped (same row, column and value).
    conflicts : (m, 5) float64 array
        ``row, col, line_kept, line_other, value_other`` of every later rating
        of a pair whose value differs from the kept one (not stored), ordered by
        row, column and line.
    """
    rows, cols, vals, lines, n_rows, n_cols = _triplets(rows, cols, vals, shape, lines)
    ptr, idx, data, clash, kept_line, dups = _build_csr(rows, cols, vals, lines, n_rows, n_cols)
    conflicts = np.column_stack([rows[clash], cols[clash], kept_line, lines[clash],
                                 vals[clash]]).astype(np.float64)
    if len(conflicts) > 1:
        conflicts = conflicts[np.lexsort((conflicts[:, 3], conflicts[:, 1], conflicts[:, 0]))]
    index = np.int32 if max(n_rows, n_cols, len(idx)) < 2**31 else np.int64
    csr = sp.csr_matrix((data, idx.astype(index), ptr.astype(index)), shape=(n_rows, n_cols))
    csr.has_sorted_indices = True
    return csr, int(dups), conflicts


def csr_from_events(rows, cols, vals, shape, lines=None):
    """Build a CSR block from implicit-feedback events: each (row, column) pair's weights
    summed, in the order of their lines (so the same double however the input was cut
    into parts), as implicit's and SAR's users sum repeated clicks.

    Parameters
    ----------
    rows, cols : (n,) int
        Block-local row and column of each event.
    vals : (n,) float64
        Each event's weight (1 for a plain ``user, item`` event).
    shape : (int, int)
    lines : (n,) int64, optional
        Source line of each event (the order its weight is added in).

    Returns
    -------
    csr : scipy.sparse.csr_matrix, float64, sorted indices, one entry a pair
    events : int
        The events read (``n``); ``csr.nnz`` of them remain as pairs.

    Examples
    --------
    >>> csr, events = csr_from_events([0, 0, 1], [2, 2, 0], [1.0, 2.0, 1.0], (2, 3))
    >>> csr.toarray().tolist(), events
    ([[0.0, 0.0, 3.0], [1.0, 0.0, 0.0]], 3)
    """
    rows, cols, vals, lines, n_rows, n_cols = _triplets(rows, cols, vals, shape, lines)
    by_line = np.argsort(lines, kind="stable")
    order = _counting_order(rows, n_rows, _counting_order(cols, n_cols, by_line))
    ptr, idx, data = _sum_runs(rows, cols, vals, order, n_rows)
    index = np.int32 if max(n_rows, n_cols, len(idx)) < 2**31 else np.int64
    csr = sp.csr_matrix((data, idx.astype(index), ptr.astype(index)), shape=(n_rows, n_cols))
    csr.has_sorted_indices = True
    return csr, int(len(rows))


def _triplets(rows, cols, vals, shape, lines):
    """The arrays of a block's ratings or events as the builders take them, checked to lie in
    ``shape``: ``(rows, cols, vals, lines, n_rows, n_cols)`` (lines 0, 1, ... where None)."""
    rows = np.asarray(rows, np.int64)
    cols = np.asarray(cols, np.int64)
    vals = np.asarray(vals, np.float64)
    lines = np.arange(len(rows), dtype=np.int64) if lines is None else np.asarray(lines, np.int64)
    n_rows, n_cols = int(shape[0]), int(shape[1])
    if len(rows) and (rows.min() < 0 or rows.max() >= n_rows or cols.min() < 0 or cols.max() >= n_cols):
        raise ValueError(f"a row or column index is outside the block's shape {tuple(shape)}")
    return rows, cols, vals, lines, n_rows, n_cols


@numba.njit(cache=True, nogil=True)
def _sum_runs(rows, cols, vals, order, n_rows):
    """CSR arrays of the events in ``order`` (by row, column, then line), each run of one
    pair summed from its first event on."""
    n = len(order)
    ptr = np.zeros(n_rows + 1, np.int64)
    idx = np.empty(n, np.int64)
    data = np.empty(n, np.float64)
    kept = 0
    a = 0
    while a < n:
        r, c = rows[order[a]], cols[order[a]]
        total = vals[order[a]]
        b = a + 1
        while b < n and rows[order[b]] == r and cols[order[b]] == c:
            total += vals[order[b]]
            b += 1
        idx[kept], data[kept] = c, total
        ptr[r + 1] += 1
        kept += 1
        a = b
    for j in range(n_rows):
        ptr[j + 1] += ptr[j]
    return ptr, idx[:kept], data[:kept]


def warm_up() -> None:
    """Load the compiled loops' runtime in this process: numba's first call costs about
    0.5 s even when its on-disk cache holds the code (the later ones about 10 ms)."""
    csr_from_triplets(np.zeros(1, np.int64), np.zeros(1, np.int64), np.ones(1), (1, 1))
    csr_from_events(np.zeros(1, np.int64), np.zeros(1, np.int64), np.ones(1), (1, 1))
    row_norms(sp.csr_matrix(np.ones((1, 1))))


@numba.njit(cache=True, nogil=True)
def _counting_order(keys, n_keys, order):
    """``order`` stably re-sorted by ``keys[order]`` (counting sort)."""
    start = np.zeros(n_keys + 1, np.int64)
    for p in order:
        start[keys[p] + 1] += 1
    for j in range(n_keys):
        start[j + 1] += start[j]
    out = np.empty_like(order)
    for p in order:
        out[start[keys[p]]] = p
        start[keys[p]] += 1
    return out


@numba.njit(cache=True, nogil=True)
def _build_csr(rows, cols, vals, lines, n_rows, n_cols):
    n = len(rows)
    order = _counting_order(rows, n_rows, _counting_order(cols, n_cols, np.arange(n)))
    ptr = np.zeros(n_rows + 1, np.int64)
    idx = np.empty(n, np.int64)
    data = np.empty(n, np.float64)
    clash = np.empty(n, np.int64)   # positions of conflicting ratings
    kept_line = np.empty(n, np.int64)
    n_kept = n_clash = dups = 0
    a = 0
    while a < n:
        r, c = rows[order[a]], cols[order[a]]
        b, best = a + 1, order[a]
        while b < n and rows[order[b]] == r and cols[order[b]] == c:
            if lines[order[b]] < lines[best]:
                best = order[b]
            b += 1
        idx[n_kept], data[n_kept] = c, vals[best]
        ptr[r + 1] += 1
        n_kept += 1
        for q in range(a, b):
            p = order[q]
            if p != best:
                if vals[p] != vals[best]:
                    clash[n_clash], kept_line[n_clash] = p, lines[best]
                    n_clash += 1
                else:
                    dups += 1
        a = b
    for j in range(n_rows):
        ptr[j + 1] += ptr[j]
    return ptr, idx[:n_kept], data[:n_kept], clash[:n_clash], kept_line[:n_clash], dups


class CsrArrays(NamedTuple):
    """A CSR block's arrays as the compiled loops take them, one argument: row pointers
    ``ptr``, column indices ``idx`` and values ``val``."""

    ptr: np.ndarray
    idx: np.ndarray
    val: np.ndarray


def owned(a, dtype) -> np.ndarray:
    """``a`` as a contiguous, writable array of ``dtype``, copied only where it is not one.

    A task's input that came from another worker is a read-only view of the message, and
    numba compiles a separate signature for read-only arrays: the first job on a cluster
    then compiled pair scoring again inside its prediction stage (5-6 s), although
    ``python -m dcf.compile`` had run."""
    a = np.ascontiguousarray(a, dtype)
    return a if a.flags.writeable else a.copy()


def csr_arrays(m, index=None) -> CsrArrays:
    """:class:`CsrArrays` of a scipy CSR matrix: int64 row pointers, its column indices
    (converted to ``index`` where given) and float64 values (no copy where the arrays
    have those types already and are writable: :func:`owned`)."""
    return CsrArrays(owned(m.indptr, np.int64), owned(m.indices, m.indices.dtype if index is None else index),
                     owned(m.data, np.float64))


def row_norms(P):
    """Euclidean norm of every row of a CSR block (the ``full-cosine`` denominators).

    The squares are summed one after another in column order, the order in which
    :func:`column_totals` sums them from the shared matrix, so both give the same
    norms bit for bit (NumPy's pairwise sums would differ in the last bits)."""
    P = sp.csr_matrix(P)
    if not P.has_sorted_indices:
        P = P.sorted_indices()
    out = np.zeros(P.shape[0])
    _row_squares(P.indptr.astype(np.int64, copy=False), np.asarray(P.data, np.float64), out)
    return np.sqrt(out)


@numba.njit(cache=True, nogil=True)
def _row_squares(indptr, data, out):  # pragma: no cover - compiled
    for i in range(len(indptr) - 1):
        t = 0.0
        for e in range(indptr[i], indptr[i + 1]):
            t += data[e] * data[e]
        out[i] = t


def rater_costs(b, per_rating):
    """For each column of a CSR block (others x entities), the sum over its entries of
    their row's length plus ``per_rating``: an entity's products (and fetches) in the
    rows kernel, from one block.  Whole numbers, so exact in any order (the same as
    ``np.bincount`` weighted by the repeated row lengths, without the two temporaries)."""
    out = np.zeros(int(b.shape[1]))
    add_rater_costs(b.indptr.astype(np.int64, copy=False), b.indices, float(per_rating), out)
    return out


@numba.njit(cache=True, nogil=True)
def add_rater_costs(indptr, indices, per_rating, out):  # pragma: no cover - compiled
    """Add each row's length plus ``per_rating`` to ``out`` at every column of the row (:func:`rater_costs`)."""
    for u in range(len(indptr) - 1):
        w = (indptr[u + 1] - indptr[u]) + per_rating
        for e in range(indptr[u], indptr[u + 1]):
            out[indices[e]] += w


def binary(P):
    """A copy of the CSR block with every stored value 1: who rated what."""
    E = P.copy()
    E.data = np.ones_like(E.data)
    return E
