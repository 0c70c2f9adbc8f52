"""What the estimator's ``predict``, ``recommend``, ``recommend_for_history`` and
``neighbours`` run: a fitted model's arrays turned into the stage's inputs.

Each function takes the fitted estimator (:class:`dcf.model.KNN`, read through its
public attributes) and the request, checks the request, and builds the graph with
:func:`~dcf.predict.pairs.predict_pairs` or :func:`~dcf.predict.topn.recommend_blocks`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd

from .. import io as dio
from ..baseline import fold_in_user_biases
from ..cluster import parallelism
from ..decay import decayed_frame
from ..errors import ConfigError, DataError
from ..fitted import as_parts, event_weights
from ..ids import IdMap
from ..kernels import csr_from_events, csr_from_triplets
from .pairs import grid_cells, merged_rows, predict_pairs
from .rule import RANKINGS, RECOMMENDATION_FALLBACKS, scoring
from .topn import (FEW_ROWS, ListRules, candidate_order, popularity_order, recommend_histories, recommend_parts,
                   recommendation_frame, recommendation_meta, no_explanations)

__all__ = ["model_predictions", "model_ratings", "model_recommendations", "history_recommendations", "neighbour_lists",
           "item_codes", "list_rules", "check_request", "check_explain", "default_ranking", "as_ids",
           "popular_lists", "split_users", "request_frame"]


def model_predictions(model, pairs) -> dd.DataFrame:
    """:meth:`dcf.model.KNN.predict`: the fitted model's predictions of ``pairs``."""
    model.check_fitted()
    parts, _, _ = as_parts(pairs, model.on_bad_lines, need_rating=False)
    with_rating = isinstance(pairs, dio.Ratings) or "rating" in pairs.columns
    m = model.matrix_
    _, Q, _, _ = m.oriented(model.based)
    S = model.similarity_rows_ if model.neighbourhood == "rated" else model.neighbours_.W
    rule, data = scoring(model)
    cells = grid_cells(model_ratings(model), parallelism())
    token = dask.base.tokenize(model.token_, parts, cells)  # the grid (by the threads) in every name
    if model.neighbourhood == "rated" and S.numblocks[0] * Q.numblocks[0] > cells:
        # whole rows are never stacked, the ratings are: stacking both sides to the cells
        # copied every whole row (117k items of 1.2M ratings: 2.8 s of a 3.8 s stage, the
        # ratings 14 MB); a cell a block of rows
        Q = merged_rows(Q, max(1, cells // S.numblocks[0]), f"predict-ratings-{token}")
        cells = None
    return predict_pairs(parts, users=m.users, items=m.items, S=S, Q=Q, rule=rule, data=data,
                         with_rating=with_rating, token=token, max_cells=cells)


def model_ratings(model) -> int:
    """The fitted model's number of ratings, summed from its persisted item counts where
    they are (one small task; the counts stay on the workers)."""
    counts = model.item_count_
    if dask.is_dask_collection(counts):
        counts = dask.compute(dask.delayed(np.sum, pure=True)(
            counts, dask_key_name=f"model-ratings-{dask.base.tokenize(counts)}"))[0]
    return int(np.sum(counts))


def default_ranking(model, ranking):
    """``ranking``, or where None the model's default: ``sum`` (the peers' rule) for implicit
    feedback, else ``prediction`` (the paper's)."""
    if ranking is not None:
        return ranking
    return "sum" if model.feedback == "implicit" else "prediction"


def check_request(n, ranking):
    """ConfigError unless ``n`` is a whole number >= 1 and ``ranking`` one of :data:`RANKINGS`."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"n must be a whole number of at least 1, not {n!r}")
    if ranking not in RANKINGS:
        raise ConfigError(f"ranking={ranking!r} is not one of {', '.join(RANKINGS)}")


FEW_USERS = FEW_ROWS  # a request for at most this many users may be answered from the model held here


def model_recommendations(model, users, n, ranking, rules=(None, None, True, False), strict=False) -> dd.DataFrame:
    """:meth:`dcf.model.KNN.recommend`: Top-``n`` of every user, or of the raw ids ``users``
    (one id or many), listing only the candidates ``rules`` = ``(items, exclude,
    filter_rated, explain)`` allow, explained where asked (:func:`list_rules`).  A user the model does not know gets the
    most popular candidates, ``fallback="unknown_user"``, or with ``strict`` a ConfigError
    naming them."""
    model.check_fitted()
    ranking = default_ranking(model, ranking)
    check_request(n, ranking)
    m = model.matrix_
    n = min(int(n), len(m.items))  # a list holds each item once at most
    wanted = list_rules(m, *rules)
    rule, data = scoring(model, ranking)
    check_explain(model, rule, wanted)
    blocks, unknown = None, []
    if users is not None:  # only the blocks holding them, and of those only their rows
        codes, unknown = split_users(m, users, strict)
        bounds = np.concatenate([[0], np.cumsum(m.by_user.chunks[0])])
        known = codes[codes >= 0]
        of = np.searchsorted(bounds, known, side="right") - 1
        blocks = {int(b): known[of == b] - bounds[b] for b in np.unique(of)}
    token = dask.base.tokenize(model.token_, n, ranking, wanted)
    parts = recommend_parts(users=m.users, items=m.items, by_user=m.by_user, W=model.neighbours_.W,
                            rule=rule, data=data, n=int(n), blocks=blocks, rules=wanted, token=token)
    if unknown:  # one more part (raw ids kept as they are: no conversion to strings)
        extra = popular_lists(model, unknown, int(n), rule, data, wanted)
        parts.append(dask.delayed(extra, pure=True, name=f"recommend-unknown-users-{dask.base.tokenize(extra)}"))
    return recommendation_frame(parts, wanted, token, m.items)


def split_users(matrix, users, strict=False):
    """``(codes, unknown)`` of a request's users (one id or many): each one's code (-1 where
    the model does not know it) and the unknown ids, once each in the order given; with
    ``strict`` a ConfigError naming the unknown ones instead."""
    if not isinstance(strict, (bool, np.bool_)):
        raise ConfigError(f"strict must be True or False, not {strict!r}")
    users = as_ids(users, "users")
    codes = matrix.users.to_codes(users)
    unknown = list(dict.fromkeys(users[codes < 0].tolist()))
    if unknown and strict:
        more = f" and {len(unknown) - 5:,} more" if len(unknown) > 5 else ""
        shown = ", ".join(repr(u) for u in unknown[:5]) + more
        raise ConfigError(f"the model does not know user(s) {shown} (strict=True; without it they get the "
                          "most popular items, fallback='unknown_user')")
    return codes, unknown


def popular_lists(model, users, n, rule, data, wanted: ListRules) -> pd.DataFrame:
    """The lists of users the model does not know: the ``n`` most popular candidates, each
    scored as a filled-in item is (its mean for the prediction ranking, 0 for the sums)."""
    count, means, (lo, hi) = dask.compute(data.item_count, data.item_means, data.rating_range)
    order = candidate_order(popularity_order(count), wanted)[:n]
    score = np.zeros(len(order)) if rule.summed else np.clip(np.asarray(means, np.float64)[order], lo, hi)
    frame = pd.DataFrame({
        "user": pd.Series(users).repeat(len(order)).to_numpy(),  # typed as given (ints: int64, as known users')
        "rank": np.tile(np.arange(1, len(order) + 1, dtype=np.int64), len(users)),
        "item": np.tile(model.matrix_.items.to_raw(order), len(users)),
        "score": np.tile(score, len(users)),
        "fallback": pd.Categorical(["unknown_user"] * (len(order) * len(users)),
                                   categories=RECOMMENDATION_FALLBACKS)})
    if wanted.explain:  # no rated items: nothing to say why
        frame["because"] = no_explanations(model.matrix_.items, len(frame))
    return frame[list(recommendation_meta(wanted).columns)]


def check_explain(model, rule, wanted):
    """ConfigError where ``explain`` cannot say why: the terms of a score are rated items
    (item-based) whose shares add up to the sum the list ranks by (the sum rankings, or
    the weighted prediction's numerator; a centred prediction's terms are no shares)."""
    if not wanted.explain:
        return
    if model.based != "item":
        raise ConfigError("explain names the rated items behind a score: item-based CF only (a user-based "
                          "score is a sum over neighbour users)")
    if not (rule.summed or rule.prediction == "weighted"):
        raise ConfigError(f"explain needs ranking='sum' or 'normalised-sum', or the weighted prediction: "
                          f"the {rule.prediction} prediction's terms are centred ratings, which are no shares")


def history_recommendations(model, history, n, ranking, rules=(None, None, True, False), snapshot=None) -> pd.DataFrame:
    """:meth:`dcf.model.KNN.recommend_for_history`: Top-``n`` of the users of a rating
    history (a pandas frame), scored with the fitted item lists: those held by
    ``snapshot`` (a :class:`dcf.serving.Snapshot` of the model) where given, else in a task."""
    model.check_fitted()
    if model.based != "item":
        raise ConfigError("recommend_for_history needs item-based CF (a new user has no "
                          "user-user similarities without a refit); use ItemKNN")
    ranking = default_ranking(model, ranking)
    check_request(n, ranking)
    history = request_frame(history, "history", "the history")
    if model.feedback == "implicit":  # events: their weight column, else 1 each
        history = event_weights(history)
    frame, _ = dio.validate_frame(history, "history")
    if model.decay() is not None:  # each event decayed to the fitted reference time, as the fit decays
        frame = decayed_frame(frame, model.decay(), model.reference_time_, "history")
    m = model.matrix_
    n = min(int(n), len(m.items))
    wanted = list_rules(m, *rules)
    users = IdMap(frame["user"].to_numpy())
    rows = users.to_codes(frame["user"].to_numpy())
    cols = m.items.to_codes(frame["item"].to_numpy())
    known = cols >= 0
    shape, lines = (len(users), len(m.items)), np.flatnonzero(known) + 1
    if model.feedback == "implicit":  # a pair's events summed, as the fit sums them
        H, _ = csr_from_events(rows[known], cols[known], frame["rating"].to_numpy()[known], shape, lines)
        conflicts = ()
    else:
        H, _, conflicts = csr_from_triplets(rows[known], cols[known], frame["rating"].to_numpy()[known], shape, lines)
    if len(conflicts):
        row, col, first, other, _ = conflicts[0]
        raise DataError("history", f"user {users.to_raw([int(row)])[0]!r} rates item "
                        f"{m.items.to_raw([int(col)])[0]!r} twice with different values "
                        f"(rows {int(first)} and {int(other)})")
    rule, data = scoring(model, ranking)
    check_explain(model, rule, wanted)
    biases = data.biases
    if biases is not None:  # each history's own user bias: the ALS user step on its ratings
        mu, _, item_bias = dask.compute(*biases)
        biases = (mu, fold_in_user_biases(H, item_bias, mu, float(model.reg_user)), item_bias)
        data = replace(data, biases=biases)
    if snapshot is not None:
        return snapshot.score_histories(H, users, rule, data, (int(n), wanted))
    return recommend_histories(H, users, items=m.items, W=model.neighbours_.W, rule=rule, data=data,
                               n=int(n), rules=wanted,
                               token=dask.base.tokenize(model.token_, H, n, ranking, wanted, biases))


def request_frame(frame, what: str, called: str) -> pd.DataFrame:
    """A request's pandas frame (``what``, ``called`` in messages) with ``user`` and ``item``
    columns, renumbered from 0 (row numbers name bad rows); a TypeError or ConfigError
    otherwise."""
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{what} must be a pandas DataFrame, not {type(frame).__name__}")
    missing = {"user", "item"} - set(frame.columns)
    if missing:
        raise ConfigError(f"{called} lacks column(s) {', '.join(sorted(missing))}")
    return frame.reset_index(drop=True)


def neighbour_lists(model, ids=None, n=None) -> pd.DataFrame:
    """:meth:`dcf.model.KNN.neighbours`: the fitted lists as a frame
    (``entity, rank, neighbour, similarity``)."""
    model.check_fitted()
    vocab = model.matrix_.items if model.based == "item" else model.matrix_.users
    rows = np.arange(len(vocab)) if ids is None else vocab.to_codes(ids)
    rows = rows[rows >= 0]
    idx, sim = model.neighbours_.rows(rows)
    n = idx.shape[1] if n is None else min(int(n), idx.shape[1])
    r, c = np.nonzero(idx[:, :n] >= 0)
    return pd.DataFrame({"entity": vocab.to_raw(rows[r]), "rank": c + 1,
                         "neighbour": vocab.to_raw(idx[r, c]), "similarity": sim[r, c]})


def as_ids(raw, what: str) -> np.ndarray:
    """Raw ids as a 1-d object array: one id (a number or a string) or any iterable of them
    (a list, an array, a Series, a set, a generator)."""
    if isinstance(raw, (str, bytes)) or (isinstance(raw, np.ndarray) and raw.ndim == 0):
        return np.array([raw.item() if isinstance(raw, np.ndarray) else raw], dtype=object)
    if not isinstance(raw, Iterable):
        return np.array([raw], dtype=object)
    if np.ndim(raw) > 1:
        raise ConfigError(f"{what} must be an id or a list of ids, not a {np.ndim(raw)}-d array")
    out = np.empty(0, dtype=object)
    out = np.array(list(raw) or out, dtype=object)
    if out.ndim != 1:
        raise ConfigError(f"{what} must be an id or a list of ids, not a list of sequences")
    return out


def item_codes(matrix, raw, what="exclude"):
    """Sorted distinct codes of the known item ids in ``raw`` (None when ``raw`` is None)."""
    if raw is None:
        return None
    codes = matrix.items.to_codes(as_ids(raw, what))
    return np.unique(codes[codes >= 0]).astype(np.int64)


def list_rules(matrix, items=None, exclude=None, filter_rated=True, explain=False) -> ListRules:
    """A request's :class:`~dcf.predict.topn.ListRules`: the allow-list ``items`` and the
    exclusions ``exclude`` as item codes (ids the model does not know are ignored), whether
    the user's rated items are left out (``filter_rated``) and whether each item says why
    (``explain``)."""
    for name, flag in (("filter_rated", filter_rated), ("explain", explain)):
        if not isinstance(flag, (bool, np.bool_)):
            raise ConfigError(f"{name} must be True or False, not {flag!r}")
    return ListRules(item_codes(matrix, items, "items"), item_codes(matrix, exclude), not bool(filter_rated),
                     bool(explain))
