"""The fit: the similarity graph and the neighbour table of a rating matrix.

:func:`fit_matrix` is what :meth:`dcf.model.KNN.fit` runs once the matrix is built:
one round trip for what the graph's shape depends on (the rating summary and each
entity's cost), the similarity method from the workers' memory, the baseline biases
where the measure or the prediction reads them, the ``rows`` (default) or ``tiles``
graph, and the :class:`~dcf.fitted.FittedState` it all ends in.
"""

from __future__ import annotations

from dataclasses import replace

import dask
import dask.array as da

from . import kernels
from .baseline import residuals
from .blocks import concat_rows
from .cluster import connected, default_blocks, memory_budget, parallelism, placement, start
from .errors import ConfigError
from .fitted import (ROW_TASKS_PER_THREAD, FittedState, as_parts, baseline_biases, centred_ratings, fitted_state,
                     needs_biases, split_bm25, weighted_ratings)
from .matrix import RatingMatrix, build_matrix, from_array
from .neighbours import table_from_blocks, top_k
from .similarity import (check_whole_rows, entity_stats, prepare, similarity_by_rows, similarity_rows, similarity_tiles,
                         whole_row_cuts)
from .similarity import method as similarity_method

__all__ = ["fit_matrix", "rating_matrix", "matrix_layout", "matrix_from_parts", "needs_undecayed"]


def rating_matrix(model, ratings) -> RatingMatrix:
    """The rating matrix ``model.fit(ratings)`` fits: ``ratings`` itself, a users x
    items dask array's, or the one of frame parts, blocked as the model's parameters ask
    (:func:`matrix_from_parts`)."""
    decay = model.decay()
    if isinstance(ratings, RatingMatrix) and ratings.decay is not None and (
            decay is None or decay.half_life != ratings.decay.half_life
            or decay.reference not in (None, ratings.decay.reference)):
        have = ratings.decay
        raise ConfigError(f"this matrix's values are decayed (half_life={have.half_life:g}, reference time "
                          f"{have.reference:.17g}): fit a model of the same decay on it, or fit on the events")
    if decay is not None and isinstance(ratings, (RatingMatrix, da.Array)):
        if not isinstance(ratings, RatingMatrix) or ratings.decay is None:
            raise ConfigError("time decay (half_life) reads event times: fit on a file or a frame with a time "
                              "column (or a matrix built with decay=)")
        if needs_undecayed(model) and ratings.undecayed is None:
            raise ConfigError(f"{model.similarity} compares the undecayed values: this matrix has no undecayed "
                              "twin (build it with dcf.fitting.matrix_from_parts, or pass decay_similarity=True)")
    if isinstance(ratings, RatingMatrix):
        return ratings
    if isinstance(ratings, da.Array):
        return from_array(ratings, col_block=model.block_size if model.based == "item" else None,
                          row_block=model.block_size if model.based == "user" else None)
    return matrix_from_parts(model, *as_parts(ratings, model.on_bad_lines, feedback=model.feedback))


def matrix_layout(model) -> dict:
    """How ``model``'s parameters ask the rating matrix to be cut into blocks (the
    keywords of :func:`dcf.matrix.build_matrix` and :func:`dcf.matrix.layout`)."""
    return dict(col_block=model.block_size if model.based == "item" else None,
                row_block=model.block_size if model.based == "user" else None,
                min_blocks=default_blocks(), based=model.based,
                entity_block_limit=model.entity_block_limit())


def matrix_from_parts(model, parts, report, source) -> RatingMatrix:
    """The rating matrix of frame parts, blocked as ``model``'s parameters ask; with time
    decay, its values decayed and, where the measure compares the undecayed values
    (:func:`needs_undecayed`), the undecayed matrix as its ``undecayed`` twin."""
    kw = dict(source=source, on_bad_lines=model.on_bad_lines, report=report, feedback=model.feedback,
              **matrix_layout(model))
    matrix = build_matrix(parts, decay=model.decay(), **kw)
    if needs_undecayed(model):
        matrix.undecayed = build_matrix(parts, **kw)
    return matrix


def needs_undecayed(model) -> bool:
    """Whether ``model`` decays the scores but compares undecayed values: time decay, a
    measure that reads the values (not only who rated), and no ``decay_similarity``."""
    return (model.decay() is not None and not model.decay_similarity
            and kernels.measure(model.similarity).reads_values)


