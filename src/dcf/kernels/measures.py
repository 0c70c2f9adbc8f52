"""The similarity measures: their names, how the kernels compute each, and what they need.

:data:`MEASURES` and the values each expects (:data:`INPUTS`), the kernels' mode of
each (:func:`measure_mode`), the per-entity totals a measure divides by
(:func:`entity_totals` from a block, :func:`column_totals` from the shared matrix),
and whether :func:`dcf.kernels.rows.similarity_rows` takes its fast path
(:func:`fast_topk`).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .codec import CompactCSR, column_squares, compact_csr, entries
from .sparse import row_norms

__all__ = [
    "MEASURES", "INPUTS", "CO_RATED", "NORMS", "PEARSON", "JACCARD", "measure_mode", "needs_norms",
    "entity_totals", "column_totals", "fast_topk",
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


def measure_mode(measure, min_support, shrinkage):
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
    column_squares(*entries(Q), packed, out)
    return np.sqrt(out)


def fast_topk(measure, min_support=1, shrinkage=0.0, significance=0.0, dense=False, k=None) -> bool:
    """Whether :func:`similarity_rows` takes its fast path: a measure divided by
    per-entity norms (``full-cosine``, ``centred-cosine``) with no co-rater counts
    (``min_support`` 1, no shrinkage or significance weighting), top-k lists only.
    Its similarities are the general kernel's, bit for bit; it accumulates one
    term per pair with no bookkeeping of which pairs were touched, and may read
    the packed form of :class:`CompactCSR`."""
    mode, min_support, _ = measure_mode(measure, min_support, shrinkage)
    return (mode == NORMS and min_support <= 1 and not shrinkage > 0 and not significance > 0
            and not dense and k is not None and int(k) > 0)
