"""Predictions' weighted sums: each (x, y) pair over its k most similar rated neighbours."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["score_pairs"]


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
