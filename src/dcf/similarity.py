"""The similarity graph: which blocks, which measure, which method.

Entities (items for item-based CF, users for user-based) are cut into row
blocks of ``P``.  Two methods give the same values, bit for bit:

* ``rows`` (the default): the whole ratings matrix, others x entities, is
  stacked once and shared by every task, as the paper shares its neighbour
  table (Spark's broadcast); one task per range of entities of equal cost
  (``similarity-block``) cuts the range's ratings from that matrix, computes its
  rows with a sparse accumulator and keeps the top-k on the fly.  Needing no
  other input, the tasks are handed out as threads free up.  Cost follows the
  ratings (sum over the others of ratings-in-block x ratings), never the number
  of entity pairs; no merge.
* ``tiles`` (when the shared matrix would not fit a worker, see
  :func:`method`): similarity is symmetric, so only tiles ``(a, b)`` with
  ``a <= b`` are computed, one task each (``similarity-tile``); the lower half
  is read as transposes, and per-tile top-k lists are merged as a tree.
  No task holds more than one dense tile of ``block x block`` values unless
  the rated neighbourhood asks for whole rows.
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import scipy.sparse as sp

from . import kernels
from .errors import ConfigError
from .kernels import SimilaritySettings
from .blocks import concat_rows, concatenate, outputs

__all__ = ["SimilarityTiles", "similarity_tiles", "similarity_rows", "similarity_by_rows", "shared_matrix",
           "shared_parts", "prepare",
           "block_limit", "method", "entity_norms", "entity_stats", "balanced_cuts", "shared_bytes",
           "row_block_format"]

# what one task holds, measured from the kernels: a similarity tile keeps about ten dense
# block x block float64 arrays (products, counts, norms, result); assembling a block of
# whole rows keeps its tiles, the dense rows and their CSR copy (about four times the rows)
TILE_BYTES_PER_ENTRY = 80
ROW_BYTES_PER_ENTRY = 32
WORKER_BASELINE_BYTES = 300e6  # an idle worker with dcf's stack loaded (measured: ~310 MB)
MIN_BLOCK = 16
# the rows method keeps one copy of the whole matrix per worker: allowed up to this share
# of the memory a worker has for tasks
SHARED_FRACTION = 0.25
# an entity's cost in the rows kernels, in products (multiply-adds): each of its ratings
# also costs PAIR_COST (fetching that other's row from the shared matrix), and in the fast
# top-k path each entity costs SCAN_COST per entity it is compared with (the scan for its
# list).  Fitted to the kernel's time on random item ranges of the 20M set
# (benchmarks/kernel_costs.py): 0.16-0.18 ns a product, 75-92 ns a pair, 1.9-2.2 ns a
# column scanned, so a pair is 400-580 products and a column 10-14 (products and pairs
# go together, so their split is loose; the total is what cuts the tasks).  Cut by
# products alone, the range of rarely rated items (many rows, few products) took twice
# the time of the others
PAIR_COST = 400.0
SCAN_COST = 10.0


def shared_bytes(n_others: int, nnz: int) -> float:
    """Bytes of the whole others x entities CSR matrix the rows method shares (at most:
    :func:`dcf.kernels.compact_csr` often halves it)."""
    return 12.0 * nnz + 8.0 * (n_others + 1)


def method(budget, n_others: int, nnz: int) -> str:
    """``"rows"`` when one copy of the whole matrix fits in a worker beside its
    tasks (or no memory limit is known), else ``"tiles"``."""
    if budget is None:
        return "rows"
    limit, _, _, idle = budget
    room = 0.8 * limit - max(idle, WORKER_BASELINE_BYTES)
    return "rows" if shared_bytes(n_others, nnz) <= SHARED_FRACTION * room else "tiles"


def block_limit(budget, whole_rows: bool, forced: str | None = None):
    """Largest entity block whose tasks fit in a worker's memory, as a function of n.

    Parameters
    ----------
    budget : (limit_bytes, threads, total_bytes, idle_bytes) or None
        The smallest worker's memory limit and threads, the sum of all limits and
        the most a worker uses now (:func:`dcf.cluster.memory_budget`); ``None`` =
        no limit known, no cap.
    whole_rows : bool
        The ``rated`` neighbourhood keeps all n x n similarities (persisted).
    forced : {None, "rows", "tiles"}
        The method the model was told to use (default: :func:`method` decides).

    Returns
    -------
    callable ``(n, n_others=0, nnz=0) -> int`` or None
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

    def cap(n: int, n_others: int = 0, nnz: int = 0) -> int:
        if whole_rows and 8.0 * n * n > 0.7 * total:
            raise ConfigError(
                f"the rated neighbourhood keeps all {n:,} x {n:,} similarities "
                f"({8.0 * n * n / 1e9:.2f} GB), more than the workers hold below their spill "
                f"threshold ({0.7 * total / 1e9:.2f} GB of {total / 1e9:.2f} GB): raise "
                f"--memory-limit to at least {_gb(8.0 * n * n / 0.7 * limit / total)} per worker, "
                "add workers, or use --neighbourhood global (keeps only n x k)")
        rows = (forced or method(budget, n_others, nnz)) == "rows"
        # rows method: a task holds O(n) accumulators, so only whole rows cap the block
        b = max(n, 1) if rows else int(np.sqrt(per_task / TILE_BYTES_PER_ENTRY))
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
    tiles = {(a, b): tile(blocks[a], blocks[b], s.measure, s.min_support, s.shrinkage, a == b,
                          s.significance, s.min_similarity, dask_key_name=f"similarity-tile-{token}-{a}-{b}")
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


def similarity_by_rows(P: da.Array, Q: da.Array, k: int, settings: SimilaritySettings = SimilaritySettings(),
                       whole_rows=False, dense_fraction=DENSE_FRACTION, work=None, groups=None, parts=None):
    """The ``rows`` method: top-k (and whole rows) per entity block of ``P``.

    Parameters
    ----------
    P : dask array (entities x others), CSR chunks in entity row blocks
    Q : dask array (others x entities), CSR chunks: the same ratings, stacked once
        into the matrix every task shares
    k : int
    settings : SimilaritySettings
        The measure and its post-processing.
    whole_rows : bool
        Also keep every block's whole rows (the ``rated`` neighbourhood), dense
        or CSR as :func:`row_block_format` decides.  One task per chunk of ``P``
        then (the chunks are sized so that their dense rows fit a worker).
    work : (n,) array, optional
        Each entity's cost (the second part of :func:`entity_stats`).  Without whole rows, the
        entities are cut into ``groups`` ranges of equal cost, one task each,
        instead of one task per chunk: fewer, even tasks (chunks of equal size
        differ by orders of magnitude in cost under a Zipf popularity).  Each
        cuts its entities' ratings from the shared matrix
        (:func:`dcf.kernels.entity_rows`) rather than reading ``P``'s chunks: with
        no input but the shared matrix and the norms, Dask queues the tasks and
        hands them out as threads free up instead of sending each to its chunks'
        worker up front.
    groups : int, optional
        How many ranges (default: one per chunk).
    parts : list of Delayed, optional
        Runs of parts of the shared matrix (:func:`prepare`'s, already started, or
        :func:`shared_parts`, the default).

    Where :func:`dcf.kernels.needs_norms`, the norms (or counts) are one task's pass
    over the shared matrix once it is built (:func:`dcf.kernels.column_totals`: the
    same bits as :func:`entity_norms`).

    Returns
    -------
    bounds : (n_blocks + 1,) int64
    token : str
    blocks : list of ``(idx, sim, rows)`` Delayed per entity block (rows is
        ``None`` unless ``whole_rows``)
    """
    measure = settings.measure
    p_blocks = P.to_delayed(optimize_graph=False).ravel().tolist()
    chunk_bounds = np.concatenate([[0], np.cumsum(P.chunks[0])]).astype(np.int64)
    grouped = work is not None and groups is not None and not whole_rows
    fast = settings.fast_topk(whole_rows, k)
    if grouped:  # the fast path also scans every entity for each list
        bounds = balanced_cuts(np.asarray(work, np.float64) + (SCAN_COST * int(Q.shape[1]) if fast else 0.0), groups)
    else:
        bounds = chunk_bounds
    token = dask.base.tokenize(P, Q, settings, "rows", bounds)
    others = shared_matrix(Q, fast, parts)
    norms = None
    if settings.spec.needs_norms:  # one pass over the shared matrix, where it is built
        norms = dask.delayed(kernels.column_totals, pure=True)(
            others, measure, dask_key_name=f"similarity-norms-{dask.base.tokenize(others, measure)}")
    # even (grouped) tasks read nothing else, so Dask queues them and gives each to a free
    # thread; the first on a worker fetches the matrix, the next ones find it there (copying
    # it to every worker first, as refresh does, held them all back by 0.3-0.4 s at 20M)
    task = dask.delayed(_rows_block, pure=True)
    blocks = []
    for a in range(len(bounds) - 1):
        lo, hi = int(bounds[a]), int(bounds[a + 1])
        first = int(np.searchsorted(chunk_bounds, lo, side="right")) - 1
        last = int(np.searchsorted(chunk_bounds, hi, side="left"))
        blocks.append(outputs(task(others, norms, lo, hi, int(chunk_bounds[first]), settings, int(k),
                                   bool(whole_rows), dense_fraction, *([] if grouped else p_blocks[first:last]),
                                   dask_key_name=f"similarity-block-{token}-{k}-{int(whole_rows)}-{a}"),
                              3, ("similarity-idx", "similarity-sim", "similarity-row-block")))
    return bounds, f"{token}-{k}", [tuple(b) for b in blocks]


def entity_norms(P: da.Array, measure="full-cosine"):
    """Delayed (n,) float64: what ``measure`` divides by per entity
    (:func:`dcf.kernels.entity_totals`: norms, or numbers of ratings for ``jaccard``)."""
    norm = dask.delayed(kernels.entity_totals, pure=True)
    token = dask.base.tokenize(P, measure)
    return dask.delayed(concatenate, pure=True)(
        *[norm(b, measure, dask_key_name=f"similarity-norms-{token}-{a}")
          for a, b in enumerate(P.to_delayed(optimize_graph=False).ravel().tolist())],
        dask_key_name=f"similarity-norms-{token}")


def entity_stats(Q: da.Array):
    """Delayed ``((low, high, sum, count), work)`` in one pass over the blocks of ``Q``
    (others x entities): the ratings' range, sum and count, and each entity's cost in
    the rows method: the sum of the row lengths of ``Q`` over the entity's ratings
    (the products its row takes), plus :data:`PAIR_COST` a rating."""
    part = dask.delayed(_stats_part, pure=True)
    token = dask.base.tokenize(Q)
    parts = [part(b, dask_key_name=f"rating-stats-{token}-{a}")
             for a, b in enumerate(Q.to_delayed(optimize_graph=False).ravel().tolist())]
    return dask.delayed(_sum_stats, pure=True)(*parts, dask_key_name=f"rating-stats-{token}")


def _stats_part(b):
    b = sp.csr_matrix(b)
    work = kernels.rater_costs(b, PAIR_COST)
    if b.nnz == 0:
        return (np.inf, -np.inf, 0.0, 0.0), work
    return (float(b.data.min()), float(b.data.max()), float(b.data.sum()), float(b.nnz)), work


def _sum_stats(*parts):
    return _summary([p[0] for p in parts]), np.sum([p[1] for p in parts], axis=0)


def _summary(stats):
    stats = np.array(stats)
    return stats[:, 0].min(), stats[:, 1].max(), stats[:, 2].sum(), stats[:, 3].sum()


def balanced_cuts(work, groups: int) -> np.ndarray:
    """``[0, ..., n]``: at most ``groups`` consecutive ranges of about equal total ``work``
    (each entity also counts one unit, so empty entities still spread out)."""
    w = np.asarray(work, np.float64) + 1.0
    n = len(w)
    cum = np.concatenate([[0.0], np.cumsum(w)])
    targets = cum[-1] * np.arange(1, max(int(groups), 1)) / max(int(groups), 1)
    cuts = np.searchsorted(cum, targets)
    return np.unique(np.concatenate([[0], cuts, [n]])).astype(np.int64)


def prepare(raw_q: da.Array, Q: da.Array, pack=False, where=None):
    """:func:`entity_stats` of ``raw_q`` and :func:`shared_parts` of ``Q`` (its
    values, centred or not, over the same blocks) in one pass: ``(stats, parts)``, a
    Delayed and a list of Delayed runs of parts for :func:`shared_matrix`.

    ``where``: for each block of ``raw_q``, ``(worker, threads)`` of a worker that
    holds it (:func:`dcf.cluster.placement`).  Each worker's blocks are then done by
    one task per thread, there, instead of one task per block: a block's share takes
    a few milliseconds, so the tasks' overhead and the per-block cost arrays shipped
    to be summed were most of the cost (80 tasks at 20M ratings).  Without it, one
    task per block.  The rating summary is summed per block in block order either
    way, so the same bits."""
    token = dask.base.tokenize(raw_q, Q, bool(pack), where)
    task = dask.delayed(_prepare_blocks, pure=True)
    raw = raw_q.to_delayed(optimize_graph=False).ravel().tolist()
    vals = None if Q is raw_q else Q.to_delayed(optimize_graph=False).ravel().tolist()
    item = dask.delayed(_item, pure=True)
    stats, runs = [], []
    for g, blocks in enumerate(_groups(where, len(raw))):
        both = task(bool(pack), blocks, [raw[a] for a in blocks], None if vals is None else [vals[a] for a in blocks],
                    dask_key_name=f"similarity-prepare-{token}-{g}")
        stats.append(item(both, 0, dask_key_name=f"rating-stats-{token}-{g}"))
        runs.append(item(both, 1, dask_key_name=f"similarity-part-{token}-{g}"))
    return dask.delayed(_sum_group_stats, pure=True)(*stats, dask_key_name=f"rating-stats-{token}"), runs


def _groups(where, n: int) -> list:
    """Block indices per task: one block each without ``where``, else each worker's
    blocks (ascending) cut into one run per thread."""
    if where is None:
        return [[a] for a in range(n)]
    mine = {}
    for a, (worker, threads) in enumerate(where):
        mine.setdefault(worker, (threads, []))[1].append(a)
    return [run.tolist() for threads, blocks in mine.values()
            for run in np.array_split(np.array(blocks, np.int64), min(max(int(threads), 1), len(blocks)))]


def _prepare_blocks(pack, blocks, raws, values):
    summary, work, run = [], None, []
    for j, a in enumerate(blocks):
        s, w = _stats_part(raws[j])
        summary.append((a, s))
        work = w if work is None else work + w  # whole numbers: exact in any order
        run.append((a, kernels.compact_part(raws[j] if values is None else values[j], pack)))
    return (summary, work), run


def _sum_group_stats(*groups):
    in_order = sorted((pair for g in groups for pair in g[0]), key=lambda pair: pair[0])
    return _summary([s for _, s in in_order]), np.sum([g[1] for g in groups], axis=0)  # as entity_stats sums


def _item(pair, i):
    return pair[i]


def shared_parts(Q: da.Array, pack=False) -> list:
    """Delayed runs of :func:`dcf.kernels.compact_part`, one per block of ``Q`` (others x
    entities), built where the block is: the pieces of the matrix every similarity task
    reads, packed where ``pack`` and exact.  A run is a list of ``(block index, part)``."""
    token = dask.base.tokenize(Q, bool(pack))
    part = dask.delayed(_part_run, pure=True)
    return [part(a, b, bool(pack), dask_key_name=f"similarity-part-{token}-{a}")
            for a, b in enumerate(Q.to_delayed(optimize_graph=False).ravel().tolist())]


def _part_run(a, b, pack):
    return [(a, kernels.compact_part(b, pack))]


def shared_matrix(Q: da.Array, pack=False, parts=None):
    """Delayed :class:`dcf.kernels.CompactCSR` of ``Q``: the runs of parts of
    :func:`shared_parts` (or of :func:`prepare`, already started: ``parts``) joined in
    block order (see :func:`dcf.kernels.compact_stack`)."""
    parts = shared_parts(Q, pack) if parts is None else parts
    return dask.delayed(_join_runs, pure=True)(
        int(Q.shape[1]), *parts, dask_key_name=f"similarity-others-{dask.base.tokenize(*parts)}")


def _join_runs(n, *runs):
    return kernels.compact_join(n, *[p for _, p in sorted((pair for run in runs for pair in run),
                                                          key=lambda pair: pair[0])])


def _rows_block(Q, norms, lo, hi, offset, settings, k, whole_rows, dense_fraction, *chunks):
    if not chunks:  # the rows cut from the shared matrix: the task needs nothing else
        Pa = kernels.entity_rows(Q, lo, hi)
    else:
        Pa = chunks[0] if len(chunks) == 1 else sp.vstack(chunks, format="csr")
        if (lo - offset, hi - offset) != (0, Pa.shape[0]):
            Pa = Pa[lo - offset:hi - offset]
    s = settings
    rows, idx, sim = kernels.similarity_rows(
        Pa, Q, lo, s.measure, s.min_support, s.shrinkage, k,
        norms_a=None if norms is None else norms[lo:hi], norms=norms, dense=whole_rows,
        significance=s.significance, min_similarity=s.min_similarity)
    return idx, sim, (row_block_format(rows, dense_fraction) if whole_rows else None)
