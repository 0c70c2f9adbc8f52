"""The compact CSR codec: the smallest exact storage of the matrix every similarity task shares.

:class:`CompactCSR` and how it is built (:func:`compact_csr`, or in parts where the
blocks are: :func:`compact_part` then :func:`compact_join`, which
:func:`compact_stack` does in one process), the packed form's value tables
(:func:`few_values`; more values are hashed by `pandas.factorize`), and how the compiled loops read either
form (:class:`Entries`, from :func:`entries`), including the entities' rows cut
from it (:func:`entity_rows`).
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = [
    "CompactCSR", "PACK_LIMIT", "MAX_COLUMN_BITS", "column_bits", "compact_csr", "unpacked", "compact_stack",
    "compact_part", "compact_join",
    "FEW_VALUES", "GRID_SLOTS", "few_values", "Entries", "entries", "column_squares", "column_counts",
    "entity_rows",
    "slice_count", "slice_fill",
]


class CompactCSR(NamedTuple):
    """A CSR matrix in the smallest exact storage, for the matrix every similarity
    task shares: column indices as uint16 when they fit, values as float32 when
    every value survives the round trip (ratings on a 1-5 or half-star scale do).
    Products are taken in float64 from the same values, so results are unchanged;
    half the bytes means half the memory traffic of the latency-bound kernel.

    Packed form (``indices`` and ``data`` None): each rating is one uint32, the
    column in the low ``bits`` bits (:func:`column_bits`: 16 up to 65,536 columns,
    else as many as the columns need) and the index of its value in ``table`` (the
    distinct values, float64) in the rest.  Exact whenever the distinct values fit the
    rest: 65,536 of them up to 65,536 columns, 16,384 up to 262,144 columns, 4,096 up
    to 1,048,576, 16 at most (up to 2^28 columns).  4 bytes a rating instead of 6 (8
    past 65,536 columns), and one array to fetch per row instead of two
    (:func:`compact_stack` with ``pack=True``; :func:`unpacked` gives the plain form
    back)."""

    indptr: np.ndarray
    indices: np.ndarray | None
    data: np.ndarray | None
    shape: tuple
    packed: np.ndarray | None = None
    table: np.ndarray | None = None
    bits: int = 16

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.indptr, self.indices, self.data, self.packed, self.table)
                   if a is not None)


PACK_LIMIT = 1 << 16  # columns a uint16 index addresses (the packed form's narrowest column field)
MAX_COLUMN_BITS = 28  # a packed entry keeps at least 4 bits (16 values) for its value


def column_bits(n: int) -> int:
    """Bits of a packed entry that hold its column, in a matrix of ``n`` columns: 16 up to
    65,536 columns, else as many as ``n`` needs; the other ``32 - bits`` index the value."""
    return max(16, int(max(int(n), 1) - 1).bit_length())


def _index_dtype(n: int):
    """The plain form's column index type for ``n`` columns: uint16 where it fits, else int32."""
    return np.uint16 if n <= PACK_LIMIT else np.int32


def _value_room(n: int) -> int:
    """How many distinct values a packed matrix of ``n`` columns can hold (0: none)."""
    bits = column_bits(n)
    return 1 << (32 - bits) if bits <= MAX_COLUMN_BITS else 0


def compact_csr(m) -> CompactCSR:
    """:class:`CompactCSR` of a scipy CSR matrix (sorted indices assumed)."""
    n = m.shape[1]
    indices = m.indices.astype(_index_dtype(n), copy=False)
    return CompactCSR(m.indptr.astype(np.int64, copy=False), indices, _exact_f32(m.data), tuple(m.shape))


def _exact_f32(data):
    """``data`` as float32 where every value survives the round trip, else float64."""
    data = np.asarray(data, np.float64)
    with np.errstate(over="ignore"):  # a value past float32's range: inf, which fails the round trip
        f32 = data.astype(np.float32)
    return f32 if np.array_equal(f32.astype(np.float64), data) else data


def _unpack(packed, table, n):
    """``(columns, values)`` of the packed entries of a matrix of ``n`` columns: columns
    as uint16 where they fit, else int32, values as :func:`_exact_f32`."""
    bits = column_bits(n)
    columns = (packed & np.uint32((1 << bits) - 1)).astype(_index_dtype(n))
    return columns, _exact_f32(table[packed >> np.uint32(bits)])


