"""Writing a fitted model: :func:`save` and the arrays and metadata it gathers.

Everything is computed first, then written into a staging folder that
:func:`~dcf.folders.atomic_folder` renames into place when complete, so an
interrupted save leaves the previous model (or none), never half of one.
"""

from __future__ import annotations

import json
from pathlib import Path

import dask
import dask.array as da
import numpy as np

from ..blocks import row_blocks, stack_csr, stack_rows
from ..folders import MARKER, MODEL, atomic_folder, check_folder
from ..version import __version__
from .files import ids_frame, sha256
from .meta import FORMAT, FORMAT_VERSION, META

__all__ = ["save"]


def save(model, path) -> Path:
    """Write a fitted model to the folder ``path``.

    An existing ``path`` is replaced only when it is empty or a model dcf saved
    (:mod:`dcf.folders`); anything else raises :class:`~dcf.errors.ConfigError`
    before any work."""
    model.check_fitted()
    check_folder(path, MODEL, what="save")
    m = model.matrix_
    # one type per compute call: dask 2026.8 returns mixed Delayed/Array results grouped
    # by type, not in argument order
    idx, sim = dask.compute(*(dask.delayed(stack_rows, pure=True)(*row_blocks(a)[0], dask_key_name=f"stack-rows-{a.name}")
                              for a in (model.neighbours_.idx, model.neighbours_.sim)))
    by_user, report = dask.compute(_stack(m.by_user), m.report)
    sim_rows = None
    if model.similarity_rows_ is not None:
        sim_rows = dask.compute(_stack(model.similarity_rows_))[0]
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "dcf_version": __version__,
        "class": type(model).__name__, "params": model.get_params(),
        "based": model.based, "fitted_k": int(model.neighbours_.k),
        "shape": [len(m.users), len(m.items)],
        "user_bounds": _bounds(m.by_user.chunks[0]), "item_bounds": _bounds(m.by_item.chunks[0]),
        "global_mean": model.global_mean_, "rating_range": list(model.rating_range_),
        "source": m.source, "report": _plain(report), "files": {},
    }
    if m.reference_time is not None:  # the time decay's reference (seconds since the epoch)
        meta["reference_time"] = float(m.reference_time)
    with atomic_folder(path, MODEL, what="save") as tmp:
        ids_frame(m.users).to_parquet(tmp / "users.parquet", index=False)
        ids_frame(m.items).to_parquet(tmp / "items.parquet", index=False)
        np.savez(tmp / "ratings.npz", data=by_user.data, indices=by_user.indices,
                 indptr=by_user.indptr)
        np.savez(tmp / "neighbours.npz", idx=np.asarray(idx, np.int64), sim=np.asarray(sim, np.float64))
        if sim_rows is not None:
            np.savez(tmp / "similarity.npz", data=sim_rows.data, indices=sim_rows.indices,
                     indptr=sim_rows.indptr)
        for f in sorted(tmp.iterdir()):
            if f.name == MARKER:  # dcf.folders' ownership marker, not part of the model
                continue
            meta["files"][f.name] = {"bytes": f.stat().st_size, "sha256": sha256(f)}
        with open(tmp / META, "w") as fh:
            json.dump(meta, fh, indent=2)
    return Path(path)


def _stack(X: da.Array):
    """All row blocks of a CSR- (or dense-) chunked dask array as one CSR."""
    return dask.delayed(stack_csr, pure=True)(*X.to_delayed(optimize_graph=False).ravel().tolist(),
                                               dask_key_name=f"stack-rows-{X.name}")


def _bounds(chunks) -> list[int]:
    """Block bounds from block sizes: ``[0, c0, c0 + c1, ...]`` as plain ints."""
    return [0] + np.cumsum(chunks).astype(int).tolist()


def _plain(obj):
    """``obj`` with NumPy scalars as Python ones and tuples as lists, for JSON."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj
