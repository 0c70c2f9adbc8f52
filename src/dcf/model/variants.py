"""``ItemKNN`` and ``UserKNN`` (:class:`~dcf.model.knn.KNN` with its ``based`` fixed), and
:func:`load`, which gives a saved model back as the class it was saved as."""

from __future__ import annotations

from .. import store
from .knn import KNN

__all__ = ["ItemKNN", "UserKNN", "ESTIMATORS", "load"]


class ItemKNN(KNN):
    """Item-based neighbourhood CF (the paper's model); see :class:`KNN`."""

    def __init__(self, *, similarity="cosine", k=50, neighbourhood="rated", prediction="weighted",
                 min_support=1, shrinkage=0.0, min_k=1, block_size=None, on_bad_lines="error",
                 method=None, baseline_epochs=10, reg_user=15.0, reg_item=10.0, significance=0.0,
                 min_similarity=0.0, amplification=1.0, bm25_k1=1.2, bm25_b=0.75, include_self=False,
                 feedback="explicit", alpha=0.5, half_life=None, reference_time=None, decay_similarity=False):
        super().__init__(based="item", similarity=similarity, k=k, neighbourhood=neighbourhood,
                         prediction=prediction, min_support=min_support, shrinkage=shrinkage,
                         min_k=min_k, block_size=block_size, on_bad_lines=on_bad_lines,
                         method=method, baseline_epochs=baseline_epochs, reg_user=reg_user,
                         reg_item=reg_item, significance=significance, min_similarity=min_similarity,
                         amplification=amplification, bm25_k1=bm25_k1, bm25_b=bm25_b,
                         include_self=include_self, feedback=feedback, alpha=alpha, half_life=half_life,
                         reference_time=reference_time, decay_similarity=decay_similarity)


class UserKNN(KNN):
    """User-based neighbourhood CF (the article's model); see :class:`KNN`."""

    def __init__(self, *, similarity="cosine", k=50, neighbourhood="rated", prediction="weighted",
                 min_support=1, shrinkage=0.0, min_k=1, block_size=None, on_bad_lines="error",
                 method=None, baseline_epochs=10, reg_user=15.0, reg_item=10.0, significance=0.0,
                 min_similarity=0.0, amplification=1.0, bm25_k1=1.2, bm25_b=0.75, include_self=False,
                 feedback="explicit", alpha=0.5, half_life=None, reference_time=None, decay_similarity=False):
        super().__init__(based="user", similarity=similarity, k=k, neighbourhood=neighbourhood,
                         prediction=prediction, min_support=min_support, shrinkage=shrinkage,
                         min_k=min_k, block_size=block_size, on_bad_lines=on_bad_lines,
                         method=method, baseline_epochs=baseline_epochs, reg_user=reg_user,
                         reg_item=reg_item, significance=significance, min_similarity=min_similarity,
                         amplification=amplification, bm25_k1=bm25_k1, bm25_b=bm25_b,
                         include_self=include_self, feedback=feedback, alpha=alpha, half_life=half_life,
                         reference_time=reference_time, decay_similarity=decay_similarity)


# ---------------------------------------------------------------- helpers

# the classes a saved model may name (dcf-model.json's "class")
ESTIMATORS = {"KNN": KNN, "ItemKNN": ItemKNN, "UserKNN": UserKNN}


def load(path):
    """Read a model saved by :meth:`KNN.save`; returns a fitted ``ItemKNN``/``UserKNN``/``KNN``.

    Every field and file is checked before it is trusted (:func:`dcf.store.load`).

    Raises
    ------
    DataError
        The folder or a file in it is missing, truncated, corrupt, inconsistent,
        not a dcf model, or written by a newer format version.
    """
    return store.load(path, ESTIMATORS)
