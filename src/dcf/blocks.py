"""Chunked arrays of sparse row blocks: the Dask plumbing several stages share.

The rating matrix, the similarity rows, the neighbour lists and the baseline
residuals are all ``dask.array`` collections whose chunks are scipy CSR row
blocks (or dense NumPy rows).  Building such an array from Delayed blocks,
taking its blocks back out, stacking them in a task and transposing user blocks
into item blocks live here, once, instead of being borrowed privately from one
stage by the others.  Task names are kept: ``matrix-slice``, ``matrix-item-block``,
``row-sums``, ``row-counts``.
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import scipy.sparse as sp

__all__ = ["CSR_META", "concat_rows", "row_blocks", "stack_rows", "concatenate", "transpose_blocks",
           "row_stats"]

CSR_META = sp.csr_matrix((0, 0), dtype=np.float64)


def concat_rows(blocks, bounds, n_cols) -> da.Array:
    """Delayed row blocks (rows ``bounds[j]:bounds[j + 1]``) as one dask array of CSR chunks.

    Parameters
    ----------
    blocks : list of dask.delayed.Delayed
        Each computes to a ``(bounds[j + 1] - bounds[j], n_cols)`` CSR (or dense) block.
    bounds : array of int, shape (len(blocks) + 1,)
    n_cols : int
    """
    arrays = [da.from_delayed(b, shape=(int(bounds[j + 1] - bounds[j]), n_cols), dtype=np.float64,
                              meta=CSR_META) for j, b in enumerate(blocks)]
    return da.concatenate(arrays, axis=0) if len(arrays) > 1 else arrays[0]


def row_blocks(X: da.Array):
    """``(blocks, bounds)``: a row-chunked array's blocks as Delayed and their row bounds."""
    # optimize_graph=False keeps the persisted blocks' Futures in the Delayed graphs; the
    # default drops them, and a model dropped right after building a graph (chained
    # ``fit(...).predict(...).compute()``) then lost its blocks under load
    return (X.to_delayed(optimize_graph=False).ravel().tolist(),
            np.concatenate([[0], np.cumsum(X.chunks[0])]).astype(np.int64))


def stack_rows(*blocks):
    """Row blocks stacked: dense when every block is (``rated`` similarity rows), else CSR."""
    if all(isinstance(b, np.ndarray) for b in blocks):
        return np.vstack(blocks)
    return sp.vstack([sp.csr_matrix(b) for b in blocks], format="csr")


def concatenate(*parts):
    """1-d pieces joined (a task's body: ``dask.delayed(concatenate)(*pieces)``)."""
    return np.concatenate(parts)


def transpose_blocks(user_blocks, ub, ib, n_users, token) -> da.Array:
    """Item-row blocks of the transpose: slice every user block, stack per item block."""
    cut = dask.delayed(_column_slice, pure=True)
    stack = dask.delayed(_stack_transpose, pure=True)
    out = []
    for a in range(len(ib) - 1):
        lo, hi = int(ib[a]), int(ib[a + 1])
        pieces = [cut(blk, lo, hi, dask_key_name=f"matrix-slice-{token}-{b}-{a}")
                  for b, blk in enumerate(user_blocks)]
        out.append(stack(*pieces, dask_key_name=f"matrix-item-block-{token}-{a}"))
    return concat_rows(out, ib, n_users)


def _column_slice(block, lo, hi):
    return block[:, lo:hi].tocsc()


def _stack_transpose(*pieces):
    m = sp.vstack(pieces, format="csc").T.tocsr()
    m.sort_indices()
    return m


def row_stats(X: da.Array):
    """Per-row sum and count of stored ratings, as dask arrays."""
    sums = X.map_blocks(_row_sums, drop_axis=1, dtype=np.float64, meta=np.zeros(0),
                        name=f"row-sums-{dask.base.tokenize(X)}")
    counts = X.map_blocks(_row_counts, drop_axis=1, dtype=np.int64, meta=np.zeros(0, np.int64),
                          name=f"row-counts-{dask.base.tokenize(X)}")
    return sums, counts


def _row_sums(b):
    return np.asarray(b.sum(axis=1)).ravel()


def _row_counts(b):
    return np.diff(b.indptr).astype(np.int64)
