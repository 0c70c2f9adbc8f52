"""The weightings a measure may put on the ratings before comparing them: BM25 and TF-IDF,
as implicit's ``bm25_weight`` and ``tfidf_weight`` compute them.

Entities are the "documents" and the others the "terms" (item-based CF: items are
documents over the users who touched them, as implicit's ``BM25Recommender`` weighs
``user_items.T``).  With :math:`N` entities, :math:`n_u` the number of entities other
``u`` rated and :math:`L_i = \\sum_u r_{ui}` entity i's total:

.. math::
    \\mathrm{idf}_u = \\log N - \\log(1 + n_u)

    \\mathrm{bm25}(r_{ui}) = \\frac{r_{ui} (k_1 + 1)}{k_1 \\left(1 - b + b L_i / \\bar L\\right)
                              + r_{ui}} \\, \\mathrm{idf}_u
    \\qquad \\mathrm{tfidf}(r_{ui}) = \\sqrt{r_{ui}} \\, \\mathrm{idf}_u

(:math:`\\bar L` the mean total over all N entities).  ``bm25`` is then the dot product
of the weighted vectors and ``tfidf`` their cosine (:mod:`dcf.kernels.measures`).  The
weights are evaluated in implicit's order of operations, one stored rating at a time,
so a rating weighs the same in the entity x others block and in its transpose.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

__all__ = ["Weights", "rating_weights", "weigh_block"]


class Weights(NamedTuple):
    """What :func:`weigh_block` needs: the ``weighting`` (``bm25`` or ``tfidf``), each
    other's ``idf``, each entity's BM25 length normalisation ``lengths`` (ones for
    ``tfidf``) and ``k1``."""

    weighting: str
    idf: np.ndarray
    lengths: np.ndarray
    k1: float


def rating_weights(weighting, entity_sums, other_counts, k1=1.2, b=0.75) -> Weights:
    """The :class:`Weights` of ``weighting`` from each entity's total ``entity_sums`` (N,)
    and each other's number of ratings ``other_counts`` (m,).

    Examples
    --------
    >>> w = rating_weights("tfidf", np.array([3.0, 1.0]), np.array([1, 2]))
    >>> w.idf.round(4).tolist()
    [0.0, -0.4055]
    """
    if weighting not in ("bm25", "tfidf"):
        raise ValueError(f"unknown weighting {weighting!r}: bm25 or tfidf")
    sums = np.asarray(entity_sums, np.float64)
    idf = np.log(float(len(sums))) - np.log1p(np.asarray(other_counts, np.float64))
    lengths = np.ones(len(sums))
    if weighting == "bm25" and len(sums):
        with np.errstate(invalid="ignore", divide="ignore"):  # all 0 (decayed away): NaN, refused by the caller
            lengths = (1.0 - b) + b * sums / sums.mean()
    return Weights(weighting, idf, lengths, float(k1))


def weigh_block(X, row0, weights: Weights, rows_are_entities: bool, idf: bool = True):
    """A CSR block of ratings with every stored value weighed (same structure; a weight that
    overflows is inf or NaN, for the caller to refuse).

    ``X`` holds entity rows ``row0 ..`` over every other (``rows_are_entities``), or
    other rows ``row0 ..`` over every entity.  ``idf=False``: ``bm25``'s weight without
    its factor :math:`\\mathrm{idf}_u`, the saturated rating alone (the same double as
    the weight's first factor), whose values are as few as the distinct pairs of a rating
    and an entity's length (see :func:`dcf.fitted.split_bm25`)."""
    X = sp.csr_matrix(X)
    rows = int(row0) + np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
    ent, oth = (rows, X.indices) if rows_are_entities else (X.indices, rows)
    r = X.data.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow gives inf: the caller refuses it
        if weights.weighting == "bm25":
            k1 = weights.k1
            data = r * (k1 + 1.0) / (k1 * weights.lengths[ent] + r)
            if idf:
                data = data * weights.idf[oth]
        elif not idf:
            raise ValueError("only bm25's weight is split from its idf")
        else:
            data = np.sqrt(r) * weights.idf[oth]
    return sp.csr_matrix((data, X.indices.copy(), X.indptr.copy()), shape=X.shape)
