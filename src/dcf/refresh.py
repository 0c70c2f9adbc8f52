"""Incremental refresh: a fitted model plus new ratings, without recomputing every similarity.

``model.refresh(new)`` returns the model that ``fit`` on the old ratings with the new ones
merged in would give (a pair already rated takes the new value; new users and items join
the vocabulary), recomputing only the similarity rows the new ratings can change:

* The rating matrix is merged block by block from the old CSR blocks, renumbered to the
  new vocabulary, and the batch: the old ratings are not read or checked again.  With
  ids other than integers the old ratings go through frames of raw ids instead.  Both
  give the blocks ``fit`` builds.  Means, counts and baseline biases are recomputed.
* A similarity row of entity ``e`` (an item, for item-based CF) is recomputed only when
  a changed rating can reach it.  Let the changed ratings touch the entities ``E`` and
  the others ``O`` (the users, for item-based CF).
  - The co-rated measures (``cosine``, ``pearson``, ``adjusted-cosine``) read only the
    ratings of the co-raters.  Row ``e`` changes only when a user in ``O`` rated ``e``.
    For ``adjusted-cosine``, only these users' means move.
  - ``full-cosine``, ``centred-cosine`` and ``jaccard`` also read a whole entity's norm
    (its mean, its count), which moves for the entities in ``E``.  An entity co-rated
    with one in ``E`` by an untouched user keeps its row except for the columns ``E``.
    Those columns are recomputed alone: the same sums, in the same order, that a whole
    row takes.  Then its top-k list is merged again.  A list that loses a neighbour can
    have an unknown successor; that row is recomputed whole.  Whole rows (the ``rated``
    neighbourhood) take the new columns and their top-k is taken again.
  - ``pearson-baseline`` reads the baseline biases, which every new rating moves: a
    full refit.
* Every other row is copied from the old model, its neighbour ids renumbered to the
  new vocabulary.  The vocabulary is sorted, so renumbering keeps the ties' order.  An
  untouched entity has no similarity with a new entity: they share no rater.

The result equals a refit bit for bit (``tests/test_refresh.py`` checks it measure by
measure).  It needs the ``rows`` similarity method (one copy of the ratings per worker,
:func:`dcf.similarity.method`).  Where the merged ratings call for ``tiles``, it refits,
and ``refresh_report_`` says so.

Left out: deleting ratings (a deletion is not a rating; refit without them).
"""

from __future__ import annotations

import copy

import dask
import numpy as np
import pandas as pd
import scipy.sparse as sp

from . import kernels
from .cluster import everywhere, memory_budget, parallelism
from .fitted import ROW_TASKS_PER_THREAD, as_parts, baseline_biases, centred_ratings, fitted_state, needs_biases, single
from .ids import IdMap
from .blocks import concat_rows, outputs, row_blocks, stack_rows
from .matrix import build_block, from_user_blocks, layout
from .neighbours import table_from_blocks
from .similarity import (DENSE_FRACTION, balanced_cuts, entity_norms, entity_stats, row_block_format,
                         shared_matrix)
from .similarity import method as similarity_method

__all__ = ["refresh"]


