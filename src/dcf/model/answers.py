"""The requests a fitted estimator answers: :class:`Answers`, the half of
:class:`dcf.model.KNN` that uses the fitted model (``predict``, ``recommend``,
``recommend_for_history``, ``neighbours`` and scikit-learn's ``score``), each a check and a
delegation: a small request to the model held in this process (:func:`dcf.serving.for_request`),
any other to the task graphs of :mod:`dcf.predict`.
"""

from __future__ import annotations

import dask
import dask.dataframe as dd
import pandas as pd

from .. import io as dio
from ..errors import ConfigError
from ..evaluate import mae, ranking_metrics
from ..ids import frame_of
from ..predict import history_recommendations, model_predictions, model_recommendations, neighbour_lists
from ..predict.requests import as_ids
from ..serving import for_request

__all__ = ["Answers", "SCORE_N"]

SCORE_N = 20  # the lists' length ``score`` ranks implicit feedback by


class Answers:
    """``predict``, ``recommend``, ``recommend_for_history``, ``neighbours`` and ``score``
    of a fitted :class:`dcf.model.KNN` (which supplies ``check_fitted``, the fitted
    attributes and the parameters)."""

    def predict(self, pairs) -> dd.DataFrame:
        """Predict ratings for (user, item) pairs.

        Parameters
        ----------
        pairs : pandas/dask DataFrame with ``user``, ``item`` (and optionally
            ``rating``, carried through), or ``dcf.io.Ratings``.

        Returns
        -------
        dask.dataframe.DataFrame
            ``user, item, rating, prediction, neighbours, fallback`` (``rating``
            only when the pairs have one); never NaN.  A pandas frame of at most
            ``dcf.serving.FEW_PAIRS`` pairs is answered from the model held in this process
            (:func:`dcf.serving.held`), one partition in the pairs' order.
        """
        self.check_fitted()
        snap = for_request(self, pairs=pairs)
        return frame_of(snap.predict(pairs), "predictions") if snap is not None else model_predictions(self, pairs)

    def recommend(self, users=None, n: int = 20, ranking: str | None = None, exclude=None, items=None,
                  filter_rated: bool = True, strict: bool = False, explain: bool = False) -> dd.DataFrame:
        """Top-``n`` unrated items per user (all users, or the given raw ids: one id or a list).

        Request-time rules (implicit's ``items=`` and ``filter_already_liked_items=``):
        ``items``: raw item ids, the only ones to recommend (in stock, in a category);
        ``exclude``: raw item ids never to recommend (out of stock, already shown);
        for every user, ids the model does not know ignored.  The lists are still
        filled to ``n`` from the remaining candidates where there are ``n``.
        ``filter_rated=False`` keeps the user's rated items as candidates (a re-purchase).
        A user the model does not know gets the ``n`` most popular candidates, flagged
        ``fallback="unknown_user"`` (scored as fill-ins are); with ``strict=True`` a
        :class:`~dcf.errors.ConfigError` naming them instead.

        ``explain=True`` (item-based; the sum rankings or the weighted prediction) adds
        ``because``: per scored item, the user's rated items whose terms weigh most in its
        sum (up to 3, largest first) as ``[{"item": id, "share": term / sum}]``; for
        ``ranking="sum"`` a share times the score is that rated item's term
        ``s(j, i) * r(u, j)``. Filled-in items have none.

        ``ranking`` defaults to ``"prediction"``, or ``"sum"`` for implicit feedback.
        ``ranking="prediction"`` (the paper's): by the rating the global
        neighbour rule predicts, each candidate's own top-k list.
        ``ranking="sum"`` (implicit's ``ItemItemRecommender``, Deshpande and
        Karypis' item-based top-N): by the sum over the user's rated items j of
        ``s(j, i) * r(u, j)``, over j's top-k lists (user-based: over the
        user's own top-k neighbours); fill-ins score 0.  "sum" does
        sum(n_u x k) work; "prediction" sum over rated items of how many lists
        each appears in, which grows with item popularity.
        ``ranking="normalised-sum"``: "sum" over lists scaled to sum to one
        (Deshpande and Karypis' similarity normalisation; every rated item
        weighs the same); for user-based CF, where each user has one list,
        it is "sum".

        Returns
        -------
        dask.dataframe.DataFrame
            ``user, rank, item, score, fallback``: exactly ``n`` rows per user
            (fewer only when fewer than n candidates are left);
            ``fallback`` (categorical) is ``"none"`` for a scored item, ``"popular"``
            for a popular item filled in where fewer than n items had a score,
            ``"unknown_user"`` for the lists of users the model does not know.
            Users in the model's order, unknown users last; up to 256 users of a model
            held in this process (:func:`dcf.serving.held`) are answered from it.
        """
        self.check_fitted()
        users = None if users is None else as_ids(users, "users")
        snap = for_request(self, ids=users)
        if snap is None:
            return model_recommendations(self, users, n, ranking, (items, exclude, filter_rated, explain), strict)
        return frame_of(snap.recommend(snap.in_model_order(users, strict), n, ranking, exclude, items, filter_rated,
                                       strict, explain), "recommendations")

    def recommend_for_history(self, history, n: int = 20, ranking: str | None = None,
                              exclude=None, items=None, filter_rated: bool = True,
                              explain: bool = False) -> pd.DataFrame:
        """Top-``n`` for users described by a rating history, without refitting
        (item-based CF; a new user, or a known user with ratings newer than the fit).

        The history's users are scored exactly as :meth:`recommend` scores a
        fitted user with the same ratings: the items' fitted neighbour lists do
        not change (they would only after a refit).  Items the
        model does not know are ignored (they have no neighbour lists); rated
        items are never recommended (unless ``filter_rated=False``).  For
        ``prediction="baseline"`` each user's bias is folded in from the history with the fitted item biases (the ALS
        user step: for a fitted user with the same ratings, its fitted bias).

        Parameters
        ----------
        history : pandas DataFrame with ``user, item, rating`` (one or more users;
            bad rows raise :class:`~dcf.errors.DataError` naming the row)
        n, ranking, exclude, items, filter_rated, explain : as in :meth:`recommend`

        Returns
        -------
        pandas.DataFrame ``user, rank, item, score, fallback``
        """
        self.check_fitted()
        return history_recommendations(self, history, n, ranking, (items, exclude, filter_rated, explain),
                                       for_request(self, history=history) if self.based == "item" else None)

    def neighbours(self, ids=None, n=None) -> pd.DataFrame:
        """The fitted neighbour lists as a frame (``entity, rank, neighbour, similarity``)."""
        self.check_fitted()
        ids = None if ids is None else as_ids(ids, "ids")
        snap = for_request(self, ids=ids)
        return snap.similar(ids, n) if snap is not None else neighbour_lists(self, ids, n)

    def score(self, X, y=None) -> float:
        """scikit-learn's score of this fitted model on test ratings ``X`` (a frame or
        :class:`dcf.io.Ratings` with ``user, item, rating``), greater is better, so that
        ``sklearn.model_selection.cross_val_score`` and dask-ml's searches rank settings:
        minus the MAE of :meth:`predict` (explicit feedback: the paper's metric), or the
        precision at 20 of :meth:`recommend` over the users with a test event (implicit
        feedback: every test event relevant).  ``y`` is ignored (the ratings are in ``X``).
        """
        self.check_fitted()
        if self.feedback == "implicit":
            if isinstance(X, dio.Ratings):
                test = pd.concat(dask.compute(*X.parts), ignore_index=True)
            else:
                test = X.compute() if isinstance(X, dd.DataFrame) else X
            test = test.assign(rating=1.0)  # every test event relevant
            recs = self.recommend(list(dict.fromkeys(test["user"].tolist())), n=SCORE_N).compute()
            return ranking_metrics(recs, test, SCORE_N, threshold=1.0)["precision"]
        preds = self.predict(X).compute()
        if "rating" not in preds:
            raise ConfigError("score() compares predictions with the test ratings: X needs a rating column")
        return -mae(preds["rating"], preds["prediction"])
