"""Similarities between the rows of two CSR blocks as one dense tile (sparse products).

The definition every other similarity kernel is tested against, and what
:func:`dcf.similarity.similarity_tiles` computes tile by tile.
"""

from __future__ import annotations

import numpy as np

from .general import llr_similarities, xlogx_table
from .measures import BINARY, CO_RATED, JACCARD, LIFT, LLR, NORMS, PEARSON, SimilaritySettings, measure_mode
from .sparse import binary, row_norms

__all__ = ["similarity_tile"]


def similarity_tile(Pa, Pb, measure="cosine", min_support=1, shrinkage=0.0, diagonal=False,
                    significance=0.0, min_similarity=0.0, alpha=0.5):
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
    ``jaccard`` is :math:`|C| / (|x| + |y| - |C|)` over who rated, values ignored;
    ``conditional`` :math:`|C| / (|x| \\, |y|^\\alpha)` (Deshpande and Karypis' conditional
    probability of y given x, the popularity of y discounted by ``alpha``; not symmetric);
    ``cooccurrence`` is :math:`|C|` and ``lift`` :math:`|C| / (|x| |y|)`, as Microsoft
    Recommenders' SAR defines them over binarised co-occurrence; ``llr`` is Mahout's
    ``LogLikelihoodSimilarity`` :math:`1 - 1 / (1 + L)`, with :math:`L` the
    log-likelihood ratio of the 2 x 2 table of who rated x, y, both and neither
    among the ``m`` others (:func:`~dcf.kernels.general.llr_similarity`).

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
    mode, min_support, offset = measure_mode(measure, min_support, shrinkage)
    Ea, Eb = binary(Pa), binary(Pb)
    freq = (Ea @ Eb.T).toarray()
    if mode in BINARY:
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
    elif mode in (JACCARD, LIFT, LLR):
        ca = np.diff(Pa.indptr).astype(np.float64)
        cb = np.diff(Pb.indptr).astype(np.float64)
        if mode == LLR:  # the similarity itself (over 1), for the pairs with a co-rater
            total = Pa.shape[1]
            prods = np.where(prods > 0, llr_similarities(prods, ca, cb, float(total), xlogx_table(total)), 0.0)
            den = np.ones_like(prods)
        else:
            cb = SimilaritySettings(measure, alpha=alpha).column_totals(cb)  # conditional: |y| ** alpha
            den = (ca[:, None] + cb[None, :]) - prods if mode == JACCARD else np.outer(ca, cb)
    else:  # COOCCURRENCE (the count itself), DOT (the dot product itself)
        den = np.ones_like(prods)
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
