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
from .errors import ConfigError
from .matrix import _concat

__all__ = ["SimilarityTiles", "similarity_tiles", "similarity_rows", "block_limit",
           "row_block_format"]

# what one task holds, measured from the kernels: a similarity tile keeps about ten dense
# block x block float64 arrays (products, counts, norms, result); assembling a block of
# whole rows keeps its tiles, the dense rows and their CSR copy (about four times the rows)
TILE_BYTES_PER_ENTRY = 80
ROW_BYTES_PER_ENTRY = 32
WORKER_BASELINE_BYTES = 300e6  # an idle worker with dcf's stack loaded (measured: ~310 MB)
MIN_BLOCK = 16


def block_limit(budget, whole_rows: bool):
    """Largest entity block whose tasks fit in a worker's memory, as a function of n.

    Parameters
    ----------
    budget : (limit_bytes, threads, total_bytes, idle_bytes) or None
        The smallest worker's memory limit and threads, the sum of all limits and
        the most a worker uses now (:func:`dcf.cluster.memory_budget`); ``None`` =
        no limit known, no cap.
    whole_rows : bool
        The ``rated`` neighbourhood keeps all n x n similarities (persisted).

    Returns
    -------
    callable ``n -> int`` or None
        Raises :class:`~dcf.errors.ConfigError` *before any work starts* when no
        block size fits, naming the limit to raise, instead of letting workers be
        killed and restarted.  Each thread gets half of its share of the memory
        below Dask's pause threshold (80 %), so inputs and outputs fit beside it.
    """
    if budget is None:
        return None
    limit, threads, total, idle = budget
    baseline = max(idle, WORKER_BASELINE_BYTES)
    if baseline > 0.6 * limit:  # Dask pauses a worker at 80 %: it would hang, not work
        raise ConfigError(f"workers use {baseline / 1e6:.0f} MB before any work, too close to "
                          f"their memory limit of {limit / 1e6:.0f} MB (Dask pauses them at 80 %): "
                          f"raise --memory-limit to at least {_gb(baseline / 0.6 + 1e8)}")
    per_task = (0.8 * limit - baseline) / threads / 2

    def cap(n: int) -> int:
        if whole_rows and 8.0 * n * n > 0.7 * total:
            raise ConfigError(
                f"the rated neighbourhood keeps all {n:,} x {n:,} similarities "
                f"({8.0 * n * n / 1e9:.2f} GB), more than the workers hold below their spill "
                f"threshold ({0.7 * total / 1e9:.2f} GB of {total / 1e9:.2f} GB): raise "
                f"--memory-limit to at least {_gb(8.0 * n * n / 0.7 * limit / total)} per worker, "
                "add workers, or use --neighbourhood global (keeps only n x k)")
        b = int(np.sqrt(per_task / TILE_BYTES_PER_ENTRY))
        if whole_rows:
            b = min(b, int(per_task / (ROW_BYTES_PER_ENTRY * max(n, 1))))
        if b < min(MIN_BLOCK, n):
            need = (MIN_BLOCK * ROW_BYTES_PER_ENTRY * n if whole_rows
                    else MIN_BLOCK ** 2 * TILE_BYTES_PER_ENTRY)
            floor = (2 * need * threads + baseline) / 0.8
            raise ConfigError(
                f"a worker memory limit of {_gb(limit)} with {threads} thread(s) leaves "
                f"{per_task / 1e6:.0f} MB per task, too little for similarity blocks of "
                f"{MIN_BLOCK} {'whole rows of ' + format(n, ',') if whole_rows else 'x ' + str(MIN_BLOCK)}"
                f": raise --memory-limit to at least {_gb(floor)} or use fewer threads per worker")
        return max(b, 1)

    return cap


def _gb(nbytes: float) -> str:
    return f"{np.ceil(nbytes / 1e8) / 10:.1f}GB"


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
        out.append(rows([p for p, _ in parts], [t for _, t in parts], dense_fraction,
                        dask_key_name=f"similarity-rows-{st.token}-{a}"))
    return _concat(out, st.bounds, n)


def _assemble_rows(tiles, transposed, dense_fraction):
    return row_block_format(np.hstack([t.T if tr else t for t, tr in zip(tiles, transposed)]),
                            dense_fraction)


def row_block_format(block, dense_fraction=DENSE_FRACTION):
    """A block of whole similarity rows as stored: dense when at least ``dense_fraction``
    of it is non-zero, else CSR (``block``: ndarray or scipy sparse)."""
    nnz = block.nnz if sp.issparse(block) else np.count_nonzero(block)
    if nnz >= dense_fraction * block.shape[0] * block.shape[1]:
        return block.toarray() if sp.issparse(block) else block
    return sp.csr_matrix(block)
