"""dcf: distributed collaborative filtering on Dask.

Item- and user-based neighbourhood models (the 2015 Spark paper's system,
scikit-surprise's ``KNNBasic``/``KNNWithMeans``) computed as Dask task graphs
over a chunked sparse rating matrix.

The package's names are loaded when first used (PEP 562), so that importing one
stage, ``dcf.kernels`` say, does not import the estimator, the runtime or
``distributed`` with it.
"""

from importlib import import_module

from .errors import ConfigError, DataError
from .version import __version__

__all__ = ["KNN", "ItemKNN", "UserKNN", "read_ratings", "load", "DataError", "ConfigError", "cluster",
           "evaluate", "split", "__version__"]

# public name -> the module that defines it
_HOMES = {"KNN": "model", "ItemKNN": "model", "UserKNN": "model", "read_ratings": "io",
          "load": "model", "cluster": "cluster", "evaluate": "evaluate", "split": "split"}


def __getattr__(name):
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'dcf' has no attribute {name!r}")
    module = import_module(f".{home}", __name__)
    value = module if home == name else getattr(module, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
