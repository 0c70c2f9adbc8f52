"""The fitted state: what ``fit``, ``refresh`` and ``load`` each finish with.

Three paths build a fitted model: :meth:`dcf.model.KNN.fit` from ratings,
:func:`dcf.refresh.refresh` from a fitted model and new ratings, and
:func:`dcf.store.load` from a saved folder.  Each ends with the same steps, kept
here once: the per-entity and per-item means, the global mean and rating range,
the graph token, and, where the model needs them, the baseline biases: one
:class:`FittedState`, built by one constructor (:func:`fitted_state`).  The mean-centred ratings the centred
measures compare (:func:`centred_ratings`), the weighted ones of ``bm25`` and ``tfidf``
(:func:`weighted_ratings`) and the frame parts every input is
read into (:func:`as_parts`) are shared by ``fit`` and ``refresh``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import dask
import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd

from . import io as dio
from . import kernels
from .baseline import fit_biases, residuals
from .blocks import concat_rows, concatenate, outputs
from .errors import ConfigError

__all__ = ["ROW_TASKS_PER_THREAD", "FRAME_PART_ROWS", "FittedState", "fitted_state", "derived", "DERIVABLE",
           "needs_biases", "baseline_biases", "centred_ratings", "weighted_ratings", "split_bm25", "means", "single",
           "as_parts", "event_weights"]

# rows-method similarity tasks per thread, cut to equal cost: enough to even out the
# scheduling, few enough that per-task overhead stays small.  4 until issue 21 step 11;
# 2 took the default cluster's fit (2 workers x 2 threads, 2 cores) 0.29-0.32 -> 0.23 s on
# the paper shape, 1.72 -> 1.47 s on e-commerce's, 2.40 -> 2.02-2.13 s on the 20M shape's
# (1: 1.39-1.42 s and 1.92-2.19 s, no spare task to even out a slow thread)
ROW_TASKS_PER_THREAD = 2


@dataclass
class FittedState:
    """Everything a fitted model serves from, persisted on the workers (the article's
    distributed cache).  :func:`fitted_state` builds it, whichever way the model came:
    :meth:`dcf.model.KNN.fit`, :func:`dcf.refresh.refresh` or :func:`dcf.store.load`;
    :meth:`dcf.model.KNN.set_state` hands it to the estimator.

    Attributes
    ----------
    matrix : RatingMatrix
    neighbours : NeighbourTable
    similarity_rows : dask.array.Array or None
        Whole similarity rows (the ``rated`` neighbourhood).
    method : str or None
        ``rows`` or ``tiles``; None for a model read from a file.
    global_mean : float
    rating_range : (float, float)
    entity_means, item_means, item_count : Delayed arrays
    user_bias, item_bias : Delayed arrays or None
        The baseline biases, where the measure or the prediction reads them.
    token : str
        The graph token every later task key of the model derives from.
    """

    matrix: object
    neighbours: object
    similarity_rows: object
    method: object
    global_mean: float
    rating_range: tuple
    entity_means: object
    item_means: object
    item_count: object
    user_bias: object
    item_bias: object
    token: str


def needs_biases(model) -> bool:
    """Whether ``model``'s measure or prediction reads the baseline biases."""
    return kernels.measure(model.similarity).needs_biases or model.prediction == "baseline"


def baseline_biases(model, matrix, global_mean) -> tuple:
    """``(user biases, item biases)`` of ``model``'s ALS settings (:mod:`dcf.baseline`),
    persisted."""
    return dask.persist(*fit_biases(matrix.by_user, single(matrix.item_count), float(global_mean),
                                    int(model.baseline_epochs), float(model.reg_user), float(model.reg_item)))


