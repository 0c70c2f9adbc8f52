"""Sizing the similarity work from the workers' memory: which method (:func:`method`), the
largest block that fits (:func:`block_limit`), whether the rows method's whole rows fit
(:func:`check_whole_rows`), and ranges of entities of equal cost
(:func:`balanced_cuts`, by the rows kernels' cost model :data:`PAIR_COST`, :data:`SCAN_COST`)."""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError

__all__ = ["CSR_BYTES", "HELD_FRACTION", "MIN_BLOCK", "PAIR_COST", "ROW_BYTES_PER_ENTRY", "SCAN_COST",
           "SHARED_FRACTION", "TILE_BYTES_PER_ENTRY", "WORKER_BASELINE_BYTES", "balanced_cuts", "block_limit",
           "check_whole_rows", "method", "shared_bytes", "task_bytes", "whole_row_cuts", "whole_rows_bytes"]

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
# top-k path an entity with many products costs SCAN_COST per entity it is compared with
# (the scan for its list; one with fewer products than entities scans only the columns it
# touched, :data:`dcf.kernels.TRACK_BELOW`).  Fitted to the kernel's time on random item ranges of the 20M set
# (benchmarks/kernel_costs.py): 0.16-0.18 ns a product, 75-92 ns a pair, 1.9-2.2 ns a
# column scanned, so a pair is 400-580 products and a column 10-14 (products and pairs
# go together, so their split is loose; the total is what cuts the tasks).  Cut by
# products alone, the range of rarely rated items (many rows, few products) took twice
# the time of the others
PAIR_COST = 400.0
SCAN_COST = 10.0
# a similarity the rows method keeps in a whole row (CSR: an int32 column, a float64 value)
CSR_BYTES = 12
# the share of the workers' memory persisted whole rows may take: Dask spills past 70 %
HELD_FRACTION = 0.7
# what a rows task holds at its peak per similarity of its whole rows: the kernel's arrays,
# their CSR matrix and, where the block is stored dense (at least 30 % non-zero), the dense
# copy (at most 8 / 0.3 bytes a similarity)
ROW_PEAK_BYTES = 4 * CSR_BYTES


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
    per_task = task_bytes(budget)

    def cap(n: int, n_others: int = 0, nnz: int = 0) -> int:
        rows = (forced or method(budget, n_others, nnz)) == "rows"
        # the tiles method assembles dense n x n rows; the rows method keeps the non-zero
        # similarities only, checked once their number is known (check_whole_rows)
        if whole_rows and not rows and 8.0 * n * n > HELD_FRACTION * total:
            raise ConfigError(
                f"the rated neighbourhood keeps all {n:,} x {n:,} similarities "
                f"({8.0 * n * n / 1e9:.2f} GB), more than the workers hold below their spill "
                f"threshold ({HELD_FRACTION * total / 1e9:.2f} GB of {total / 1e9:.2f} GB): raise "
                f"--memory-limit to at least {_gb(8.0 * n * n / HELD_FRACTION * limit / total)} per worker, "
                "add workers, or use --neighbourhood global (keeps only n x k)")
        # rows method: a task holds O(n) accumulators and its whole rows' non-zero
        # similarities, which its rows' costs bound (:func:`whole_row_cuts` cuts its
        # tasks by them): the matrix's blocks are not capped for it, as they were (117k
        # items of 1.2M ratings cut into 833 blocks of 140: 2,900 tasks to build and
        # transpose the matrix, 10 s on 2 cores)
        b = max(n, 1) if rows else int(np.sqrt(per_task / TILE_BYTES_PER_ENTRY))
        fit = int(per_task / (ROW_BYTES_PER_ENTRY * max(n, 1))) if whole_rows else b
        if not rows:
            b = min(b, fit)
        if min(b, fit) < min(MIN_BLOCK, n):
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


def whole_rows_bytes(work, counts) -> tuple[int, float]:
    """``(similarities, bytes)``: at most how many similarities the rows method's whole
    rows keep, and their bytes.  An entity's row holds at most one similarity per
    product its row takes (its ``work`` less :data:`PAIR_COST` per rating, ``counts``),
    at most one per entity, plus the diagonal; a row costs :data:`CSR_BYTES` a
    similarity, at most 8 bytes an entity (a block is stored dense where that is smaller)."""
    kept = _row_similarities(work, counts)
    return int(kept.sum()), float(np.minimum(CSR_BYTES * kept, 8.0 * len(kept)).sum())


