"""A wide shared matrix with its columns renumbered most rated first, for the fast top-k loop.

Past :data:`RELABEL_ABOVE` columns, the fast top-k loop's per-column arrays (its sums,
the inverse norms, a flag: 17 bytes a column) are far past a core's cache, and under a
Zipf popularity the columns most products touch are scattered over all of them.
Numbered by how many ratings they hold (most first, ties by id), those columns sit
together in a few lines.  Measured on ``benchmarks/catalogue.py``'s matrices (300k
users, 5-6M ratings, every item, one thread, alternating processes): 1M items 6.3-6.9 ->
5.0-5.3 s (each row's columns sorted again; unsorted, 5.6-5.8 s); 150k items no gain
beyond this host's noise, for a copy that costs each worker 0.12-0.15 s to build; so a
narrower matrix keeps its numbering.

The loop reads the renumbered matrix and gives every list the original ids back
(:func:`dcf.kernels.rows.norms_topk`'s ``orig``), ties broken by them: the same lists
bit for bit (a column's sum adds the same products in the same order, the raters').
A worker's tasks share one renumbered copy per shared matrix (:func:`relabelled`),
built by the first that needs it and dropped with the matrix.
"""

from __future__ import annotations

import threading
import weakref
from typing import NamedTuple

import numba
import numpy as np

from .codec import CompactCSR

__all__ = ["RELABEL_ABOVE", "Relabelled", "popular_first", "relabelled", "forget"]

RELABEL_ABOVE = 1 << 19  # columns past which the fast top-k loop reads a renumbered copy


class Relabelled(NamedTuple):
    """A :class:`CompactCSR` renumbered by :func:`popular_first`: ``matrix``, the original
    id of each new column (``orig``, int64) and the new column of each original id
    (``rank``, int64)."""

    matrix: CompactCSR
    orig: np.ndarray
    rank: np.ndarray


def popular_first(Q: CompactCSR) -> Relabelled:
    """``Q`` with its columns renumbered by their number of entries, most first (ties by
    the lower id), each row's entries sorted by the new numbering; either form."""
    n = int(Q.shape[1])
    if Q.packed is not None:
        mask = np.uint32((1 << Q.bits) - 1)
        columns = Q.packed & mask
    else:
        columns = Q.indices
    counts = np.bincount(columns, minlength=n)
    orig = np.argsort(-counts, kind="stable").astype(np.int64)
    rank = np.empty(n, np.int64)
    rank[orig] = np.arange(n, dtype=np.int64)
    if Q.packed is not None:
        packed = np.empty_like(Q.packed)
        _renumber_packed(Q.indptr, Q.packed, rank, Q.bits, packed)
        return Relabelled(Q._replace(packed=packed), orig, rank)
    indices, data = np.empty_like(Q.indices), np.empty_like(Q.data)
    _renumber_plain(Q.indptr, Q.indices, Q.data, rank, indices, data)
    return Relabelled(Q._replace(indices=indices, data=data), orig, rank)


SHORT_ROW = 32  # a row up to this long is sorted in place by insertion, a longer one by a sort of its keys


@numba.njit(cache=True, nogil=True)
def _renumber_packed(ptr, packed, rank, bits, out):  # pragma: no cover - compiled
    """Each packed entry's column replaced by its ``rank``, each row sorted by it."""
    mask = np.uint32((1 << bits) - 1)
    for u in range(len(ptr) - 1):
        lo, hi = ptr[u], ptr[u + 1]
        for q in range(lo, hi):
            x = packed[q]
            out[q] = (x & ~mask) | np.uint32(rank[np.int64(x & mask)])
        if hi - lo <= SHORT_ROW:
            for q in range(lo + 1, hi):
                x = out[q]
                w = q
                while w > lo and (out[w - 1] & mask) > (x & mask):
                    out[w] = out[w - 1]
                    w -= 1
                out[w] = x
        else:  # column in the high half of a key, the value's index in the low
            keys = np.empty(hi - lo, np.uint64)
            for q in range(lo, hi):
                x = out[q]
                keys[q - lo] = (np.uint64(x & mask) << np.uint64(32)) | np.uint64(x >> np.uint32(bits))
            keys.sort()
            for w in range(hi - lo):
                y = keys[w]
                out[lo + w] = (np.uint32(y & np.uint64(0xFFFFFFFF)) << np.uint32(bits)) | np.uint32(y >> np.uint64(32))


@numba.njit(cache=True, nogil=True)
def _renumber_plain(ptr, indices, data, rank, out_indices, out_data):  # pragma: no cover - compiled
    """Each entry's column replaced by its ``rank``, each row sorted by it, values carried."""
    for u in range(len(ptr) - 1):
        lo, hi = ptr[u], ptr[u + 1]
        if hi - lo <= SHORT_ROW:
            for q in range(lo, hi):
                c = rank[np.int64(indices[q])]
                v = data[q]
                w = q
                while w > lo and out_indices[w - 1] > c:
                    out_indices[w] = out_indices[w - 1]
                    out_data[w] = out_data[w - 1]
                    w -= 1
                out_indices[w] = c
                out_data[w] = v
        else:
            keys = np.empty(hi - lo, np.int64)
            for q in range(lo, hi):
                keys[q - lo] = rank[np.int64(indices[q])]
            order = np.argsort(keys)
            for w in range(hi - lo):
                out_indices[lo + w] = keys[order[w]]
                out_data[lo + w] = data[lo + order[w]]


_LOCK = threading.Lock()
_HELD: dict = {}  # id of a shared matrix's column array -> (weak reference to it, its Relabelled)


def relabelled(Q: CompactCSR) -> Relabelled:
    """:func:`popular_first` of the shared matrix ``Q``, built once per process while
    ``Q``'s arrays live (the fit's tasks on a worker all read the same ``Q``); the copy
    goes with them."""
    key = Q.packed if Q.packed is not None else Q.indices
    with _LOCK:
        held = _HELD.get(id(key))
        if held is not None and held[0]() is key:
            return held[1]
        out = popular_first(Q)
        _HELD[id(key)] = (weakref.ref(key, lambda _, k=id(key): _HELD.pop(k, None)), out)
        return out


def forget() -> None:
    """Drop every renumbered copy this process holds (the next call builds it again: a
    benchmark times a fit's build that way)."""
    with _LOCK:
        _HELD.clear()
