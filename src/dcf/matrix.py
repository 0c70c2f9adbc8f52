"""Ratings frame parts -> the chunked sparse user x item matrix, persisted.

The matrix is held twice, as two ``dask.array`` collections of scipy CSR
chunks (the chunk type that measured correct and fast, see STACK.md):

* ``by_user``: users x items in user-row blocks (what prediction reads);
* ``by_item``: items x users in item-row blocks (what item similarity reads).

Duplicate (user, item) ratings meet in one block: exact duplicates (same
rating) are dropped and counted; different ratings for the same pair are an
error naming both lines, or with ``on_bad_lines="skip"`` the later ones are
dropped and counted (the earliest line wins).  Implicit feedback
(``feedback="implicit"``) sums each pair's events instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import dask
import dask.array as da
import numpy as np
import pandas as pd
import scipy.sparse as sp

from . import kernels
from .blocks import CSR_META, concat_rows, outputs, row_stats, transpose_blocks
from .decay import decayed_weights, merge_spans, reference_time, time_span
from .errors import DataError, conflicting_ratings, lines_of
from .ids import IdMap, ids_of

__all__ = ["RatingMatrix", "build_matrix", "from_array", "from_user_blocks", "block_bounds", "layout",
           "build_block", "merge_counts", "to_pydata_sparse"]

@dataclass
class RatingMatrix:
    """The training ratings, id maps and per-row statistics.

    Attributes
    ----------
    users, items : IdMap
    by_user : dask.array.Array, shape (n_users, n_items), CSR chunks
    by_item : dask.array.Array, shape (n_items, n_users), CSR chunks
    user_sum, user_count, item_sum, item_count : dask.array.Array (float64 / int64)
    report : dask.delayed.Delayed -> dict of cleaning counts
    source : str, where the ratings came from (for messages)
    decay : dcf.decay.Decay or None
        The time decay the values were decayed with, its reference time resolved
        (seconds since the epoch; ``reference_time`` for short).
    undecayed : RatingMatrix or None
        The same events without decay, where a measure compares the undecayed values.
    """

    users: IdMap
    items: IdMap
    by_user: da.Array
    by_item: da.Array
    user_sum: da.Array
    user_count: da.Array
    item_sum: da.Array
    item_count: da.Array
    report: object = field(repr=False)
    source: str = ""
    decay: object = None  # the Decay the values were decayed with (its reference resolved), or None
    undecayed: "RatingMatrix | None" = field(default=None, repr=False)  # the same events, not decayed

    @property
    def reference_time(self) -> float | None:
        """The decay's reference time, seconds since the epoch (None: not decayed)."""
        return None if self.decay is None else self.decay.reference

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.users), len(self.items)

    def oriented(self, based: str):
        """``(P, Q, entity_sum, entity_count)``: P = entities x others (what
        similarity compares), Q = others x entities (what a pair's neighbours
        are read from); entities are items for ``based="item"``."""
        if based == "item":
            return self.by_item, self.by_user, self.item_sum, self.item_count
        return self.by_user, self.by_item, self.user_sum, self.user_count

    def means(self, of: str = "user") -> da.Array:
        """Mean rating of every user (``of="user"``) or item, float64 (0 if none)."""
        s, c = (self.user_sum, self.user_count) if of == "user" else (self.item_sum, self.item_count)
        return s / da.maximum(c, 1)

    def norms(self, of: str = "user") -> da.Array:
        """Euclidean norm of every user's (or item's) rating vector, float64."""
        X = self.by_user if of == "user" else self.by_item
        return X.map_blocks(kernels.row_norms, drop_axis=1, dtype=np.float64, meta=np.zeros(0),
                            name=f"row-norms-{dask.base.tokenize(X)}")

    def persist(self) -> "RatingMatrix":
        """Persist blocks and statistics in the cluster's (or local) memory.

        Without graph optimisation: the arrays and the report share the block builds, and
        the arrays' optimiser fused each build into its CSR output under a new key while
        the report still named the build, so every block was built twice (a 20M-rating
        matrix: 9 s of 35 s of task time).  The undecayed twin, if any, in the same call
        (one read of the parts)."""
        both = [self] + ([self.undecayed] if self.undecayed is not None else [])
        done = dask.persist(*[x for m in both for x in (m.by_user, m.by_item, m.user_sum, m.user_count, m.item_sum,
                                                        m.item_count, m.report)], optimize_graph=False)
        for j, m in enumerate(both):
            (m.by_user, m.by_item, m.user_sum, m.user_count, m.item_sum, m.item_count, m.report) = done[7 * j:7 * j + 7]
        return self


