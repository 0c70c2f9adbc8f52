"""Per-block math: plain NumPy/SciPy on one block, knowing nothing of Dask.

Stage modules (:mod:`dcf.matrix`, :mod:`dcf.similarity`, :mod:`dcf.neighbours`,
:mod:`dcf.predict`) wrap these functions into task graphs.  Every function is
tested directly against a dense NumPy reference (``tests/reference.py``).

Orientation: similarity is computed between the *rows* of a CSR matrix ``P``
("entities": items for item-based CF, users for user-based) over its columns
(the "others").  Ratings are positive, so a stored entry means "rated".
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
import scipy.sparse as sp
from llvmlite import ir
from llvmlite.binding import llvm_version_info
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = [
    "MEASURES", "INPUTS", "csr_from_triplets", "similarity_tile", "similarity_rows", "row_norms",
    "needs_norms", "entity_totals", "column_totals", "entity_rows", "rater_costs",
    "CompactCSR", "compact_csr", "compact_stack", "compact_part", "compact_join", "unpacked", "fast_topk",
    "top_columns", "topk_rows",
    "merge_topk", "neighbour_matrix", "score_pairs", "top_n", "recommend_rows",
]

MEASURES = ("cosine", "full-cosine", "pearson-baseline", "pearson", "adjusted-cosine", "centred-cosine",
            "jaccard")
# how the kernels compute each measure: the numerator over co-raters and the denominator
CO_RATED, NORMS, PEARSON, JACCARD = 0, 1, 2, 3
_MODES = {"cosine": CO_RATED, "full-cosine": NORMS, "pearson-baseline": CO_RATED, "pearson": PEARSON,
          "adjusted-cosine": CO_RATED, "centred-cosine": NORMS, "jaccard": JACCARD}
# what the values passed to the kernels must already be (the caller transforms the ratings)
INPUTS = {"cosine": "ratings", "full-cosine": "ratings", "pearson": "ratings",
          "pearson-baseline": "baseline residuals", "adjusted-cosine": "ratings minus the other side's means",
          "centred-cosine": "ratings minus the entity's mean", "jaccard": "ratings (values ignored)"}


def _measure(measure, min_support, shrinkage):
    """``(mode, min_support, shrink_offset)`` of a measure.  ``pearson-baseline`` is the
    co-rated cosine of baseline residuals (the caller passes residuals, see
    :func:`dcf.baseline.residuals`), with at least 2 co-raters and shrinkage
    :math:`(n - 1) / (n - 1 + \\lambda)`, as scikit-surprise defines it."""
    if measure not in MEASURES:
        raise ValueError(f"unknown similarity {measure!r}; choose from {', '.join(MEASURES)}")
    if measure == "pearson-baseline":
        return CO_RATED, max(int(min_support), 2), 1.0
    return _MODES[measure], max(int(min_support), 1), 0.0


def needs_norms(measure) -> bool:
    """The measure's denominator uses per-entity totals (:func:`entity_totals`)."""
    return _MODES[measure] in (NORMS, JACCARD)


def entity_totals(P, measure):
    """Per-row totals a measure divides by: Euclidean norms (``full-cosine``,
    ``centred-cosine``) or numbers of ratings (``jaccard``); None for the others."""
    mode = _MODES[measure]
    if mode == NORMS:
        return row_norms(P)
    if mode == JACCARD:
        return np.diff(sp.csr_matrix(P).indptr).astype(np.float64)
    return None


def csr_from_triplets(rows, cols, vals, shape, lines=None):
    """Build a CSR block, dropping exact duplicates and finding conflicts.

    Parameters
    ----------
    rows, cols : (n,) int
        Block-local row and column of each rating.
    vals : (n,) float64
    shape : (int, int)
    lines : (n,) int64, optional
        Source line of each rating; duplicates keep the earliest line.

    Returns
    -------
    csr : scipy.sparse.csr_matrix, float64, sorted indices, no duplicates
    duplicates : int
        Exact duplicates dropped (same row, column and value).
    conflicts : (m, 5) float64 array
        ``row, col, line_kept, line_other, value_other`` of every later rating
        of a pair whose value differs from the first one (not stored).
    """
    rows = np.asarray(rows, np.int64)
    cols = np.asarray(cols, np.int64)
    vals = np.asarray(vals, np.float64)
    lines = np.arange(len(rows), dtype=np.int64) if lines is None else np.asarray(lines, np.int64)
    order = np.lexsort((lines, cols, rows))
    rows, cols, vals, lines = rows[order], cols[order], vals[order], lines[order]
    same = np.zeros(len(rows), bool)
    same[1:] = (rows[1:] == rows[:-1]) & (cols[1:] == cols[:-1])
    first = np.maximum.accumulate(np.where(~same, np.arange(len(rows)), 0)) if len(rows) else same
    clash = same & (vals != vals[first])
    conflicts = np.column_stack([rows[clash], cols[clash], lines[first][clash], lines[clash],
                                 vals[clash]]).astype(np.float64)
    keep = ~same
    csr = sp.csr_matrix((vals[keep], (rows[keep], cols[keep])), shape=shape)
    csr.sort_indices()
    return csr, int((same & ~clash).sum()), conflicts