def refresh(model, ratings):
    """The model ``fit`` would give on ``model``'s ratings merged with ``ratings``.

    See :meth:`dcf.model.KNN.refresh`.
    """
    model.check_fitted()
    model.check_params()
    parts, batch_report, source = as_parts(ratings, model.on_bad_lines)
    frames = dask.compute(*parts)
    batch = (pd.concat(frames, ignore_index=True) if frames
             else pd.DataFrame({"user": [], "item": [], "rating": [], "line": []}))
    old = model.matrix_
    present, value = _old_values(old, batch)
    changed = ~present | (value != batch["rating"].to_numpy(np.float64))  # else a repeat
    matrix = _merged_matrix(model, old, batch, present, batch_report, source)
    if matrix is None:  # ids of mixed kinds: the general path, through frames of raw ids
        matrix = model.matrix_from_parts(_old_parts(old, batch) + [dask.delayed(batch, pure=True,
                                                                     name=f"refresh-batch-{dask.base.tokenize(batch)}")],
                              batch_report, source)
    matrix = matrix.persist()
    n_ent = len(matrix.items if model.based == "item" else matrix.users)
    report = {"ratings": int(len(batch)), "changed": int(changed.sum()),
              "new_users": len(matrix.users) - len(old.users),
              "new_items": len(matrix.items) - len(old.items),
              "entities": n_ent, "recomputed": n_ent, "recomputed_share": 1.0,
              "patched": 0, "full_refit": True, "why": None}
    P, Q = matrix.oriented(model.based)[:2]
    raw_p, raw_q = P, Q
    ((lo, hi, total, count), work) = dask.compute(entity_stats(raw_q))[0]
    why = None
    settings = model.similarity_settings()
    if settings.spec.needs_biases:
        why = f"{model.similarity} reads the baseline biases, which every new rating moves"
    elif model.method == "tiles":
        why = "the model was told to use the tiles method"
    elif similarity_method(memory_budget(), int(P.shape[1]), int(count)) != "rows":
        why = "one copy of the merged ratings no longer fits a worker (the tiles method)"
    if why is not None:
        new = copy.copy(model).fit(matrix)
        report["why"] = why
        new.refresh_report_ = report
        return new

    # entities whose rows the changed ratings reach, in the new codes
    rows = batch.iloc[np.flatnonzero(changed)]
    ent_raw, oth_raw = ((rows["item"], rows["user"]) if model.based == "item" else (rows["user"], rows["item"]))
    ent_ids, oth_ids = ((matrix.items, matrix.users) if model.based == "item" else (matrix.users, matrix.items))
    touched_e = _mask(ent_ids.to_codes(ent_raw.to_numpy()), n_ent)
    touched_o = _mask(oth_ids.to_codes(oth_raw.to_numpy()), len(oth_ids))
    affected = _reach(raw_q, touched_o) | touched_e  # whole rows to recompute
    patch = np.zeros(n_ent, bool)
    if kernels.needs_norms(model.similarity):  # norms moved: columns E of every co-rated row
        patch = _reach(raw_q, _reach(raw_p, touched_e)) & ~affected
    touched = np.flatnonzero(touched_e)

    new = copy.copy(model)
    whole_rows = model.neighbourhood == "rated"
    centred = centred_ratings(matrix, model.based, model.similarity)
    if centred is not None:
        P, Q = centred
    norms = entity_norms(P, model.similarity) if kernels.needs_norms(model.similarity) else None
    biases = baseline_biases(model, matrix, total / count) if needs_biases(model) else None
    old_ids = old.items if model.based == "item" else old.users
    old_of_new = old_ids.to_codes(ent_ids.to_raw(np.arange(n_ent)))
    new_of_old = np.full(len(old_ids), -1, np.int64)
    new_of_old[old_of_new[old_of_new >= 0]] = np.flatnonzero(old_of_new >= 0)
    chunk_bounds, p_blocks = _blocks_of(P)
    q_blocks = _blocks_of(Q)[1]
    bounds = (chunk_bounds if whole_rows else
              balanced_cuts(np.where(affected, work, 0.0), ROW_TASKS_PER_THREAD * parallelism()))
    k = int(model.neighbours_.k)
    token = dask.base.tokenize(model.token_, matrix.by_user, model.get_params(), "refresh", bounds, k)
    pack = settings.fast_topk(whole_rows, k)
    others = everywhere(shared_matrix(Q, pack))
    shared_map = dask.delayed(new_of_old, pure=True, name=f"refresh-renumbering-{dask.base.tokenize(new_of_old)}")
    columns = None
    if patch.any():  # the ratings of the touched entities only: what their columns need
        columns = everywhere(dask.delayed(_stack_columns, pure=True)(
            touched, *q_blocks, dask_key_name=f"refresh-touched-{token}"))
    old_tab = _blocks_of(model.neighbours_.idx), _blocks_of(model.neighbours_.sim)
    old_rows = _blocks_of(model.similarity_rows_) if whole_rows else None
    task = dask.delayed(_refresh_block, pure=True)
    blocks = []
    for a in range(len(bounds) - 1):
        b_lo, b_hi = int(bounds[a]), int(bounds[a + 1])
        aff, pat = affected[b_lo:b_hi], patch[b_lo:b_hi]
        p0, p_here = _overlapping((chunk_bounds, p_blocks), b_lo, b_hi)
        kept = old_of_new[b_lo:b_hi][~aff]  # rows copied: their old rows' range
        o_lo, o_hi = (int(kept.min()), int(kept.max()) + 1) if len(kept) else (0, 0)
        tab0, idx_here = _overlapping(old_tab[0], o_lo, o_hi)
        rows0, rows_here = _overlapping(old_rows, o_lo, o_hi) if whole_rows else (0, [])
        work_here = aff.any() or pat.any()
        inputs = (p_here if work_here else [], idx_here, _overlapping(old_tab[1], o_lo, o_hi)[1], rows_here)
        blocks.append(task(others if work_here else None, norms if work_here else None,
                           (columns, touched) if pat.any() else None, b_lo, b_hi, p0,
                           settings, k, whole_rows, DENSE_FRACTION, aff, pat, old_of_new[b_lo:b_hi],
                           shared_map, n_ent, tab0, rows0, tuple(len(x) for x in inputs),
                           *[x for group in inputs for x in group], dask_key_name=f"refresh-block-{token}-{a}"))
        blocks[-1] = outputs(blocks[-1], 4, ("refresh-idx", "refresh-sim", "refresh-row-block", "refresh-fallbacks"))
    table = table_from_blocks([b[0] for b in blocks], [b[1] for b in blocks], bounds, k, token)
    whole = concat_rows([b[2] for b in blocks], bounds, n_ent, "refresh-whole-rows") if whole_rows else None
    table, whole, fallbacks = dask.persist(table, whole, [b[3] for b in blocks])
    new.set_state(fitted_state(model, matrix, table, whole, "rows", total / count, (lo, hi), token, biases))
    again = int(sum(dask.compute(*fallbacks)))  # patched lists that lost a neighbour: recomputed
    recomputed = int(affected.sum()) + again
    report.update(recomputed=recomputed, recomputed_share=recomputed / max(n_ent, 1),
                  patched=int(patch.sum()) - again, full_refit=False)
    new.refresh_report_ = report
    return new


