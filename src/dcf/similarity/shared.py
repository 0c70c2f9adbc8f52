"""The matrix every ``rows`` task shares, and the one pass over the ratings that builds it:
the rating summary and each entity's cost (:func:`entity_stats`, :func:`prepare`), the
parts (:func:`shared_parts`) and their join (:func:`shared_matrix`); :func:`entity_norms`."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import scipy.sparse as sp

from .. import kernels
from ..blocks import concatenate
from .plan import PAIR_COST

__all__ = ["entity_norms", "entity_stats", "prepare", "shared_matrix", "shared_parts"]


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