def similarity_tile(Pa, Pb, measure="cosine", min_support=1, shrinkage=0.0, diagonal=False,
                    significance=0.0, min_similarity=0.0):
    """Similarities between the rows of two CSR blocks, as a dense array.

    ``cosine`` is the paper's formula 1, norms over the co-rated set
    :math:`C(x, y)` (= scikit-surprise ``cosine``):

    .. math::
        s(x, y) = \\frac{\\sum_{c \\in C} r_{xc} r_{yc}}
                  {\\sqrt{\\sum_{c \\in C} r_{xc}^2 \\sum_{c \\in C} r_{yc}^2}}

    ``full-cosine`` uses the norms of the whole rows (sklearn's
    ``cosine_similarity``).  Pairs with fewer than ``max(min_support, 1)``
    co-raters get 0; ``shrinkage`` :math:`\\lambda > 0` multiplies by
    :math:`|C| / (|C| + \\lambda)`.  ``pearson-baseline`` is ``cosine`` over
    values that are already baseline residuals, with at least 2 co-raters and
    :math:`(|C| - 1) / (|C| - 1 + \\lambda)` (surprise's ``pearson_baseline``).

    ``pearson`` is surprise's ``pearson``: the correlation over the co-rated
    set, each side centred on its mean *over that set*.  ``adjusted-cosine``
    (Sarwar et al. 2001) is ``cosine`` over ratings minus the *other* side's
    means (user means for item-based CF), ``centred-cosine`` (LensKit's item
    kNN) is ``full-cosine`` over ratings minus the entity's own mean: for both,
    the caller passes the centred values (a centred value of 0 stays stored).
    ``jaccard`` is :math:`|C| / (|x| + |y| - |C|)` over who rated, values ignored.

    ``significance`` :math:`\\gamma > 0` (Herlocker et al. 1999) multiplies by
    :math:`\\min(|C|, \\gamma) / \\gamma`; ``min_similarity`` > 0 sets
    similarities below it to 0 (not a neighbour).

    Parameters
    ----------
    Pa : scipy.sparse.csr_matrix, shape (na, m)
    Pb : scipy.sparse.csr_matrix, shape (nb, m)
    diagonal : bool
        ``Pa`` and ``Pb`` are the same block: set ``s(x, x) = 1`` as surprise does.

    Returns
    -------
    numpy.ndarray, float64, shape (na, nb)

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> P = sp.csr_matrix([[5.0, 3.0, 0.0], [4.0, 0.0, 1.0]])
    >>> similarity_tile(P, P, diagonal=True).round(3).tolist()
    [[1.0, 1.0], [1.0, 1.0]]
    """
    mode, min_support, offset = _measure(measure, min_support, shrinkage)
    Ea, Eb = _binary(Pa), _binary(Pb)
    freq = (Ea @ Eb.T).toarray()
    if mode == JACCARD:
        Pa, Pb = Ea, Eb
    prods = (Pa @ Pb.T).toarray()
    if mode in (CO_RATED, PEARSON):
        sqi = (Pa.multiply(Pa).tocsr() @ Eb.T).toarray()
        sqj = (Ea @ Pb.multiply(Pb).tocsr().T).toarray()
    if mode == CO_RATED:
        den = np.sqrt(sqi * sqj)
    elif mode == PEARSON:
        si, sj = (Pa @ Eb.T).toarray(), (Ea @ Pb.T).toarray()
        prods = freq * prods - si * sj
        den = np.sqrt((freq * sqi - si ** 2) * (freq * sqj - sj ** 2))
    elif mode == NORMS:
        den = np.outer(row_norms(Pa), row_norms(Pb))
    else:
        ca = np.diff(Pa.indptr).astype(np.float64)
        cb = np.diff(Pb.indptr).astype(np.float64)
        den = (ca[:, None] + cb[None, :]) - prods
    sim = np.zeros_like(prods)
    ok = (freq >= min_support) & (den > 0)
    np.divide(prods, den, out=sim, where=ok)
    if shrinkage > 0:
        sim *= (freq - offset) / (freq - offset + float(shrinkage))
    if significance > 0:
        sim *= np.minimum(freq, float(significance)) / float(significance)
    if min_similarity > 0:
        sim[sim < min_similarity] = 0.0
    if diagonal:
        np.fill_diagonal(sim, 1.0)
    return sim


def row_norms(P):
    """Euclidean norm of every row of a CSR block (the ``full-cosine`` denominators).

    The squares are summed one after another in column order, the order in which
    :func:`column_totals` sums them from the shared matrix, so both give the same
    norms bit for bit (NumPy's pairwise sums would differ in the last bits)."""
    P = sp.csr_matrix(P)
    if not P.has_sorted_indices:
        P = P.sorted_indices()
    out = np.zeros(P.shape[0])
    _row_squares(P.indptr.astype(np.int64, copy=False), np.asarray(P.data, np.float64), out)
    return np.sqrt(out)


@numba.njit(cache=True, nogil=True)
def _row_squares(indptr, data, out):  # pragma: no cover - compiled
    for i in range(len(indptr) - 1):
        t = 0.0
        for e in range(indptr[i], indptr[i + 1]):
            t += data[e] * data[e]
        out[i] = t


def rater_costs(b, per_rating):
    """For each column of a CSR block (others x entities), the sum over its entries of
    their row's length plus ``per_rating``: an entity's products (and fetches) in the
    rows kernel, from one block.  Whole numbers, so exact in any order (the same as
    ``np.bincount`` weighted by the repeated row lengths, without the two temporaries)."""
    out = np.zeros(int(b.shape[1]))
    _rater_costs(b.indptr.astype(np.int64, copy=False), b.indices, float(per_rating), out)
    return out


@numba.njit(cache=True, nogil=True)
def _rater_costs(indptr, indices, per_rating, out):  # pragma: no cover - compiled
    for u in range(len(indptr) - 1):
        w = (indptr[u + 1] - indptr[u]) + per_rating
        for e in range(indptr[u], indptr[u + 1]):
            out[indices[e]] += w


def column_totals(Q, measure):
    """:func:`entity_totals` of every entity, from the matrix the similarity tasks share
    (others x entities, :class:`CompactCSR`) in one pass: the norms, summed over
    the others in ascending order as :func:`row_norms` sums a row of the
    transpose (so the same bits), or the numbers of ratings for ``jaccard``; None
    for measures that need neither."""
    mode = _MODES[measure]
    if mode not in (NORMS, JACCARD):
        return None
    if not isinstance(Q, CompactCSR):
        Q = compact_csr(sp.csr_matrix(Q).sorted_indices())
    n = int(Q.shape[1])
    packed = Q.packed is not None
    if mode == JACCARD:
        return np.bincount(Q.packed & 0xFFFF if packed else Q.indices, minlength=n).astype(np.float64)
    out = np.zeros(n)
    _column_squares(*_entries(Q), packed, out)
    return np.sqrt(out)


def _entries(Q):
    """``(columns, values, packed, table)`` of a :class:`CompactCSR` for the compiled
    loops that read either form (empty arrays stand for the form it does not have)."""
    if Q.packed is not None:
        return np.zeros(0, np.uint16), np.zeros(0), Q.packed, Q.table
    return Q.indices, Q.data, np.zeros(0, np.uint32), np.zeros(0)


@numba.njit(cache=True, nogil=True, inline="always")
def _entry(q_idx, q_val, q_packed, table, packed, q):  # pragma: no cover - compiled
    """``(column, value as float64)`` of entry ``q`` of either form."""
    if packed:
        x = q_packed[q]
        return np.int64(x & 0xFFFF), table[x >> 16]
    return np.int64(q_idx[q]), np.float64(q_val[q])


@numba.njit(cache=True, nogil=True)
def _column_squares(q_idx, q_val, q_packed, table, packed, out):  # pragma: no cover - compiled
    for q in range(len(q_packed) if packed else len(q_idx)):
        c, v = _entry(q_idx, q_val, q_packed, table, packed, q)
        out[c] += v * v


