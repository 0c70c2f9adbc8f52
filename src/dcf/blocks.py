"""Chunked arrays of sparse row blocks: the Dask plumbing several stages share.

The rating matrix, the similarity rows, the neighbour lists and the baseline
residuals are all ``dask.array`` collections whose chunks are scipy CSR row
blocks (or dense NumPy rows).  Building such an array from Delayed blocks,
taking its blocks back out, stacking them in a task and transposing user blocks
into item blocks live here, once, instead of being borrowed privately from one
stage by the others.  Task names are kept: ``matrix-columns``, ``matrix-slice``, ``matrix-item-block``,
``row-sums``, ``row-counts``.
"""

from __future__ import annotations

import operator

import dask
import dask.array as da
import numpy as np
import scipy.sparse as sp
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph

__all__ = ["CSR_META", "outputs", "concat_rows", "row_blocks", "stack_rows", "stack_csr", "concatenate", "reblock_rows", "transpose_blocks",
           "row_stats"]

CSR_META = sp.csr_matrix((0, 0), dtype=np.float64)


def concat_rows(blocks, bounds, n_cols, stage: str, dtype=np.float64, meta=CSR_META) -> da.Array:
    """Delayed row blocks (rows ``bounds[j]:bounds[j + 1]``) as one dask array of CSR chunks.

    The array's chunk ``j`` is block ``j`` itself (an alias), named after ``stage``:
    the dashboard shows the stage's name, not ``from-value`` or ``concatenate``.  The
    name's token comes from the blocks' own keys, so different blocks never share it.

    Parameters
    ----------
    blocks : list of dask.delayed.Delayed
        Each computes to a ``(bounds[j + 1] - bounds[j], n_cols)`` CSR (or dense) block.
    bounds : array of int, shape (len(blocks) + 1,)
    n_cols : int
    stage : str
        The task name (``matrix-user-rows``); the array is ``<stage>-<token>``.
    dtype, meta
        Of the blocks (default: float64 CSR).
    """
    name = f"{stage}-{dask.base.tokenize([b.key for b in blocks], list(map(int, bounds)), n_cols, dtype)}"
    layer = {(name, j, 0): b.key for j, b in enumerate(blocks)}
    graph = HighLevelGraph.from_collections(name, layer, dependencies=list(blocks))
    rows = tuple(int(bounds[j + 1] - bounds[j]) for j in range(len(blocks)))
    return da.Array(graph, name, chunks=(rows, (int(n_cols),)), dtype=dtype, meta=meta)


def outputs(call, n: int, stages) -> list:
    """The ``n`` results of a Delayed call that returns a tuple, as named tasks.

    ``dask.delayed(f, nout=n)`` unpacks into tasks named ``getitem``; these carry the
    stage's names instead (``stages``: one name, or one per output), each keyed by the
    call's own key, so they are as unique as the call.

    Examples
    --------
    >>> blk, rep = outputs(build(...), 2, ("matrix-user-csr", "matrix-user-report"))  # doctest: +SKIP
    """
    names = [stages] * n if isinstance(stages, str) else list(stages)
    key = call.key if isinstance(call.key, str) else "-".join(map(str, call.key))
    keys = [f"{names[i]}-{dask.base.tokenize(key, i)}" for i in range(n)]
    # one graph layer for all n, not a Delayed call each: each call merged the whole
    # upstream graph again (5,184 pieces of a 20M-rating transpose: 0.45 s -> 0.13-0.23 s)
    layer = f"{names[0]}-outputs-{dask.base.tokenize(key)}"
    graph = HighLevelGraph.from_collections(layer, {k: (operator.getitem, call.key, i) for i, k in enumerate(keys)},
                                            dependencies=[call])
    return [Delayed(k, graph, layer=layer) for k in keys]


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


def stack_csr(*blocks):
    """Row blocks stacked as one CSR, dense blocks included."""
    return sp.vstack([sp.csr_matrix(b) for b in blocks], format="csr")


def concatenate(*parts):
    """1-d pieces joined (a task's body: ``dask.delayed(concatenate)(*pieces)``)."""
    return np.concatenate(parts)


def reblock_rows(X: da.Array, bounds, stage: str) -> da.Array:
    """``X`` cut into the row blocks ``bounds`` by tasks named ``stage`` (what
    ``X.rechunk`` does, under the stage's name instead of ``rechunk-merge``)."""
    blocks, src = row_blocks(X)
    bounds = np.asarray(bounds, np.int64)
    cut = dask.delayed(_rows_between, pure=True)
    token = dask.base.tokenize(X.name, bounds.tolist())
    out = []
    for a in range(len(bounds) - 1):
        lo, hi = int(bounds[a]), int(bounds[a + 1])
        first = int(np.searchsorted(src, lo, side="right")) - 1
        last = max(first + 1, int(np.searchsorted(src, hi, side="left")))
        out.append(cut(lo - int(src[first]), hi - int(src[first]), *blocks[first:last],
                       dask_key_name=f"{stage}-{token}-{a}"))
    return concat_rows(out, bounds, int(X.shape[1]), stage, X.dtype, X._meta)


def _rows_between(lo, hi, *blocks):
    return stack_rows(*blocks)[lo:hi]


def transpose_blocks(user_blocks, ub, ib, n_users, token) -> da.Array:
    """Item-row blocks of the transpose: every user block cut into its item-block
    column pieces by one task (one CSC conversion, then each piece a range of it:
    slicing the CSR once per item block passed the whole block each time, 5,184
    slices and 12 s of tasks at 20M ratings), then stacked per item block."""
    cut = dask.delayed(_column_pieces, pure=True)
    bounds = [int(b) for b in ib]
    pieces = []
    for b, blk in enumerate(user_blocks):
        call = cut(blk, bounds, dask_key_name=f"matrix-columns-{token}-{b}")
        pieces.append(outputs(call, len(bounds) - 1, "matrix-slice") if len(bounds) > 2 else [call])
    stack = dask.delayed(_stack_transpose, pure=True)
    out = [stack(*[p[a] for p in pieces], dask_key_name=f"matrix-item-block-{token}-{a}")
           for a in range(len(bounds) - 1)]
    return concat_rows(out, ib, n_users, "matrix-item-rows")


def _column_pieces(block, bounds):
    """A block's columns ``bounds[a]:bounds[a + 1]`` for every ``a``, as CSC pieces (one
    piece itself where there is a single range)."""
    csc = sp.csc_matrix(block)
    pieces = [csc[:, lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:])]
    return tuple(pieces) if len(pieces) > 1 else pieces[0]


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
