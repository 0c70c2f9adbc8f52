"""dcf: distributed collaborative filtering on Dask.

Item- and user-based neighbourhood models (the 2015 Spark paper's system,
scikit-surprise's ``KNNBasic``/``KNNWithMeans``) computed as Dask task graphs
over a chunked sparse rating matrix.
"""

from . import cluster, evaluate, split
from .errors import ConfigError, DataError
from .io import read_ratings
from .model import KNN, ItemKNN, UserKNN
from .store import load

__version__ = "0.1.0"
__all__ = ["KNN", "ItemKNN", "UserKNN", "read_ratings", "load", "DataError", "ConfigError", "cluster",
           "evaluate", "split", "__version__"]
