"""The rating matrix of a refresh: the old ratings and the new batch merged, from the
old CSR blocks by codes where the ids allow (:func:`merged_matrix`), else through frames
of raw ids (:func:`old_parts`)."""

from __future__ import annotations

import dask
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .. import kernels
from ..blocks import outputs, stack_rows
from ..errors import DataError
from ..fitted import single
from ..fitting import matrix_layout
from ..ids import IdMap
from ..matrix import build_block, from_user_blocks, layout
from .rows import blocks_of, overlapping

__all__ = ["old_values", "summed_events", "merged_matrix", "old_parts"]


def old_values(old, batch: pd.DataFrame):
    """Per batch row: ``(present, value)``, whether the old model holds the row's pair and
    with which rating (one lookup in the user blocks the batch touches)."""
    u = old.users.to_codes(batch["user"].to_numpy())
    i = old.items.to_codes(batch["item"].to_numpy())
    present, value = np.zeros(len(batch), bool), np.zeros(len(batch))
    known = np.flatnonzero((u >= 0) & (i >= 0))
    if len(known) == 0:
        return present, value
    ub, user_blocks = blocks_of(old.by_user)
    blk = np.searchsorted(ub, u[known], side="right") - 1
    look = dask.delayed(_lookup, pure=True)
    wanted = {b: known[blk == b] for b in np.unique(blk).tolist()}
    found = dask.compute({b: look(user_blocks[b], u[rows] - ub[b], i[rows],
                                  dask_key_name=f"refresh-lookup-{dask.base.tokenize(user_blocks[b], u[rows], i[rows])}")
                          for b, rows in wanted.items()})[0]
    for b, rows in wanted.items():
        present[rows], value[rows] = found[b]
    return present, value


def summed_events(batch: pd.DataFrame, present, value, source="refresh") -> pd.DataFrame:
    """Implicit feedback: the batch's events as one row per (user, item) pair, its rating
    the pair's new total: the old weight (``value`` where ``present``) plus each new
    event's, added in line order as a fit on the old and new events together adds them
    (:func:`dcf.kernels.csr_from_events`); its line the pair's first in the batch."""
    if not len(batch):
        return batch
    pair = pd.factorize(pd.MultiIndex.from_arrays([batch["user"], batch["item"]]))[0]
    n = int(pair.max()) + 1
    lines = batch["line"].to_numpy(np.int64)
    start = np.zeros(n)
    has_old = np.zeros(n, bool)
    has_old[pair[present]] = True
    start[pair[present]] = value[present]
    olds = np.flatnonzero(has_old)  # the old total comes first, as if read before every new line
    rows = np.concatenate([olds, pair])
    vals = np.concatenate([start[olds], batch["rating"].to_numpy(np.float64)])
    at = np.concatenate([np.full(len(olds), lines.min() - 1 if len(lines) else 0), lines])
    totals, _ = kernels.csr_from_events(rows, np.zeros(len(rows), np.int64), vals, (n, 1), at)
    first = np.full(n, len(batch))
    np.minimum.at(first, pair, np.arange(len(batch)))
    out = batch.iloc[first].reset_index(drop=True).copy()
    out["rating"] = totals.toarray().ravel()
    if not np.isfinite(out["rating"]).all():
        at = int(np.flatnonzero(~np.isfinite(out["rating"].to_numpy()))[0])
        user, item = (v.item() if isinstance(v, np.generic) else v for v in (out["user"].iloc[at], out["item"].iloc[at]))
        raise DataError(source, f"the weights of user {user!r} item {item!r} (old total and new events) add up "
                        "past the largest number a double holds", int(out["line"].iloc[at]))
    out["line"] = lines[first]
    return out


def merged_matrix(model, old, batch: pd.DataFrame, present, report, source):
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
    ub, ib = layout(len(users), len(items), int(held) - len(again) + len(batch), **matrix_layout(model))
    token = dask.base.tokenize(old.by_user, batch, ub, ib, model.on_bad_lines)
    o_bounds, o_blocks = blocks_of(old.by_user)
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
        first, pieces = overlapping((o_bounds, o_blocks), int(have.min()), int(have.max()) + 1) \
            if len(have) else (0, [])
        sel = np.flatnonzero(blk == b)
        mine = again[(again >= lo * len(items)) & (again < hi * len(items))]
        block = ((hi - lo, len(items)), lo, u_key, i_key, source, model.on_bad_lines)
        blk_csr, rep = outputs(merge(block, olds, first, shared_items, mine - lo * len(items),
                                     (u[sel] - lo, i[sel], r[sel], lines[sel]), *pieces,
                                     dask_key_name=f"refresh-matrix-block-{token}-{b}"),
                               2, ("matrix-user-csr", "matrix-user-report"))
        blocks.append(blk_csr)
        reports.append(rep)
    return from_user_blocks(users, items, blocks, ub, ib, reports, source, token)


def _merge_block(block, old_rows, first, item_of_old, drop, batch, *old_blocks):
    """One user block of the merged matrix: the old rows, their items renumbered and the
    re-rated pairs dropped, and the batch's ratings, built as :func:`dcf.matrix.build_matrix`
    builds a block (the batch's duplicates and conflicts counted or raised alike).
    ``block``: :func:`dcf.matrix.build_block`'s ``(shape, row0, users, items, source,
    on_bad_lines)``."""
    shape = block[0]
    have = np.flatnonzero(old_rows >= 0)
    pieces = [batch]
    if len(have) and old_blocks:
        sub = stack_rows(*[sp.csr_matrix(b) for b in old_blocks])[old_rows[have] - first].tocoo()
        rows = have[sub.row].astype(np.int64)
        cols = item_of_old[sub.col]
        keep = ~np.isin(rows * shape[1] + cols, drop)
        pieces.insert(0, (rows[keep], cols[keep], sub.data[keep], np.zeros(int(keep.sum()), np.int64)))
    return build_block(*block, *pieces)


def _lookup(block, rows, cols):
    """``(present, value)`` of the CSR ``block`` at the given cells."""
    block = sp.csr_matrix(block)
    keys = np.repeat(np.arange(block.shape[0], dtype=np.int64), np.diff(block.indptr)) * block.shape[1] \
        + block.indices.astype(np.int64)  # ascending: rows in order, sorted indices
    want = rows.astype(np.int64) * block.shape[1] + cols.astype(np.int64)
    pos = np.minimum(np.searchsorted(keys, want), max(len(keys) - 1, 0))
    present = (keys[pos] == want) if len(keys) else np.zeros(len(want), bool)
    return present, np.where(present, block.data[pos] if len(keys) else 0.0, 0.0)


def old_parts(old, batch: pd.DataFrame):
    """The old ratings as frame parts (one per user block), without the pairs the batch
    rates again: those take the batch's value."""
    u = old.users.to_codes(batch["user"].to_numpy())
    i = old.items.to_codes(batch["item"].to_numpy())
    ok = (u >= 0) & (i >= 0)
    ub, user_blocks = blocks_of(old.by_user)
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