def unpacked(Q: CompactCSR) -> CompactCSR:
    """The plain form (column and value arrays) of a possibly packed :class:`CompactCSR`."""
    if Q.packed is None:
        return Q
    return CompactCSR(Q.indptr, *_unpack(Q.packed, Q.table, Q.shape[1]), Q.shape)


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
    distinct values fit a packed entry (:class:`CompactCSR`), the packed entries over
    the block's own sorted table of values (:func:`compact_join` renumbers them against the union of tables).
    Sorts the block's columns without touching it."""
    b = sp.csr_matrix(b)
    if not b.has_sorted_indices:
        b = b.sorted_indices()
    lengths = np.diff(b.indptr).astype(np.int64)
    data = np.asarray(b.data, np.float64)
    room, bits = _value_room(b.shape[1]), column_bits(b.shape[1])
    if pack and room:
        seen, codes = np.empty(min(FEW_VALUES, room)), np.empty(b.nnz, np.uint32)
        few = few_values(data, seen, codes)
        if few >= 0:  # a rating scale: one pass, no sort of the block's values
            order = np.argsort(seen[:few])
            rank = np.empty(few, np.uint32)
            rank[order] = np.arange(few, dtype=np.uint32)
            _recode((codes << np.uint32(bits)) | b.indices.astype(np.uint32), rank, codes, bits)
            return lengths, None, None, codes, seen[:few][order]
        # hashed, not sorted: each value's code with the distinct values, then those few
        # sorted (np.unique and a binary search of the table per entry took 0.25-0.5 s for
        # bm25's 3M saturated ratings a part, 12k distinct; this 0.05 s, the same entries)
        codes, table = pd.factorize(data, sort=True, use_na_sentinel=False)
        if len(table) <= room:
            packed = (codes.astype(np.uint32) << np.uint32(bits)) | b.indices.astype(np.uint32)
            return lengths, None, None, packed, np.asarray(table, np.float64)
    indices = b.indices.astype(_index_dtype(b.shape[1]))
    return lengths, indices, _exact_f32(data), None, None


def compact_join(n, *parts) -> CompactCSR:
    """The :class:`CompactCSR` of the row blocks whose :func:`compact_part` are ``parts``:
    packed when every part is and the union of their values fits, else plain,
    with float32 values only if every part has them."""
    indptr = np.concatenate([[0], np.cumsum(np.concatenate([np.zeros(0, np.int64)] + [p[0] for p in parts]))])
    indptr = indptr.astype(np.int64)
    shape = (int(indptr.shape[0] - 1), int(n))
    if parts and all(p[3] is not None for p in parts):
        table = np.unique(np.concatenate([p[4] for p in parts]))
        bits = column_bits(n)
        if len(table) <= _value_room(n):
            packed = np.empty(int(indptr[-1]), np.uint32)
            at = 0
            for p in parts:
                if np.array_equal(p[4], table):
                    packed[at:at + len(p[3])] = p[3]
                else:  # renumber the part's values against the union
                    _recode(p[3], np.searchsorted(table, p[4]).astype(np.uint32), packed[at:at + len(p[3])], bits)
                at += len(p[3])
            return CompactCSR(indptr, None, None, shape, packed, table, bits)
    parts = [p if p[3] is None else (p[0], *_unpack(p[3], p[4], n)) for p in parts]
    dtype = np.float32 if all(p[2].dtype == np.float32 for p in parts) else np.float64
    indices = np.concatenate([np.zeros(0, _index_dtype(n))] + [p[1] for p in parts])
    data = np.concatenate([np.zeros(0, dtype)] + [p[2].astype(dtype, copy=False) for p in parts])
    return CompactCSR(indptr, indices, data, shape)


FEW_VALUES = 64  # distinct values a block's table is found by scanning, not by sorting


GRID_SLOTS = 128  # half-steps 0, 0.5, .., 63.5 looked up directly by few_values


@numba.njit(cache=True, nogil=True)
def few_values(data, seen, codes):  # pragma: no cover - compiled
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
def _recode(packed, codes, out, bits):  # pragma: no cover - compiled
    """Each packed entry's value index ``v`` replaced by ``codes[v]`` (``bits``: column bits)."""
    mask = np.uint32((1 << bits) - 1)
    shift = np.uint32(bits)
    for e in range(len(packed)):
        x = packed[e]
        out[e] = (codes[x >> shift] << shift) | (x & mask)


