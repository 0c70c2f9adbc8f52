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
from .blocks import concat_rows, outputs, row_blocks, stack_csr
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
        token = dask.base.tokenize(self.idx, self.sim, k)
        idx = self.idx.map_blocks(_first_columns, k, chunks=(self.idx.chunks[0], (k,)), dtype=np.int64,
                                  name=f"neighbour-idx-prefix-{token}")
        sim = self.sim.map_blocks(_first_columns, k, chunks=(self.sim.chunks[0], (k,)), dtype=np.float64,
                                  name=f"neighbour-sim-prefix-{token}")
        n = int(self.W.shape[1])
        W = da.map_blocks(kernels.neighbour_matrix, idx, sim, n, dtype=np.float64,
                          chunks=(idx.chunks[0], (n,)), meta=sp.csr_matrix((0, 0)),
                          name=f"neighbour-matrix-prefix-{dask.base.tokenize(self.idx, k)}")
        return NeighbourTable(idx, sim, W, k)

    def rows(self, codes) -> tuple:
        """``(idx, sim)`` of the entities ``codes`` (NumPy, in that order), read from the
        blocks that hold them only, by tasks named ``neighbour-lookup``."""
        codes = np.asarray(codes, np.int64)
        (idx_blocks, bounds), sim_blocks = row_blocks(self.idx), row_blocks(self.sim)[0]
        block = np.searchsorted(bounds, codes, side="right") - 1
        take = dask.delayed(_take_rows, pure=True)
        wanted = np.unique(block).tolist()
        token = dask.base.tokenize(self.idx, self.sim, codes)
        parts = dask.compute([take(idx_blocks[b], sim_blocks[b], codes[block == b] - bounds[b],
                                   dask_key_name=f"neighbour-lookup-{token}-{b}") for b in wanted])[0]
        idx = np.zeros((len(codes), self.k), np.int64)
        sim = np.zeros((len(codes), self.k))
        for b, (i, s) in zip(wanted, parts):
            idx[block == b], sim[block == b] = i, s
        return idx, sim


def _first_columns(block, k):
    return block[:, :k]


def _take_rows(idx, sim, rows):
    return idx[rows], sim[rows]


def top_k(st: SimilarityTiles, k: int) -> NeighbourTable:
    """Top-k per row from every tile of its block row, merged as a tree (each entity
    left out of its own list unless ``st.include_self``)."""
    k = int(k)
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    part = dask.delayed(_tile_topk, pure=True)
    merge = dask.delayed(_merge, pure=True)
    idx_blocks, sim_blocks = [], []
    for a in range(st.n_blocks):
        parts = []
        for b in range(st.n_blocks):
            t, transposed = st.tile(a, b)
            parts.append(part(t, transposed, k, int(st.bounds[b]),
                              int(st.bounds[a]) if a == b and not st.include_self else None,
                              dask_key_name=f"neighbour-topk-{st.token}-{k}-{a}-{b}"))
        level = 0
        while len(parts) > 1:  # tree merge, 4 at a time
            parts = [merge(k, *parts[i:i + 4],
                           dask_key_name=f"neighbour-merge-{st.token}-{k}-{a}-{level}-{i}")
                     if len(parts[i:i + 4]) > 1 else parts[i] for i in range(0, len(parts), 4)]
            level += 1
        idx, sim = outputs(parts[0], 2, ("neighbour-idx-block", "neighbour-sim-block"))
        idx_blocks.append(idx)
        sim_blocks.append(sim)
    return table_from_blocks(idx_blocks, sim_blocks, st.bounds, k, f"{st.token}-{k}")


def table_from_blocks(idx_blocks, sim_blocks, bounds, k: int, token: str) -> NeighbourTable:
    """The table from per-block Delayed ``(rows, k)`` idx / sim arrays."""
    n = int(bounds[-1])
    to_w = dask.delayed(kernels.neighbour_matrix, pure=True)
    w_blocks = [to_w(idx, sim, n, dask_key_name=f"neighbour-matrix-{token}-{a}")
                for a, (idx, sim) in enumerate(zip(idx_blocks, sim_blocks))]
    idx = concat_rows(idx_blocks, bounds, k, "neighbour-idx", np.int64, np.zeros((0, 0), np.int64))
    sim = concat_rows(sim_blocks, bounds, k, "neighbour-sim", np.float64, np.zeros((0, 0)))
    return NeighbourTable(idx, sim, concat_rows(w_blocks, bounds, n, "neighbour-lists"), k)


def _tile_topk(tile, transposed, k, col_offset, self_offset):
    return kernels.topk_rows(tile.T if transposed else tile, k, col_offset, self_offset)


def _merge(k, *parts):
    return kernels.merge_topk(parts, k)


def full_matrix(blocks: da.Array):
    """One Delayed CSR holding every row block stacked (for small operands)."""
    return dask.delayed(stack_csr, pure=True)(*blocks.to_delayed(optimize_graph=False).ravel().tolist(),
                                               dask_key_name=f"stack-rows-{blocks.name}")