def entity_rows(Q, lo, hi):
    """Rows ``lo .. hi`` of the transpose of the shared matrix ``Q`` (others x
    entities, :class:`CompactCSR`): the entities' ratings by other, as the ``P``
    chunks hold them (CSR, others ascending, float64 values), cut from the matrix a
    task already has instead of gathered from the workers that hold the chunks.
    Two passes over ``Q``'s rows: count, then fill."""
    lo, hi = int(lo), int(hi)
    m = int(Q.shape[0])
    first = np.empty(m, np.int64)
    indptr = np.zeros(hi - lo + 1, np.int64)
    args = (Q.indptr, *_entries(Q), Q.packed is not None, lo, hi, first)
    _slice_count(*args, indptr)
    np.cumsum(indptr, out=indptr)
    indices = np.empty(int(indptr[-1]), np.int32)
    data = np.empty(int(indptr[-1]))
    _slice_fill(*args, indptr[:-1].copy(), indices, data)
    return sp.csr_matrix((data, indices, indptr), shape=(hi - lo, m))


@numba.njit(cache=True, nogil=True)
def _slice_count(q_ptr, q_idx, q_val, q_packed, table, packed, lo, hi, first, counts):  # pragma: no cover
    """Each row's first entry at or after column ``lo`` into ``first``, and the entries
    of every column ``lo .. hi`` into ``counts[1:]``.  A plain scan from each row's
    start: three times faster than a binary search for ``lo`` (measured on the 20M
    set), whose every step is an unpredictable branch."""
    for u in range(len(q_ptr) - 1):
        b = q_ptr[u + 1]
        f = b
        for q in range(q_ptr[u], b):
            c = _entry(q_idx, q_val, q_packed, table, packed, q)[0]
            if c >= lo:
                if f == b:
                    f = q
                if c >= hi:
                    break
                counts[c - lo + 1] += 1
        first[u] = f


@numba.njit(cache=True, nogil=True)
def _slice_fill(q_ptr, q_idx, q_val, q_packed, table, packed, lo, hi, first, at, indices, data):  # pragma: no cover
    for u in range(len(q_ptr) - 1):
        for q in range(first[u], q_ptr[u + 1]):
            c, v = _entry(q_idx, q_val, q_packed, table, packed, q)
            if c >= hi:
                break
            e = at[c - lo]
            indices[e] = u
            data[e] = v
            at[c - lo] = e + 1


class CompactCSR(NamedTuple):
    """A CSR matrix in the smallest exact storage, for the matrix every similarity
    task shares: column indices as uint16 when they fit, values as float32 when
    every value survives the round trip (ratings on a 1-5 or half-star scale do).
    Products are taken in float64 from the same values, so results are unchanged;
    half the bytes means half the memory traffic of the latency-bound kernel.

    Packed form (``indices`` and ``data`` None): each rating is one uint32, the
    column in the low 16 bits and the index of its value in ``table`` (the
    distinct values, float64) in the high 16 bits.  Exact whenever there are at
    most 65,536 columns and 65,536 distinct values; 4 bytes a rating instead of 6,
    and one array to fetch per row instead of two (:func:`compact_stack` with
    ``pack=True``; :func:`unpacked` gives the plain form back)."""

    indptr: np.ndarray
    indices: np.ndarray | None
    data: np.ndarray | None
    shape: tuple
    packed: np.ndarray | None = None
    table: np.ndarray | None = None

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.indptr, self.indices, self.data, self.packed, self.table)
                   if a is not None)


PACK_LIMIT = 1 << 16  # columns and distinct values the packed form can address


def compact_csr(m) -> CompactCSR:
    """:class:`CompactCSR` of a scipy CSR matrix (sorted indices assumed)."""
    n = m.shape[1]
    indices = m.indices.astype(np.uint16 if n <= PACK_LIMIT else np.int32, copy=False)
    return CompactCSR(m.indptr.astype(np.int64, copy=False), indices, _exact_f32(m.data), tuple(m.shape))


def _exact_f32(data):
    """``data`` as float32 where every value survives the round trip, else float64."""
    data = np.asarray(data, np.float64)
    f32 = data.astype(np.float32)
    return f32 if np.array_equal(f32.astype(np.float64), data) else data


def _unpack(packed, table):
    """``(columns uint16, values)`` of packed entries (values as :func:`_exact_f32`)."""
    return (packed & 0xFFFF).astype(np.uint16), _exact_f32(table[packed >> 16])


def unpacked(Q: CompactCSR) -> CompactCSR:
    """The plain form (column and value arrays) of a possibly packed :class:`CompactCSR`."""
    if Q.packed is None:
        return Q
    return CompactCSR(Q.indptr, *_unpack(Q.packed, Q.table), Q.shape)


def compact_stack(blocks, pack=False) -> CompactCSR:
    """:func:`compact_csr` of row blocks stacked, written straight into the compact arrays: no intermediate float64 /
    int32 copy of the whole matrix (what ``scipy.sparse.vstack`` makes).  With ``pack``, the
    packed form where it is exact (see :class:`CompactCSR`), else the plain one.

    The same as :func:`compact_join` of :func:`compact_part` of every block, which is how
    a task graph builds it (the parts in parallel where the blocks are)."""
    blocks = [sp.csr_matrix(b) for b in blocks]
    return compact_join(blocks[0].shape[1], *[compact_part(b, pack) for b in blocks])


def compact_part(b, pack=False):
    """One row block's share of a :class:`CompactCSR`: row lengths, columns, values (as
    float32 where that is exact) and, with ``pack`` where the block's columns and
    distinct values fit 16 bits each, the packed entries over the block's own sorted
    table of values (:func:`compact_join` renumbers them against the union of tables).
    Sorts the block's columns without touching it."""
    b = sp.csr_matrix(b)
    if not b.has_sorted_indices:
        b = b.sorted_indices()
    lengths = np.diff(b.indptr).astype(np.int64)
    data = np.asarray(b.data, np.float64)
    if pack and b.shape[1] <= PACK_LIMIT:
        seen, codes = np.empty(FEW_VALUES), np.empty(b.nnz, np.uint32)
        few = _few_values(data, seen, codes)
        if few >= 0:  # a rating scale: one pass, no sort of the block's values
            order = np.argsort(seen[:few])
            rank = np.empty(few, np.uint32)
            rank[order] = np.arange(few, dtype=np.uint32)
            _recode((codes << np.uint32(16)) | b.indices.astype(np.uint32), rank, codes)
            return lengths, None, None, codes, seen[:few][order]
        table = np.unique(data)
        if len(table) <= PACK_LIMIT:
            packed = np.empty(b.nnz, np.uint32)
            _pack(b.indices, data, table, packed)
            return lengths, None, None, packed, table
    indices = b.indices.astype(np.uint16 if b.shape[1] <= PACK_LIMIT else np.int32)
    return lengths, indices, _exact_f32(data), None, None