class Entries(NamedTuple):
    """A :class:`CompactCSR`'s arrays as the compiled loops that read either form take
    them, one argument: row pointers ``ptr``; columns ``idx`` and values ``val`` (plain
    form) or ``packed`` entries and their value ``table`` (packed form), empty arrays
    standing for the form it does not have; ``is_packed`` says which, ``bits`` how many
    low bits of a packed entry hold its column."""

    ptr: np.ndarray
    idx: np.ndarray
    val: np.ndarray
    packed: np.ndarray
    table: np.ndarray
    is_packed: bool
    bits: int


def entries(Q) -> Entries:
    """The :class:`Entries` of a :class:`CompactCSR`."""
    if Q.packed is not None:
        return Entries(Q.indptr, np.zeros(0, np.uint16), np.zeros(0), Q.packed, Q.table, True, int(Q.bits))
    return Entries(Q.indptr, Q.indices, Q.data, np.zeros(0, np.uint32), np.zeros(0), False, 16)


@numba.njit(cache=True, nogil=True, inline="always")
def _entry(e, q):  # pragma: no cover - compiled
    """``(column, value as float64)`` of entry ``q`` of :class:`Entries` ``e`` (either form)."""
    if e.is_packed:
        x = np.int64(e.packed[q])
        return x & ((1 << e.bits) - 1), e.table[x >> e.bits]
    return np.int64(e.idx[q]), np.float64(e.val[q])


@numba.njit(cache=True, nogil=True)
def column_squares(e, out):  # pragma: no cover - compiled
    """Add the square of every entry's value to its column's total in ``out`` (:class:`Entries`, either form)."""
    for q in range(len(e.packed) if e.is_packed else len(e.idx)):
        c, v = _entry(e, q)
        out[c] += v * v


@numba.njit(cache=True, nogil=True)
def column_counts(e, out):  # pragma: no cover - compiled
    """Add 1 to ``out`` at every entry's column (:class:`Entries`, either form): the numbers
    of raters in one pass (NumPy's bincount of the masked packed entries made two copies of
    them: 30 against 5 ms at 6M ratings, on the way to every fit task)."""
    for q in range(len(e.packed) if e.is_packed else len(e.idx)):
        c, _ = _entry(e, q)
        out[c] += 1.0


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
    e = entries(Q)
    slice_count(e, lo, hi, first, indptr)
    np.cumsum(indptr, out=indptr)
    indices = np.empty(int(indptr[-1]), np.int32)
    data = np.empty(int(indptr[-1]))
    slice_fill(e, lo, hi, first, indptr[:-1].copy(), indices, data)
    return sp.csr_matrix((data, indices, indptr), shape=(hi - lo, m))


@numba.njit(cache=True, nogil=True)
def slice_count(e, lo, hi, first, counts):  # pragma: no cover
    """Each row's first entry at or after column ``lo`` into ``first``, and the entries
    of every column ``lo .. hi`` into ``counts[1:]`` (:class:`Entries` ``e``, either
    form).  A plain scan from each row's start: three times faster than a binary search for ``lo`` (measured on the 20M
    set), whose every step is an unpredictable branch."""
    q_ptr = e.ptr
    for u in range(len(q_ptr) - 1):
        b = q_ptr[u + 1]
        f = b
        for q in range(q_ptr[u], b):
            c = _entry(e, q)[0]
            if c >= lo:
                if f == b:
                    f = q
                if c >= hi:
                    break
                counts[c - lo + 1] += 1
        first[u] = f


@numba.njit(cache=True, nogil=True)
def slice_fill(e, lo, hi, first, at, indices, data):  # pragma: no cover
    """Each entry of :class:`Entries` ``e`` in columns ``lo .. hi`` from ``first`` on, as
    row ``u`` of column ``c - lo``, at ``at[c - lo]``."""
    q_ptr = e.ptr
    for u in range(len(q_ptr) - 1):
        for q in range(first[u], q_ptr[u + 1]):
            c, v = _entry(e, q)
            if c >= hi:
                break
            w = at[c - lo]
            indices[w] = u
            data[w] = v
            at[c - lo] = w + 1
