"""The ``tiles`` method: upper-triangle tiles of the entity x entity similarity matrix, one
task each, and whole rows assembled from them; :func:`row_block_format`, how a block of
whole rows is stored (by either method)."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import scipy.sparse as sp

from .. import kernels
from ..blocks import concat_rows
from ..kernels import SimilaritySettings

__all__ = ["DENSE_FRACTION", "SimilarityTiles", "row_block_format", "similarity_rows", "similarity_tiles"]


class SimilarityTiles:
    """Lazy upper-triangle tiles of the entity x entity similarity matrix.

    Attributes
    ----------
    tiles : dict[(int, int), Delayed]
        ``(a, b) -> ndarray (len_a, len_b)`` for ``a <= b`` (every pair for a measure
        that is not symmetric).
    bounds : numpy.ndarray
        Block start offsets ``[0, ..., n]``.
    token : str
        Identifies the graph (used in task names).
    include_self : bool
        Each entity is a candidate in its own top-k list (its diagonal holds its own
        similarity, not 1).
    """

    def __init__(self, tiles, bounds, token, include_self=False):
        self.tiles, self.bounds, self.token = tiles, np.asarray(bounds), token
        self.include_self = bool(include_self)

    @property
    def n_blocks(self) -> int:
        return len(self.bounds) - 1

    def tile(self, a: int, b: int):
        """``(tile, transposed)`` for any block pair (every pair's own tile where the
        measure is not symmetric)."""
        return (self.tiles[(a, b)], False) if a <= b or (a, b) in self.tiles else (self.tiles[(b, a)], True)


def similarity_tiles(P: da.Array, settings: SimilaritySettings = SimilaritySettings()) -> SimilarityTiles:
    """Build the tile graph over the row blocks of ``P`` (entities x others, CSR chunks).

    Parameters
    ----------
    P : dask.array.Array of scipy CSR chunks, chunked along rows only
    settings : SimilaritySettings
        The measure (over values already transformed as :data:`dcf.kernels.INPUTS`
        says) and its post-processing.
    """
    s = settings
    blocks = P.to_delayed(optimize_graph=False).ravel().tolist()
    bounds = np.concatenate([[0], np.cumsum(P.chunks[0])]).astype(np.int64)
    token = dask.base.tokenize(P, s)
    tile = dask.delayed(kernels.similarity_tile, pure=True)
    # the diagonal is 1 (as surprise's), or each entity's own similarity with include_self
    tiles = {(a, b): tile(blocks[a], blocks[b], s.measure, s.min_support, s.shrinkage, a == b and not s.include_self,
                          s.significance, s.min_similarity, s.alpha, dask_key_name=f"similarity-tile-{token}-{a}-{b}")
             for a in range(len(blocks))  # the upper triangle, mirrored, unless not symmetric
             for b in range(0 if s.spec.asymmetric else a, len(blocks))}
    return SimilarityTiles(tiles, bounds, token, s.include_self)


DENSE_FRACTION = 0.3


def similarity_rows(st: SimilarityTiles, dense_fraction=DENSE_FRACTION) -> da.Array:
    """Whole similarity rows per block (for the exact ``rated`` neighbourhood).

    Each row block is stored dense when at least ``dense_fraction`` of it is
    non-zero, else as CSR, so sparse co-rating patterns stay small.
    """
    n = int(st.bounds[-1])
    rows = dask.delayed(_assemble_rows, pure=True)
    out = []
    for a in range(st.n_blocks):
        parts = [st.tile(a, b) for b in range(st.n_blocks)]
        out.append(rows([t for _, t in parts], dense_fraction, *[p for p, _ in parts],
                        dask_key_name=f"similarity-rows-{st.token}-{a}"))
    return concat_rows(out, st.bounds, n, "similarity-whole-rows")


def _assemble_rows(transposed, dense_fraction, *tiles):
    return row_block_format(np.hstack([t.T if tr else t for t, tr in zip(tiles, transposed)]),
                            dense_fraction)


def row_block_format(block, dense_fraction=DENSE_FRACTION):
    """A block of whole similarity rows as stored: dense when at least ``dense_fraction``
    of it is non-zero, else CSR (``block``: ndarray or scipy sparse)."""
    nnz = block.nnz if sp.issparse(block) else np.count_nonzero(block)
    if nnz >= dense_fraction * block.shape[0] * block.shape[1]:
        return block.toarray() if sp.issparse(block) else block
    return sp.csr_matrix(block)
