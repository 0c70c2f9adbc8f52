"""The similarity measures: their names, how the kernels compute each, and what they need.

:data:`MEASURES` and the values each expects (:data:`INPUTS`), the kernels' mode of
each (:func:`measure_mode`), the per-entity totals a measure divides by
(:func:`entity_totals` from a block, :func:`column_totals` from the shared matrix),
and whether :func:`dcf.kernels.rows.similarity_rows` takes its fast path
(:func:`fast_topk`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .codec import CompactCSR, column_counts, column_squares, compact_csr, entries
from .sparse import row_norms

__all__ = [
    "Measure", "MEASURE", "SimilaritySettings", "MEASURES", "INPUTS", "CO_RATED", "NORMS", "PEARSON", "JACCARD",
    "COOCCURRENCE", "LIFT", "LLR", "DOT", "BINARY", "MAX_ALPHA", "measure",
    "measure_mode", "needs_norms",
    "entity_totals", "column_totals", "fast_topk",
]


# how the kernels compute each measure: the numerator over co-raters and the denominator
CO_RATED, NORMS, PEARSON, JACCARD, COOCCURRENCE, LIFT, LLR, DOT = 0, 1, 2, 3, 4, 5, 6, 7
# the modes that read who rated, not the values (SAR's measures over binarised
# co-occurrence, Mahout's log-likelihood ratio)
BINARY = (JACCARD, COOCCURRENCE, LIFT, LLR)


@dataclass(frozen=True)
class Measure:
    """One similarity measure, whole: what it reads, how a pair is scored, its rules.

    Attributes
    ----------
    name : str
    mode : int
        How the kernels score a pair: :data:`CO_RATED` (a cosine over the co-raters),
        :data:`NORMS` (the dot product over whole-vector norms), :data:`PEARSON`
        (centred on the means over the co-raters), or over who rated (values ignored):
        :data:`JACCARD`, :data:`COOCCURRENCE` (the number of co-raters), :data:`LIFT`
        (co-raters over the product of both numbers of raters) and :data:`LLR` (Mahout's
        log-likelihood similarity, which also reads the number of others); :data:`DOT`
        is the plain dot product over the co-raters (implicit's BM25 similarity is not
        normalised).
    centre : {"none", "other-means", "entity-means", "baseline"}
        What the ratings are centred on before the kernels see them: nothing, each
        other side's mean (``adjusted-cosine``), the entity's own mean
        (``centred-cosine``) or the baseline estimate (``pearson-baseline``, which
        needs the fitted biases).
    inputs : str
        The values the kernels are given, in words.
    min_co_raters : int
        The least ``min_support`` the measure accepts (2 for ``pearson-baseline``).
    shrink_offset : float
        Shrinkage is :math:`(n - o) / (n - o + \\lambda)` with this offset ``o``.
    weighting : {"none", "bm25", "tfidf"}
        How each rating is weighed before the kernels see it, as implicit's
        ``bm25_weight`` and ``tfidf_weight`` do (:mod:`dcf.kernels.weights`); the
        weights read every entity's totals, so any new rating moves them all.
    asymmetric : bool
        ``s(x, y)`` differs from ``s(y, x)`` (``conditional``: the other side's number
        of raters is discounted by ``alpha``): every tile is computed, none mirrored.

    To add a measure: one entry in :data:`MEASURE` (and, for a new ``mode``, its
    branch in the kernels), its name in :data:`dcf.config.CHOICES` (tested equal),
    and its tests against the pair-by-pair reference.
    """

    name: str
    mode: int
    centre: str = "none"
    inputs: str = "ratings"
    min_co_raters: int = 1
    shrink_offset: float = 0.0
    weighting: str = "none"
    asymmetric: bool = False

    @property
    def needs_biases(self) -> bool:
        """Scored on baseline residuals: the fit needs the baseline biases first, and
        every new rating moves them (a refresh refits whole)."""
        return self.centre == "baseline"

    @property
    def reads_values(self) -> bool:
        """Reads the values, not only who rated (time decay changes its similarities)."""
        return self.mode not in BINARY

    @property
    def needs_norms(self) -> bool:
        """Divided by per-entity totals (:func:`entity_totals`)."""
        return self.mode in (NORMS, JACCARD, LIFT, LLR)

    @property
    def reads_others(self) -> bool:
        """Reads the number of others (the users, for item-based CF): a new one moves
        every pair's similarity."""
        return self.mode == LLR

    @property
    def reads_all(self) -> bool:
        """Compares values weighed by every entity's totals (:attr:`weighting`): a new
        rating anywhere moves every pair's similarity."""
        return self.weighting != "none"