def fitted_state(model, matrix, neighbours, similarity_rows, method, global_mean, rating_range, token,
                 biases=None) -> FittedState:
    """The one constructor of a fitted model's state.

    The per-entity and per-item means and the item counts are persisted here; the
    biases too when the model needs them and ``biases`` does not give them (a fit
    computes them before its similarities, for ``pearson-baseline``).
    """
    _, _, ent_sum, ent_count = matrix.oriented(model.based)
    entity_means, item_means, item_count = dask.persist(
        means(ent_sum, ent_count), means(matrix.item_sum, matrix.item_count), single(matrix.item_count))
    if biases is None and needs_biases(model):
        # from the ratings, in their blocks: the same doubles as at fit time
        biases = baseline_biases(model, matrix, global_mean)
    user_bias, item_bias = biases if biases is not None else (None, None)
    return FittedState(matrix, neighbours, similarity_rows, method, float(global_mean),
                       (float(rating_range[0]), float(rating_range[1])), entity_means, item_means,
                       item_count, user_bias, item_bias, dask.base.tokenize(token, model.get_params()))


# the parameters a fitted model can change without a refit (:func:`derived`)
DERIVABLE = frozenset({"k", "neighbourhood", "prediction", "min_k", "amplification"})


def derived(model, params: dict):
    """:meth:`dcf.model.KNN.derive`: a copy of the fitted ``model`` with the
    :data:`DERIVABLE` ``params`` changed, sharing its similarities and neighbour lists
    (a shorter ``k`` cuts the lists; the baseline prediction fits the biases if the
    model has none)."""
    model.check_fitted()
    if set(params) - DERIVABLE:
        raise ConfigError(f"derive() changes only {', '.join(sorted(DERIVABLE))}; refit for "
                          f"{', '.join(sorted(set(params) - DERIVABLE))}")
    other = copy.copy(model)
    for name, value in params.items():
        setattr(other, name, value)
    other.check_params()
    if other.k > model.neighbours_.k:
        raise ConfigError(f"k={other.k} exceeds the fitted k={model.neighbours_.k}: fit with "
                          "the largest k first")
    if other.neighbourhood == "rated" and model.similarity_rows_ is None:
        raise ConfigError("the rated neighbourhood needs a model fitted with neighbourhood='rated'")
    if other.k < model.neighbours_.k:
        other.neighbours_ = model.neighbours_.prefix(other.k).persist()
    if other.prediction == "baseline" and getattr(other, "user_bias_", None) is None:
        other.user_bias_, other.item_bias_ = baseline_biases(other, other.matrix_, other.global_mean_)
    other.token_ = dask.base.tokenize(model.token_, params)
    return other


def centred_ratings(matrix, based, name):
    """``(P, Q)`` of ratings minus the other side's means or the entity's own means, as
    the measure ``name`` is centred (:attr:`dcf.kernels.Measure.centre`: ``adjusted-cosine``,
    ``centred-cosine``), same structure; None for measures of the raw ratings."""
    centre = kernels.measure(name).centre
    if centre not in ("other-means", "entity-means"):
        return None
    P, Q, ent_sum, ent_count = matrix.oriented(based)
    oth_sum, oth_count = ((matrix.user_sum, matrix.user_count) if based == "item"
                          else (matrix.item_sum, matrix.item_count))
    zero = dask.delayed(np.zeros, pure=True)
    if centre == "other-means":
        ent, oth = zero(int(P.shape[0]), dask_key_name=f"centred-zeros-{P.shape[0]}"), means(oth_sum, oth_count)
    else:
        ent, oth = means(ent_sum, ent_count), zero(int(P.shape[1]), dask_key_name=f"centred-zeros-{P.shape[1]}")
    # r - ((0 + other) + entity): exactly r minus the one mean
    return (residuals(P, 0.0, ent, oth, rows_are_entities=True),
            residuals(Q, 0.0, oth, ent, rows_are_entities=False))