def compact_join(n, *parts) -> CompactCSR:
    """The :class:`CompactCSR` of the row blocks whose :func:`compact_part` are ``parts``:
    packed when every part is and the union of their values fits 16 bits, else plain,
    with float32 values only if every part has them."""
    indptr = np.concatenate([[0], np.cumsum(np.concatenate([np.zeros(0, np.int64)] + [p[0] for p in parts]))])
    indptr = indptr.astype(np.int64)
    shape = (int(indptr.shape[0] - 1), int(n))
    if parts and all(p[3] is not None for p in parts):
        table = np.unique(np.concatenate([p[4] for p in parts]))
        if len(table) <= PACK_LIMIT:
            packed = np.empty(int(indptr[-1]), np.uint32)
            at = 0
            for p in parts:
                if np.array_equal(p[4], table):
                    packed[at:at + len(p[3])] = p[3]
                else:  # renumber the part's values against the union
                    _recode(p[3], np.searchsorted(table, p[4]).astype(np.uint32), packed[at:at + len(p[3])])
                at += len(p[3])
            return CompactCSR(indptr, None, None, shape, packed, table)
    parts = [p if p[3] is None else (p[0], *_unpack(p[3], p[4])) for p in parts]
    dtype = np.float32 if all(p[2].dtype == np.float32 for p in parts) else np.float64
    indices = np.concatenate([np.zeros(0, np.uint16 if n <= PACK_LIMIT else np.int32)] + [p[1] for p in parts])
    data = np.concatenate([np.zeros(0, dtype)] + [p[2].astype(dtype, copy=False) for p in parts])
    return CompactCSR(indptr, indices, data, shape)


FEW_VALUES = 64  # distinct values a block's table is found by scanning, not by sorting


GRID_SLOTS = 128  # half-steps 0, 0.5, .., 63.5 looked up directly by _few_values


@numba.njit(cache=True, nogil=True)
def _few_values(data, seen, codes):  # pragma: no cover - compiled
    """The distinct values of ``data`` in first-seen order into ``seen`` and each entry's
    position among them into ``codes``; the count, or -1 once there are more than
    ``len(seen)`` (the caller sorts instead).

    Values on a half-step grid from 0 (whole and half stars) find their position in
    a table indexed by twice the value; others by a search of those seen (measured
    on the 20M set's blocks: 2.9 ms a block by search alone, each of ten values an
    unpredictable branch or more).  The grid takes a value wherever it first appears,
    so the result is the search's."""
    slot = np.full(GRID_SLOTS, -1, np.int64)
    have, last = 0, 0
    for e in range(len(data)):
        x = data[e]
        y = x * 2.0
        if 0.0 <= y < GRID_SLOTS and y == np.floor(y):  # 0.0 and -0.0 share slot 0, as == does
            i = int(y)
            if slot[i] < 0:
                if have == len(seen):
                    return -1
                seen[have] = x
                slot[i] = have
                have += 1
            codes[e] = slot[i]
            continue
        if have == 0 or seen[last] != x:
            last = 0
            while last < have and seen[last] != x:
                last += 1
            if last == have:
                if have == len(seen):
                    return -1
                seen[have] = x
                have += 1
        codes[e] = last
    return have


@numba.njit(cache=True, nogil=True)
def _recode(packed, codes, out):  # pragma: no cover - compiled
    for e in range(len(packed)):
        x = packed[e]
        out[e] = (codes[x >> 16] << np.uint32(16)) | (x & np.uint32(0xFFFF))


@numba.njit(cache=True, nogil=True)
def _pack(indices, data, table, out):  # pragma: no cover - compiled
    """``out[e] = (position of data[e] in table) << 16 | indices[e]`` (every value is in the table)."""
    for e in range(len(data)):
        lo, hi = 0, len(table) - 1
        x = data[e]
        while lo < hi:
            mid = (lo + hi) // 2
            if table[mid] < x:
                lo = mid + 1
            else:
                hi = mid
        out[e] = (np.uint32(lo) << np.uint32(16)) | np.uint32(indices[e])


@intrinsic
def _prefetch(typingctx, arr, idx):  # pragma: no cover - compiled
    """Hint the CPU to fetch ``arr[idx]`` into cache (LLVM ``prefetch``; no effect on results)."""
    sig = types.void(arr, idx)

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]], wraparound=False)
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                                            _PREFETCH)
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(1), i32(1)])
        return context.get_dummy_value()

    return sig, codegen


_PREFETCH = "llvm.prefetch.p0" if llvm_version_info >= (15,) else "llvm.prefetch.p0i8"
PREFETCH_AHEAD = 4  # rows ahead: the row pointer at 2x, the row itself at 1x (measured best)
SELECT_BLOCK = 32  # columns a top-k scan skips at once when their largest estimate is under the cut


def similarity_rows(Pa, Q, row0, measure="cosine", min_support=1, shrinkage=0.0, k=None,
                    norms_a=None, norms=None, dense=False, significance=0.0, min_similarity=0.0):
    """Whole similarity rows of a block of entities, straight from the ratings.

    The same values as :func:`similarity_tile` over every block, bit for bit,
    computed row by row with one dense accumulator per measure term (the
    sparse-accumulator product: cost = sum over the others of (ratings in the
    block) x (ratings in total), no work per empty pair, no tile to merge).
    The loop is bound by fetching the rows of ``Q``; they are prefetched a few
    rows ahead.

    Parameters
    ----------
    Pa : scipy.sparse.csr_matrix (na, m)
        Entity rows ``row0 .. row0 + na`` over the others (users for item CF).
    row0 : int or (na,) int array
        The first row's entity id, or every row's (rows of scattered entities:
        an incremental refresh recomputes only some).
    Q : scipy.sparse.csr_matrix or CompactCSR (m, n), sorted indices
        Every entity's ratings, others x entities (the whole matrix).
    measure, min_support, shrinkage, significance, min_similarity : as in :func:`similarity_tile`
    k : int, optional
        Also return the top-``k`` table (as :func:`topk_rows` gives it, self
        excluded).
    norms_a, norms : (na,), (n,) float64, optional
        :func:`entity_totals` of ``Pa`` and of every entity, needed where
        :func:`needs_norms` (row norms, or numbers of ratings for ``jaccard``).
    dense : bool
        Return the dense ``(na, n)`` rows (diagonal = 1, as surprise does).

    Returns
    -------
    rows or None, idx or None, sim or None
    """
    mode, min_support, offset = _measure(measure, min_support, shrinkage)
    if not isinstance(Q, CompactCSR):
        Q = compact_csr(Q)
    fast = fast_topk(measure, min_support, shrinkage, significance, dense, k)
    if not fast:
        Q = unpacked(Q)
    na, n = Pa.shape[0], Q.shape[1]
    totals = needs_norms(measure)
    if totals and (norms_a is None or norms is None):
        raise ValueError(f"{measure} needs norms_a and norms (kernels.entity_totals)")
    ids = np.asarray(row0, np.int64)
    if ids.ndim == 0:
        ids = np.arange(int(row0), int(row0) + na, dtype=np.int64)
    elif ids.shape != (na,):
        raise ValueError(f"row0 gives {ids.shape[0]} entity ids for {na} rows")
    kk = 0 if k is None else int(k)
    rows = np.zeros((na, n) if dense else (0, 0))
    idx = np.full((na, kk), -1, np.int64)
    sim = np.zeros((na, kk))
    empty = np.zeros(0)
    if fast:
        norms_a, norms = np.asarray(norms_a, np.float64), np.asarray(norms, np.float64)
        args = (Pa.indptr.astype(np.int64, copy=False), Pa.indices, np.asarray(Pa.data, np.float64), Q.indptr)
        _norms_topk(*args, *_entries(Q), Q.packed is not None, ids, norms_a, norms, _inverse(norms),
                    float(min_similarity), idx, sim, PREFETCH_AHEAD, SELECT_BLOCK)
        return None, idx, sim
    count = min_support > 1 or shrinkage > 0 or significance > 0 or mode == PEARSON
    p_val = np.ones(Pa.nnz) if mode == JACCARD else np.asarray(Pa.data, np.float64)
    q_val = np.ones(Q.indices.shape[0], np.float32) if mode == JACCARD else Q.data
    _sim_rows(Pa.indptr.astype(np.int64, copy=False), Pa.indices, p_val,
              Q.indptr, Q.indices, q_val, ids, n, mode, count,
              float(min_support), float(shrinkage), offset, float(significance), float(min_similarity),
              np.asarray(norms_a, np.float64) if totals else empty,
              np.asarray(norms, np.float64) if totals else empty, dense, rows, idx, sim, PREFETCH_AHEAD)
    return (rows if dense else None), (idx if k is not None else None), (sim if k is not None else None)