def fit_matrix(model, matrix) -> FittedState:
    """The fitted state of ``model``'s parameters on ``matrix`` (a persisted
    :class:`~dcf.matrix.RatingMatrix`); the similarities compare its undecayed twin
    where it has one (:func:`needs_undecayed`), and the state keeps the matrix without it."""
    scored = matrix
    if needs_undecayed(model):
        matrix, scored = matrix.undecayed, replace(matrix, undecayed=None)
    P, Q, _, entity_count = matrix.oriented(model.based)
    raw_q = Q  # the ratings themselves, before any centring: their summary and costs
    whole_rows = model.neighbourhood == "rated"
    settings = model.similarity_settings()
    changed = centred_ratings(matrix, model.based, model.similarity) or weighted_ratings(matrix, model.based, settings)
    if changed is not None:  # similarities of mean-centred or weighted ratings
        P, Q = changed
    # bm25 on the rows method's fast path: its shared matrix without the idf (few values: packed)
    split = (split_bm25(matrix, model.based, settings) if settings.spec.weighting == "bm25" and not whole_rows
             and model.method in (None, "rows") and settings.fast_topk(whole_rows, model.k) else None)
    (lo, hi, total, count), work, parts = _summary(model, raw_q, Q if split is None else split[0], settings,
                                                   whole_rows)
    budget = memory_budget()
    method = model.method or similarity_method(budget, int(P.shape[1]), int(count))
    groups = ROW_TASKS_PER_THREAD * parallelism()
    if whole_rows and method == "rows":  # the tiles method checked n x n already
        counts = None
        if budget is not None:
            counts = dask.compute(entity_count)[0]
            check_whole_rows(budget, work, counts)
        groups = whole_row_cuts(work, counts, groups, budget)  # each task's rows within its memory
    biases = baseline_biases(model, matrix, total / count) if needs_biases(model) else None
    if settings.spec.needs_biases:  # similarities of the baseline residuals
        user_bias, item_bias = biases
        b_entity, b_other = (item_bias, user_bias) if model.based == "item" else (user_bias, item_bias)
        P = residuals(P, total / count, b_entity, b_other, rows_are_entities=True)
        Q = residuals(Q, total / count, b_other, b_entity, rows_are_entities=False)
    neighbours, rows, token = _graph(model, P, Q, settings, method, whole_rows, (work, groups), parts, split)
    if scored is not matrix:  # the mean and range of the (decayed) values the scores read
        (lo, hi, total, count), _ = dask.compute(entity_stats(scored.oriented(model.based)[1]))[0]
    return fitted_state(model, scored, neighbours, rows, method, total / count, (lo, hi), token, biases)


def _summary(model, raw_q, Q, settings, whole_rows):
    """One round trip for what the graph's shape depends on: ``(summary, work, parts)``,
    the rating summary ``(lo, hi, total, count)``, each entity's cost (to cut even tasks)
    and, for the rows method, the parts of the matrix its tasks share."""
    if model.method in (None, "rows") and not settings.spec.needs_biases:
        # the matrix every rows task shares depends on the ratings alone: its parts come
        # from the same per-block tasks as the summary (dropped if tiles are chosen)
        stats, parts = prepare(raw_q, Q, settings.fast_topk(whole_rows, model.k),
                               where=placement(raw_q))
        if connected():
            stats, *parts = start([stats, *parts])  # the parts stay on the workers
            (lo, hi, total, count), work = dask.compute(stats)[0]
        else:  # a local scheduler: once, not again for the join
            ((lo, hi, total, count), work), parts = dask.compute(stats, parts)
            parts = [dask.delayed(p, pure=True, name=f"similarity-part-{dask.base.tokenize(p)}") for p in parts]
    else:
        parts = None
        (lo, hi, total, count), work = dask.compute(entity_stats(raw_q))[0]
    return (lo, hi, total, count), work, parts


def _started(blocks: list) -> list:
    """The rows method's ``(idx, sim, rows)`` Delayed blocks started on the cluster as they
    are (:func:`dcf.cluster.start`; rows None where not kept), so that their pins reach the
    scheduler: the table's array optimisation drops them.  Unchanged without a client."""
    done = iter(start([x for b in blocks for x in b if x is not None]))
    return [tuple(None if x is None else next(done) for x in b) for b in blocks]


def _graph(model, P, Q, settings, method, whole_rows, cut, parts, split=None):
    """``(neighbour table, whole rows or None, token)`` by the ``rows`` or ``tiles`` method
    (``cut``: the entities' costs and the rows method's ``groups``; ``split``: bm25's
    :func:`~dcf.fitted.split_bm25`, which the rows method reads instead of ``Q``)."""
    if method == "rows":
        Q, scale = (Q, None) if split is None else split
        work, groups = cut
        bounds, token, blocks = similarity_by_rows(P, Q, model.k, settings, whole_rows, work=work, groups=groups,
                                                   parts=parts, scale=scale)
        blocks = _started(blocks)
        neighbours = table_from_blocks([b[0] for b in blocks], [b[1] for b in blocks],
                                       bounds, model.k, token).persist()
        rows = (concat_rows([b[2] for b in blocks], bounds, int(P.shape[0]), "similarity-whole-rows").persist()
                if whole_rows else None)
    else:
        tiles = similarity_tiles(P, settings)
        token = tiles.token
        neighbours = top_k(tiles, model.k).persist()
        rows = similarity_rows(tiles).persist() if whole_rows else None
    return neighbours, rows, token
