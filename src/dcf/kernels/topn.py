"""Top-N recommendations per row: selection among scored columns, or scores and selection fused.

Rated columns are excluded, ties go to the more popular column, and rows with
fewer than N candidates are filled in by popularity.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["top_n", "recommend_rows"]


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
    order : (m,) int64 permutation of the columns, most popular first; it breaks
        ties between equal scores and orders the filled-in columns.

    Returns
    -------
    cols : (r, n) int64, ``-1`` where a row has fewer than n unrated columns
    vals : (r, n) float64, the score (0 where filled in or padded)
    filled : (r, n) bool, True where the column was filled in by popularity
    """
    r, m = rated.shape
    rank_of, out_c, out_v, have = _output_table(r, m, order, n)
    _topn_rows(np.asarray(indptr, np.int64), np.asarray(indices, np.int64),
               np.asarray(scores, np.float64), np.asarray(valid, np.bool_),
               rated.indptr.astype(np.int64), rated.indices.astype(np.int64), rank_of, n,
               out_c, out_v, have, np.zeros(m, np.bool_))
    filled = np.zeros((r, n), bool)
    short = np.flatnonzero(have < n)
    if len(short):
        _fill(out_c, filled, short, have, rated, _row_keys(rated), np.asarray(order, np.int64), n)
    return out_c, out_v, filled