def block_bounds(n: int, size: int) -> np.ndarray:
    """Start offsets of blocks of ``size`` rows covering ``n``: ``[0, size, ..., n]``."""
    size = max(1, int(size))
    return np.unique(np.append(np.arange(0, max(n, 1), size), n)).astype(np.int64)


BLOCK_RATINGS = 1_000_000  # ratings a block holds at most by default


def default_row_block(n_rows: int, nnz: int, min_blocks: int = 4) -> int:
    """Rows per block: at most about :data:`BLOCK_RATINGS` ratings a block, and blocks
    in a multiple of ``min_blocks`` (the caller passes the cluster's threads, so that
    every round of tasks keeps every thread busy).

    At 250k ratings a block the 20M file's matrix had 72 x 72 transpose pieces and its
    stage took 12.3 s, 3.7 s at 1M (benchmarks/RESULTS.md, issue 21 step 8)."""
    min_blocks = max(1, int(min_blocks))
    blocks = min_blocks * math.ceil(math.ceil(nnz / BLOCK_RATINGS) / min_blocks)
    return max(1, math.ceil(n_rows / min(blocks, max(n_rows, 1))))


def build_matrix(parts, *, source="ratings", on_bad_lines="error", report=None, feedback="explicit", decay=None,
                 **blocking) -> RatingMatrix:
    """Build the persisted-ready rating matrix from frame parts.

    Parameters
    ----------
    parts : list of dask.delayed.Delayed
        pandas DataFrames with ``user``, ``item``, ``rating``, ``line`` columns
        (as :func:`dcf.io.read_ratings` yields them).
    source : str
        Name of the data source, for error messages.
    on_bad_lines : {"error", "skip"}
        What a conflicting duplicate rating does.
    feedback : {"explicit", "implicit"}
        ``implicit``: the ratings are events whose weights each (user, item) pair sums
        (never a conflict); the report counts ``events`` and ``pairs``.
    decay : dcf.decay.Decay, optional
        Implicit feedback only: each event's weight decayed by its age
        (:func:`dcf.decay.decayed_weights`) before its pair sums it; the parts need a
        ``time`` on every row, and the reference time (the latest unless ``decay`` gives
        one) is found with the ids.
    report : Delayed dict, optional
        The reader's report, merged into the matrix report.
    **blocking
        How the matrix is cut, the keywords of :func:`layout`:
    row_block, col_block : int, optional
        Users per user block and items per item block.
    min_blocks : int
        With no explicit block size, cut the users into at least this many
        blocks, and the items into at least ``sqrt(2 * min_blocks) + 1``: item
        blocks pair up into similarity tiles (b(b+1)/2 of them) and into the
        prediction grid (item blocks x user blocks), so they grow more slowly.
        More blocks mean more parallel tasks, never other results.
    based, entity_block_limit : str, callable ``n -> int``, optional
        Caps the default block of the entities (items for ``based="item"``)
        so that similarity tasks fit in worker memory; called as
        ``entity_block_limit(n_entities, n_others, nnz)``
        (:func:`dcf.similarity.block_limit`); an explicit block size is kept.

    Returns
    -------
    RatingMatrix
        Id maps are computed now (one pass over the ids); blocks are lazy.
    """
    uniq = dask.delayed(_uniques, pure=True)
    merge = dask.delayed(_merge_uniques, pure=True)
    timed = source if decay is not None else None
    token = dask.base.tokenize(parts, timed)
    pieces = [uniq(p, timed, dask_key_name=f"matrix-ids-{token}-{j}") for j, p in enumerate(parts)]
    level = 0
    while len(pieces) > 1:  # tree merge of distinct ids
        pieces = [merge(*pieces[i:i + 8], dask_key_name=f"matrix-ids-merge-{token}-{level}-{i}")
                  for i in range(0, len(pieces), 8)]
        level += 1
    if not pieces:
        raise DataError(source, "no ratings")
    u_raw, i_raw, nnz, *span = dask.compute(pieces[0])[0]
    reference = None if decay is None else reference_time(decay, span[0], source)
    if nnz == 0:
        raise DataError(source, "no ratings left after cleaning (empty file, header only, or "
                        "every line dropped)")
    users, items = IdMap(u_raw), IdMap(i_raw)
    n_users, n_items = len(users), len(items)
    ub, ib = layout(n_users, n_items, nnz, **blocking)
    token = dask.base.tokenize(parts, ub, ib, on_bad_lines, feedback, decay, reference)
    split = dask.delayed(_split_part, pure=True)
    u_key, i_key = users.as_delayed(), items.as_delayed()
    timing = None if decay is None else (decay, reference, source)
    per_part = [split(p, u_key, i_key, ub, timing, dask_key_name=f"matrix-route-{token}-{j}")
                for j, p in enumerate(parts)]
    per_part = ([[pp] for pp in per_part] if len(ub) == 2 else
                [outputs(pp, len(ub) - 1, "matrix-route-part") for pp in per_part])
    build = dask.delayed(build_block, pure=True)
    blocks, reports = [], [] if report is None else [report]
    for b in range(len(ub) - 1):
        shape = (int(ub[b + 1] - ub[b]), n_items)
        # pieces as varargs, not a list: a list of Delayed makes dask optimise and cull the
        # whole graph once per call (O(layers x keys); 40 s of graph building at 20M ratings)
        blk, rep = outputs(build(shape, int(ub[b]), u_key, i_key, source, on_bad_lines,
                                 *[pp[b] for pp in per_part], feedback=feedback,
                                 dask_key_name=f"matrix-user-block-{token}-{b}"),
                           2, ("matrix-user-csr", "matrix-user-report"))
        blocks.append(blk)
        reports.append(rep)
    matrix = from_user_blocks(users, items, blocks, ub, ib, reports, source, token)
    matrix.decay = None if decay is None else replace(decay, reference=reference)
    return matrix


