"""dcf's estimators answer scikit-learn's protocol without inheriting from it
(:mod:`dcf.estimator`): scikit-learn's own tools are the reference."""

import sys
import subprocess

import pytest
from sklearn.base import BaseEstimator, clone
from sklearn.model_selection import ParameterGrid
from sklearn.utils import get_tags

from dcf import KNN, ItemKNN, UserKNN
from dcf.estimator import Estimator


class _Reference(BaseEstimator):
    def __init__(self, *, k=50, measure="cosine", inner=None):
        self.k, self.measure, self.inner = k, measure, inner


class _Ours(Estimator):
    def __init__(self, *, k=50, measure="cosine", inner=None):
        self.k, self.measure, self.inner = k, measure, inner


@pytest.mark.parametrize("params", list(ParameterGrid({"k": [50, 7], "measure": ["cosine", "jaccard"],
                                                       "inner": [None, "nested"]})))
def test_params_and_repr_match_scikit_learns_base(params):
    def build(cls):
        p = dict(params)
        if p["inner"] == "nested":
            p["inner"] = cls(k=3)
        return cls(**p)
    ours, ref = build(_Ours), build(_Reference)
    assert repr(ours) == repr(ref).replace("_Reference", "_Ours")
    strip = {key: (repr(v).replace("_Reference", "_Ours") if isinstance(v, BaseEstimator | Estimator) else v)
             for key, v in ref.get_params().items()}
    assert {key: (repr(v) if isinstance(v, Estimator) else v) for key, v in ours.get_params().items()} == strip
    assert ours.get_params(deep=False).keys() == ref.get_params(deep=False).keys()


def test_set_params_sets_nested_and_refuses_unknown_names_as_scikit_learn_does():
    ours = _Ours(inner=_Ours())
    assert ours.set_params(k=3, inner__measure="jaccard") is ours
    assert ours.k == 3 and ours.inner.measure == "jaccard"
    for est in (ours, _Reference()):
        with pytest.raises(ValueError, match="Invalid parameter 'based'"):
            est.set_params(based="user")


@pytest.mark.parametrize("cls", [KNN, ItemKNN, UserKNN])
def test_scikit_learns_clone_and_tags_work_on_dcfs_estimators(cls):
    model = cls(k=7, shrinkage=2.0)
    copy = clone(model)
    assert type(copy) is cls and copy is not model and copy.get_params() == model.get_params()
    assert get_tags(model) == get_tags(_Reference())
    assert repr(model) == f"{cls.__name__}(k=7, shrinkage=2.0)"
    assert ("based" in model.get_params()) == (cls is KNN)


def test_importing_the_estimators_does_not_import_scikit_learn():
    code = "import sys, dcf; dcf.ItemKNN(); assert 'sklearn' not in sys.modules, 'sklearn imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