# ---------------------------------------------------------------- the merged ratings

def _old_values(old, batch: pd.DataFrame):
    """Per batch row: ``(present, value)``, whether the old model holds the row's pair and
    with which rating (one lookup in the user blocks the batch touches)."""
    u = old.users.to_codes(batch["user"].to_numpy())
    i = old.items.to_codes(batch["item"].to_numpy())
    present, value = np.zeros(len(batch), bool), np.zeros(len(batch))
    known = np.flatnonzero((u >= 0) & (i >= 0))
    if len(known) == 0:
        return present, value
    ub, user_blocks = _blocks_of(old.by_user)
    blk = np.searchsorted(ub, u[known], side="right") - 1
    look = dask.delayed(_lookup, pure=True)
    wanted = {b: known[blk == b] for b in np.unique(blk).tolist()}
    found = dask.compute({b: look(user_blocks[b], u[rows] - ub[b], i[rows],
                                  dask_key_name=f"refresh-lookup-{dask.base.tokenize(user_blocks[b], u[rows], i[rows])}")
                          for b, rows in wanted.items()})[0]
    for b, rows in wanted.items():
        present[rows], value[rows] = found[b]
    return present, value


def _merged_matrix(model, old, batch: pd.DataFrame, present, report, source):
    """The matrix :func:`dcf.matrix.build_matrix` gives for the old ratings and the batch,
    merged from the old CSR blocks by codes, without the raw ids of every old rating
    (``present``: the batch rows whose pair the old model holds).
    None where the ids are not integers on both sides (the caller then goes through frames)."""
    b_users, b_items = IdMap(batch["user"].to_numpy()), IdMap(batch["item"].to_numpy())
    if not all(m.numeric for m in (old.users, old.items, b_users, b_items)):
        return None
    users = IdMap(np.concatenate([old.users.index.to_numpy(), b_users.index.to_numpy()]))
    items = IdMap(np.concatenate([old.items.index.to_numpy(), b_items.index.to_numpy()]))
    u, i = users.to_codes(batch["user"].to_numpy()), items.to_codes(batch["item"].to_numpy())
    item_of_old = items.to_codes(old.items.index.to_numpy())
    old_of_user = old.users.to_codes(users.index.to_numpy())
    # the old pairs the batch rates again are dropped: their new value comes from the batch
    again = np.unique(u[present].astype(np.int64) * len(items) + i[present])
    held = int(np.sum(dask.compute(single(old.user_count))[0]))
    ub, ib = layout(len(users), len(items), int(held) - len(again) + len(batch), **model.matrix_layout())
    token = dask.base.tokenize(old.by_user, batch, ub, ib, model.on_bad_lines)
    o_bounds, o_blocks = _blocks_of(old.by_user)
    blk = np.searchsorted(ub, u, side="right") - 1
    lines = batch["line"].to_numpy(np.int64)
    r = batch["rating"].to_numpy(np.float64)
    merge = dask.delayed(_merge_block, pure=True)
    u_key, i_key = users.as_delayed(), items.as_delayed()
    shared_items = dask.delayed(item_of_old, pure=True, name=f"refresh-item-renumbering-{dask.base.tokenize(item_of_old)}")
    blocks, reports = [], [report]
    for b in range(len(ub) - 1):
        lo, hi = int(ub[b]), int(ub[b + 1])
        olds = old_of_user[lo:hi]
        have = olds[olds >= 0]
        first, pieces = _overlapping((o_bounds, o_blocks), int(have.min()), int(have.max()) + 1) \
            if len(have) else (0, [])
        sel = np.flatnonzero(blk == b)
        mine = again[(again >= lo * len(items)) & (again < hi * len(items))]
        blk_csr, rep = outputs(merge((hi - lo, len(items)), lo, u_key, i_key, source, model.on_bad_lines,
                                     olds, first, shared_items, mine - lo * len(items),
                                     (u[sel] - lo, i[sel], r[sel], lines[sel]), *pieces,
                                     dask_key_name=f"refresh-matrix-block-{token}-{b}"),
                               2, ("matrix-user-csr", "matrix-user-report"))
        blocks.append(blk_csr)
        reports.append(rep)
    return from_user_blocks(users, items, blocks, ub, ib, reports, source, token)


