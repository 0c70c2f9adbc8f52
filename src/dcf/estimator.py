"""scikit-learn's estimator protocol (``get_params``, ``set_params``, its ``repr`` and
tags) without importing scikit-learn.

``sklearn.base`` costs about 1 s to import (it pulls in ``scipy.stats``); the batch
job's client paid it on every cold start for two methods.  scikit-learn's tools
(``clone``, ``GridSearchCV``, ``get_tags``) only ask an estimator for these methods,
so dcf's estimators work with them unchanged.

>>> class Toy(Estimator):
...     def __init__(self, *, k=50, measure="cosine"):
...         self.k, self.measure = k, measure
>>> Toy(k=10).set_params(measure="jaccard")
Toy(k=10, measure='jaccard')
>>> Toy().get_params()
{'k': 50, 'measure': 'cosine'}
"""

from __future__ import annotations

import inspect

__all__ = ["Estimator"]


class Estimator:
    """Parameters are the keyword arguments of ``__init__``, stored under their own names."""

    @classmethod
    def _param_names(cls) -> list[str]:
        params = inspect.signature(cls.__init__).parameters.values()
        if any(p.kind == p.VAR_POSITIONAL for p in params):
            raise TypeError(f"{cls.__name__}.__init__ takes *args; estimator parameters are keywords")
        return sorted(p.name for p in params if p.name != "self" and p.kind != p.VAR_KEYWORD)

    @classmethod
    def _defaults(cls) -> dict:
        return {p.name: p.default for p in inspect.signature(cls.__init__).parameters.values()
                if p.default is not p.empty}

    def get_params(self, deep: bool = True) -> dict:
        """This estimator's parameters (with ``deep``, also those of parameters that are
        estimators themselves, as ``name__parameter``)."""
        out = {}
        for name in self._param_names():
            value = getattr(self, name)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update((f"{name}__{key}", v) for key, v in value.get_params().items())
            out[name] = value
        return out

    def set_params(self, **params):
        """Set parameters (``name`` or ``name__parameter`` of a nested estimator); returns self."""
        valid = self.get_params(deep=True)
        nested: dict = {}
        for key, value in params.items():
            name, _, sub = key.partition("__")
            if name not in valid:
                raise ValueError(f"Invalid parameter {name!r} for estimator {self}. "
                                 f"Valid parameters are: {sorted(self._param_names())!r}.")
            if sub:
                nested.setdefault(name, {})[sub] = value
            else:
                setattr(self, name, value)
                valid[name] = value
        for name, sub_params in nested.items():
            valid[name].set_params(**sub_params)
        return self

    def __repr__(self) -> str:
        defaults = self._defaults()
        changed = [f"{name}={value!r}" for name, value in self.get_params(deep=False).items()
                   if name not in defaults or not _same(value, defaults[name])]
        return f"{type(self).__name__}({', '.join(changed)})"

    def __sklearn_tags__(self):
        # asked for by scikit-learn's own tools only, so scikit-learn is loaded already
        from sklearn.base import BaseEstimator
        return BaseEstimator.__sklearn_tags__(self)


def _same(a, b) -> bool:
    try:
        return bool(a is b or (type(a) is type(b) and a == b))
    except (TypeError, ValueError):
        return False
