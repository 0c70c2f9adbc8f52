"""The similarity tile graph: which block pairs, which measure.

Entities (items for item-based CF, users for user-based) are cut into row
blocks of ``P``.  Similarity is symmetric, so only tiles ``(a, b)`` with
``a <= b`` are computed, one task each (``similarity-tile``); the lower half is
read as transposes.  No task holds more than one dense tile of
``block x block`` values unless the rated neighbourhood asks for whole rows.
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import scipy.sparse as sp

from . import kernels
from .matrix import _concat

__all__ = ["SimilarityTiles", "similarity_tiles", "similarity_rows"]


class SimilarityTiles:
    """Lazy upper-triangle tiles of the entity x entity similarity matrix.

    Attributes
    ----------
    tiles : dict[(int, int), Delayed]
        ``(a, b) -> ndarray (len_a, len_b)`` for ``a <= b``.
    bounds : numpy.ndarray
        Block start offsets ``[0, ..., n]``.
    token : str
        Identifies the graph (used in task names).
    """

    def __init__(self, tiles, bounds, token):
        self.tiles, self.bounds, self.token = tiles, np.asarray(bounds), token

    @property
    def n_blocks(self) -> int:
        return len(self.bounds) - 1

    def tile(self, a: int, b: int):
        """``(tile, transposed)`` for any block pair."""
        return (self.tiles[(a, b)], False) if a <= b else (self.tiles[(b, a)], True)


def similarity_tiles(P: da.Array, measure="cosine", min_support=1, shrinkage=0.0) -> SimilarityTiles:
    """Build the tile graph over the row blocks of ``P`` (entities x others, CSR chunks).

    Parameters
    ----------
    P : dask.array.Array of scipy CSR chunks, chunked along rows only
    measure : {"cosine", "full-cosine"}
    min_support : int
        Minimum number of co-raters for a non-zero similarity.
    shrinkage : float
        :math:`\\lambda` in :math:`s \\cdot n / (n + \\lambda)`; 0 disables.
    """
    if measure not in kernels.MEASURES:
        raise ValueError(f"unknown similarity {measure!r}; choose from {', '.join(kernels.MEASURES)}")
    blocks = P.to_delayed().ravel().tolist()
    bounds = np.concatenate([[0], np.cumsum(P.chunks[0])]).astype(np.int64)
    token = dask.base.tokenize(P, measure, min_support, shrinkage)
    tile = dask.delayed(kernels.similarity_tile, pure=True)
    tiles = {(a, b): tile(blocks[a], blocks[b], measure, int(min_support), float(shrinkage), a == b,
                          dask_key_name=f"similarity-tile-{token}-{a}-{b}")
             for a in range(len(blocks)) for b in range(a, len(blocks))}
    return SimilarityTiles(tiles, bounds, token)


def similarity_rows(st: SimilarityTiles, dense_fraction=0.3) -> da.Array:
    """Whole similarity rows per block (for the exact ``rated`` neighbourhood).

    Each row block is stored dense when at least ``dense_fraction`` of it is
    non-zero, else as CSR, so sparse co-rating patterns stay small.
    """
    n = int(st.bounds[-1])
    rows = dask.delayed(_assemble_rows, pure=True)
    out = []
    for a in range(st.n_blocks):
        parts = [st.tile(a, b) for b in range(st.n_blocks)]
        out.append(rows([p for p, _ in parts], [t for _, t in parts], dense_fraction,
                        dask_key_name=f"similarity-rows-{st.token}-{a}"))
    return _concat(out, st.bounds, n)


def _assemble_rows(tiles, transposed, dense_fraction):
    full = np.hstack([t.T if tr else t for t, tr in zip(tiles, transposed)])
    if np.count_nonzero(full) >= dense_fraction * full.size:
        return full
    return sp.csr_matrix(full)