def _row_similarities(work, counts) -> np.ndarray:
    """At most how many similarities each entity's whole row keeps: one per product (its
    ``work`` less :data:`PAIR_COST` per rating, ``counts``; None: nothing taken off), at
    most one per other entity, and the diagonal."""
    work = np.asarray(work, np.float64)
    paid = 0.0 if counts is None else PAIR_COST * np.asarray(counts, np.float64)
    return np.minimum(np.maximum(work - paid, 0.0), max(len(work) - 1, 0)) + 1.0


def check_whole_rows(budget, work, counts) -> None:
    """Raise :class:`~dcf.errors.ConfigError`, before the similarity work starts, where
    the rows method's whole rows (:func:`whole_rows_bytes`) cannot be held by the
    workers below their spill threshold (``budget``: :func:`block_limit`'s; ``None``:
    no limit known)."""
    if budget is None:
        return
    limit, _, total, _ = budget
    kept, need = whole_rows_bytes(work, counts)
    if need > HELD_FRACTION * total:
        raise ConfigError(
            f"the rated neighbourhood keeps up to {kept:,} similarities of {len(work):,} entities "
            f"({need / 1e9:.2f} GB), more than the workers hold below their spill threshold "
            f"({HELD_FRACTION * total / 1e9:.2f} GB of {total / 1e9:.2f} GB): raise --memory-limit to at "
            f"least {_gb(need / HELD_FRACTION * limit / total)} per worker, add workers, or use "
            "--neighbourhood global (keeps only n x k)")


def task_bytes(budget) -> float:
    """The bytes one task may hold (``budget``: :func:`block_limit`'s): half of a thread's
    share of the smallest worker's memory below Dask's pause threshold (80 %), past what
    the worker holds idle."""
    limit, threads, _, idle = budget
    return (0.8 * limit - max(idle, WORKER_BASELINE_BYTES)) / threads / 2


def whole_row_cuts(work, counts, groups: int, budget, dense: bool = False) -> np.ndarray:
    """The rows method's tasks when they keep whole rows: :func:`balanced_cuts` of ``work``
    into ``groups``, each range cut again where its rows' similarities (at most one per
    product, :func:`whole_rows_bytes`' bound, ``counts`` the entities' ratings or None)
    would take a task past :func:`task_bytes` at :data:`ROW_PEAK_BYTES` each (``budget``
    None: no limit known, no cut).  ``dense``: the task holds its rows dense (a refresh,
    :func:`dcf.refresh.rows.refresh_block`), :data:`ROW_BYTES_PER_ENTRY` an entity a row."""
    cuts = balanced_cuts(work, groups)
    if budget is None:
        return cuts
    n = int(cuts[-1])  # the entities
    each = (np.full(n, float(ROW_BYTES_PER_ENTRY) * n) if dense  # bytes a row holds at the task's peak
            else ROW_PEAK_BYTES * _row_similarities(work, counts))
    room = max(task_bytes(budget), 1.0)
    out = [0]
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        cum = np.cumsum(each[lo:hi])
        while len(cum) and cum[-1] > room:  # the longest prefix that fits, at least one row
            take = max(int(np.searchsorted(cum, room, side="right")), 1)
            out.append(out[-1] + take)
            cum = cum[take:] - cum[take - 1]
        out.append(int(hi))
    return np.unique(np.asarray(out, np.int64))


def _gb(nbytes: float) -> str:
    return f"{np.ceil(nbytes / 1e8) / 10:.1f}GB"


def balanced_cuts(work, groups: int) -> np.ndarray:
    """``[0, ..., n]``: at most ``groups`` consecutive ranges of about equal total ``work``
    (each entity also counts one unit, so empty entities still spread out)."""
    w = np.asarray(work, np.float64) + 1.0
    n = len(w)
    cum = np.concatenate([[0.0], np.cumsum(w)])
    targets = cum[-1] * np.arange(1, max(int(groups), 1)) / max(int(groups), 1)
    cuts = np.searchsorted(cum, targets)
    return np.unique(np.concatenate([[0], cuts, [n]])).astype(np.int64)
