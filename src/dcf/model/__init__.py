"""The estimators: :class:`KNN` (:mod:`~dcf.model.knn`: parameters, their checks, and
delegation to the stages), ``ItemKNN`` and ``UserKNN``, and :func:`load`
(:mod:`~dcf.model.variants`).

>>> import pandas as pd
>>> from dcf import ItemKNN
>>> ratings = pd.DataFrame({"user": [1, 1, 2, 2, 3], "item": [10, 20, 10, 20, 10],
...                         "rating": [5.0, 4.0, 4.0, 2.0, 3.0]})
>>> model = ItemKNN(k=10).fit(ratings)           # doctest: +SKIP
>>> model.predict(pd.DataFrame({"user": [3], "item": [20]})).compute()  # doctest: +SKIP
"""

from .knn import KNN, NEIGHBOURHOODS
from .variants import ESTIMATORS, ItemKNN, UserKNN, load

__all__ = ["KNN", "ItemKNN", "UserKNN", "ESTIMATORS", "NEIGHBOURHOODS", "load"]
