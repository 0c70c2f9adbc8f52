"""One block of a refreshed neighbour table: the rows the changes reach recomputed, the
others copied renumbered, their columns of the touched entities patched
(:func:`refresh_block`), and the block helpers the refresh shares."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .. import kernels
from ..blocks import row_blocks, stack_rows
from ..similarity import row_block_format

__all__ = ["blocks_of", "overlapping", "stack_columns", "refresh_block", "patch_lists"]


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


def refresh_block(Q, norms, touched, lo, hi, chunk0, settings, k, whole_rows, dense_fraction, affected,
                   patch, old_codes, new_of_old, n, tab0, rows0, counts, *inputs):
    """One block of the refreshed table: rows recomputed where ``affected``; the old rows
    renumbered elsewhere, their columns of the touched entities recomputed where ``patch``.

    Returns ``(idx, sim, whole rows or None, patched lists that had to be recomputed)``.
    """
    s = settings
    cuts = np.cumsum((0,) + tuple(counts))
    p_chunks, idx_b, sim_b, row_b = (inputs[cuts[j]:cuts[j + 1]] for j in range(4))
    m = hi - lo
    idx = np.full((m, k), -1, np.int64)
    sim = np.zeros((m, k))
    rows = np.zeros((m, n)) if whole_rows else None
    Pa = sp.csr_matrix(stack_rows(*p_chunks)) if p_chunks else None

    def compute(at):  # whole rows of the block's entities ``lo + at``
        return kernels.similarity_rows(
            Pa[lo - chunk0 + at], Q, lo + at, s.measure, s.min_support, s.shrinkage, k,
            norms_a=None if norms is None else norms[lo + at], norms=norms, dense=whole_rows,
            significance=s.significance, min_similarity=s.min_similarity)

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
        q_touched, columns = touched
        # the similarities to the touched entities: their columns only, the same sums in the
        # same order as a whole row takes them (the rows are never touched themselves)
        values = kernels.similarity_rows(
            Pa[lo - chunk0 + pat], q_touched, np.full(len(pat), -1), s.measure, s.min_support, s.shrinkage,
            None, norms_a=norms[lo + pat], norms=norms[columns], dense=True,
            significance=s.significance, min_similarity=s.min_similarity)[0]
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
    return idx, sim, (row_block_format(rows, dense_fraction) if whole_rows else None), again


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