MEASURE = {m.name: m for m in (
    Measure("cosine", CO_RATED),
    Measure("full-cosine", NORMS),
    Measure("pearson-baseline", CO_RATED, "baseline", "baseline residuals", min_co_raters=2, shrink_offset=1.0),
    Measure("pearson", PEARSON),
    Measure("adjusted-cosine", CO_RATED, "other-means", "ratings minus the other side's means"),
    Measure("centred-cosine", NORMS, "entity-means", "ratings minus the entity's mean"),
    Measure("jaccard", JACCARD, inputs="ratings (values ignored)"),
    Measure("cooccurrence", COOCCURRENCE, inputs="ratings (values ignored)"),
    Measure("lift", LIFT, inputs="ratings (values ignored)"),
    Measure("llr", LLR, inputs="ratings (values ignored)"),
    Measure("bm25", DOT, weighting="bm25", inputs="BM25-weighted ratings"),
    Measure("tfidf", NORMS, weighting="tfidf", inputs="TF-IDF-weighted ratings"),
    Measure("conditional", LIFT, inputs="ratings (values ignored)", asymmetric=True),
)}
MAX_ALPHA = 10.0  # conditional's discount: 0 .. 1 in Deshpande and Karypis; past 10 a count ** alpha overflows
MEASURES = tuple(MEASURE)
INPUTS = {m.name: m.inputs for m in MEASURE.values()}  # what the caller passes the kernels


def measure(name) -> Measure:
    """The :class:`Measure` called ``name`` (ValueError naming the choices otherwise)."""
    if name not in MEASURE:
        raise ValueError(f"unknown similarity {name!r}; choose from {', '.join(MEASURES)}")
    return MEASURE[name]


