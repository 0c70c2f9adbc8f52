"""``KNN``: the scikit-learn-style neighbourhood estimator (``ItemKNN`` and ``UserKNN``
fix its ``based``, :mod:`dcf.model.variants`; an example in :mod:`dcf.model`)."""

from __future__ import annotations

import dask.array as da
import numpy as np

from .. import store
from ..cluster import memory_budget
from ..decay import Decay, decay_of
from ..errors import ConfigError, NotFittedError
from ..estimator import Estimator
from ..fitted import FittedState, derived
from ..fitting import fit_matrix, rating_matrix
from ..kernels import SimilaritySettings
from ..predict import ScoringRule
from ..presets import preset
from ..refresh import refresh as refresh_model
from ..similarity import block_limit
from .answers import Answers

__all__ = ["KNN", "NEIGHBOURHOODS"]

NEIGHBOURHOODS = ("rated", "global")


class KNN(Answers, Estimator):
    """Neighbourhood collaborative filtering on a Dask cluster.

    Parameters
    ----------
    based : {"item", "user"}
        Similarity between items (the paper's choice) or between users.
    similarity : {"cosine", "full-cosine", "pearson-baseline", "pearson", "adjusted-cosine", \
"centred-cosine", "jaccard", "cooccurrence", "lift", "llr", "bm25", "tfidf", "conditional"}
        ``cosine`` = the paper's formula 1 over co-rated entries (= surprise's);
        ``full-cosine`` = whole-vector norms (sklearn's); ``pearson-baseline`` =
        surprise's: the co-rated cosine of the baseline residuals (:mod:`dcf.baseline`),
        at least 2 co-raters (surprise's default shrinkage: pass ``shrinkage=100``);
        ``pearson`` = surprise's (centred on the means over the co-raters);
        ``adjusted-cosine`` = Sarwar et al.'s (ratings minus the *other* side's means);
        ``centred-cosine`` = LensKit's item kNN (the whole-vector cosine of ratings
        minus the entity's own mean); over who rated (values ignored): ``jaccard``,
        SAR's ``cooccurrence`` and ``lift``, Mahout's log-likelihood ``llr``, and
        ``conditional`` = co-raters / (raters of x x raters of y ** ``alpha``),
        Deshpande and Karypis' (not symmetric); implicit's ``bm25`` (the dot product
        of BM25-weighted counts) and ``tfidf`` (the cosine of TF-IDF-weighted counts,
        :mod:`dcf.kernels.weights`).  The formulas: :func:`dcf.kernels.similarity_tile`.
    k : int
        Neighbours per prediction (``rated``) / per neighbour list (``global``).
    neighbourhood : {"rated", "global"}
        ``rated``: for each pair, the k most similar among the entities the
        user (item) rated -- surprise's rule, exact; keeps whole similarity
        rows in worker memory.  ``global``: the target's precomputed top-k
        list, intersected with what was rated -- the paper's rule; keeps only
        the n x k table.
    prediction : {"weighted", "mean-centred", "baseline"}
        Plain weighted average (surprise ``KNNBasic``), formula 2
        (``KNNWithMeans``) or the baseline plus the neighbours' weighted
        residuals (``KNNBaseline``).
    min_support : int
        Minimum co-raters for a non-zero similarity (surprise's
        ``min_support``; 0 and 1 both mean "at least one").
    shrinkage : float
        Multiply similarities by ``n / (n + shrinkage)``, n = co-raters.
    significance : float
        Herlocker's significance weighting: multiply by ``min(n, significance)
        / significance``; 0 = off.
    min_similarity : float
        Similarities below this are no neighbours (0 = keep every positive one).
    amplification : float
        Breese et al.'s case amplification: each neighbour weighs
        :math:`s^\\rho` instead of :math:`s` in a prediction and in every Top-N
        ranking (1 = off).  :math:`\\rho > 1` lets the most similar neighbours
        count more; the neighbours chosen, the lists and ``sim_`` do not change.
        On ML-100K, :math:`\\rho = 2` takes the recommended rating setting (k = 30) from
        a 5-fold MAE of 0.7127 to 0.7094 (benchmarks/RESULTS.md).
    min_k : int
        Fewer neighbours than this -> fallback (surprise's ``min_k``).
    bm25_k1, bm25_b, alpha : float
        ``bm25``'s saturation (>= 0) and length normalisation (0 .. 1): implicit's ``K1``, ``B``;
        ``conditional``'s popularity discount (>= 0).
    feedback : {"explicit", "implicit"}
        ``implicit``: events whose optional ``rating`` is a positive weight (1 without
        one); a pair's events are summed, never a conflict (report: ``events``, ``pairs``).
    include_self : bool
        Each entity is a candidate in its own list, with its own similarity, as implicit's
        lists are (``k - 1`` others): with ``ranking="sum"``, implicit's Top-N exactly.
    half_life : float, optional
        Time decay (implicit feedback, :mod:`dcf.decay`): each event weighs
        :math:`w \\cdot 0.5^{(t_{ref} - t) / h}`, ``h`` this many days, in the user's scores
        (SAR's ``time_decay_coefficient``); None = no decay.
    reference_time : float or str, optional
        :math:`t_{ref}`: seconds since the epoch or an ISO 8601 date; None = the latest
        event's time (``reference_time_`` after the fit).
    decay_similarity : bool
        A measure that reads the values compares the decayed ones too (measures of who
        rated are the same either way).
    block_size : int, optional
        Entities per similarity block (tile side); default from the data.
    on_bad_lines : {"error", "skip"}
        What bad input rows and conflicting duplicates do.
    method : {None, "rows", "tiles"}
        How similarities are computed (same values either way, see
        :mod:`dcf.similarity`); ``None`` = ``rows`` unless one copy of the
        ratings would not fit a worker's memory.
    baseline_epochs, reg_user, reg_item : int, float, float
        The baseline biases' ALS (surprise's ``bsl_options`` defaults: 10, 15,
        10); fitted only for ``pearson-baseline`` or the ``baseline`` prediction.

    Attributes
    ----------
    matrix_ : RatingMatrix, persisted
    neighbours_ : NeighbourTable, persisted (``idx_``/``sim_`` (n, k))
    similarity_rows_ : dask array or None, persisted whole rows (``rated``)
    method_ : str, the similarity method used
    entity_means_, item_means_ : Delayed float64 arrays, persisted
    user_bias_, item_bias_ : Delayed float64 arrays, persisted, or None (no baseline needed)
    global_mean_ : float
    rating_range_ : (float, float)
    reference_time_ : float or None, the time decay's reference (seconds since the epoch)
    """

    def __init__(self, *, based="item", similarity="cosine", k=50, neighbourhood="rated",
                 prediction="weighted", min_support=1, shrinkage=0.0, min_k=1, block_size=None,
                 on_bad_lines="error", method=None, baseline_epochs=10, reg_user=15.0, reg_item=10.0,
                 significance=0.0, min_similarity=0.0, amplification=1.0, bm25_k1=1.2, bm25_b=0.75,
                 include_self=False, feedback="explicit", alpha=0.5, half_life=None, reference_time=None,
                 decay_similarity=False):
        self.based = based
        self.similarity = similarity
        self.k = k
        self.neighbourhood = neighbourhood
        self.prediction = prediction
        self.min_support = min_support
        self.shrinkage = shrinkage
        self.min_k = min_k
        self.block_size = block_size
        self.on_bad_lines = on_bad_lines
        self.method = method
        self.baseline_epochs = baseline_epochs
        self.reg_user = reg_user
        self.reg_item = reg_item
        self.significance = significance
        self.min_similarity = min_similarity
        self.amplification = amplification
        self.bm25_k1 = bm25_k1
        self.bm25_b = bm25_b
        self.include_self = include_self
        self.feedback = feedback
        self.alpha = alpha
        self.half_life = half_life
        self.reference_time = reference_time
        self.decay_similarity = decay_similarity

    # ------------------------------------------------------------ checks
    @classmethod
    def from_preset(cls, name: str, **params) -> "KNN":
        """An estimator with the settings of preset ``name`` (:mod:`dcf.presets`: ``paper``,
        ``rating``, ``ranking``, ``implicit``), ``params`` over them.  A preset's Top-N order
        is a ``recommend`` argument: ``dcf.presets.PRESETS[name].ranking``."""
        chosen = {k: v for k, v in preset(name).settings.items() if k in cls._param_names()}
        return cls(**{**chosen, **params})

    def check_params(self):
        """ConfigError naming the first invalid parameter (the similarity's and the scoring's
        are checked by :class:`~dcf.kernels.SimilaritySettings` and :class:`~dcf.predict.ScoringRule`)."""
        try:
            self.similarity_settings()
            ScoringRule(self.based, self.prediction, self.k, self.min_k, self.amplification)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        choices = {"neighbourhood": NEIGHBOURHOODS, "on_bad_lines": ("error", "skip"),
                   "method": (None, "rows", "tiles"), "feedback": ("explicit", "implicit")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name}={getattr(self, name)!r} is not one of {', '.join(map(str, allowed))}")
        if not isinstance(self.baseline_epochs, (int, np.integer)) or self.baseline_epochs < 0:
            raise ConfigError(f"baseline_epochs must be an integer >= 0, not {self.baseline_epochs!r}")
        for name in ("reg_user", "reg_item"):
            value = getattr(self, name)
            if not isinstance(value, (int, float, np.number)) or not np.isfinite(value) or value < 0:
                raise ConfigError(f"{name} must be a number >= 0, not {value!r}")
        if self.block_size is not None and int(self.block_size) < 1:
            raise ConfigError(f"block_size must be >= 1, not {self.block_size!r}")
        self.decay()

    def decay(self) -> Decay | None:
        """The checked time decay of the parameters (None: none; :mod:`dcf.decay`)."""
        return decay_of(self.half_life, self.reference_time, self.decay_similarity, self.feedback)

    def entity_block_limit(self):
        """Entity block cap from the cluster's worker memory (None without a cluster)."""
        return block_limit(memory_budget(), whole_rows=self.neighbourhood == "rated", forced=self.method)

    def similarity_settings(self) -> SimilaritySettings:
        """The measure and its post-processing as one value (what the stages are given)."""
        return SimilaritySettings(self.similarity, self.min_support, self.shrinkage, self.significance,
                                  self.min_similarity, self.bm25_k1, self.bm25_b, self.include_self, self.alpha)

    def set_state(self, state: FittedState) -> "KNN":
        """Take a fitted state (:func:`dcf.fitted.fitted_state`, what ``fit``, ``refresh``
        and ``dcf.load`` each build) as this model's fitted attributes; returns self."""
        self.matrix_, self.neighbours_, self.similarity_rows_ = state.matrix, state.neighbours, state.similarity_rows
        self.method_, self.global_mean_, self.rating_range_ = state.method, state.global_mean, state.rating_range
        self.entity_means_, self.item_means_, self.item_count_ = state.entity_means, state.item_means, state.item_count
        self.user_bias_, self.item_bias_, self.token_ = state.user_bias, state.item_bias, state.token
        return self

    @property
    def reference_time_(self) -> float | None:
        """The time decay's reference, seconds since the epoch (None without decay)."""
        self.check_fitted()
        return self.matrix_.reference_time

    def check_fitted(self):
        if not hasattr(self, "neighbours_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet: call fit() first")

    # ------------------------------------------------------------ fit
    def fit(self, ratings, y=None):
        """Build the matrix, similarities and neighbour model; persist them.

        Parameters
        ----------
        ratings : RatingMatrix, dcf.io.Ratings, pandas or dask DataFrame, or dask array
            Frames need ``user``, ``item``, ``rating`` columns; a users x
            items dask array (scipy, pydata ``sparse`` or dense chunks, 0 = not
            rated) gives users and items the ids ``0..n-1``.

        Returns
        -------
        self
            The fitted model lives in the workers' memory (persisted).
        """
        self.check_params()
        return self.set_state(fit_matrix(self, rating_matrix(self, ratings).persist()))

    def refresh(self, ratings) -> "KNN":
        """This model with new ratings merged in, recomputing only the similarity rows
        they can change (:mod:`dcf.refresh`); equal to ``fit`` on the merged ratings.

        A pair this model already has takes the new rating; new users and items join.
        Bad rows and conflicting duplicates in ``ratings`` follow ``on_bad_lines`` as in
        :meth:`fit`.  This model is left as it was (it can serve while the refresh
        runs).  ``pearson-baseline`` similarities read the baseline biases, which every
        rating moves, so they are refitted whole, as is a model whose merged ratings need
        the ``tiles`` method.

        Parameters
        ----------
        ratings : dcf.io.Ratings, pandas or dask DataFrame (``user, item, rating``)

        Returns
        -------
        KNN
            Fitted, with ``refresh_report_``: ``ratings`` (rows read), ``changed``
            (pairs added or given a new value), ``new_users``, ``new_items``,
            ``entities``, ``recomputed`` (similarity rows computed again) and
            ``recomputed_share``, ``patched`` (rows whose columns of the touched
            entities alone were recomputed), ``full_refit`` and ``why``.
        """
        return refresh_model(self, ratings)

    def save(self, path):
        """Write the fitted model to the folder ``path`` (see :mod:`dcf.store`:
        JSON metadata + Parquet ids + NPZ arrays, versioned, checksummed, no pickle).

        ``dcf.load(path)`` gives it back, ready to ``predict``/``recommend``.
        """
        return store.save(self, path)

    def derive(self, **params) -> "KNN":
        """A fitted model differing only in ``k``, ``neighbourhood``, ``prediction``,
        ``min_k`` or ``amplification``, sharing this model's similarities and
        neighbour lists (no refit).

        ``k`` may not exceed the fitted k (a top-k list is cut, never widened);
        the ``rated`` neighbourhood needs a model fitted with it (whole rows).
        Used by the neighbours sweep: one similarity computation for every k.
        """
        return derived(self, params)

    # ------------------------------------------------------------ use
    @property
    def idx_(self) -> da.Array:
        self.check_fitted()
        return self.neighbours_.idx

    @property
    def sim_(self) -> da.Array:
        self.check_fitted()
        return self.neighbours_.sim
