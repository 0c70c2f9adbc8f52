"""The ``rows`` method (the default): one task per range of entities of equal cost, each
computing its rows against the shared matrix with a sparse accumulator and fused top-k."""

from __future__ import annotations

import contextlib

import dask
import dask.array as da
import numpy as np
import scipy.sparse as sp

from .. import kernels
from ..blocks import outputs
from ..cluster import thread_slots
from ..kernels import SimilaritySettings
from .plan import SCAN_COST, balanced_cuts
from .shared import shared_matrix
from .tiles import DENSE_FRACTION, row_block_format

__all__ = ["similarity_by_rows"]


def similarity_by_rows(P: da.Array, Q: da.Array, k: int, settings: SimilaritySettings = SimilaritySettings(),
                       whole_rows=False, dense_fraction=DENSE_FRACTION, work=None, groups=None, parts=None,
                       scale=None):
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
        or CSR as :func:`row_block_format` decides.
    work : (n,) array, optional
        Each entity's cost (the second part of :func:`entity_stats`).  The
        entities are cut into ``groups`` ranges of equal cost, one task each,
        instead of one task per chunk: fewer, even tasks (chunks of equal size
        differ by orders of magnitude in cost under a Zipf popularity).  Each
        cuts its entities' ratings from the shared matrix
        (:func:`dcf.kernels.entity_rows`) rather than reading ``P``'s chunks, and
        on a cluster is pinned (loosely) to a thread of its own, the threads in
        turn (:func:`_pinned`).  The pins are the Delayed blocks' annotations: they
        reach the scheduler when the blocks are computed or persisted as they are
        (:func:`dcf.fitting` persists them before it builds the table), not through
        an array made of them, whose optimisation drops them.
    groups : int or (n_blocks + 1,) int array, optional
        How many ranges (default: one per chunk), or the ranges' bounds themselves
        (whole rows: :func:`~dcf.similarity.plan.whole_row_cuts`, which also bounds each
        task's memory).
    parts : list of Delayed, optional
        Runs of parts of the shared matrix (:func:`prepare`'s, already started, or
        :func:`shared_parts`, the default).
    scale : Delayed (m,) float64, optional
        A factor per other multiplied into both values of each of its products, the
        entity's (its rows cut from the shared matrix) and the shared matrix's
        (:func:`dcf.kernels.similarity_rows`; bm25's split form, :func:`dcf.fitted.split_bm25`:
        ``Q`` then holds the weights without their idf, ``scale`` the idf).  Only with
        ``work`` and ``groups`` and no whole rows (the rows are then cut from ``Q``).

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
    grouped = work is not None and groups is not None
    if scale is not None and (whole_rows or not grouped):
        raise ValueError("a scale applies to the rows cut from the shared matrix: pass work and groups, "
                         "without whole rows")
    fast = settings.fast_topk(whole_rows, k)
    if grouped:  # the fast path also scans every entity for the lists of rows with many products
        work = np.asarray(work, np.float64)
        n = int(Q.shape[1])
        scan = np.where(work >= kernels.TRACK_BELOW * n, SCAN_COST * n, 0.0) if fast else 0.0
        bounds = np.asarray(groups, np.int64) if np.ndim(groups) else balanced_cuts(work + scan, groups)
    else:
        bounds = chunk_bounds
    token = dask.base.tokenize(P, Q, settings, "rows", bounds, scale)
    others = shared_matrix(Q, fast, parts)
    norms = None
    if settings.spec.needs_norms:  # one pass over the shared matrix, where it is built
        norms = dask.delayed(kernels.column_totals, pure=True)(
            others, measure, dask_key_name=f"similarity-norms-{dask.base.tokenize(others, measure)}")
    # even (grouped) tasks read nothing but the shared matrix and the norms: each is pinned,
    # loosely, to a thread of its own (:func:`_pinned`); the first on a worker fetches the
    # matrix, the next ones find it there (copying it to every worker first, as refresh
    # does, held them all back by 0.3-0.4 s at 20M)
    task = dask.delayed(_rows_block, pure=True)
    slots = thread_slots() if grouped else None
    calls = []
    for a in range(len(bounds) - 1):
        lo, hi = int(bounds[a]), int(bounds[a + 1])
        first = int(np.searchsorted(chunk_bounds, lo, side="right")) - 1
        last = int(np.searchsorted(chunk_bounds, hi, side="left"))
        with _pinned(slots, a):
            calls.append(task(others, (norms, scale), (lo, hi, int(chunk_bounds[first])), settings, int(k),
                              bool(whole_rows), dense_fraction, *([] if grouped else p_blocks[first:last]),
                              dask_key_name=f"similarity-block-{token}-{k}-{int(whole_rows)}-{a}"))
    blocks = [outputs(call, 3, ("similarity-idx", "similarity-sim", "similarity-row-block")) for call in calls]
    return bounds, f"{token}-{k}", [tuple(b) for b in blocks]


def _pinned(slots, a: int):
    """Task ``a`` pinned to thread slot ``a mod len(slots)`` (:func:`dcf.cluster.thread_slots`)
    where there are slots, free to run elsewhere if that worker is gone.

    Dask places a task that is not "root-ish" (a group of more than twice the cluster's
    threads) on the worker holding most of its input: every task of a fit (two a thread)
    went to the one worker that joined the shared matrix, and work stealing moved some back
    only late (2 workers x 1 thread, e-commerce, full cosine: all four on one worker, the
    other idle, 2.8 s against 1.9 s in a round where one was stolen early)."""
    if not slots:
        return contextlib.nullcontext()
    return dask.annotate(workers=[slots[a % len(slots)]], allow_other_workers=True)


def _rows_block(Q, factors, span, settings, k, whole_rows, dense_fraction, *chunks):
    """One block's lists (and whole rows): ``factors`` = ``(norms, scale)``, either None;
    ``span`` = ``(lo, hi, offset)``, the block's entities and the first chunk's first."""
    (norms, scale), (lo, hi, offset) = factors, span
    if not chunks:  # the rows cut from the shared matrix: the task needs nothing else
        Pa = kernels.entity_rows(Q, lo, hi)
    else:
        Pa = chunks[0] if len(chunks) == 1 else sp.vstack(chunks, format="csr")
        if (lo - offset, hi - offset) != (0, Pa.shape[0]):
            Pa = Pa[lo - offset:hi - offset]
    rows, idx, sim = kernels.similarity_rows(
        Pa, Q, lo, settings, k, norms_a=None if norms is None else norms[lo:hi], norms=norms, dense=whole_rows,
        csr=True, scale=scale)
    return idx, sim, (row_block_format(rows, dense_fraction) if whole_rows else None)