def from_user_blocks(users: IdMap, items: IdMap, blocks, ub, ib, reports, source: str,
                     token: str) -> RatingMatrix:
    """The one way a :class:`RatingMatrix` is assembled (fit, refresh, load, arrays).

    Parameters
    ----------
    users, items : IdMap
    blocks : list of dask.delayed.Delayed
        The user-row CSR blocks, rows ``ub[b]:ub[b + 1]``, all items as columns.
    ub, ib : arrays of int
        User and item block bounds (the item-row blocks are the transpose's).
    reports : list
        Cleaning counts (dicts or Delayed dicts), merged into the matrix's report.
    source : str
    token : str
        Names the transpose's tasks.
    """
    by_user = concat_rows(blocks, ub, len(items), "matrix-user-rows")
    by_item = transpose_blocks(blocks, ub, ib, len(users), token)
    us, uc = row_stats(by_user)
    is_, ic = row_stats(by_item)
    report = dask.delayed(merge_counts, pure=True)(*reports, dask_key_name=f"matrix-report-{token}")
    return RatingMatrix(users, items, by_user, by_item, us, uc, is_, ic, report, source)


def layout(n_users, n_items, nnz, *, row_block=None, col_block=None, min_blocks=4, based="item",
           entity_block_limit=None):
    """``(user block bounds, item block bounds)`` of a matrix of ``nnz`` rating rows, as
    :func:`build_matrix` cuts it (its parameters)."""
    row_default = default_row_block(n_users, nnz, min_blocks)
    col_default = default_row_block(n_items, nnz, max(4, int(math.sqrt(2 * min_blocks)) + 1))
    if entity_block_limit is not None:
        if based == "item":
            col_default = min(col_default, entity_block_limit(n_items, n_users, nnz))
        else:
            row_default = min(row_default, entity_block_limit(n_users, n_items, nnz))
    return block_bounds(n_users, row_block or row_default), block_bounds(n_items, col_block or col_default)


