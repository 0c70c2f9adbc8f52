"""Compiled top-k selection for the rows loops of :mod:`dcf.kernels.rows`.

Every list is ordered by similarity descending, then id ascending (the order of
:mod:`dcf.kernels.topk`).  Three ways to build one:

* :func:`insert` / :func:`offer`: a sorted list kept in its output row, each new entry
  shifted into place (k / 2 moves on average): cheap while few entries are offered, as in
  the dense scan, whose cut rises with the list;
* candidates cut down to about k, then :func:`ranked`: each written at its rank, counted
  branch-free (m x m comparisons, vectorised), for the tracked rows.  :func:`kth_largest`
  gives the cut (the k-th largest of the estimates, a branch-free quickselect in place,
  no allocation), :func:`above` keeps the candidates over it and :func:`scored` turns
  their estimates into similarities;
* :func:`keep` then :func:`emit`: a heap of the k best with the worst at its root (log k
  moves an entry), sorted once into the output row at the end: where k is too large to
  rank.

Candidates left over k after the cuts (many tied at the k-th similarity: the integer sums
of ``cooccurrence``, ``jaccard``'s and ``llr``'s few distinct values) are cut to exactly
the k first by :func:`best_k` (two selections, linear in their number) before they are ranked.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["insert", "offer", "kth_largest", "keep", "emit", "above", "scored", "ranked", "best_k"]


@numba.njit(cache=True, nogil=True, inline="always")
def insert(top_i, top_s, i, have, j, s):  # pragma: no cover - compiled
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


@numba.njit(cache=True, nogil=True, inline="always")
def offer(top_i, top_s, i, have, j, s, na, min_similarity, cut):  # pragma: no cover - compiled
    """Offer ``j`` with exact similarity ``s`` to row ``i``'s list (if ``s`` > 0 and not below
    ``min_similarity``); a full list raises the estimates' ``cut``. Returns ``(have, cut)``."""
    if s > 0 and not s < min_similarity:
        have = insert(top_i, top_s, i, have, j, s)
        if have == top_i.shape[1]:
            cut = max(cut, top_s[i, have - 1] * na * (1.0 - 1e-9))
    return have, cut


@numba.njit(cache=True, nogil=True)
def kth_largest(a, t, k):  # pragma: no cover - compiled
    """The ``k``-th largest of ``a[:t]`` (``1 <= k <= t``, no NaN), reordering ``a[:t]``.

    A quickselect around the median of three whose partitions move every element
    unconditionally and advance by the comparison (no branch to mispredict: twice as fast
    as Hoare's on random estimates), in two passes, those below the pivot then those
    equal to it, so that ties (common: few distinct ratings) end it at once; short ranges
    are sorted by insertion."""
    lo, hi = 0, t
    want = t - k
    while hi - lo > 16:
        x, y, z = a[lo], a[(lo + hi) >> 1], a[hi - 1]
        if x > y:
            x, y = y, x
        pivot = min(y, z) if x <= z else x  # the median of x <= y and z: in the range
        below = lo
        for i in range(lo, hi):
            x = a[i]
            a[i] = a[below]
            a[below] = x
            below += x < pivot
        if want < below:
            hi = below
            continue
        upto = below
        for i in range(below, hi):
            x = a[i]
            a[i] = a[upto]
            a[upto] = x
            upto += x <= pivot
        if want < upto:
            return pivot
        lo = upto  # > below: the pivot itself is in [below, upto)
    for i in range(lo + 1, hi):
        x = a[i]
        j = i
        while j > lo and a[j - 1] > x:
            a[j] = a[j - 1]
            j -= 1
        a[j] = x
    return a[want]


@numba.njit(cache=True, nogil=True, inline="always")
def _before(sa, ja, sb, jb):  # pragma: no cover - compiled
    """Whether ``(sa, ja)`` comes before ``(sb, jb)`` in a list."""
    return sa > sb or (sa == sb and ja < jb)


@numba.njit(cache=True, nogil=True)
def _sift(hs, hj, n, pos):  # pragma: no cover - compiled
    """Move the entry at ``pos`` of the heap ``hs`` / ``hj`` (``n`` entries, the one that
    comes last in a list at the root) down to its place."""
    while True:
        c = 2 * pos + 1
        if c >= n:
            return
        if c + 1 < n and _before(hs[c], hj[c], hs[c + 1], hj[c + 1]):
            c += 1
        if not _before(hs[pos], hj[pos], hs[c], hj[c]):
            return
        hs[pos], hs[c] = hs[c], hs[pos]
        hj[pos], hj[c] = hj[c], hj[pos]
        pos = c


