"""Why a Top-N list holds what it holds: the largest terms of each listed column's sum.

The terms are the ones :func:`dcf.kernels.recommend_rows` sums (``A[u, j] B[j, c]``), found
again for the listed columns only.
"""

from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp

from .sparse import csr_arrays, owned

__all__ = ["explain_rows"]


def explain_rows(A, B, cols, top=3):
    """Why each listed column scores what it does: of the terms ``A[u, j] B[j, c]`` that
    :func:`~dcf.kernels.recommend_rows` sums for row ``u`` and column ``c = cols[u, t]`` (``-1``: none),
    the ``top`` largest (ties: the one met first, the lower ``j`` in sorted rows), and their
    sum, added in the order the Top-N kernel adds them (``A``'s row order), so for the sum
    ranking the same double as the score.

    Returns
    -------
    js : (r, n, top) int64, the ``j`` of each kept term (-1 where fewer)
    terms : (r, n, top) float64
    totals : (r, n) float64
    """
    B = sp.csr_matrix(B)
    if not B.has_sorted_indices:
        B = B.sorted_indices()
    cols = owned(cols, np.int64)
    js = np.full(cols.shape + (int(top),), -1, np.int64)
    terms = np.zeros(cols.shape + (int(top),))
    totals = np.zeros(cols.shape)
    _explain(csr_arrays(A, np.int64), csr_arrays(B, np.int64), cols, js, terms, totals)
    return js, terms, totals


@numba.njit(cache=True, nogil=True)
def _explain(a, b, cols, js, terms, totals):  # pragma: no cover - compiled
    """:func:`explain_rows`'s loop (:class:`~dcf.kernels.sparse.CsrArrays` ``a`` and ``b``,
    ``b``'s columns sorted within each row)."""
    top = js.shape[2]
    for u in range(cols.shape[0]):
        for t in range(cols.shape[1]):
            c = cols[u, t]
            if c < 0:
                continue
            have = 0
            total = 0.0
            for p in range(a.ptr[u], a.ptr[u + 1]):
                j = a.idx[p]
                lo, hi = b.ptr[j], b.ptr[j + 1]
                q = lo + np.searchsorted(b.idx[lo:hi], c)
                if q >= hi or b.idx[q] != c:
                    continue
                x = a.val[p] * b.val[q]
                total += x
                if have == top and not x > terms[u, t, top - 1]:  # an equal term keeps the lower j
                    continue
                pos = have if have < top else top - 1
                have = min(have + 1, top)
                while pos > 0 and x > terms[u, t, pos - 1]:
                    terms[u, t, pos] = terms[u, t, pos - 1]
                    js[u, t, pos] = js[u, t, pos - 1]
                    pos -= 1
                terms[u, t, pos] = x
                js[u, t, pos] = j
            totals[u, t] = total
