"""What the estimator's ``predict``, ``recommend``, ``recommend_for_history`` and
``neighbours`` run: a fitted model's arrays turned into the stage's inputs.

Each function takes the fitted estimator (:class:`dcf.model.KNN`, read through its
public attributes) and the request, checks the request, and builds the graph with
:func:`~dcf.predict.pairs.predict_pairs` or :func:`~dcf.predict.topn.recommend_blocks`.
"""

from __future__ import annotations

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
from .pairs import predict_pairs
from .rule import RANKINGS, scoring
from .topn import recommend_blocks, recommend_histories

__all__ = ["model_predictions", "model_recommendations", "history_recommendations", "neighbour_lists",
           "item_codes", "check_request", "default_ranking"]


def model_predictions(model, pairs) -> dd.DataFrame:
    """:meth:`dcf.model.KNN.predict`: the fitted model's predictions of ``pairs``."""
    model.check_fitted()
    parts, _, _ = as_parts(pairs, model.on_bad_lines, need_rating=False)
    with_rating = isinstance(pairs, dio.Ratings) or "rating" in pairs.columns
    m = model.matrix_
    _, Q, _, _ = m.oriented(model.based)
    S = model.similarity_rows_ if model.neighbourhood == "rated" else model.neighbours_.W
    rule, data = scoring(model)
    return predict_pairs(parts, users=m.users, items=m.items, S=S, Q=Q, rule=rule, data=data,
                         with_rating=with_rating, token=dask.base.tokenize(model.token_, parts),
                         max_cells=max(16, 4 * parallelism()))


def default_ranking(model, ranking):
    """``ranking``, or where None the model's default: ``sum`` (the peers' rule) for implicit
    feedback, else ``prediction`` (the paper's)."""
    if ranking is not None:
        return ranking
    return "sum" if model.feedback == "implicit" else "prediction"


def check_request(n, ranking):
    """ConfigError unless ``n`` >= 1 and ``ranking`` is one of :data:`RANKINGS`."""
    if int(n) < 1:
        raise ConfigError(f"n must be at least 1, not {n!r}")
    if ranking not in RANKINGS:
        raise ConfigError(f"ranking={ranking!r} is not one of {', '.join(RANKINGS)}")


def model_recommendations(model, users, n, ranking, exclude) -> dd.DataFrame:
    """:meth:`dcf.model.KNN.recommend`: Top-``n`` of every user, or of the raw ids ``users``."""
    model.check_fitted()
    ranking = default_ranking(model, ranking)
    check_request(n, ranking)
    m = model.matrix_
    blocks = None
    if users is not None:
        codes = m.users.to_codes(np.asarray(users, dtype=object))
        bounds = np.concatenate([[0], np.cumsum(m.by_user.chunks[0])])
        blocks = set((np.searchsorted(bounds, codes[codes >= 0], side="right") - 1).tolist())
    banned = item_codes(m, exclude)
    rule, data = scoring(model, ranking)
    recs = recommend_blocks(users=m.users, items=m.items, by_user=m.by_user, W=model.neighbours_.W,
                            rule=rule, data=data, n=int(n), blocks=blocks, exclude=banned,
                            token=dask.base.tokenize(model.token_, n, ranking, banned))
    if users is not None:
        keep = set(m.users.to_raw(codes[codes >= 0]).tolist())
        recs = recs[recs["user"].isin(keep)]
    return recs


def history_recommendations(model, history, n, ranking, exclude) -> pd.DataFrame:
    """:meth:`dcf.model.KNN.recommend_for_history`: Top-``n`` of the users of a rating
    history (a pandas frame), scored with the fitted item lists."""
    model.check_fitted()
    if model.based != "item":
        raise ConfigError("recommend_for_history needs item-based CF (a new user has no "
                          "user-user similarities without a refit); use ItemKNN")
    ranking = default_ranking(model, ranking)
    check_request(n, ranking)
    if not isinstance(history, pd.DataFrame):
        raise TypeError(f"history must be a pandas DataFrame, not {type(history).__name__}")
    missing = {"user", "item"} - set(history.columns)
    if missing:
        raise ConfigError(f"the history lacks column(s) {', '.join(sorted(missing))}")
    history = history.reset_index(drop=True)
    if model.feedback == "implicit":  # events: their weight column, else 1 each
        history = event_weights(history)
    frame, _ = dio.validate_frame(history, "history")
    if model.decay() is not None:  # each event decayed to the fitted reference time, as the fit decays
        frame = decayed_frame(frame, model.decay(), model.reference_time_, "history")
    m = model.matrix_
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
    banned = item_codes(m, exclude)
    rule, data = scoring(model, ranking)
    biases = data.biases
    if biases is not None:  # each history's own user bias: the ALS user step on its ratings
        mu, _, item_bias = dask.compute(*biases)
        biases = (mu, fold_in_user_biases(H, item_bias, mu, float(model.reg_user)), item_bias)
        data = replace(data, biases=biases)
    return recommend_histories(H, users, items=m.items, W=model.neighbours_.W, rule=rule, data=data,
                               n=int(n), exclude=banned,
                               token=dask.base.tokenize(model.token_, H, n, ranking, banned, biases))


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


def item_codes(matrix, raw):
    """Sorted distinct codes of the known item ids in ``raw`` (None when ``raw`` is None)."""
    if raw is None:
        return None
    codes = matrix.items.to_codes(np.asarray(list(raw), dtype=object))
    return np.unique(codes[codes >= 0]).astype(np.int64)