def weighted_ratings(matrix, based, settings):
    """``(P, Q)`` of the ratings weighed as the measure of ``settings`` says
    (:attr:`dcf.kernels.Measure.weighting`: ``bm25``, ``tfidf``; see
    :mod:`dcf.kernels.weights`), same structure; None for measures of the raw ratings.
    The weights read each entity's total and each other's number of ratings."""
    if settings.spec.weighting == "none":
        return None
    P, Q = matrix.oriented(based)[:2]
    weights = _weights(matrix, based, settings)
    return _weighed(P, weights, True), _weighed(Q, weights, False)


def split_bm25(matrix, based, settings):
    """``bm25``'s shared matrix in split form: ``(Q, scale)``.  ``Q`` (others x entities)
    holds each weight without its factor :math:`\\mathrm{idf}_u`, the saturated rating
    :math:`s = r (k_1 + 1) / (k_1 (1 - b + b L_i / \\bar L) + r)` (:func:`dcf.kernels.weigh_block`
    with ``idf=False``: the very double the weight is computed from), and ``scale``
    (Delayed, one per other) the idf itself, which the rows method's kernel multiplies into
    both values of each product as it reads them (:func:`dcf.kernels.similarity_rows`):
    each product is :math:`(s_{ui} \\mathrm{idf}_u)(s_{uj} \\mathrm{idf}_u)` of the same
    doubles as the weighed matrix's, so the similarities and lists are the same bit for bit.

    The weighed matrix has a distinct value almost per rating (its idf), so its shared copy
    is the plain 12-byte form; the saturated ratings take as many values as there are pairs
    of a rating and an entity's length (12,057 on the e-commerce shape's 6M ratings), few
    enough for the packed 4-byte form of :class:`~dcf.kernels.CompactCSR`, which the fit's
    loop reads faster; the multiplication each product costs more is far cheaper than the
    memory it saves."""
    Q = matrix.oriented(based)[1]
    weights = _weights(matrix, based, settings)
    idf = dask.delayed(_idf, pure=True)(weights, dask_key_name=f"rating-idf-{dask.base.tokenize(weights)}")
    return _weighed(Q, weights, False, idf=False), idf


def _idf(weights):
    return weights.idf


def _weights(matrix, based, settings):
    _, _, ent_sum, _ = matrix.oriented(based)
    oth_count = matrix.user_count if based == "item" else matrix.item_count
    spec = settings.spec
    return dask.delayed(kernels.rating_weights, pure=True)(
        spec.weighting, single(ent_sum), single(oth_count), settings.bm25_k1, settings.bm25_b,
        dask_key_name=f"rating-weights-{dask.base.tokenize(ent_sum, oth_count, spec.weighting, settings)}")


def _weighed(X: da.Array, weights, rows_are_entities: bool, idf: bool = True) -> da.Array:
    blocks = X.to_delayed(optimize_graph=False).ravel().tolist()
    bounds = np.concatenate([[0], np.cumsum(X.chunks[0])]).astype(np.int64)
    token = dask.base.tokenize(X, weights, rows_are_entities, idf)
    part = dask.delayed(_weigh_finite, pure=True)
    out = [part(b, int(bounds[j]), weights, bool(rows_are_entities), idf,
                dask_key_name=f"weighted-ratings-{token}-{j}")
           for j, b in enumerate(blocks)]
    return concat_rows(out, bounds, int(X.shape[1]), "weighted-rating-rows")


def _weigh_finite(block, row0, weights, rows_are_entities, idf=True):
    """:func:`dcf.kernels.weigh_block`, refusing weights that overflow (a huge ``bm25_k1`` or
    rating): an infinite weight would turn every similarity it meets into inf or NaN."""
    out = kernels.weigh_block(block, row0, weights, rows_are_entities, idf)
    if not np.isfinite(out.data).all() and block.nnz and float(np.max(block.data)) == 0:
        raise ConfigError(f"every {weights.weighting} weight is 0: the values are all 0 (a time decay whose "
                          "half-life is short against the data's span decays every event below the smallest double)")
    if not np.isfinite(out.data).all():
        raise ConfigError(f"{weights.weighting} weights overflow (a rating of {float(np.max(block.data)):g} "
                          f"with bm25_k1={weights.k1:g}): use a smaller bm25_k1, or smaller ratings")
    return out


