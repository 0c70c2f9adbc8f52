"""Per-tile top-k, merged per row block: the persisted neighbour table.

The table is the article's "distributed cache": for every entity its k most
similar entities with positive similarity (ties: lower id first), as two
``(n, k)`` dask arrays (``idx`` int64 with ``-1`` padding, ``sim`` float64)
and as CSR row blocks ``W`` (``n x n``, at most k entries a row) that
prediction and recommendation multiply with.
"""

from __future__ import annotations

from dataclasses import dataclass

import dask
import dask.array as da
import numpy as np
import scipy.sparse as sp

from . import kernels
from .blocks import concat_rows
from .similarity import SimilarityTiles

__all__ = ["NeighbourTable", "top_k", "table_from_blocks"]


@dataclass
class NeighbourTable:
    """Top-k neighbours of every entity.

    Attributes
    ----------
    idx : dask.array.Array, (n, k) int64, ``-1`` = no neighbour
    sim : dask.array.Array, (n, k) float64, ``0`` where idx is -1
    W : dask.array.Array, (n, n) CSR chunks in the same row blocks
    k : int
    """

    idx: da.Array
    sim: da.Array
    W: da.Array
    k: int

    def persist(self) -> "NeighbourTable":
        self.idx, self.sim, self.W = dask.persist(self.idx, self.sim, self.W)
        return self

    def prefix(self, k: int) -> "NeighbourTable":
        """The top-``k`` table for a smaller k: the first k columns.

        Lists are ordered by similarity then id, so this equals recomputing
        the top-k from the tiles.
        """
        if k > self.k:
            raise ValueError(f"cannot widen a top-{self.k} table to {k}")
        idx, sim = self.idx[:, :k], self.sim[:, :k]
        n = int(self.W.shape[1])
        W = da.map_blocks(kernels.neighbour_matrix, idx, sim, n, dtype=np.float64,
                          chunks=(idx.chunks[0], (n,)), meta=sp.csr_matrix((0, 0)),
                          name=f"neighbour-matrix-prefix-{dask.base.tokenize(self.idx, k)}")
        return NeighbourTable(idx, sim, W, k)


def top_k(st: SimilarityTiles, k: int) -> NeighbourTable:
    """Top-k per row from every tile of its block row, merged as a tree."""
    k = int(k)
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    part = dask.delayed(_tile_topk, nout=2, pure=True)
    merge = dask.delayed(_merge, nout=2, pure=True)
    idx_blocks, sim_blocks = [], []
    for a in range(st.n_blocks):
        parts = []
        for b in range(st.n_blocks):
            t, transposed = st.tile(a, b)
            parts.append(part(t, transposed, k, int(st.bounds[b]),
                              int(st.bounds[a]) if a == b else None,
                              dask_key_name=f"neighbour-topk-{st.token}-{k}-{a}-{b}"))
        level = 0
        while len(parts) > 1:  # tree merge, 4 at a time
            parts = [merge(k, *parts[i:i + 4],
                           dask_key_name=f"neighbour-merge-{st.token}-{k}-{a}-{level}-{i}")
                     if len(parts[i:i + 4]) > 1 else parts[i] for i in range(0, len(parts), 4)]
            level += 1
        idx, sim = parts[0]
        idx_blocks.append(idx)
        sim_blocks.append(sim)
    return table_from_blocks(idx_blocks, sim_blocks, st.bounds, k, f"{st.token}-{k}")


def table_from_blocks(idx_blocks, sim_blocks, bounds, k: int, token: str) -> NeighbourTable:
    """The table from per-block Delayed ``(rows, k)`` idx / sim arrays."""
    n = int(bounds[-1])
    to_w = dask.delayed(kernels.neighbour_matrix, pure=True)
    idx_arrays, sim_arrays, w_blocks = [], [], []
    for a, (idx, sim) in enumerate(zip(idx_blocks, sim_blocks)):
        rows = int(bounds[a + 1] - bounds[a])
        idx_arrays.append(da.from_delayed(idx, (rows, k), dtype=np.int64))
        sim_arrays.append(da.from_delayed(sim, (rows, k), dtype=np.float64))
        w_blocks.append(to_w(idx, sim, n, dask_key_name=f"neighbour-matrix-{token}-{a}"))
    return NeighbourTable(da.concatenate(idx_arrays), da.concatenate(sim_arrays),
                          concat_rows(w_blocks, bounds, n), k)


def _tile_topk(tile, transposed, k, col_offset, self_offset):
    return kernels.topk_rows(tile.T if transposed else tile, k, col_offset, self_offset)


def _merge(k, *parts):
    return kernels.merge_topk(parts, k)


def full_matrix(blocks: da.Array):
    """One Delayed CSR holding every row block stacked (for small operands)."""
    return dask.delayed(lambda *b: sp.vstack(b, format="csr"), pure=True)(
        *blocks.to_delayed(optimize_graph=False).ravel().tolist())
