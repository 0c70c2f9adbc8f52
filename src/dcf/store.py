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
loading a model never executes anything from the file.  Nothing in the folder
is trusted until checked, and every failure is a :class:`~dcf.errors.DataError`
naming the file (and field), raised before anything large is allocated:

* ``dcf-model.json`` is a regular file (not a link, FIFO or device) of at most
  64 MiB; a newer ``format_version`` is refused with the version found.
* Every field is type- and range-checked: the class and *all* its parameters
  (then the estimator's own checks), ``based`` agreeing with them, ``shape``
  two integers in 1..2**31-1, block bounds integers rising strictly from 0 to
  the shape, ``k <= fitted_k <= max(k, n)``, a finite ``global_mean``, a
  ``rating_range`` low <= high, ``report`` an object, ``source`` a string or
  null, ``files`` plain known names (no paths) with ``bytes`` and ``sha256``.
* Each listed file is a regular file in the folder (``lstat`` before opening:
  no symbolic link, even one pointing inside, no FIFO or device) of the
  recorded size and SHA-256.
* The checksums can be forged along with a file, so the structure is checked
  on its own: each ``.npz`` holds exactly the expected members, stored
  uncompressed (as :func:`save` writes them), each ``.npy`` header's dtype and
  shape as the metadata implies, its zip entry exactly the bytes the header
  implies (no zip bombs, no headers claiming terabytes); the id files' row
  counts (Parquet footer) match the shape and their ids are distinct and in
  code order; the CSR matrices are valid with finite values; neighbour ids lie
  in range; ``global_mean`` and ``rating_range`` are those of the saved ratings.

A loaded model's graph keys derive from the SHA-256 of its whole metadata
(:func:`model_token`), so models saved from the same ratings, loaded into one
client, never share keys.  Version 1 is the current format; no field was added.
Writing goes to a staging folder that is renamed into place when complete,
so an interrupted save leaves the previous model (or none), never half of one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import stat
import struct
import zipfile
import zlib
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pandas as pd
import scipy.sparse as sp
from numpy.lib import format as npformat

from . import kernels
from .blocks import concat_rows, row_blocks, stack_csr, stack_rows
from .errors import DataError
from .fitted import finish_fit, persist_biases
from .folders import MARKER, MODEL, atomic_folder, check_folder
from .ids import IdMap
from .matrix import from_user_blocks
from .neighbours import NeighbourTable
from .similarity import row_block_format
from .version import __version__

__all__ = ["FORMAT", "FORMAT_VERSION", "save", "load", "model_token"]

FORMAT = "dcf-knn"
FORMAT_VERSION = 1
META = "dcf-model.json"


# ------------------------------------------------------------------ save

def save(model, path) -> Path:
    """Write a fitted model to the folder ``path``.

    An existing ``path`` is replaced only when it is empty or a model dcf saved
    (:mod:`dcf.folders`); anything else raises :class:`~dcf.errors.ConfigError`
    before any work."""
    model._fitted()
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
            if f.name == MARKER:  # dcf.folders' ownership marker, not part of the model
                continue
            meta["files"][f.name] = {"bytes": f.stat().st_size, "sha256": _sha256(f)}
        with open(tmp / META, "w") as fh:
            json.dump(meta, fh, indent=2)
    return Path(path)


def _stack(X: da.Array):
    """All row blocks of a CSR- (or dense-) chunked dask array as one CSR."""
    return dask.delayed(stack_csr, pure=True)(*X.to_delayed(optimize_graph=False).ravel().tolist(),
                                               dask_key_name=f"stack-rows-{X.name}")


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
#
# Nothing in a model folder is trusted until it is checked: the metadata's every field
# (types, ranges, cross-field consistency), every file's kind, name, size and checksum,
# and every array's header against the shapes the metadata declares, all before any
# array is allocated.  The checksums alone are not enough: whoever edits a file can
# record its new size and SHA-256 too, so each structural check stands on its own.

MAX_META_BYTES = 64 << 20
"""The largest ``dcf-model.json`` read (a million-block model's bounds fit in a few MiB)."""
MAX_ENTITIES = 2**31 - 1
"""The most users (or items) a saved model may declare."""
MAX_REPORT_DEPTH = 16
"""How deeply the cleaning report may nest (dcf's nests two or three levels)."""
DATA_FILES = ("users.parquet", "items.parquet", "ratings.npz", "neighbours.npz", "similarity.npz")
REQUIRED_FILES = DATA_FILES[:4]
_INTEGERS = (np.dtype(np.int32), np.dtype(np.int64))
_FLOATS = (np.dtype(np.float64),)
_HEX = frozenset("0123456789abcdef")
_READ_ERRORS = (OSError, EOFError, ValueError, TypeError, KeyError, RuntimeError, NotImplementedError,
                MemoryError, OverflowError, struct.error, zlib.error, zipfile.BadZipFile,
                zipfile.LargeZipFile)


def load(path, classes: dict):
    """Read a model saved by :func:`save`; returns a fitted estimator of one of ``classes``.

    ``classes`` maps the saved class name to the estimator class (``dcf.load``, in
    :mod:`dcf.model`, passes ``ItemKNN``, ``UserKNN`` and ``KNN``), so this module
    needs nothing of the estimator's and the two do not import each other.

    Every field of the metadata, every file and every array header is checked
    before anything is allocated or sent to the cluster (see the module notes);
    the loaded model's graph keys derive from the whole metadata, so models
    saved from the same ratings never share keys.

    Raises
    ------
    DataError
        The folder or a file in it is missing, truncated, corrupt, not a dcf
        model, inconsistent, or written by a newer format version.
    """
    folder = Path(path)
    meta = _read_meta(folder)
    model = _check_meta(meta, folder / META, classes)
    for name, want in meta["files"].items():
        _check_file(folder / name, want)
    n_users, n_items = meta["shape"]
    n = n_items if model.based == "item" else n_users
    layouts = {"ratings.npz": _csr_layout(n_users, n_items),
               "neighbours.npz": _table_layout(n, meta["fitted_k"])}
    if "similarity.npz" in meta["files"]:
        layouts["similarity.npz"] = _csr_layout(n, n)
    arrays = {name: _read_npz(folder / name, layout, read=name != "similarity.npz"
                              or model.neighbourhood == "rated")
              for name, layout in layouts.items()}
    users = _read_ids(folder / "users.parquet", n_users)
    items = _read_ids(folder / "items.parquet", n_items)
    ratings = _csr(arrays["ratings.npz"], folder / "ratings.npz", (n_users, n_items))
    _check_summary(ratings, meta, folder / META)
    idx, sim = _neighbour_table(arrays["neighbours.npz"], folder / "neighbours.npz", n)
    rows = (_csr(arrays["similarity.npz"], folder / "similarity.npz", (n, n))
            if model.neighbourhood == "rated" else None)
    return _assemble(model, meta, (users, items, ratings), (idx, sim, rows), model_token(meta))


def model_token(meta: dict) -> str:
    """The graph-key token of a saved model: SHA-256 of its whole metadata, canonical JSON.

    The metadata holds the class, parameters, shapes, block bounds, fitted k, global
    mean, rating range and every file's SHA-256, so two models share a token only
    when they are the same model.
    """
    text = json.dumps(meta, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _assemble(model, meta, matrix_parts, table_parts, token):
    """The fitted model from checked parts, on the current scheduler, keys from ``token``."""

    users, items, ratings = matrix_parts
    idx, sim, rows = table_parts
    n_users, n_items = meta["shape"]
    ub, ib = np.asarray(meta["user_bounds"]), np.asarray(meta["item_bounds"])
    blocks = [_share(ratings[ub[b]:ub[b + 1]], f"saved-user-block-{token}-{b}") for b in range(len(ub) - 1)]
    report = _share(meta["report"], f"saved-report-{token}")
    matrix = from_user_blocks(users, items, blocks, ub, ib, [report], meta["source"], token)
    n, bounds = (n_items, ib) if model.based == "item" else (n_users, ub)
    chunks = (tuple(np.diff(bounds).tolist()), (idx.shape[1],))
    idx_d = da.from_array(idx, chunks=chunks, name=f"saved-idx-{token}")
    sim_d = da.from_array(sim, chunks=chunks, name=f"saved-sim-{token}")
    W = da.map_blocks(kernels.neighbour_matrix, idx_d, sim_d, n, dtype=np.float64,
                      chunks=(idx_d.chunks[0], (n,)), meta=sp.csr_matrix((0, 0)),
                      name=f"saved-neighbour-matrix-{token}")
    model.matrix_ = matrix.persist()
    model.neighbours_ = NeighbourTable(idx_d, sim_d, W, int(meta["fitted_k"])).persist()
    model.similarity_rows_ = None
    if rows is not None:
        model.similarity_rows_ = concat_rows(
            [_share(row_block_format(rows[bounds[a]:bounds[a + 1]]), f"saved-sim-rows-{token}-{a}")
             for a in range(len(bounds) - 1)], bounds, n, "saved-similarity-rows").persist()
    finish_fit(model, matrix, meta["global_mean"], meta["rating_range"], token)
    model.user_bias_ = model.item_bias_ = None
    if model._needs_biases():
        # refitted from the saved ratings, in the same blocks: the same doubles as at fit time
        persist_biases(model, matrix, meta["global_mean"])
    return model


# ------------------------------------------------------------------ load: files

def _open_regular(path: Path, limit: int | None = None):
    """``path`` opened for reading in binary, only if it is a regular file (no link).

    The kind is checked with ``lstat`` before opening (a FIFO or device is never
    opened, so nothing can block), and again on the open descriptor.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise DataError(path, "missing from the saved model") from None
    except OSError as exc:
        raise DataError(path, f"cannot be read: {exc.strerror or exc}") from None
    if stat.S_ISLNK(st.st_mode):
        raise DataError(path, "a symbolic link; a saved model's files are regular files in its folder")
    if not stat.S_ISREG(st.st_mode):
        raise DataError(path, "not a regular file (a FIFO, device, socket or folder)")
    if limit is not None and st.st_size > limit:
        raise DataError(path, f"{st.st_size} bytes, more than the {limit} this file may hold")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise DataError(path, f"cannot be opened: {exc.strerror or exc}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # replaced between the two looks
        os.close(fd)
        raise DataError(path, "not a regular file")
    return os.fdopen(fd, "rb")


def _check_file(path: Path, want: dict) -> None:
    """``path`` is a regular file of the recorded size and SHA-256."""
    with _open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size != want["bytes"]:
            raise DataError(path, f"truncated or altered: {size} bytes, the model recorded {want['bytes']}")
        h = hashlib.sha256()
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    if h.hexdigest() != want["sha256"]:
        raise DataError(path, "corrupt: its SHA-256 differs from the one recorded in the model")


def _read_meta(folder: Path) -> dict:
    """The parsed ``dcf-model.json`` (a regular file of at most :data:`MAX_META_BYTES`)."""
    if not folder.is_dir():
        raise DataError(folder, "no such model folder" if not folder.exists() else
                        "a saved model is a folder, not a file")
    if not os.path.lexists(folder / META):
        raise DataError(folder, f"not a dcf model: {META} is missing")
    with _open_regular(folder / META, MAX_META_BYTES) as f:
        raw = f.read(MAX_META_BYTES + 1)
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise DataError(folder / META, f"corrupt metadata: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise DataError(folder / META, f"not a dcf model (format {found!r})")
    version = meta.get("format_version")
    if type(version) is not int or version > FORMAT_VERSION or version < 1:
        raise DataError(folder / META, f"model format version {version!r} written by dcf "
                        f"{meta.get('dcf_version')}; this dcf reads versions 1..{FORMAT_VERSION}")
    missing = {"dcf_version", "params", "class", "based", "shape", "user_bounds", "item_bounds",
               "fitted_k", "files", "global_mean", "rating_range", "report", "source"} - set(meta)
    if "files" in meta and not isinstance(meta["files"], dict):
        raise DataError(folder / META, "field 'files' must be an object: file name -> size and SHA-256")
    needed = set(REQUIRED_FILES) - set(meta.get("files", {}))
    if missing or needed:
        raise DataError(folder / META, f"incomplete metadata: missing {', '.join(sorted(missing | needed))}")
    return meta


# ------------------------------------------------------------------ load: metadata fields

def _check_meta(meta: dict, path: Path, classes: dict):
    """Check every field of ``meta``; returns the (unfitted) estimator it describes."""
    if not isinstance(meta["dcf_version"], str):
        raise DataError(path, f"field 'dcf_version' must be a string, not {meta['dcf_version']!r}")
    n_users, n_items = _check_shape(meta["shape"], path)
    _check_bounds(meta["user_bounds"], n_users, "user_bounds", path)
    _check_bounds(meta["item_bounds"], n_items, "item_bounds", path)
    _check_number(meta["global_mean"], "global_mean", path)
    rr = meta["rating_range"]
    if not isinstance(rr, list) or len(rr) != 2:
        raise DataError(path, f"field 'rating_range' must be [low, high], not {rr!r}")
    lo, hi = (_check_number(v, "rating_range", path) for v in rr)
    if lo > hi:
        raise DataError(path, f"field 'rating_range' is reversed: {rr!r}")
    if not isinstance(meta["report"], dict) or _depth(meta["report"]) > MAX_REPORT_DEPTH:
        raise DataError(path, f"field 'report' must be an object nested at most {MAX_REPORT_DEPTH} deep")
    if meta["source"] is not None and not isinstance(meta["source"], str):
        raise DataError(path, f"field 'source' must be a string or null, not {meta['source']!r}")
    model = _check_model(meta, path, classes)
    _check_files(meta["files"], model.neighbourhood, path)
    return model


def _depth(obj) -> int:
    """How deeply lists and objects nest in ``obj`` (iterative: no recursion limit)."""
    deepest, stack = 0, [(obj, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level + 1)
            stack.extend((v, level + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def _check_shape(shape, path: Path) -> tuple[int, int]:
    if (not isinstance(shape, list) or len(shape) != 2
            or not all(type(x) is int and 1 <= x <= MAX_ENTITIES for x in shape)):
        raise DataError(path, f"field 'shape' must be [users, items], each an integer from 1 to "
                        f"{MAX_ENTITIES}, not {shape!r}"[:300])
    return shape[0], shape[1]


def _check_bounds(bounds, n: int, field: str, path: Path) -> None:
    """Block bounds: integers from 0, strictly increasing, ending at ``n``."""
    ok = (isinstance(bounds, list) and len(bounds) >= 2 and all(type(b) is int for b in bounds))
    if not ok:
        raise DataError(path, f"field {field!r} must be a list of at least two integers")
    if bounds[0] != 0 or bounds[-1] != n:
        raise DataError(path, f"field {field!r} must run from 0 to {n}, not {bounds[0]} to {bounds[-1]}")
    if any(b >= c for b, c in zip(bounds, bounds[1:])):
        raise DataError(path, f"field {field!r} is not strictly increasing")


def _check_number(value, field: str, path: Path) -> float:
    if type(value) not in (int, float) or not math.isfinite(value):
        raise DataError(path, f"field {field!r} must be a finite number, not {value!r}")
    return float(value)


def _check_model(meta: dict, path: Path, classes: dict):
    """The estimator of ``class`` and ``params``: every parameter present, of its type,
    accepted by the estimator's own checks; ``based`` and ``fitted_k`` consistent."""
    cls = classes.get(meta["class"]) \
        if isinstance(meta["class"], str) else None
    if cls is None:
        raise DataError(path, f"unknown model class {meta['class']!r}")
    params, defaults = meta["params"], cls().get_params()
    if not isinstance(params, dict) or set(params) != set(defaults):
        got = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise DataError(path, f"field 'params' must hold exactly {', '.join(sorted(defaults))}; found {got}")
    for name, value in params.items():
        if not _param_type_ok(value, defaults[name]):
            raise DataError(path, f"parameter {name!r} has the wrong type: {value!r}")
    try:
        model = cls(**params)
        model._check_params()
    except (TypeError, ValueError) as exc:
        raise DataError(path, f"parameters do not fit this dcf version: {exc}") from None
    if meta["based"] != model.based:
        raise DataError(path, f"field 'based' is {meta['based']!r} but the parameters make "
                        f"{meta['class']} {model.based}-based")
    n = meta["shape"][1] if model.based == "item" else meta["shape"][0]
    k = meta["fitted_k"]
    if type(k) is not int or not model.k <= k <= max(model.k, n):
        raise DataError(path, f"field 'fitted_k' must be an integer from k={model.k} to "
                        f"{max(model.k, n)}, not {k!r}")
    return model


def _param_type_ok(value, default) -> bool:
    """A parameter's value has its default's type (numbers: int or float; no booleans)."""
    if isinstance(value, bool):
        return False
    if default is None:
        return value is None or isinstance(value, (int, str))
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, int):
        return isinstance(value, int)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and math.isfinite(value)
    return False


def _check_files(files: dict, neighbourhood: str, path: Path) -> None:
    """``files``: known plain names, each with ``bytes`` (int >= 0) and ``sha256`` (64 hex)."""

    for name, want in files.items():
        if name not in DATA_FILES and name != MARKER:  # save() records the folder's marker too
            raise DataError(path, f"field 'files' names {name!r}: a saved model holds only "
                            f"{', '.join(DATA_FILES)}")
        if (not isinstance(want, dict) or type(want.get("bytes")) is not int or want["bytes"] < 0
                or not isinstance(want.get("sha256"), str) or len(want["sha256"]) != 64
                or not set(want["sha256"]) <= _HEX):
            raise DataError(path, f"field 'files' entry {name!r} must be {{'bytes': int >= 0, "
                            f"'sha256': 64 hex digits}}, not {want!r}"[:300])
    if neighbourhood == "rated" and "similarity.npz" not in files:
        raise DataError(path, "a rated-neighbourhood model without similarity.npz")


# ------------------------------------------------------------------ load: arrays

def _csr_layout(n_rows: int, n_cols: int) -> dict:
    """Expected members of a CSR ``.npz``: name -> (dtypes, shape; None = any length)."""
    return {"data": (_FLOATS, (None,)), "indices": (_INTEGERS, (None,)),
            "indptr": (_INTEGERS, (n_rows + 1,)), "_limit": n_rows * n_cols}


def _table_layout(n: int, k: int) -> dict:
    return {"idx": ((np.dtype(np.int64),), (n, k)), "sim": (_FLOATS, (n, k))}


def _read_npz(path: Path, layout: dict, read: bool = True) -> dict | None:
    """The arrays of ``path``, after every member's header matched ``layout``.

    Members must be stored (not compressed), as :func:`save` writes them, and each
    member's declared size must equal what its header's shape and dtype imply, so
    the bytes on disk bound what is allocated.  ``read=False`` checks only.
    """
    with _open_regular(path) as f, _as_data_error(path, "unreadable array file"):
        size = os.fstat(f.fileno()).st_size
        with zipfile.ZipFile(f) as zf:
            members = [info.filename for info in zf.infolist()]
            expected = sorted(f"{name}.npy" for name in layout if not name.startswith("_"))
            if sorted(members) != expected:  # before reading any member
                raise DataError(path, f"holds members {sorted(members)[:10]}, expected {expected}")
            headers = _npz_headers(zf, path, size)
            _match_layout(headers, layout, path)
            if not read:
                return None
            out = {}
            for name in headers:
                with zf.open(f"{name}.npy") as fp:
                    out[name] = npformat.read_array(fp, allow_pickle=False)
            return out


def _npz_headers(zf: zipfile.ZipFile, path: Path, size: int) -> dict:
    """``name -> (dtype, shape)`` of every member, checked against its zip entry."""
    headers = {}
    for info in zf.infolist():
        name = info.filename[:-4] if info.filename.endswith(".npy") else None
        if not name or name in headers:
            raise DataError(path, f"unexpected or repeated member {info.filename!r}")
        with zf.open(info) as fp:
            version = npformat.read_magic(fp)
            if version not in ((1, 0), (2, 0)):
                raise DataError(path, f"member {info.filename!r}: .npy format version {version} not read")
            read = npformat.read_array_header_1_0 if version == (1, 0) else npformat.read_array_header_2_0
            shape, fortran, dtype = read(fp)
            offset = fp.tell()
        if dtype.hasobject:
            raise DataError(path, f"array {name!r} cannot be read without pickle (dtype {dtype})")
        if any(d < 0 for d in shape):
            raise DataError(path, f"array {name!r} has a negative dimension: {shape}")
        implied = offset + math.prod(shape) * dtype.itemsize
        if info.file_size != implied:
            raise DataError(path, f"member {info.filename!r} declares {info.file_size} bytes but its "
                            f"header (shape {shape}, {dtype}) implies {implied}")
        if (info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size
                or info.header_offset + info.compress_size > size):
            raise DataError(path, f"member {info.filename!r} is compressed or extends past the end of "
                            "the file; dcf stores arrays uncompressed")
        headers[name] = (dtype, shape)
    return headers


def _match_layout(headers: dict, layout: dict, path: Path) -> None:
    """Member dtypes and shapes as ``layout`` says (the names were checked already); CSR
    ``data``/``indices`` of one length, at most ``_limit``."""
    for name in sorted(k for k in layout if not k.startswith("_")):
        dtypes, shape = layout[name]
        dtype, got = headers[name]
        if dtype not in dtypes:
            raise DataError(path, f"array {name!r} has dtype {dtype}, expected "
                            f"{' or '.join(map(str, dtypes))}")
        if len(got) != len(shape) or any(w is not None and w != g for w, g in zip(shape, got)):
            want = tuple("n" if w is None else w for w in shape)
            raise DataError(path, f"array {name!r} has shape {got}, expected {want}")
    if "_limit" in layout:
        nnz, n_ind = headers["data"][1][0], headers["indices"][1][0]
        if nnz != n_ind or nnz > layout["_limit"]:
            raise DataError(path, f"arrays 'data' ({nnz}) and 'indices' ({n_ind}) must have one "
                            f"length, at most {layout['_limit']}")


def _csr(arrays: dict, path: Path, shape) -> sp.csr_matrix:
    """A checked CSR matrix of finite values (``indptr`` and ``indices`` in range)."""
    try:
        m = sp.csr_matrix((arrays["data"], arrays["indices"], arrays["indptr"]), shape=tuple(shape))
        m.check_format(full_check=True)
    except (ValueError, TypeError) as exc:
        raise DataError(path, f"not a valid {shape[0]} x {shape[1]} sparse matrix: {exc}") from None
    if not np.isfinite(m.data).all():
        raise DataError(path, "holds values that are not finite numbers")
    return m


def _neighbour_table(arrays: dict, path: Path, n: int):
    """``(idx, sim)``: ids in ``-1..n-1``, finite similarities."""
    idx, sim = arrays["idx"], arrays["sim"]
    if idx.size and (idx.min() < -1 or idx.max() >= n):
        raise DataError(path, f"neighbour ids must lie in -1..{n - 1}, found {idx.min()}..{idx.max()}")
    if not np.isfinite(sim).all():
        raise DataError(path, "holds similarities that are not finite numbers")
    return idx, sim


def _check_summary(ratings: sp.csr_matrix, meta: dict, path: Path) -> None:
    """``global_mean`` and ``rating_range`` are the mean, least and largest saved rating."""
    if ratings.nnz == 0:
        raise DataError(path, "the saved ratings are empty")
    found = {"global_mean": float(np.mean(ratings.data)),
             "rating_range": [float(ratings.data.min()), float(ratings.data.max())]}
    for field, value in found.items():
        if not np.allclose(meta[field], value, rtol=1e-9, atol=0):
            raise DataError(path, f"field {field!r} is {meta[field]!r} but the saved ratings give {value!r}")


@contextlib.contextmanager
def _as_data_error(path: Path, what: str):
    """Any failure reading ``path`` (zip, .npy, memory) as a :class:`DataError` naming it."""
    try:
        yield
    except DataError:
        raise
    except _READ_ERRORS as exc:
        raise DataError(path, f"{what}: {type(exc).__name__}: {exc}"[:500]) from None


# ------------------------------------------------------------------ load: ids

def _read_ids(path: Path, n: int) -> np.ndarray:
    """The ids of ``path``: one ``id`` column of ``n`` distinct ids in code order.

    The row count and schema are read from the Parquet footer before any data.
    """
    import pyarrow.parquet as pq

    with _open_regular(path) as f, _as_data_error(path, "unreadable id file"):
        try:
            pf = pq.ParquetFile(f)
        except Exception as exc:  # noqa: BLE001 - any footer failure is a bad file
            raise DataError(path, f"unreadable id file: {exc}") from None
        names, rows = pf.schema_arrow.names, pf.metadata.num_rows
        if names != ["id"]:
            raise DataError(path, f"an id file holds one column 'id', not {names}")
        if rows != n:
            raise DataError(path, f"{rows} ids, the model's shape says {n}")
        try:
            frame = pf.read().to_pandas()
        except Exception as exc:  # noqa: BLE001 - any decoding failure is a bad file
            raise DataError(path, f"unreadable id file: {exc}") from None
    values = frame["id"].to_numpy()
    if len(values) != n or frame["id"].isna().any():
        raise DataError(path, "an id file holds one column 'id' with no missing values")
    ids = IdMap(values)
    written = _ids_frame(ids)["id"].to_numpy()
    same = (values.dtype.kind in "iu" and np.array_equal(written, values) if written.dtype.kind == "i"
            else values.dtype.kind not in "iuf" and np.array_equal(written, values.astype(str)))
    if len(ids) != n or not same:
        raise DataError(path, "ids must be distinct, in code order (sorted), as dcf writes them")
    return ids


def _share(obj, key: str):
    """A Delayed holding ``obj`` (one graph key; sent to the cluster once)."""
    return dask.delayed(obj, pure=True, name=key)