def means(sums: da.Array, counts: da.Array):
    s, c = single(sums), single(counts)
    return dask.delayed(_divide, pure=True)(s, c, dask_key_name=f"means-{dask.base.tokenize(s, c)}")



def _divide(s, c):
    return np.asarray(s, np.float64) / np.maximum(np.asarray(c), 1)



def single(x: da.Array):
    pieces = x.to_delayed(optimize_graph=False).ravel().tolist()  # keeps persisted Futures alive
    if len(pieces) == 1:
        return pieces[0]
    return dask.delayed(concatenate, pure=True)(*pieces, dask_key_name=f"whole-vector-{x.name}")



FRAME_PART_ROWS = 200_000  # rows of an in-memory frame per task
WEIGHT_COLUMNS = ("weight", "count", "value")  # an implicit-feedback frame's weight, where it has no "rating"


def event_weights(frame):
    """An implicit-feedback frame (pandas or dask) with its weights as ``rating``: that
    column, else its ``weight``, ``count`` or ``value`` column (as a file's header may name
    it), else 1 for every event."""
    if "rating" in frame.columns:
        return frame
    named = [c for c in WEIGHT_COLUMNS if c in frame.columns]
    return frame.rename(columns={named[0]: "rating"}) if named else frame.assign(rating=1.0)


def _frame_parts(frame: pd.DataFrame) -> list:
    """An in-memory frame as Delayed parts of consecutive rows, numbered from 0 (row
    numbers name bad rows), each part one task named ``frame-input``."""
    frame = frame.reset_index(drop=True)
    n = max(1, -(-len(frame) // FRAME_PART_ROWS))
    cuts = np.linspace(0, len(frame), n + 1).astype(np.int64)
    return [dask.delayed(frame.iloc[cuts[j]:cuts[j + 1]], pure=True,
                         name=f"frame-input-{dask.base.tokenize(frame)}-{j}") for j in range(n)]


def as_parts(data, on_bad_lines="error", need_rating=True, feedback="explicit"):
    """Frame parts (Delayed pandas frames), a Delayed report and a source name.  With
    ``feedback="implicit"`` a frame without a ``rating`` column is events of weight 1."""
    if isinstance(data, dio.Ratings):
        if getattr(data.source, "feedback", "explicit") == "implicit" and feedback == "explicit" and need_rating:
            raise ConfigError(f"{data.source.path} was read as events (feedback='implicit'): fit it with a model "
                              "of feedback='implicit', whose pairs sum their events")
        return data.parts, data.report, data.source.path
    if isinstance(data, (pd.DataFrame, dd.DataFrame)) and feedback == "implicit" and need_rating:
        data = event_weights(data)
    if isinstance(data, (pd.DataFrame, dd.DataFrame)):
        missing = {"user", "item"} - set(data.columns)
        if need_rating and "rating" not in data.columns:
            missing.add("rating")
        if missing:
            raise ConfigError(f"the frame lacks column(s) {', '.join(sorted(missing))}")
        parts = _frame_parts(data) if isinstance(data, pd.DataFrame) else data.to_delayed()
        token = dask.base.tokenize(parts, on_bad_lines, need_rating)
        check = dask.delayed(dio.validate_frame, pure=True)
        checked = [outputs(check(p, "DataFrame", on_bad_lines, need_rating, j,
                                 dask_key_name=f"frame-check-{token}-{j}"), 2, ("frame-part", "frame-report"))
                   for j, p in enumerate(parts)]
        report = dask.delayed(dio.merge_reports, pure=True)(*[c[1] for c in checked],
                                                             dask_key_name=f"frame-report-{token}")
        return [c[0] for c in checked], report, "DataFrame"
    raise TypeError(f"expected a RatingMatrix, dcf.io.Ratings or DataFrame, not {type(data).__name__}")