def _merge_block(shape, row0, users, items, source, on_bad_lines, old_rows, first, item_of_old, drop,
                 batch, *old_blocks):
    """One user block of the merged matrix: the old rows, their items renumbered and the
    re-rated pairs dropped, and the batch's ratings, built as :func:`dcf.matrix.build_matrix`
    builds a block (the batch's duplicates and conflicts counted or raised alike)."""
    have = np.flatnonzero(old_rows >= 0)
    pieces = [batch]
    if len(have) and old_blocks:
        sub = stack_rows(*[sp.csr_matrix(b) for b in old_blocks])[old_rows[have] - first].tocoo()
        rows = have[sub.row].astype(np.int64)
        cols = item_of_old[sub.col]
        keep = ~np.isin(rows * shape[1] + cols, drop)
        pieces.insert(0, (rows[keep], cols[keep], sub.data[keep], np.zeros(int(keep.sum()), np.int64)))
    return build_block(shape, row0, users, items, source, on_bad_lines, *pieces)


def _lookup(block, rows, cols):
    """``(present, value)`` of the CSR ``block`` at the given cells."""
    block = sp.csr_matrix(block)
    keys = np.repeat(np.arange(block.shape[0], dtype=np.int64), np.diff(block.indptr)) * block.shape[1] \
        + block.indices.astype(np.int64)  # ascending: rows in order, sorted indices
    want = rows.astype(np.int64) * block.shape[1] + cols.astype(np.int64)
    pos = np.minimum(np.searchsorted(keys, want), max(len(keys) - 1, 0))
    present = (keys[pos] == want) if len(keys) else np.zeros(len(want), bool)
    return present, np.where(present, block.data[pos] if len(keys) else 0.0, 0.0)


