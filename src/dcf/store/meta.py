"""``dcf-model.json``: its name and format, read and checked field by field.

:func:`read_meta` reads the file (a regular file of at most :data:`MAX_META_BYTES`) and
refuses another format, a newer version or missing fields; :func:`check_meta` then
checks every field's type and range, the parameters against the estimator classes
(and the estimator's own checks), and the ``files`` entries.  :func:`model_token`
is the SHA-256 of the whole metadata, the token of a loaded model's graph keys.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

from ..errors import DataError
from ..folders import MARKER
from ..io import parse_time
from .files import open_regular

__all__ = ["DATA_FILES", "FORMAT", "FORMAT_VERSION", "LATER_PARAMS", "MAX_ENTITIES", "MAX_META_BYTES", "MAX_REPORT_DEPTH",
           "META", "REQUIRED_FILES", "check_meta", "model_token", "read_meta"]

FORMAT = "dcf-knn"
FORMAT_VERSION = 1
# parameters added after format version 1's first release: a saved model without them has their defaults
LATER_PARAMS = ("bm25_k1", "bm25_b", "include_self", "feedback", "alpha", "half_life", "reference_time",
                "decay_similarity")
META = "dcf-model.json"
MAX_META_BYTES = 64 << 20
"""The largest ``dcf-model.json`` read (a million-block model's bounds fit in a few MiB)."""
MAX_ENTITIES = 2**31 - 1
"""The most users (or items) a saved model may declare."""
MAX_REPORT_DEPTH = 16
"""How deeply the cleaning report may nest (dcf's nests two or three levels)."""
DATA_FILES = ("users.parquet", "items.parquet", "ratings.npz", "neighbours.npz", "similarity.npz")
"""The files a saved model may hold besides :data:`META` (and the folder's marker)."""
REQUIRED_FILES = DATA_FILES[:4]
"""The files every saved model holds (``similarity.npz`` only with ``neighbourhood="rated"``)."""
_HEX = frozenset("0123456789abcdef")


def model_token(meta: dict) -> str:
    """The graph-key token of a saved model: SHA-256 of its whole metadata, canonical JSON.

    The metadata holds the class, parameters, shapes, block bounds, fitted k, global
    mean, rating range and every file's SHA-256, so two models share a token only
    when they are the same model.
    """
    text = json.dumps(meta, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def read_meta(folder: Path) -> dict:
    """The parsed ``dcf-model.json`` (a regular file of at most :data:`MAX_META_BYTES`)."""
    if not folder.is_dir():
        raise DataError(folder, "no such model folder" if not folder.exists() else
                        "a saved model is a folder, not a file")
    if not os.path.lexists(folder / META):
        raise DataError(folder, f"not a dcf model: {META} is missing")
    with open_regular(folder / META, MAX_META_BYTES) as f:
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


def check_meta(meta: dict, path: Path, classes: dict):
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
    reference = meta.get("reference_time")  # the time decay's (seconds), since format 1 with half_life
    if (model.half_life is None) != (reference is None):
        raise DataError(path, f"field 'reference_time' ({reference!r}) does not match half_life={model.half_life!r}")
    if reference is not None:
        _check_number(reference, "reference_time", path)
        if model.reference_time is not None and parse_time(model.reference_time) != float(reference):
            raise DataError(path, f"field 'reference_time' ({reference!r}) is not the reference_time parameter "
                            f"({model.reference_time!r}) the model was fitted with")
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
    if isinstance(params, dict):  # a model saved before these parameters existed was fitted with their defaults
        params = {**{name: defaults[name] for name in LATER_PARAMS if name not in params}, **params}
    if not isinstance(params, dict) or set(params) != set(defaults):
        got = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise DataError(path, f"field 'params' must hold exactly {', '.join(sorted(defaults))}; found {got}")
    for name, value in params.items():
        if not _param_type_ok(value, defaults[name]):
            raise DataError(path, f"parameter {name!r} has the wrong type: {value!r}")
    try:
        model = cls(**params)
        model.check_params()
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
    """A parameter's value has its default's type (numbers: int or float; booleans only
    where the default is one)."""
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if default is None:  # block_size (int), half_life (days), reference_time (seconds or a date)
        return value is None or isinstance(value, str) or (isinstance(value, (int, float)) and math.isfinite(value))
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