def recommend_rows(A, B, sim_left, rated, n, order, min_k=1, row_add=None, col_add=None,
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
    row_add, col_add : (r,), (m,) float64, optional
    rating_range : (low, high)

    Returns
    -------
    cols, vals, filled : as :func:`top_n`
    """
    r, m = rated.shape
    rank_of, out_c, out_v, have = _output_table(r, m, order, n)
    lo, hi = (float(v) for v in rating_range)
    _recommend_rows(A.indptr.astype(np.int64), A.indices.astype(np.int64), np.asarray(A.data, np.float64),
                    B.indptr.astype(np.int64), B.indices.astype(np.int64), np.asarray(B.data, np.float64),
                    bool(sim_left), rated.indptr.astype(np.int64), rated.indices.astype(np.int64),
                    rank_of, n, float(max(int(min_k), 1)),
                    np.zeros(r) if row_add is None else np.asarray(row_add, np.float64),
                    np.zeros(m) if col_add is None else np.asarray(col_add, np.float64),
                    lo, hi, bool(divide), out_c, out_v, have)
    filled = np.zeros((r, n), bool)
    short = np.flatnonzero(have < n)
    if len(short):
        _fill(out_c, filled, short, have, rated, _row_keys(rated), np.asarray(order, np.int64), n)
    return out_c, out_v, filled


@numba.njit(cache=True, nogil=True)
def _recommend_rows(a_ptr, a_idx, a_val, b_ptr, b_idx, b_val, sim_left, r_ptr, r_idx, rank_of, n,
                    min_k, row_add, col_add, lo, hi, divide, out_c, out_v, have):  # pragma: no cover
    m = len(rank_of)
    num = np.zeros(m)
    den = np.zeros(m)
    cnt = np.zeros(m)
    flag = np.zeros(m, np.bool_)
    touched = np.empty(m, np.int64)
    for row in range(len(a_ptr) - 1):
        t = 0
        for p in range(a_ptr[row], a_ptr[row + 1]):
            j = a_idx[p]
            x = a_val[p]
            for q in range(b_ptr[j], b_ptr[j + 1]):
                c = b_idx[q]
                y = b_val[q]
                if cnt[c] == 0.0:
                    touched[t] = c
                    t += 1
                num[c] += x * y
                den[c] += x if sim_left else y
                cnt[c] += 1.0
        for p in range(r_ptr[row], r_ptr[row + 1]):
            flag[r_idx[p]] = True
        got = 0
        for e in range(t):
            c = touched[e]
            ok = not flag[c] and cnt[c] >= min_k and den[c] > 0
            s = 0.0
            if ok:
                s = min(max(num[c] / den[c] + row_add[row] + col_add[c], lo), hi) if divide else num[c]
            num[c] = 0.0
            den[c] = 0.0
            cnt[c] = 0.0
            if ok:
                got = _push(out_c, out_v, row, got, n, c, s, rank_of)
        have[row] = got
        for p in range(r_ptr[row], r_ptr[row + 1]):
            flag[r_idx[p]] = False


@numba.njit(cache=True, nogil=True, inline="always")
def _push(out_c, out_v, row, have, n, c, s, rank_of):  # pragma: no cover - compiled
    """Insert column ``c`` with score ``s`` into row ``row``'s sorted Top-``n`` (score
    descending, ties to the column first in the popularity order); returns the new count."""
    rk = rank_of[c]
    if have == n:
        last = out_v[row, n - 1]
        if s < last or (s == last and rk > rank_of[out_c[row, n - 1]]):
            return have
        pos = n - 1
    else:
        pos = have
        have += 1
    while pos > 0:
        pv = out_v[row, pos - 1]
        if s > pv or (s == pv and rk < rank_of[out_c[row, pos - 1]]):
            out_c[row, pos] = out_c[row, pos - 1]
            out_v[row, pos] = pv
            pos -= 1
        else:
            break
    out_c[row, pos] = c
    out_v[row, pos] = s
    return have


@numba.njit(cache=True, nogil=True)
def _topn_rows(indptr, indices, scores, valid, r_indptr, r_indices, rank_of, n, out_c, out_v, have,
               flag):  # pragma: no cover - compiled
    for row in range(len(indptr) - 1):
        for p in range(r_indptr[row], r_indptr[row + 1]):
            flag[r_indices[p]] = True
        cnt = 0
        for e in range(indptr[row], indptr[row + 1]):
            if not valid[e]:
                continue
            c = indices[e]
            if flag[c]:
                continue
            cnt = _push(out_c, out_v, row, cnt, n, c, scores[e], rank_of)
        have[row] = cnt
        for p in range(r_indptr[row], r_indptr[row + 1]):
            flag[r_indices[p]] = False


def _output_table(r: int, m: int, order, n: int):
    """``(rank_of, cols, vals, have)``: each column's place in ``order`` and the empty
    ``(r, n)`` lists the compiled loops fill."""
    rank_of = np.empty(m, np.int64)
    rank_of[np.asarray(order, np.int64)] = np.arange(m)
    return rank_of, np.full((r, n), -1, np.int64), np.zeros((r, n)), np.zeros(r, np.int64)


def _row_keys(csr):
    """Sorted ``row * n_cols + col`` keys of a CSR matrix with sorted indices."""
    rows = np.repeat(np.arange(csr.shape[0], dtype=np.int64), np.diff(csr.indptr))
    return rows * csr.shape[1] + csr.indices.astype(np.int64)


def _isin_sorted(keys, sorted_keys):
    if len(sorted_keys) == 0:
        return np.zeros(len(keys), bool)
    at = np.clip(np.searchsorted(sorted_keys, keys), 0, len(sorted_keys) - 1)
    return sorted_keys[at] == keys


def _fill(out_c, filled, short, have, rated, rated_keys, order, n):
    """Fill rows ``short`` with the most popular columns not rated and not chosen."""
    m = rated.shape[1]
    n_rated = np.diff(rated.indptr)[short]
    width = int(min(m, n + n_rated.max() + n))
    cand = np.broadcast_to(order[:width], (len(short), width))
    keys = short[:, None].astype(np.int64) * m + cand
    chosen = out_c[short]
    taken = (cand[:, :, None] == chosen[:, None, :]).any(axis=2) if n <= 64 else \
        np.array([np.isin(c, ch) for c, ch in zip(cand, chosen)])
    ok = ~_isin_sorted(keys.ravel(), rated_keys).reshape(keys.shape) & ~taken
    need = n - have[short]
    pick = ok & (np.cumsum(ok, axis=1) <= need[:, None])
    rr, cc = np.nonzero(pick)
    slot = have[short][rr] + (np.cumsum(pick, axis=1)[rr, cc] - 1)
    out_c[short[rr], slot] = cand[rr, cc]
    filled[short[rr], slot] = True