@dataclass(frozen=True)
class SimilaritySettings:
    """A measure and its post-processing, as one validated value that travels whole.

    Attributes
    ----------
    measure : str
        One of :data:`MEASURES`.
    min_support : int
        Fewer co-raters give 0 (at least the measure's ``min_co_raters``).
    shrinkage : float
        :math:`s \\cdot (n - o) / (n - o + \\lambda)`; 0 disables.
    significance : float
        Herlocker's weighting, :math:`s \\cdot \\min(n, \\gamma) / \\gamma`; 0 disables.
    min_similarity : float
        Similarities below it are no neighbours.
    bm25_k1, bm25_b : float
        ``bm25``'s term saturation :math:`k_1 \\ge 0` and length normalisation
        :math:`0 \\le b \\le 1` (implicit's ``K1`` and ``B``; read by ``bm25`` only).
    alpha : float
        ``conditional``'s popularity discount: :math:`|C| / (|x| \\, |y|^\\alpha)` (0: the
        conditional probability of y given x; 1: ``lift``).
    include_self : bool
        Each entity is a candidate in its own top-k list, with its own similarity (about
        1 for the cosines, :math:`\\sum w^2` for ``bm25``), as implicit's lists are (K - 1
        others); also its whole row's diagonal then holds that value instead of 1.

    Examples
    --------
    >>> SimilaritySettings("full-cosine").fast_topk(dense=False, k=50)
    True
    """

    measure: str = "cosine"
    min_support: int = 1
    shrinkage: float = 0.0
    significance: float = 0.0
    min_similarity: float = 0.0
    bm25_k1: float = 1.2
    bm25_b: float = 0.75
    include_self: bool = False
    alpha: float = 0.5

    def __post_init__(self):
        measure(self.measure)
        if isinstance(self.min_support, bool) or not isinstance(self.min_support, (int, np.integer)) \
                or self.min_support < 0:
            raise ValueError(f"min_support must be an integer >= 0, not {self.min_support!r}")
        for name in ("shrinkage", "significance", "min_similarity"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not np.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a finite number >= 0, not {v!r}")
        for name, v in (("bm25_k1", self.bm25_k1), ("bm25_b", self.bm25_b), ("alpha", self.alpha)):
            if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not np.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a finite number >= 0, not {v!r}")
        if self.bm25_b > 1:
            raise ValueError(f"bm25_b must be between 0 and 1, not {self.bm25_b!r}")
        if self.alpha > MAX_ALPHA:  # a count ** alpha past the largest double: every similarity 0
            raise ValueError(f"alpha must be between 0 and {MAX_ALPHA:g}, not {self.alpha!r}")
        if not isinstance(self.include_self, (bool, np.bool_)):
            raise ValueError(f"include_self must be True or False, not {self.include_self!r}")
        object.__setattr__(self, "min_support", int(self.min_support))
        for name in ("shrinkage", "significance", "min_similarity", "bm25_k1", "bm25_b", "alpha"):
            object.__setattr__(self, name, float(getattr(self, name)))
        object.__setattr__(self, "include_self", bool(self.include_self))

    @property
    def spec(self) -> Measure:
        """The :class:`Measure` itself."""
        return MEASURE[self.measure]

    def column_totals(self, totals):
        """The totals a pair's other side (the column) is divided by: ``totals`` itself,
        or for ``conditional`` its popularity discount ``totals ** alpha``."""
        if not self.spec.asymmetric or totals is None:
            return totals
        return np.asarray(totals, np.float64) ** self.alpha

    @property
    def weights(self) -> tuple:
        """``(significance, min_similarity)``, as the kernels take them."""
        return self.significance, self.min_similarity

    def fast_topk(self, dense: bool, k) -> bool:
        """Whether the rows kernel takes its fast path (:func:`fast_topk`)."""
        return fast_topk(self.measure, self.min_support, self.shrinkage, self.significance, dense, k)


def measure_mode(name, min_support, shrinkage):
    """``(mode, min_support, shrink_offset)`` of a measure.  ``pearson-baseline`` is the
    co-rated cosine of baseline residuals (the caller passes residuals, see
    :func:`dcf.baseline.residuals`), with at least 2 co-raters and shrinkage
    :math:`(n - 1) / (n - 1 + \\lambda)`, as scikit-surprise defines it."""
    m = measure(name)
    return m.mode, max(int(min_support), m.min_co_raters), m.shrink_offset


def needs_norms(name) -> bool:
    """The measure's denominator uses per-entity totals (:func:`entity_totals`)."""
    return measure(name).needs_norms


def entity_totals(P, measure):
    """Per-row totals a measure divides by: Euclidean norms (``full-cosine``,
    ``centred-cosine``, ``tfidf``) or numbers of ratings (``jaccard``, ``lift``, ``llr``,
    ``conditional``); None for the others."""
    mode = MEASURE[measure].mode
    if mode == NORMS:
        return row_norms(P)
    if mode in (JACCARD, LIFT, LLR):
        return np.diff(sp.csr_matrix(P).indptr).astype(np.float64)
    return None


def column_totals(Q, measure):
    """:func:`entity_totals` of every entity, from the matrix the similarity tasks share
    (others x entities, :class:`CompactCSR`) in one pass: the norms, summed over
    the others in ascending order as :func:`row_norms` sums a row of the
    transpose (so the same bits), or the numbers of ratings for ``jaccard``,
    ``lift`` and ``llr``; None for measures that need neither."""
    mode = MEASURE[measure].mode
    if mode not in (NORMS, JACCARD, LIFT, LLR):
        return None
    if not isinstance(Q, CompactCSR):
        Q = compact_csr(sp.csr_matrix(Q).sorted_indices())
    n = int(Q.shape[1])
    out = np.zeros(n)
    if mode in (JACCARD, LIFT, LLR):
        column_counts(entries(Q), out)
        return out
    column_squares(entries(Q), out)
    return np.sqrt(out)


def fast_topk(measure, min_support=1, shrinkage=0.0, significance=0.0, dense=False, k=None) -> bool:
    """Whether :func:`similarity_rows` takes its fast path: a measure divided by
    per-entity norms (``full-cosine``, ``centred-cosine``, ``tfidf``; ``lift``: the
    numbers of raters, every value read as 1) or by none (``bm25``, ``cooccurrence``:
    the fast path with every norm 1), or a measure of the co-count scored directly
    (``jaccard``, ``llr``: :class:`dcf.kernels.direct.Exact`), with no co-rater counts
    (``min_support`` 1, no shrinkage or significance weighting), top-k lists only.
    Its similarities are the general kernel's, bit for bit; it accumulates one
    term per pair with no bookkeeping of which pairs were touched, and may read
    the packed form of :class:`CompactCSR`."""
    mode, min_support, _ = measure_mode(measure, min_support, shrinkage)
    return (mode in (NORMS, DOT, COOCCURRENCE, LIFT, JACCARD, LLR) and min_support <= 1 and not shrinkage > 0
            and not significance > 0 and not dense and k is not None and int(k) > 0)