def _old_parts(old, batch: pd.DataFrame):
    """The old ratings as frame parts (one per user block), without the pairs the batch
    rates again: those take the batch's value."""
    u = old.users.to_codes(batch["user"].to_numpy())
    i = old.items.to_codes(batch["item"].to_numpy())
    ok = (u >= 0) & (i >= 0)
    ub, user_blocks = _blocks_of(old.by_user)
    blk = np.searchsorted(ub, u[ok], side="right") - 1
    n_items = len(old.items)
    keys = u[ok].astype(np.int64) * n_items + i[ok]
    part = dask.delayed(_old_part, pure=True)
    users, items = old.users.as_delayed(), old.items.as_delayed()
    return [part(b, int(ub[j]), users, items, np.unique(keys[blk == j]))
            for j, b in enumerate(user_blocks)]


def _old_part(block, row0, users, items, drop_keys):
    coo = sp.csr_matrix(block).tocoo()
    rows = coo.row.astype(np.int64) + row0
    keep = ~np.isin(rows * len(items) + coo.col, drop_keys)
    return pd.DataFrame({"user": users.to_raw(rows[keep]), "item": items.to_raw(coo.col[keep]),
                         "rating": coo.data[keep], "line": np.zeros(int(keep.sum()), np.int64)})


# ---------------------------------------------------------------- which rows

def _mask(codes, n):
    out = np.zeros(n, bool)
    out[codes[codes >= 0]] = True
    return out


def _reach(X, rows_mask):
    """Columns of ``X`` (CSR row blocks) with a stored entry in a row of ``rows_mask``."""
    bounds, blocks = _blocks_of(X)
    cols = dask.delayed(_columns, pure=True)
    token = dask.base.tokenize(X.name, rows_mask)
    parts = [cols(b, rows_mask[bounds[j]:bounds[j + 1]], int(X.shape[1]), dask_key_name=f"refresh-reach-{token}-{j}")
             for j, b in enumerate(blocks)
             if rows_mask[bounds[j]:bounds[j + 1]].any()]
    return np.logical_or.reduce(dask.compute(*parts), axis=0) if parts else np.zeros(int(X.shape[1]), bool)


def _columns(block, mask, n):
    out = np.zeros(n, bool)
    out[sp.csr_matrix(block)[np.flatnonzero(mask)].indices] = True
    return out


# ---------------------------------------------------------------- the new blocks

def _blocks_of(X):
    """``(bounds, Delayed blocks)`` of a row-chunked dask array (the order
    :func:`_overlapping` takes)."""
    blocks, bounds = row_blocks(X)
    return bounds, blocks


def _overlapping(blocks, lo, hi):
    """``(first row, blocks)``: the blocks covering rows ``lo..hi`` (none when empty)."""
    bounds, items = blocks
    if hi <= lo:
        return 0, []
    first = int(np.searchsorted(bounds, lo, side="right")) - 1
    last = int(np.searchsorted(bounds, hi, side="left"))
    return int(bounds[first]), items[first:last]


def _stack_columns(columns, *blocks):
    """The shared others x entities matrix restricted to the entities ``columns`` (sorted)."""
    return kernels.compact_stack([sp.csr_matrix(b)[:, columns] for b in blocks])


def _refresh_block(Q, norms, touched, lo, hi, chunk0, settings, k, whole_rows, dense_fraction, affected,
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
            idx[pat], sim[pat], ok = _patch_lists(idx[pat], sim[pat], columns, values, k)
            lost = pat[~ok]
            if len(lost):  # a neighbour left the list and its successor is unknown
                again = len(lost)
                _, idx[lost], sim[lost] = compute(lost)
    return idx, sim, (row_block_format(rows, dense_fraction) if whole_rows else None), again


def _patch_lists(idx, sim, columns, values, k, cells=1 << 22):
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