@numba.njit(cache=True, nogil=True)
def _sim_rows(p_ptr, p_idx, p_val, q_ptr, q_idx, q_val, ids, n, mode, count, min_support,
              shrinkage, offset, significance, min_similarity, norms_a, norms, dense, rows, top_i, top_s,
              ahead):  # pragma: no cover
    squares = mode == 0 or mode == 2  # CO_RATED, PEARSON
    sums = mode == 2
    prod = np.zeros(n)
    freq = np.zeros(n if count else 0)
    sqi = np.zeros(n if squares else 0)
    sqj = np.zeros(n if squares else 0)
    si = np.zeros(n if sums else 0)
    sj = np.zeros(n if sums else 0)
    seen = np.zeros(n, np.bool_)
    touched = np.empty(n, np.int64)
    k = top_i.shape[1]
    for i in range(len(p_ptr) - 1):
        t = 0
        lo, hi = p_ptr[i], p_ptr[i + 1]
        for p in range(lo, hi):
            if p + 2 * ahead < hi:
                _prefetch(q_ptr, p_idx[p + 2 * ahead])
            if p + ahead < hi:
                _prefetch_row(q_ptr, q_idx, q_val, p_idx[p + ahead])
            u = p_idx[p]
            r = p_val[p]
            rr = r * r
            for q in range(q_ptr[u], q_ptr[u + 1]):
                j = q_idx[q]
                v = np.float64(q_val[q])
                if not seen[j]:
                    seen[j] = True
                    touched[t] = j
                    t += 1
                prod[j] += r * v
                if count:
                    freq[j] += 1.0
                if squares:
                    sqi[j] += rr
                    sqj[j] += v * v
                if sums:
                    si[j] += r
                    sj[j] += v
        have = 0
        me = ids[i]
        for e in range(t):
            j = touched[e]
            seen[j] = False
            f = freq[j] if count else 1.0
            num = prod[j]
            if mode == 0:
                den = np.sqrt(sqi[j] * sqj[j])
            elif mode == 1:
                den = norms_a[i] * norms[j]
            elif mode == 2:
                num = f * num - si[j] * sj[j]
                den = np.sqrt((f * sqi[j] - si[j] * si[j]) * (f * sqj[j] - sj[j] * sj[j]))
            else:
                den = (norms_a[i] + norms[j]) - num
            s = 0.0
            if f >= min_support and den > 0:
                s = num / den
                if shrinkage > 0:
                    s *= (f - offset) / (f - offset + shrinkage)
                if significance > 0:
                    s *= min(f, significance) / significance
                if min_similarity > 0 and s < min_similarity:
                    s = 0.0
            prod[j] = 0.0
            if count:
                freq[j] = 0.0
            if squares:
                sqi[j] = 0.0
                sqj[j] = 0.0
            if sums:
                si[j] = 0.0
                sj[j] = 0.0
            if dense:
                rows[i, j] = s
            if k == 0 or s <= 0 or j == me:
                continue
            have = _insert(top_i, top_s, i, have, j, s)
        if dense and 0 <= me < n:
            rows[i, me] = 1.0


def fast_topk(measure, min_support=1, shrinkage=0.0, significance=0.0, dense=False, k=None) -> bool:
    """Whether :func:`similarity_rows` takes its fast path: a measure divided by
    per-entity norms (``full-cosine``, ``centred-cosine``) with no co-rater counts
    (``min_support`` 1, no shrinkage or significance weighting), top-k lists only.
    Its similarities are the general kernel's, bit for bit; it accumulates one
    term per pair with no bookkeeping of which pairs were touched, and may read
    the packed form of :class:`CompactCSR`."""
    mode, min_support, _ = _measure(measure, min_support, shrinkage)
    return (mode == NORMS and min_support <= 1 and not shrinkage > 0 and not significance > 0
            and not dense and k is not None and int(k) > 0)


def _inverse(norms):
    out = np.zeros_like(norms)
    np.divide(1.0, norms, out=out, where=norms > 0)
    return out


