"""What ``python -m dcf.compile`` runs: small fits that reach every compiled kernel the
library's settings use, so that numba compiles each (or loads it from its cache) once.

A kernel is compiled per signature (its arguments' types), and which signatures a job
reaches depends on its settings, not on its size: the fits below, on a few thousand
ratings, reach every signature that fits of every measure, neighbourhood, prediction
and ranking, item- and user-based, integer and decimal ratings reached together
(measured with :func:`signatures`).  A cluster's fit over a catalogue past 65,536
entities reads a shared matrix with wider column indices, which a synchronous fit's
narrower shared parts never reach: :func:`_wide_kernels` calls the rows kernels on one
directly (the first ``bm25`` fit of the e-commerce shape compiled for some 25 s in a
worker before).  ``recommend_for_history`` and ``refresh`` add a few signatures that are
still compiled where first used.
"""

from __future__ import annotations

import importlib
import pkgutil

import dask
import numpy as np
import pandas as pd
import scipy.sparse as sp
from numba.core.registry import CPUDispatcher

from .. import kernels
from ..model import ItemKNN

__all__ = ["RUNS", "dispatchers", "signatures", "exercise", "compiled_into"]

# (similarity, neighbourhood, prediction): each reaches compiled loops the others do not
RUNS = (
    ("cosine", "rated", "weighted"),            # the general rows loop with whole rows, dense scoring
    ("cosine", "global", "weighted"),           # sparse scoring, the shared matrix's slices
    ("full-cosine", "rated", "mean-centred"),   # column squares of the plain shared matrix
    ("full-cosine", "global", "weighted"),      # the fast top-k scan over the packed matrix
    ("pearson-baseline", "rated", "baseline"),  # residuals: the general loop on float32 values
    ("centred-cosine", "global", "weighted"),   # packing a matrix of many values
    ("llr", "global", "weighted"),              # llr on the fast path: its margins once an entity
)


WIDE_COLUMNS = 70_000  # past 65,536: the shared matrix's columns take int32 indices


def dispatchers() -> dict:
    """Every compiled function of :mod:`dcf.kernels`, by ``module.name``."""
    found = {}
    for info in pkgutil.iter_modules(kernels.__path__):
        mod = importlib.import_module(f"{kernels.__name__}.{info.name}")
        for name, obj in vars(mod).items():
            if isinstance(obj, CPUDispatcher) and obj.__module__ == mod.__name__:
                found[f"{info.name}.{name}"] = obj
    return found


def signatures() -> set:
    """``(function, signature)`` of every kernel compiled or loaded in this process."""
    return {(name, str(sig)) for name, d in dispatchers().items() for sig in d.signatures}


def _ratings(seed=0, users=300, items=200, n=4000) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"user": rng.integers(0, users, n), "item": rng.integers(0, items, n),
                          "rating": rng.integers(1, 6, n).astype(np.float64)})
    return frame.drop_duplicates(["user", "item"], ignore_index=True)


def compiled_into():
    """The folder numba keeps the kernels' code in (:func:`dcf.kernels.cache.cache_folder`;
    None where numba chose its own)."""
    return kernels.cache.cache_folder()


def exercise() -> int:
    """Run :data:`RUNS` (fit, predict, Top-N by prediction and by sum), an explained Top-N
    and an implicit-feedback fit in this process, on Dask's synchronous scheduler; returns
    how many kernel signatures it reached."""
    ratings = _ratings()
    pairs = ratings[["user", "item"]].iloc[:100]
    with dask.config.set(scheduler="synchronous"):
        for similarity, neighbourhood, prediction in RUNS:
            model = ItemKNN(similarity=similarity, neighbourhood=neighbourhood, prediction=prediction, k=10)
            model.fit(ratings)
            model.predict(pairs).compute()
            for ranking in ("prediction", "sum"):
                model.recommend(n=5, ranking=ranking).compute()
        # what the runs above leave out: explanations, and events summed (implicit feedback)
        model.recommend(n=5, ranking="sum", explain=True).compute()
        events = pd.concat([ratings, ratings.iloc[:50]], ignore_index=True)  # repeated events
        ItemKNN(feedback="implicit", similarity="bm25", neighbourhood="global", k=10).fit(events).recommend(n=5).compute()
        kernels.int_text_hashes(ratings["user"].to_numpy(), "0123456789abcdef")  # the random split's
    _wide_kernels()
    return len(signatures())


def _wide_kernels(rows=50, nnz=2000) -> None:
    """The rows kernels over a shared matrix of :data:`WIDE_COLUMNS` entities, plain and
    packed, of values exact in float32 (ratings) and not (weights): the fast path, the
    general loop's lists and its whole rows."""
    rng = np.random.default_rng(1)
    r, c = rng.integers(0, rows, nnz), rng.integers(0, WIDE_COLUMNS, nnz)
    for values in (rng.integers(1, 6, nnz).astype(np.float64), rng.random(nnz)):
        Q = sp.csr_matrix((values, (r, c)), shape=(rows, WIDE_COLUMNS))
        Q.sum_duplicates()
        X = sp.csr_matrix(Q.T)
        block = sp.csr_matrix(X[:100])
        for shared in (kernels.compact_stack([Q]), kernels.compact_stack([Q], pack=True)):
            for measure, dense in (("full-cosine", False), ("cosine", False), ("cosine", True)):
                totals = kernels.entity_totals(X, measure)
                kernels.similarity_rows(block, shared, 0, kernels.SimilaritySettings(measure), k=5, dense=dense,
                                        csr=dense, norms_a=None if totals is None else totals[:100], norms=totals)
