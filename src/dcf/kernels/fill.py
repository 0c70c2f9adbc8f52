"""The popularity fill of Top-N lists with fewer than N scored columns: each short row
takes the most popular columns it has neither rated nor listed, in one compiled loop.

(A vectorised fill compared every short row with a window of the popularity order as
wide as the heaviest rater's history, and each window column with every listed one:
the popularity baseline, whose every row is short, took 4.6 s of task time on the paper
shape's 100k users; benchmarks/RESULTS.md, issue 21.)
"""

from __future__ import annotations

import numba
import numpy as np

from .sparse import owned

__all__ = ["filled_lists"]


def filled_lists(out, rated, order):
    """``(cols, vals, filled)`` of a Top-N table ``out`` (:class:`~dcf.kernels.topn.TopNTable`)
    whose rows with fewer than n listed columns are filled, in order, with the columns of
    ``order`` (most popular first) that the row has not rated (``rated``: the
    :class:`~dcf.kernels.sparse.CsrArrays` of its pattern) and not listed; ``filled`` marks
    them (their ``vals`` stay 0).  Rows keep -1 where ``order`` runs out."""
    r, n = out.cols.shape
    filled = np.zeros((r, n), np.bool_)
    short = np.flatnonzero(out.have < n)
    if len(short):
        order = owned(order, np.int64)  # writable: one compiled signature (sparse.owned)
        m = max(int(order.max()) + 1 if len(order) else 0, int(rated.idx.max()) + 1 if len(rated.idx) else 0,
                int(out.cols.max()) + 1)
        _fill_rows(out.cols, filled, short, out.have, rated.ptr, rated.idx, order, np.zeros(m, np.bool_))
    return out.cols, out.vals, filled


@numba.njit(cache=True, nogil=True)
def _fill_rows(cols, filled, short, have, r_ptr, r_idx, order, seen):  # pragma: no cover - compiled
    """:func:`filled_lists`'s loop; ``seen`` all False, as long as the largest column + 1."""
    n = cols.shape[1]
    for s in range(len(short)):
        row = short[s]
        got = have[row]
        for p in range(r_ptr[row], r_ptr[row + 1]):
            seen[r_idx[p]] = True
        for t in range(got):
            seen[cols[row, t]] = True
        slot = got
        for e in range(len(order)):
            if slot == n:
                break
            c = order[e]
            if not seen[c]:
                cols[row, slot] = c
                filled[row, slot] = True
                slot += 1
        for p in range(r_ptr[row], r_ptr[row + 1]):
            seen[r_idx[p]] = False
        for t in range(got):
            seen[cols[row, t]] = False