@numba.njit(cache=True, nogil=True, inline="always")
def _prefetch_lines(arr, a, b):  # pragma: no cover - compiled
    """Prefetch every 64-byte cache line of ``arr[a:b]``."""
    for w in range(a, b, max(64 // arr.itemsize, 1)):
        _prefetch(arr, w)


@numba.njit(cache=True, nogil=True, inline="always")
def _prefetch_row(q_ptr, q_idx, q_val, u):  # pragma: no cover - compiled
    """Prefetch every cache line of row ``u`` (its columns and values)."""
    _prefetch_lines(q_idx, q_ptr[u], q_ptr[u + 1])
    _prefetch_lines(q_val, q_ptr[u], q_ptr[u + 1])


@numba.njit(cache=True, nogil=True, inline="always")
def _insert(top_i, top_s, i, have, j, s):  # pragma: no cover - compiled
    """Offer ``(j, s)`` to row ``i`` of a top-k table holding ``have`` entries
    (similarity descending, ties by the lower id); returns the new count."""
    k = top_i.shape[1]
    if have == k:  # full: must beat the last
        ls = top_s[i, k - 1]
        if s < ls or (s == ls and j > top_i[i, k - 1]):
            return have
        pos = k - 1
    else:
        pos = have
        have += 1
    while pos > 0 and (s > top_s[i, pos - 1] or (s == top_s[i, pos - 1] and j < top_i[i, pos - 1])):
        top_s[i, pos] = top_s[i, pos - 1]
        top_i[i, pos] = top_i[i, pos - 1]
        pos -= 1
    top_s[i, pos] = s
    top_i[i, pos] = j
    return have


@numba.njit(cache=True, nogil=True)
def _norms_topk(p_ptr, p_idx, p_val, q_ptr, q_idx, q_val, q_packed, table, packed, ids, norms_a, norms, inv,
                min_similarity, top_i, top_s, ahead, block):  # pragma: no cover - compiled
    """Top-k rows of a norm-divided measure (see :func:`fast_topk`); ``packed``: read
    ``q_packed`` / ``table``, else ``q_idx`` / ``q_val``.

    Each row's products are summed into a dense accumulator with no bookkeeping of the
    columns touched (measured: tracking them, even only for rows with few products,
    costs more than it saves).  A cheap estimate ``prod * (1 / norm_j)`` of every
    column's similarity times the row's norm is then compared with a cut, less a 1e-9
    margin (far above the estimate's rounding); only the columns that pass compute the
    exact ``prod / (norm_i * norm_j)`` of the general kernel and are offered to the
    list, so the lists are the same bit for bit.

    The cut starts at the k-th largest of the estimates' maxima over blocks of
    ``block`` columns (self excluded): those are k distinct columns, so the row's k-th
    similarity is at least that high, and no column of the list can fall under it.
    Only blocks whose maximum passes are scanned, and a row offers its list about k
    columns instead of about k log(n / k) from a cut that starts at 0 (measured on the
    20M set: 54 instead of 322 a row, each insert costing some 150 ns).  Once the list
    is full, the cut follows its k-th similarity."""
    n = norms.shape[0]
    k = top_i.shape[1]
    nb = (n + block - 1) // block
    prod = np.zeros(n)
    est = np.empty(n)
    peak = np.empty(nb)  # each block's largest estimate
    scratch = np.empty(nb)
    for i in range(len(p_ptr) - 1):
        lo, hi = p_ptr[i], p_ptr[i + 1]
        for p in range(lo, hi):
            if p + 2 * ahead < hi:
                _prefetch(q_ptr, p_idx[p + 2 * ahead])
            if p + ahead < hi:
                if packed:
                    v = p_idx[p + ahead]
                    _prefetch_lines(q_packed, q_ptr[v], q_ptr[v + 1])
                else:
                    _prefetch_row(q_ptr, q_idx, q_val, p_idx[p + ahead])
            u = p_idx[p]
            r = p_val[p]
            if packed:
                for q in range(q_ptr[u], q_ptr[u + 1]):
                    x = q_packed[q]
                    prod[x & 0xFFFF] += r * table[x >> 16]
            else:
                for q in range(q_ptr[u], q_ptr[u + 1]):
                    prod[q_idx[q]] += r * np.float64(q_val[q])
        for j in range(n):  # vectorised
            est[j] = prod[j] * inv[j]
        me, na = ids[i], norms_a[i]
        if 0 <= me < n:
            est[me] = 0.0  # never listed
        for b in range(nb):
            top = 0.0
            for j in range(b * block, min(b * block + block, n)):
                top = est[j] if est[j] > top else top
            peak[b] = top
        cut = 0.0
        if nb > k:  # the k-th largest block peak: a floor under the row's k-th estimate
            scratch[:] = peak
            cut = np.partition(scratch, nb - k)[nb - k] * (1.0 - 1e-9)
        have = 0
        for b in range(nb):
            if peak[b] > cut:  # one mostly-untaken branch per block
                for j in range(b * block, min(b * block + block, n)):
                    if est[j] > cut:
                        s = prod[j] / (na * norms[j])
                        if s > 0 and not s < min_similarity:
                            have = _insert(top_i, top_s, i, have, j, s)
                            if have == k:
                                cut = max(cut, top_s[i, k - 1] * na * (1.0 - 1e-9))
        prod[:] = 0.0


def _binary(P):
    E = P.copy()
    E.data = np.ones_like(E.data)
    return E


def top_columns(values, n):
    """Per row, the ``n`` largest values, ties broken by the lower column.

    Parameters
    ----------
    values : numpy.ndarray, shape (r, m)
    n : int

    Returns
    -------
    cols : (r, min(n, m)) int64, ordered by value descending then column
    vals : (r, min(n, m)) float64
    """
    values = np.asarray(values, dtype=np.float64)
    r, m = values.shape
    n = min(int(n), m)
    if n <= 0 or r == 0:
        return np.zeros((r, max(n, 0)), np.int64), np.zeros((r, max(n, 0)))
    if n < m:
        t = -np.partition(-values, n - 1, axis=1)[:, n - 1]
        above = values > t[:, None]
        at = values == t[:, None]
        need = n - above.sum(axis=1)
        take = above | (at & (np.cumsum(at, axis=1) <= need[:, None]))
        rows, cols = np.nonzero(take)
        cols = cols.reshape(r, n)
    else:
        cols = np.broadcast_to(np.arange(m), (r, m)).copy()
    vals = np.take_along_axis(values, cols, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(cols, order, axis=1).astype(np.int64), np.take_along_axis(vals, order, axis=1)


def topk_rows(S, k, col_offset=0, self_offset=None):
    """The k most similar positive neighbours of each row of a similarity tile.

    Parameters
    ----------
    S : numpy.ndarray, shape (r, m)
        Tile; row i is entity ``self_offset + i`` if given, column j is entity
        ``col_offset + j``.
    k : int
    self_offset : int, optional
        Global id of row 0, to exclude each entity from its own list.

    Returns
    -------
    idx : (r, k) int64 global neighbour ids, ``-1`` padding
    sim : (r, k) float64, ``0`` padding; only similarities > 0 are kept,
        ordered by similarity descending then id ascending.
    """
    vals = np.where(S > 0, S, -np.inf)
    if self_offset is not None:
        rows = np.arange(S.shape[0])
        cols = rows + self_offset - col_offset
        ok = (cols >= 0) & (cols < S.shape[1])
        vals[rows[ok], cols[ok]] = -np.inf
    cols, v = top_columns(vals, k)
    return _pad(np.where(v > 0, cols + col_offset, -1), np.where(v > 0, v, 0.0), k)


def _pad(idx, sim, k):
    r, have = idx.shape
    if have >= k:
        return idx, sim
    return (np.hstack([idx, np.full((r, k - have), -1, np.int64)]),
            np.hstack([sim, np.zeros((r, k - have))]))


def merge_topk(parts, k):
    """Merge per-tile top-k lists of the same rows into one top-k list.

    ``parts`` is a sequence of ``(idx, sim)`` pairs as :func:`topk_rows`
    returns.  The order (similarity descending, id ascending) is total, so the
    merge is associative and equals the top-k of the whole row.
    """
    idx = np.hstack([p[0] for p in parts])
    sim = np.hstack([p[1] for p in parts])
    valid = idx >= 0
    key_sim = np.where(valid, -sim, np.inf)
    key_id = np.where(valid, idx, np.iinfo(np.int64).max)
    order = np.lexsort((key_id, key_sim), axis=-1)[:, :k]
    return _pad(np.take_along_axis(idx, order, 1), np.take_along_axis(sim, order, 1), k)


def neighbour_matrix(idx, sim, n_cols):
    """Top-k table rows -> CSR (r, n_cols) with the neighbour similarities."""
    r, k = idx.shape
    valid = idx >= 0
    rows = np.repeat(np.arange(r), k).reshape(r, k)[valid]
    m = sp.csr_matrix((sim[valid], (rows, idx[valid])), shape=(r, n_cols))
    m.sort_indices()
    return m


def score_pairs(S, x, y, Q, k, centre=None, offset=None, amplification=1.0):
    """Weighted sums over each pair's k most similar rated neighbours.

    For pair p = (x, y): the candidates are the entities rated in row ``y`` of
    ``Q`` (for item-based CF: the items user y rated); each candidate ``j``
    has similarity ``S[x, j]`` and rating ``Q[y, j]``.  The k candidates with
    the largest similarity (ties: lower id first) among those with positive
    similarity are used -- scikit-surprise's ``heapq.nlargest`` rule:

    .. math::
        \\text{sim}_p = \\sum_{j \\in N^k} s_{xj}, \\quad
        \\text{val}_p = \\sum_{j \\in N^k} s_{xj} (r_{yj} - c_j)

    with :math:`c = 0` unless ``centre`` (per-entity means) is given, and
    :math:`c_j + o_p` when a per-pair ``offset`` is given too (the baseline
    :math:`(\\mu + b_j) + b_y` of :mod:`dcf.baseline`).  With ``amplification``
    :math:`\\rho \\ne 1` every :math:`s_{xj}` above is :math:`s_{xj}^\\rho` (Breese et
    al.'s case amplification); the neighbours chosen do not change.

    Parameters
    ----------
    S : numpy.ndarray or scipy.sparse.csr_matrix, shape (a, n)
        Similarity rows of the target entities (dense: every pair; sparse: a
        top-k neighbour table, so only listed neighbours count).
    x : (P,) int  row of ``S`` per pair
    y : (P,) int  row of ``Q`` per pair
    Q : scipy.sparse.csr_matrix, shape (b, n), sorted indices
    k : int
    centre : (n,) float64, optional
    offset : (P,) float64, optional
    amplification : float > 0

    Returns
    -------
    sum_sim, sum_val : (P,) float64
    n_used : (P,) int64
    """
    x = np.asarray(x, np.int64)
    y = np.asarray(y, np.int64)
    P = len(x)
    counts = (Q.indptr[y + 1] - Q.indptr[y]).astype(np.int64)
    rep = np.repeat(np.arange(P), counts)
    base = np.repeat(Q.indptr[y].astype(np.int64) - np.cumsum(counts) + counts, counts)
    pos = base + np.arange(len(rep))
    nb, r = Q.indices[pos].astype(np.int64), Q.data[pos]
    s = S[x[rep], nb]
    s = np.asarray(s).ravel() if sp.issparse(S) else s
    live = s > 0
    rep, nb, r, s = rep[live], nb[live], r[live], s[live]
    order = np.lexsort((nb, -s, rep))
    rep, nb, r, s = rep[order], nb[order], r[order], s[order]
    rank = np.arange(len(rep)) - np.searchsorted(rep, rep, side="left")
    use = rank < k
    rep, nb, r, s = rep[use], nb[use], r[use], s[use]
    if amplification != 1.0:  # after the selection: s ** rho keeps the order of positive s
        s = s ** float(amplification)
    if centre is None:
        val = r
    elif offset is None:
        val = r - centre[nb]
    else:
        val = r - (centre[nb] + np.asarray(offset, np.float64)[rep])
    return (np.bincount(rep, weights=s, minlength=P), np.bincount(rep, weights=s * val, minlength=P),
            np.bincount(rep, minlength=P).astype(np.int64))


def top_n(indptr, indices, scores, valid, rated, n, order):
    """Top-N columns per row among the scored, unrated ones, filled in by popularity.

    Parameters
    ----------
    indptr, indices, scores, valid : CSR-style arrays of the candidate entries
        (r + 1,), (e,), (e,) float64 and (e,) bool: entry e of row i is column
        ``indices[e]`` with ``scores[e]``, used only where ``valid[e]``; column
        order within a row does not matter.
    rated : scipy.sparse.csr_matrix (r, m); its stored entries are excluded
    n : int
    order : (m,) int64 permutation of the columns, most popular first; it breaks
        ties between equal scores and orders the filled-in columns.

    Returns
    -------
    cols : (r, n) int64, ``-1`` where a row has fewer than n unrated columns
    vals : (r, n) float64, the score (0 where filled in or padded)
    filled : (r, n) bool, True where the column was filled in by popularity
    """
    r, m = rated.shape
    rank_of = np.empty(m, np.int64)
    rank_of[np.asarray(order, np.int64)] = np.arange(m)
    out_c = np.full((r, n), -1, np.int64)
    out_v = np.zeros((r, n))
    have = np.zeros(r, np.int64)
    _topn_rows(np.asarray(indptr, np.int64), np.asarray(indices, np.int64),
               np.asarray(scores, np.float64), np.asarray(valid, np.bool_),
               rated.indptr.astype(np.int64), rated.indices.astype(np.int64), rank_of, n,
               out_c, out_v, have, np.zeros(m, np.bool_))
    filled = np.zeros((r, n), bool)
    short = np.flatnonzero(have < n)
    if len(short):
        _fill(out_c, filled, short, have, rated, _row_keys(rated), np.asarray(order, np.int64), n)
    return out_c, out_v, filled


def recommend_rows(A, B, sim_left, rated, n, order, min_k=1, row_add=None, col_add=None,
                   rating_range=(-np.inf, np.inf), divide=True):
    r"""Top-N by predicted rating for a block of rows, scores and selection fused.

    For row u and column i, over the entries ``A[u, j] B[j, i]`` of the sparse
    product ``A @ B`` (j ascending, as scipy sums):

    .. math::
        \text{num} = \sum_j A_{uj} B_{ji}, \quad
        \text{den} = \sum_j s_{uji}, \quad
        \text{score} = \operatorname{clip}(\text{num} / \text{den} + a_u + c_i)

    where the similarity :math:`s` is ``A``'s value when ``sim_left`` (user-based:
    A = neighbour rows, B = ratings) else ``B``'s (item-based: A = ratings,
    B = transposed neighbour table).  A column needs at least ``max(min_k, 1)``
    terms.  Rated columns are excluded; ties go to the column first in
    ``order``; short rows are filled as :func:`top_n` fills them.  No sparse
    product is built: one dense accumulator per term, O(columns) memory.
    ``divide=False`` ranks by ``num`` itself (no clip, no additions): the
    "sum" ranking.

    Parameters
    ----------
    A : scipy.sparse.csr_matrix (r, K); B : scipy.sparse.csr_matrix (K, m)
        Values already centred where the prediction is mean-centred.
    row_add, col_add : (r,), (m,) float64, optional
    rating_range : (low, high)

    Returns
    -------
    cols, vals, filled : as :func:`top_n`
    """
    r, m = rated.shape
    rank_of = np.empty(m, np.int64)
    rank_of[np.asarray(order, np.int64)] = np.arange(m)
    out_c = np.full((r, n), -1, np.int64)
    out_v = np.zeros((r, n))
    have = np.zeros(r, np.int64)
    lo, hi = (float(v) for v in rating_range)
    _recommend_rows(A.indptr.astype(np.int64), A.indices.astype(np.int64), np.asarray(A.data, np.float64),
                    B.indptr.astype(np.int64), B.indices.astype(np.int64), np.asarray(B.data, np.float64),
                    bool(sim_left), rated.indptr.astype(np.int64), rated.indices.astype(np.int64),
                    rank_of, n, float(max(int(min_k), 1)),
                    np.zeros(r) if row_add is None else np.asarray(row_add, np.float64),
                    np.zeros(m) if col_add is None else np.asarray(col_add, np.float64),
                    lo, hi, bool(divide), out_c, out_v, have)
    filled = np.zeros((r, n), bool)
    short = np.flatnonzero(have < n)
    if len(short):
        _fill(out_c, filled, short, have, rated, _row_keys(rated), np.asarray(order, np.int64), n)
    return out_c, out_v, filled


@numba.njit(cache=True, nogil=True)
def _recommend_rows(a_ptr, a_idx, a_val, b_ptr, b_idx, b_val, sim_left, r_ptr, r_idx, rank_of, n,
                    min_k, row_add, col_add, lo, hi, divide, out_c, out_v, have):  # pragma: no cover
    m = len(rank_of)
    num = np.zeros(m)
    den = np.zeros(m)
    cnt = np.zeros(m)
    flag = np.zeros(m, np.bool_)
    touched = np.empty(m, np.int64)
    for row in range(len(a_ptr) - 1):
        t = 0
        for p in range(a_ptr[row], a_ptr[row + 1]):
            j = a_idx[p]
            x = a_val[p]
            for q in range(b_ptr[j], b_ptr[j + 1]):
                c = b_idx[q]
                y = b_val[q]
                if cnt[c] == 0.0:
                    touched[t] = c
                    t += 1
                num[c] += x * y
                den[c] += x if sim_left else y
                cnt[c] += 1.0
        for p in range(r_ptr[row], r_ptr[row + 1]):
            flag[r_idx[p]] = True
        got = 0
        for e in range(t):
            c = touched[e]
            ok = not flag[c] and cnt[c] >= min_k and den[c] > 0
            s = 0.0
            if ok:
                s = min(max(num[c] / den[c] + row_add[row] + col_add[c], lo), hi) if divide else num[c]
            num[c] = 0.0
            den[c] = 0.0
            cnt[c] = 0.0
            if ok:
                got = _push(out_c, out_v, row, got, n, c, s, rank_of)
        have[row] = got
        for p in range(r_ptr[row], r_ptr[row + 1]):
            flag[r_idx[p]] = False


@numba.njit(cache=True, nogil=True, inline="always")
def _push(out_c, out_v, row, have, n, c, s, rank_of):  # pragma: no cover - compiled
    """Insert column ``c`` with score ``s`` into row ``row``'s sorted Top-``n`` (score
    descending, ties to the column first in the popularity order); returns the new count."""
    rk = rank_of[c]
    if have == n:
        last = out_v[row, n - 1]
        if s < last or (s == last and rk > rank_of[out_c[row, n - 1]]):
            return have
        pos = n - 1
    else:
        pos = have
        have += 1
    while pos > 0:
        pv = out_v[row, pos - 1]
        if s > pv or (s == pv and rk < rank_of[out_c[row, pos - 1]]):
            out_c[row, pos] = out_c[row, pos - 1]
            out_v[row, pos] = pv
            pos -= 1
        else:
            break
    out_c[row, pos] = c
    out_v[row, pos] = s
    return have


@numba.njit(cache=True, nogil=True)
def _topn_rows(indptr, indices, scores, valid, r_indptr, r_indices, rank_of, n, out_c, out_v, have,
               flag):  # pragma: no cover - compiled
    for row in range(len(indptr) - 1):
        for p in range(r_indptr[row], r_indptr[row + 1]):
            flag[r_indices[p]] = True
        cnt = 0
        for e in range(indptr[row], indptr[row + 1]):
            if not valid[e]:
                continue
            c = indices[e]
            if flag[c]:
                continue
            cnt = _push(out_c, out_v, row, cnt, n, c, scores[e], rank_of)
        have[row] = cnt
        for p in range(r_indptr[row], r_indptr[row + 1]):
            flag[r_indices[p]] = False


def _row_keys(csr):
    """Sorted ``row * n_cols + col`` keys of a CSR matrix with sorted indices."""
    rows = np.repeat(np.arange(csr.shape[0], dtype=np.int64), np.diff(csr.indptr))
    return rows * csr.shape[1] + csr.indices.astype(np.int64)


def _isin_sorted(keys, sorted_keys):
    if len(sorted_keys) == 0:
        return np.zeros(len(keys), bool)
    at = np.clip(np.searchsorted(sorted_keys, keys), 0, len(sorted_keys) - 1)
    return sorted_keys[at] == keys


def _fill(out_c, filled, short, have, rated, rated_keys, order, n):
    """Fill rows ``short`` with the most popular columns not rated and not chosen."""
    m = rated.shape[1]
    n_rated = np.diff(rated.indptr)[short]
    width = int(min(m, n + n_rated.max() + n))
    cand = np.broadcast_to(order[:width], (len(short), width))
    keys = short[:, None].astype(np.int64) * m + cand
    chosen = out_c[short]
    taken = (cand[:, :, None] == chosen[:, None, :]).any(axis=2) if n <= 64 else \
        np.array([np.isin(c, ch) for c, ch in zip(cand, chosen)])
    ok = ~_isin_sorted(keys.ravel(), rated_keys).reshape(keys.shape) & ~taken
    need = n - have[short]
    pick = ok & (np.cumsum(ok, axis=1) <= need[:, None])
    rr, cc = np.nonzero(pick)
    slot = have[short][rr] + (np.cumsum(pick, axis=1)[rr, cc] - 1)
    out_c[short[rr], slot] = cand[rr, cc]
    filled[short[rr], slot] = True
