"""One block of a refreshed neighbour table: the rows the changes reach recomputed, the
others copied renumbered, their columns of the touched entities patched
(:func:`refresh_block`), and the block helpers the refresh shares."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .. import kernels
from ..blocks import row_blocks, stack_rows
from ..similarity import row_block_format

__all__ = ["blocks_of", "overlapping", "stack_columns", "TableSpec", "BlockRows", "refresh_block", "patch_lists"]


def blocks_of(X):
    """``(bounds, Delayed blocks)`` of a row-chunked dask array (the order
    :func:`overlapping` takes)."""
    blocks, bounds = row_blocks(X)
    return bounds, blocks


def overlapping(blocks, lo, hi):
    """``(first row, blocks)``: the blocks covering rows ``lo..hi`` (none when empty)."""
    bounds, items = blocks
    if hi <= lo:
        return 0, []
    first = int(np.searchsorted(bounds, lo, side="right")) - 1
    last = int(np.searchsorted(bounds, hi, side="left"))
    return int(bounds[first]), items[first:last]


def stack_columns(columns, *blocks):
    """The shared others x entities matrix restricted to the entities ``columns`` (sorted)."""
    return kernels.compact_stack([sp.csr_matrix(b)[:, columns] for b in blocks])


@dataclass(frozen=True)
class TableSpec:
    """What every block of the refreshed table is, the same for all of them.

    Attributes
    ----------
    settings : SimilaritySettings
    k : int
        Neighbours per list.
    whole_rows : bool
        Whole similarity rows are kept too (the ``rated`` neighbourhood).
    dense_fraction : float
        How a block of whole rows is stored (:func:`dcf.similarity.row_block_format`).
    n : int
        Entities in the new vocabulary.
    touched : (t,) int64
        The entities whose norms moved (sorted codes): the columns a patched row recomputes.
    """

    settings: kernels.SimilaritySettings
    k: int
    whole_rows: bool
    dense_fraction: float
    n: int
    touched: np.ndarray


@dataclass(frozen=True)
class BlockRows:
    """One block's rows ``lo .. hi`` and where its inputs start.

    Attributes
    ----------
    lo, hi : int
        The block's entities (new codes).
    chunk0 : int
        The first row of the first ratings chunk given.
    affected, patch : (hi - lo,) bool
        Rows recomputed whole; rows whose columns of the touched entities are recomputed.
    old_codes : (hi - lo,) int64
        Each row's entity in the old vocabulary (-1 for a new one).
    tab0, rows0 : int
        The first old row of the old table blocks and of the old whole-row blocks given.
    counts : tuple of 4 ints
        How many of the task's trailing inputs are ratings chunks, old ``idx`` blocks,
        old ``sim`` blocks and old whole-row blocks.
    """

    lo: int
    hi: int
    chunk0: int
    affected: np.ndarray
    patch: np.ndarray
    old_codes: np.ndarray
    tab0: int
    rows0: int
    counts: tuple


def refresh_block(Q, norms, q_touched, new_of_old, spec: TableSpec, block: BlockRows, *inputs):
    """One block of the refreshed table: rows recomputed where ``block.affected``; the old
    rows renumbered elsewhere, their columns of the touched entities recomputed where
    ``block.patch``.

    ``Q`` is the shared matrix (others x entities), ``norms`` the entities' totals (None
    for the measures without), ``q_touched`` the shared matrix's columns of
    ``spec.touched`` (None when no row of the block is patched), ``new_of_old`` each old
    entity's new code; the shared values come as arguments of their own, so that the
    graph keeps their Futures.  ``inputs``: the chunks ``block.counts`` counts.

    Returns ``(idx, sim, whole rows or None, patched lists that had to be recomputed)``.
    """
    s, k, n, whole_rows = spec.settings, spec.k, spec.n, spec.whole_rows
    lo, hi, chunk0, tab0, rows0 = block.lo, block.hi, block.chunk0, block.tab0, block.rows0
    affected, patch, old_codes = block.affected, block.patch, block.old_codes
    cuts = np.cumsum((0,) + tuple(block.counts))
    p_chunks, idx_b, sim_b, row_b = (inputs[cuts[j]:cuts[j + 1]] for j in range(4))
    m = hi - lo
    idx = np.full((m, k), -1, np.int64)
    sim = np.zeros((m, k))
    rows = np.zeros((m, n)) if whole_rows else None
    Pa = sp.csr_matrix(stack_rows(*p_chunks)) if p_chunks else None

    def compute(at):  # whole rows of the block's entities ``lo + at``
        return kernels.similarity_rows(
            Pa[lo - chunk0 + at], Q, lo + at, s, k,
            norms_a=None if norms is None else norms[lo + at], norms=norms, dense=whole_rows)

    aff = np.flatnonzero(affected)
    if len(aff):
        new_rows, idx[aff], sim[aff] = compute(aff)
        if whole_rows:
            rows[aff] = new_rows
    kept = np.flatnonzero(~affected)
    if len(kept):
        at = old_codes[kept] - tab0
        old_idx = stack_rows(*idx_b)[at]
        idx[kept] = np.where(old_idx >= 0, new_of_old[np.maximum(old_idx, 0)], -1)
        sim[kept] = stack_rows(*sim_b)[at]
        if whole_rows:
            old = stack_rows(*row_b)[old_codes[kept] - rows0]
            old = old.toarray() if sp.issparse(old) else np.asarray(old)
            live = np.flatnonzero(new_of_old >= 0)  # entities left without ratings drop out
            rows[np.ix_(kept, new_of_old[live])] = old[:, live]
    again = 0
    pat = np.flatnonzero(patch)
    if len(pat):
        columns = spec.touched
        # the similarities to the touched entities: their columns only, the same sums in the
        # same order as a whole row takes them (the rows are never touched themselves)
        values = kernels.similarity_rows(
            Pa[lo - chunk0 + pat], q_touched, np.full(len(pat), -1), s, None,
            norms_a=norms[lo + pat], norms=norms[columns], dense=True)[0]
        if whole_rows:
            rows[np.ix_(pat, columns)] = values
            scores = rows[pat].copy()
            scores[np.arange(len(pat)), lo + pat] = 0.0  # never one's own neighbour
            idx[pat], sim[pat] = kernels.topk_rows(scores, k)
        else:
            idx[pat], sim[pat], ok = patch_lists(idx[pat], sim[pat], columns, values, k)
            lost = pat[~ok]
            if len(lost):  # a neighbour left the list and its successor is unknown
                again = len(lost)
                _, idx[lost], sim[lost] = compute(lost)
    return idx, sim, (row_block_format(rows, spec.dense_fraction) if whole_rows else None), again


def patch_lists(idx, sim, columns, values, k, cells=1 << 22):
    """Top-k lists with the similarities to ``columns`` replaced by ``values``.

    The other similarities are unchanged, and the old list holds the best of them.  So the
    new top-k is exact when k candidates rank at or before the old k-th entry: every
    similarity outside the list ranks after it.  ``ok`` marks the rows where that holds.
    Rows go in slices of about ``cells`` candidates.
    """
    out_i, out_s, ok = np.full_like(idx, -1), np.zeros_like(sim), np.ones(len(idx), bool)
    step = max(1, cells // (k + len(columns)))
    for lo in range(0, len(idx), step):
        i, s, v = idx[lo:lo + step], sim[lo:lo + step], values[lo:lo + step]
        keep = (i >= 0) & ~np.isin(i, columns)
        ci = np.concatenate([np.where(keep, i, -1), np.where(v > 0, columns[None, :], -1)], axis=1)
        cs = np.concatenate([np.where(keep, s, -np.inf), np.where(v > 0, v, -np.inf)], axis=1)
        order = np.lexsort((ci, -cs), axis=-1)[:, :k]  # similarity descending, then id
        top_i, top_s = np.take_along_axis(ci, order, 1), np.take_along_axis(cs, order, 1)
        live = top_i >= 0
        out_i[lo:lo + step, :order.shape[1]] = np.where(live, top_i, -1)
        out_s[lo:lo + step, :order.shape[1]] = np.where(live, top_s, 0.0)
        # a full list: the unknown similarities rank after its last entry
        s_k, i_k = s[:, -1:], i[:, -1:]
        better = (ci >= 0) & ((cs > s_k) | ((cs == s_k) & (ci <= i_k)))
        ok[lo:lo + step] = (i[:, -1] < 0) | (better.sum(axis=1) >= k)
    return out_i, out_s, ok
