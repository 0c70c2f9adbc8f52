"""Refresh a fitted model with new ratings: what changed, which similarity rows that
reaches, and the new neighbour table (:func:`refresh`)."""

from __future__ import annotations

import copy

import dask
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .. import kernels
from ..blocks import concat_rows, outputs
from ..cluster import everywhere, memory_budget, parallelism
from ..errors import ConfigError
from ..fitted import ROW_TASKS_PER_THREAD, as_parts, baseline_biases, centred_ratings, fitted_state, needs_biases
from ..fitting import matrix_from_parts
from ..neighbours import table_from_blocks
from ..similarity import DENSE_FRACTION, balanced_cuts, entity_norms, entity_stats, shared_matrix, whole_row_cuts
from ..similarity import method as similarity_method
from .ratings import merged_matrix, old_parts, old_values, summed_events
from .rows import BlockRows, TableSpec, blocks_of, overlapping, refresh_block, stack_columns

__all__ = ["refresh"]


def refresh(model, ratings):
    """The model ``fit`` would give on ``model``'s ratings merged with ``ratings``.

    See :meth:`dcf.model.KNN.refresh`.
    """
    model.check_fitted()
    model.check_params()
    if model.decay() is not None:
        raise ConfigError("a time-decayed model (half_life) is refitted, not refreshed: new events move the "
                          "reference time and so every event's weight; fit on all the events again")
    parts, batch_report, source = as_parts(ratings, model.on_bad_lines, feedback=model.feedback)
    frames = dask.compute(*parts)
    batch = (pd.concat(frames, ignore_index=True) if frames
             else pd.DataFrame({"user": [], "item": [], "rating": [], "line": []}))
    old = model.matrix_
    present, value = old_values(old, batch)
    events = len(batch)
    if model.feedback == "implicit":  # new events add to a pair's weight: one row a pair, its new total
        batch = summed_events(batch, present, value, source)
        present, value = old_values(old, batch)
    changed = ~present | (value != batch["rating"].to_numpy(np.float64))  # else a repeat
    matrix = merged_matrix(model, old, batch, present, batch_report, source)
    if matrix is None:  # ids of mixed kinds: the general path, through frames of raw ids
        matrix = matrix_from_parts(model, old_parts(old, batch) + [dask.delayed(batch, pure=True,
                                                                     name=f"refresh-batch-{dask.base.tokenize(batch)}")],
                              batch_report, source)
    matrix = matrix.persist()
    n_ent = len(matrix.items if model.based == "item" else matrix.users)
    report = {"ratings": int(events), "changed": int(changed.sum()),
              "new_users": len(matrix.users) - len(old.users),
              "new_items": len(matrix.items) - len(old.items),
              "entities": n_ent, "recomputed": n_ent, "recomputed_share": 1.0,
              "patched": 0, "full_refit": True, "why": None}
    P, Q = matrix.oriented(model.based)[:2]
    raw_p, raw_q = P, Q
    ((lo, hi, total, count), work) = dask.compute(entity_stats(raw_q))[0]
    why = None
    settings = model.similarity_settings()
    others_joined = report["new_users"] if model.based == "item" else report["new_items"]
    if settings.spec.needs_biases:
        why = f"{model.similarity} reads the baseline biases, which every new rating moves"
    elif settings.spec.asymmetric:
        why = f"{model.similarity} is not symmetric: a changed entity's column is not its row"
    elif settings.spec.reads_all:
        why = (f"{model.similarity} weighs every rating by totals over all {'items' if model.based == 'item' else 'users'}, "
               "which every new rating moves")
    elif settings.spec.reads_others and others_joined:
        why = (f"{model.similarity} reads the number of {'users' if model.based == 'item' else 'items'}, "
               f"which the {others_joined:,} new ones changed for every pair")
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
    chunk_bounds, p_blocks = blocks_of(P)
    q_blocks = blocks_of(Q)[1]
    groups = ROW_TASKS_PER_THREAD * parallelism()
    bounds = (whole_row_cuts(work, None, groups, memory_budget(), dense=True) if whole_rows else  # held dense
              balanced_cuts(np.where(affected, work, 0.0), groups))
    k = int(model.neighbours_.k)
    token = dask.base.tokenize(model.token_, matrix.by_user, model.get_params(), "refresh", bounds, k)
    pack = settings.fast_topk(whole_rows, k)
    others = everywhere(shared_matrix(Q, pack))
    shared_map = dask.delayed(new_of_old, pure=True, name=f"refresh-renumbering-{dask.base.tokenize(new_of_old)}")
    columns = None
    if patch.any():  # the ratings of the touched entities only: what their columns need
        columns = everywhere(dask.delayed(stack_columns, pure=True)(
            touched, *q_blocks, dask_key_name=f"refresh-touched-{token}"))
    old_tab = blocks_of(model.neighbours_.idx), blocks_of(model.neighbours_.sim)
    old_rows = blocks_of(model.similarity_rows_) if whole_rows else None
    task = dask.delayed(refresh_block, pure=True)
    spec = TableSpec(settings, k, whole_rows, DENSE_FRACTION, n_ent, touched)
    blocks = []
    for a in range(len(bounds) - 1):
        b_lo, b_hi = int(bounds[a]), int(bounds[a + 1])
        aff, pat = affected[b_lo:b_hi], patch[b_lo:b_hi]
        p0, p_here = overlapping((chunk_bounds, p_blocks), b_lo, b_hi)
        kept = old_of_new[b_lo:b_hi][~aff]  # rows copied: their old rows' range
        o_lo, o_hi = (int(kept.min()), int(kept.max()) + 1) if len(kept) else (0, 0)
        tab0, idx_here = overlapping(old_tab[0], o_lo, o_hi)
        rows0, rows_here = overlapping(old_rows, o_lo, o_hi) if whole_rows else (0, [])
        work_here = aff.any() or pat.any()
        inputs = (p_here if work_here else [], idx_here, overlapping(old_tab[1], o_lo, o_hi)[1], rows_here)
        block = BlockRows(b_lo, b_hi, p0, aff, pat, old_of_new[b_lo:b_hi], tab0, rows0,
                          tuple(len(x) for x in inputs))
        blocks.append(task(others if work_here else None, norms if work_here else None,
                           columns if pat.any() else None, shared_map, spec, block,
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


# ---------------------------------------------------------------- which rows

def _mask(codes, n):
    out = np.zeros(n, bool)
    out[codes[codes >= 0]] = True
    return out


def _reach(X, rows_mask):
    """Columns of ``X`` (CSR row blocks) with a stored entry in a row of ``rows_mask``."""
    bounds, blocks = blocks_of(X)
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
