"""Top-k neighbour tables: from a dense tile, merged across tiles, and as a CSR matrix.

Every table is ordered by similarity descending, then id ascending, with ``-1`` /
``0`` padding (the same order as the compiled top-k of :mod:`dcf.kernels.rows`).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["top_columns", "topk_rows", "merge_topk", "neighbour_matrix"]


def top_columns(values, n):
    """Per row, the ``n`` largest values, ties broken by the lower column.

    Parameters
    ----------
    values : numpy.ndarray, shape (r, m)
    n : int

    Returns
    -------
    cols : (r, min(n, m)) int64, ordered by value descending then column
    vals : (r, min(n, m)) float64
    """
    values = np.asarray(values, dtype=np.float64)
    r, m = values.shape
    n = min(int(n), m)
    if n <= 0 or r == 0:
        return np.zeros((r, max(n, 0)), np.int64), np.zeros((r, max(n, 0)))
    if n < m:
        t = -np.partition(-values, n - 1, axis=1)[:, n - 1]
        above = values > t[:, None]
        at = values == t[:, None]
        need = n - above.sum(axis=1)
        take = above | (at & (np.cumsum(at, axis=1) <= need[:, None]))
        rows, cols = np.nonzero(take)
        cols = cols.reshape(r, n)
    else:
        cols = np.broadcast_to(np.arange(m), (r, m)).copy()
    vals = np.take_along_axis(values, cols, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(cols, order, axis=1).astype(np.int64), np.take_along_axis(vals, order, axis=1)


def topk_rows(S, k, col_offset=0, self_offset=None):
    """The k most similar positive neighbours of each row of a similarity tile.

    Parameters
    ----------
    S : numpy.ndarray, shape (r, m)
        Tile; row i is entity ``self_offset + i`` if given, column j is entity
        ``col_offset + j``.
    k : int
    self_offset : int, optional
        Global id of row 0, to exclude each entity from its own list.

    Returns
    -------
    idx : (r, k) int64 global neighbour ids, ``-1`` padding
    sim : (r, k) float64, ``0`` padding; only similarities > 0 are kept,
        ordered by similarity descending then id ascending.
    """
    vals = np.where(S > 0, S, -np.inf)
    if self_offset is not None:
        rows = np.arange(S.shape[0])
        cols = rows + self_offset - col_offset
        ok = (cols >= 0) & (cols < S.shape[1])
        vals[rows[ok], cols[ok]] = -np.inf
    cols, v = top_columns(vals, k)
    return _pad(np.where(v > 0, cols + col_offset, -1), np.where(v > 0, v, 0.0), k)


def _pad(idx, sim, k):
    r, have = idx.shape
    if have >= k:
        return idx, sim
    return (np.hstack([idx, np.full((r, k - have), -1, np.int64)]),
            np.hstack([sim, np.zeros((r, k - have))]))


def merge_topk(parts, k):
    """Merge per-tile top-k lists of the same rows into one top-k list.

    ``parts`` is a sequence of ``(idx, sim)`` pairs as :func:`topk_rows`
    returns.  The order (similarity descending, id ascending) is total, so the
    merge is associative and equals the top-k of the whole row.
    """
    idx = np.hstack([p[0] for p in parts])
    sim = np.hstack([p[1] for p in parts])
    valid = idx >= 0
    key_sim = np.where(valid, -sim, np.inf)
    key_id = np.where(valid, idx, np.iinfo(np.int64).max)
    order = np.lexsort((key_id, key_sim), axis=-1)[:, :k]
    return _pad(np.take_along_axis(idx, order, 1), np.take_along_axis(sim, order, 1), k)


def neighbour_matrix(idx, sim, n_cols):
    """Top-k table rows -> CSR (r, n_cols) with the neighbour similarities, sorted indices.

    Built from the table's own row order (a row's valid entries, those with ``idx >= 0``,
    are its CSR row), with int32 indices where they fit, as scipy's COO route gives them;
    no COO round trip (the e-commerce fit's 149k rows: 0.52 s of task time before)."""
    r, k = idx.shape
    valid = idx >= 0
    cols = idx[valid]
    if len(cols) and int(cols.max()) >= n_cols:
        raise ValueError(f"a neighbour id {int(cols.max())} is past the {n_cols} columns")
    indptr = np.zeros(r + 1, np.int64)
    np.cumsum(valid.sum(axis=1), out=indptr[1:])
    kind = np.int32 if max(int(n_cols), int(indptr[-1])) <= np.iinfo(np.int32).max else np.int64
    m = sp.csr_matrix((sim[valid], cols.astype(kind), indptr.astype(kind)), shape=(r, n_cols))
    m.sum_duplicates()  # sorted indices; an id listed twice in a row summed, as the COO route did
    return m