def _uniques(frame: pd.DataFrame, timed=None):
    """A part's distinct ids and rows; with ``timed`` (the source's name), its time span too."""
    out = pd.unique(ids_of(frame["user"])), pd.unique(ids_of(frame["item"])), len(frame)
    return out if timed is None else (*out, time_span(frame, timed))


def _merge_uniques(*pieces):
    def merged(arrays):
        if all(a.dtype.kind in "iu" for a in arrays):
            return pd.unique(np.concatenate(arrays))
        return pd.unique(np.concatenate([a.astype(object) for a in arrays]))
    out = (merged([p[0] for p in pieces]), merged([p[1] for p in pieces]), sum(p[2] for p in pieces))
    return out if len(pieces[0]) == 3 else (*out, merge_spans(*[p[3] for p in pieces]))


def _split_part(frame: pd.DataFrame, users: IdMap, items: IdMap, bounds: np.ndarray, timing=None):
    """Route one frame part's ratings to user blocks (local rows); with ``timing``
    (``(decay, reference, source)``), each weight decayed by its event's age."""
    u = users.to_codes(ids_of(frame["user"]))
    i = items.to_codes(ids_of(frame["item"]))
    r = frame["rating"].to_numpy(np.float64)
    ln = frame["line"].to_numpy(np.int64)
    if timing is not None:
        decay, reference, source = timing
        r = decayed_weights(r, frame["time"].to_numpy(np.float64), ln, decay, reference, source)
    blk = np.searchsorted(bounds, u, side="right") - 1
    order = np.argsort(blk, kind="stable")
    cuts = np.searchsorted(blk[order], np.arange(len(bounds)))
    out = []
    for b in range(len(bounds) - 1):
        sel = order[cuts[b]:cuts[b + 1]]
        out.append((u[sel] - bounds[b], i[sel], r[sel], ln[sel]))
    return out if len(out) > 1 else out[0]


def build_block(shape, row0, users, items, source, on_bad_lines, *pieces, feedback="explicit"):
    """One user-row CSR block from its routed pieces, and its cleaning counts: explicit
    ratings (exact duplicates dropped, conflicts raised or counted) or implicit events
    (each pair's weights summed: ``events`` read, ``pairs`` kept)."""
    rows, cols, vals, lines = (np.concatenate([p[j] for p in pieces]) if pieces else np.zeros(0)
                               for j in range(4))
    if feedback == "implicit":
        csr, events = kernels.csr_from_events(rows, cols, vals, shape, lines)
        if not np.isfinite(csr.data).all():  # finite weights whose sum is not
            at = int(np.flatnonzero(~np.isfinite(csr.data))[0])
            row = int(np.searchsorted(csr.indptr, at, side="right") - 1)
            col = int(csr.indices[at])
            mine = lines[(rows == row) & (cols == col)]
            first, last = int(mine.min()), int(mine.max())
            raise DataError(source, f"the weights of user {_raw(users, row + row0)!r} item {_raw(items, col)!r} "
                            f"({lines_of(source, first, last)}, {len(mine):,} events) add up past the largest "
                            "number a double holds", last)
        zero = int((csr.data == 0).sum())  # positive weights whose decay underflowed: counted, kept as seen
        return csr, {"duplicates": 0, "conflicts": 0, "stored": int(csr.nnz), "events": events,
                     "pairs": int(csr.nnz), **({"pairs_decayed_to_zero": zero} if zero else {})}
    csr, dups, conflicts = kernels.csr_from_triplets(rows, cols, vals, shape, lines)
    if len(conflicts) and on_bad_lines == "error":
        row, col, first, other, value = conflicts[np.argmin(conflicts[:, 3])]
        kept = csr[int(row), int(col)]
        raise conflicting_ratings(source, _raw(users, int(row) + row0), _raw(items, int(col)), kept, first, value,
                                  other)
    return csr, {"duplicates": dups, "conflicts": int(len(conflicts)),
                 "stored": int(csr.nnz)}


