"""Saved models: a documented, versioned folder format that is not pickle.

``model.save(path)`` writes a folder; ``dcf.load(path)`` reads it back into a
fitted model that serves ``predict``, ``recommend`` and ``neighbours`` on the
current cluster (or the local scheduler) without refitting::

    path/
      dcf-model.json    format name and version, dcf version, parameters,
                        shapes, block bounds, global mean, rating range, the
                        cleaning report, and the size and SHA-256 of every file
      users.parquet     one column ``id``: raw user ids in code order
      items.parquet     one column ``id``: raw item ids in code order
      ratings.npz       the training matrix, users x items CSR
                        (``data`` float64, ``indices`` int32/64, ``indptr``)
      neighbours.npz    ``idx`` (n, k) int64 (-1 = none), ``sim`` (n, k) float64
      similarity.npz    whole similarity rows as CSR (``rated`` neighbourhood only)

Arrays are read with ``allow_pickle=False`` and the metadata is JSON, so
loading a model never executes anything from the file.  Every file is checked
against its recorded size and checksum before use: a truncated, corrupt,
missing or foreign file raises :class:`~dcf.errors.DataError` naming it.  A
folder written by a newer format version is refused with the version found.
Writing goes to a staging folder that is renamed into place when complete,
so an interrupted save leaves the previous model (or none), never half of one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import zipfile
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pandas as pd
import scipy.sparse as sp

from . import kernels
from .errors import DataError
from .folders import MODEL, atomic_folder, check_folder
from .ids import IdMap

__all__ = ["FORMAT", "FORMAT_VERSION", "save", "load"]

FORMAT = "dcf-knn"
FORMAT_VERSION = 1
META = "dcf-model.json"


# ------------------------------------------------------------------ save

def save(model, path) -> Path:
    """Write a fitted model to the folder ``path``.

    An existing ``path`` is replaced only when it is empty or a model dcf saved
    (:mod:`dcf.folders`); anything else raises :class:`~dcf.errors.ConfigError`
    before any work."""
    from . import __version__

    model._fitted()
    check_folder(path, MODEL, what="save")
    m = model.matrix_
    # one type per compute call: dask 2026.8 returns mixed Delayed/Array results grouped
    # by type, not in argument order
    idx, sim = dask.compute(model.neighbours_.idx, model.neighbours_.sim)
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
    with atomic_folder(path, MODEL, what="save") as tmp:
        _ids_frame(m.users).to_parquet(tmp / "users.parquet", index=False)
        _ids_frame(m.items).to_parquet(tmp / "items.parquet", index=False)
        np.savez(tmp / "ratings.npz", data=by_user.data, indices=by_user.indices,
                 indptr=by_user.indptr)
        np.savez(tmp / "neighbours.npz", idx=np.asarray(idx, np.int64), sim=np.asarray(sim, np.float64))
        if sim_rows is not None:
            np.savez(tmp / "similarity.npz", data=sim_rows.data, indices=sim_rows.indices,
                     indptr=sim_rows.indptr)
        for f in sorted(tmp.iterdir()):
            meta["files"][f.name] = {"bytes": f.stat().st_size, "sha256": _sha256(f)}
        with open(tmp / META, "w") as fh:
            json.dump(meta, fh, indent=2)
    return Path(path)


def _stack(X: da.Array):
    """All row blocks of a CSR- (or dense-) chunked dask array as one CSR."""
    return dask.delayed(lambda *b: sp.vstack([sp.csr_matrix(x) for x in b], format="csr"),
                        pure=True)(*X.to_delayed(optimize_graph=False).ravel().tolist())


def _bounds(chunks) -> list[int]:
    return [0] + np.cumsum(chunks).astype(int).tolist()


def _ids_frame(ids: IdMap) -> pd.DataFrame:
    values = ids.index.to_numpy()
    return pd.DataFrame({"id": values.astype(np.int64) if ids.numeric else values.astype(str)})


def _plain(obj):
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------ load

def load(path):
    """Read a model saved by :func:`save`; returns a fitted ``ItemKNN``/``UserKNN``/``KNN``.

    Raises
    ------
    DataError
        The folder or a file in it is missing, truncated, corrupt, not a dcf
        model, or written by a newer format version.
    """
    from .matrix import RatingMatrix, _concat, _row_stats, _transpose_blocks
    from .model import KNN, ItemKNN, UserKNN, _finish_fit, _fit_biases
    from .neighbours import NeighbourTable
    from .similarity import row_block_format

    folder = Path(path)
    meta = _read_meta(folder)
    for name, want in meta["files"].items():
        _check_file(folder / name, want)
    users, items = IdMap(_read_ids(folder / "users.parquet")), IdMap(_read_ids(folder / "items.parquet"))
    n_users, n_items = meta["shape"]
    if (len(users), len(items)) != (n_users, n_items):
        raise DataError(folder / META, f"shape {meta['shape']} does not match the id files "
                        f"({len(users)} users, {len(items)} items)")
    ratings = _read_csr(folder / "ratings.npz", (n_users, n_items))
    ub, ib = np.asarray(meta["user_bounds"]), np.asarray(meta["item_bounds"])
    token = meta["files"]["ratings.npz"]["sha256"]
    blocks = [_share(ratings[ub[b]:ub[b + 1]], f"saved-user-block-{token}-{b}") for b in range(len(ub) - 1)]
    by_user = _concat(blocks, ub, n_items)
    by_item = _transpose_blocks(blocks, ub, ib, n_users, token)
    us, uc = _row_stats(by_user)
    is_, ic = _row_stats(by_item)
    report = _share(meta["report"], f"saved-report-{token}")
    matrix = RatingMatrix(users, items, by_user, by_item, us, uc, is_, ic, report, meta["source"])

    cls = {"ItemKNN": ItemKNN, "UserKNN": UserKNN, "KNN": KNN}.get(meta["class"])
    if cls is None:
        raise DataError(folder / META, f"unknown model class {meta['class']!r}")
    try:
        model = cls(**meta["params"])
        model._check_params()
    except (TypeError, ValueError) as exc:
        raise DataError(folder / META, f"parameters do not fit this dcf version: {exc}") from None
    n = n_items if model.based == "item" else n_users
    bounds = ib if model.based == "item" else ub
    with _npz(folder / "neighbours.npz") as z:
        idx, sim = _array(z, "idx", folder, np.int64), _array(z, "sim", folder, np.float64)
    if idx.shape != sim.shape or idx.shape[0] != n or idx.shape[1] != meta["fitted_k"]:
        raise DataError(folder / "neighbours.npz", f"neighbour arrays of shape {idx.shape} and "
                        f"{sim.shape}, expected ({n}, {meta['fitted_k']})")
    chunks = (tuple(np.diff(bounds).tolist()), (idx.shape[1],))
    idx_d = da.from_array(idx, chunks=chunks, name=f"saved-idx-{token}")
    sim_d = da.from_array(sim, chunks=chunks, name=f"saved-sim-{token}")
    W = da.map_blocks(kernels.neighbour_matrix, idx_d, sim_d, n, dtype=np.float64,
                      chunks=(idx_d.chunks[0], (n,)), meta=sp.csr_matrix((0, 0)),
                      name=f"saved-neighbour-matrix-{token}")
    model.matrix_ = matrix.persist()
    model.neighbours_ = NeighbourTable(idx_d, sim_d, W, int(meta["fitted_k"])).persist()
    model.similarity_rows_ = None
    if model.neighbourhood == "rated":
        if "similarity.npz" not in meta["files"]:
            raise DataError(folder / META, "a rated-neighbourhood model without similarity.npz")
        rows = _read_csr(folder / "similarity.npz", (n, n))
        model.similarity_rows_ = _concat(
            [_share(row_block_format(rows[bounds[a]:bounds[a + 1]]), f"saved-sim-rows-{token}-{a}")
             for a in range(len(bounds) - 1)], bounds, n).persist()
    _finish_fit(model, matrix, meta["global_mean"], meta["rating_range"], token)
    model.user_bias_ = model.item_bias_ = None
    if model._needs_biases():
        # refitted from the saved ratings, in the same blocks: the same doubles as at fit time
        _fit_biases(model, matrix, meta["global_mean"])
    return model


def _read_meta(folder: Path) -> dict:
    if not folder.is_dir():
        raise DataError(folder, "no such model folder" if not folder.exists() else
                        "a saved model is a folder, not a file")
    try:
        with open(folder / META, encoding="utf-8") as f:
            meta = json.load(f)
    except FileNotFoundError:
        raise DataError(folder, f"not a dcf model: {META} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(folder / META, f"corrupt metadata: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DataError(folder / META, f"not a dcf model (format {meta.get('format') if isinstance(meta, dict) else None!r})")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise DataError(folder / META, f"model format version {version!r} written by dcf "
                        f"{meta.get('dcf_version')}; this dcf reads versions 1..{FORMAT_VERSION}")
    missing = {"params", "class", "shape", "user_bounds", "item_bounds", "fitted_k", "files",
               "global_mean", "rating_range"} - set(meta)
    needed = {"users.parquet", "items.parquet", "ratings.npz", "neighbours.npz"} - set(meta.get("files", {}))
    if missing or needed:
        raise DataError(folder / META, f"incomplete metadata: missing {', '.join(sorted(missing | needed))}")
    return meta


def _check_file(path: Path, want: dict) -> None:
    if not path.is_file():
        raise DataError(path, "missing from the saved model")
    size = path.stat().st_size
    if size != want.get("bytes"):
        raise DataError(path, f"truncated or altered: {size} bytes, the model recorded {want.get('bytes')}")
    if _sha256(path) != want.get("sha256"):
        raise DataError(path, "corrupt: its SHA-256 differs from the one recorded in the model")


def _read_ids(path: Path) -> np.ndarray:
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - any parquet failure is a bad file
        raise DataError(path, f"unreadable id file: {exc}") from None
    if list(frame.columns) != ["id"] or frame["id"].isna().any():
        raise DataError(path, "an id file holds one column 'id' with no missing values")
    return frame["id"].to_numpy()


@contextlib.contextmanager
def _npz(path: Path):
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(path, f"unreadable array file: {exc}") from None
    with z:
        yield z


def _array(z, name: str, folder: Path, dtype) -> np.ndarray:
    try:
        a = z[name]
    except KeyError:
        raise DataError(folder, f"array {name!r} is missing from {Path(z.fid.name).name}") from None
    except ValueError as exc:  # object arrays need pickle: refused
        raise DataError(folder, f"array {name!r} cannot be read without pickle: {exc}") from None
    if a.dtype != dtype:
        raise DataError(folder, f"array {name!r} has dtype {a.dtype}, expected {np.dtype(dtype)}")
    return a


def _read_csr(path: Path, shape) -> sp.csr_matrix:
    with _npz(path) as z:
        data = _array(z, "data", path, np.float64)
        indices, indptr = z["indices"], z["indptr"]
    try:
        m = sp.csr_matrix((data, indices, indptr), shape=tuple(shape))
        m.check_format(full_check=True)
    except (ValueError, TypeError) as exc:
        raise DataError(path, f"not a valid {shape[0]} x {shape[1]} sparse matrix: {exc}") from None
    return m


def _share(obj, key: str):
    """A Delayed holding ``obj`` (one graph key; sent to the cluster once)."""
    return dask.delayed(obj, pure=True, name=key)