@numba.njit(cache=True, nogil=True, inline="always")
def keep(hs, hj, have, j, s, min_similarity):  # pragma: no cover - compiled
    """Offer ``(j, s)`` (if ``s`` > 0 and not below ``min_similarity``) to the heap
    ``hs`` / ``hj`` of the ``len(hs)`` best, holding ``have``; returns the new count.
    The heap is ordered once it is full (until then entries are only appended)."""
    k = hs.shape[0]
    if not (s > 0) or s < min_similarity:
        return have
    if have < k:
        hs[have] = s
        hj[have] = j
        have += 1
        if have == k:
            for pos in range(k // 2 - 1, -1, -1):
                _sift(hs, hj, k, pos)
    elif _before(s, j, hs[0], hj[0]):
        hs[0] = s
        hj[0] = j
        _sift(hs, hj, k, 0)
    return have


@numba.njit(cache=True, nogil=True)
def emit(hs, hj, have, top_i, top_s, i):  # pragma: no cover - compiled
    """Write the ``have`` entries :func:`keep` collected into row ``i`` of the table
    ``top_i`` / ``top_s``, in list order (the rest of the row is left as it is)."""
    if have < hs.shape[0]:
        for pos in range(have // 2 - 1, -1, -1):
            _sift(hs, hj, have, pos)
    m = have
    while m > 0:  # the root comes last of those left
        m -= 1
        top_s[i, m] = hs[0]
        top_i[i, m] = hj[0]
        hs[0] = hs[m]
        hj[0] = hj[m]
        _sift(hs, hj, m, 0)


@numba.njit(cache=True, nogil=True)
def ranked(s, j, m, top_i, top_s, i):  # pragma: no cover - compiled
    """Write the best of ``m`` entries (similarities ``s``, distinct ids ``j``) into row ``i``
    of the table ``top_i`` / ``top_s``, in list order (the rest of the row is left as it
    is): each entry goes to its rank, the number of entries that come before it, counted
    branch-free (m x m comparisons, vectorised: for a few k entries, several times
    quicker than a heap's sifts, whose every step is a branch to mispredict)."""
    k = top_i.shape[1]
    for a in range(m):
        sa, ja = s[a], j[a]
        r = 0
        for b in range(m):
            r += (s[b] > sa) | ((s[b] == sa) & (j[b] < ja))
        if r < k:
            top_s[i, r] = sa
            top_i[i, r] = ja


@numba.njit(cache=True, nogil=True)
def above(cut, cj, est, cp, m):  # pragma: no cover - compiled
    """Keep the first ``m`` candidates (columns ``cj``, estimates ``est``, sums ``cp``)
    whose estimate is over ``cut``, in place, branch-free; returns how many."""
    kept = 0
    for c in range(m):
        x = est[c]
        cj[kept] = cj[c]
        est[kept] = x
        cp[kept] = cp[c]
        kept += x > cut
    return kept


@numba.njit(cache=True, nogil=True)
def scored(direct, cj, est, cp, m, na, norms, min_similarity):  # pragma: no cover - compiled
    """Replace the ``m`` candidates' estimates by their similarities (``est`` already is,
    where ``direct``), keeping those over 0 and not under ``min_similarity``; returns how many."""
    kept = 0
    for c in range(m):
        j = cj[c]
        x = est[c] if direct else cp[c] / (na * norms[j])
        cj[kept] = j
        est[kept] = x
        kept += (x > 0) & (not x < min_similarity)
    return kept


@numba.njit(cache=True, nogil=True)
def best_k(s, j, m, k, ss, sj):  # pragma: no cover - compiled
    """Cut the ``m`` candidates (similarities ``s``, distinct ids ``j``; ``m > k >= 1``) to
    the ``k`` that come first in a list (similarity descending, then id ascending), in
    place and in no order; returns k.  ``ss`` (float64) and ``sj`` (int64): scratch of at
    least ``m``.  The k-th largest similarity by :func:`kth_largest`; those over it are
    kept, and of those equal to it the lowest ids, found by a second selection over the
    tied ids (a tie at the cut of integer sums held a median 116 candidates, a tenth of
    rows 378 or more, on the e-commerce shape's ``cooccurrence``: ranked, m x m
    comparisons, or through a heap, m log k branches)."""
    for c in range(m):
        ss[c] = s[c]
    kth = kth_largest(ss, m, k)
    g, e = 0, 0
    for c in range(m):  # branch-free: those over the k-th to the front, the tied ids aside
        x, y = s[c], j[c]
        s[g] = x
        j[g] = y
        g += x > kth
        sj[e] = y
        e += x == kth
    need = k - g
    last = np.iinfo(np.int64).max  # the highest tied id kept: all, where they are no more than needed
    if e > need:  # the need-th lowest tied id: minus the need-th largest of their negatives
        for c in range(e):
            sj[c] = -sj[c]
        last = -kth_largest(sj, e, need)  # (reorders them: the same ids, in another order)
        for c in range(e):
            sj[c] = -sj[c]
    for c in range(e):
        y = sj[c]
        s[g] = kth
        j[g] = y
        g += y <= last
    return g