def _raw(ids: IdMap, code: int):
    """One raw id as a plain Python value (for messages: ``1``, not ``np.int64(1)``)."""
    value = ids.to_raw([code])[0]
    return value.item() if isinstance(value, np.generic) else value


def merge_counts(*reports):
    out: dict = {}
    for r in reports:
        for key, value in r.items():
            if key == "examples":
                out[key] = (out.get(key, []) + list(value))[:5]
            else:
                out[key] = out.get(key, 0) + value
    return out


def from_array(X: da.Array, *, row_block=None, col_block=None, source="array") -> RatingMatrix:
    """A rating matrix from a users x items dask array (0 = not rated).

    Chunks may be scipy sparse, pydata ``sparse`` (COO, GCXS) or dense NumPy;
    they are converted to CSR at this boundary.  Users and items get the ids
    ``0..n-1``.  Negative or non-finite stored values raise
    :class:`~dcf.errors.DataError` naming the row and column.
    """
    n_users, n_items = (int(d) for d in X.shape)
    nnz_guess = max(1, n_users * n_items // 20)
    ub = block_bounds(n_users, row_block or default_row_block(n_users, nnz_guess))
    ib = block_bounds(n_items, col_block or default_row_block(n_items, nnz_guess))
    X = X.map_blocks(_chunk_to_csr, dtype=np.float64, meta=CSR_META)
    X = X.rechunk((tuple(np.diff(ub).tolist()), (n_items,)))
    token = dask.base.tokenize(X, ub, ib)
    check = dask.delayed(_checked_block, pure=True)
    blocks, reports = [], []
    for b, blk in enumerate(X.to_delayed(optimize_graph=False).ravel().tolist()):
        csr, rep = outputs(check(blk, int(ub[b]), source, dask_key_name=f"matrix-user-block-{token}-{b}"),
                           2, ("matrix-user-csr", "matrix-user-report"))
        blocks.append(csr)
        reports.append(rep)
    return from_user_blocks(IdMap(np.arange(n_users)), IdMap(np.arange(n_items)), blocks, ub, ib,
                            reports, source, token)


def _chunk_to_csr(chunk):
    if sp.issparse(chunk):
        return sp.csr_matrix(chunk, dtype=np.float64)
    if hasattr(chunk, "to_scipy_sparse"):  # pydata sparse
        return sp.csr_matrix(chunk.to_scipy_sparse(), dtype=np.float64)
    return sp.csr_matrix(np.asarray(chunk, dtype=np.float64))


def _checked_block(block, row0, source):
    block = sp.csr_matrix(block, dtype=np.float64)
    block.eliminate_zeros()
    block.sort_indices()
    bad = ~np.isfinite(block.data) | (block.data < 0)
    if bad.any():
        e = int(np.flatnonzero(bad)[0])
        row = int(np.searchsorted(block.indptr, e, side="right") - 1)
        raise DataError(source, f"rating {block.data[e]!r} at row {row0 + row}, column "
                        f"{int(block.indices[e])} must be a positive finite number")
    return block, {"lines": int(block.nnz), "rows": int(block.nnz), "stored": int(block.nnz),
                   "duplicates": 0, "conflicts": 0}


def to_pydata_sparse(X: da.Array) -> da.Array:
    """The same matrix with pydata ``sparse.COO`` chunks (for export)."""
    import sparse

    return X.map_blocks(lambda b: sparse.COO.from_scipy_sparse(b), dtype=X.dtype,
                        meta=sparse.COO.from_numpy(np.zeros((0, 0))))
