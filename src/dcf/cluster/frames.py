"""A frame's part packed on its worker for the trip to the client, and the parts unpacked
into one frame there.

Dask sends a pandas frame at a quarter of the rate it sends plain NumPy arrays (measured on
this project's 2-core VM, 2 workers: 4 parts of 500k recommendations, 66 MB, took 0.26-0.35 s
as frames, 0.14-0.22 s as the same columns in arrays, about 1 GB/s for arrays in general;
benchmarks/RESULTS.md, issue 21 step 11).  A part is therefore sent as its columns, each in
the fewest bytes that give the same values back: integers in the smallest integer type
holding them, a column of runs (a user's N recommendations) as its run values and lengths,
a categorical as its codes.  Columns of any other kind (strings, objects, extension types)
travel as they are.  :func:`unpack_frames` gives exactly ``pd.concat(parts,
ignore_index=True)``: the same columns, dtypes and values.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import pandas as pd

__all__ = ["PackedFrame", "pack_frame", "unpack_frames"]

RUNS_BELOW = 0.25  # an integer column is sent as runs where it has fewer than this many per row
SMALL_INTS = (np.int8, np.int16, np.int32)
THREADS = 2  # threads filling the whole columns
THREADED_ROWS = 1_000_000  # from this many rows


class PackedFrame(NamedTuple):
    """A frame's columns (``names``, in order), each as ``(kind, payload, dtype)``:
    ``plain`` (the array), ``ints`` (a smaller integer array), ``runs`` (``(values,
    lengths)``, each packed as ``ints``), ``codes`` (a categorical's codes) or ``series``
    (the column itself); ``rows`` its length.  Only what :func:`pack_frame` makes."""

    names: pd.Index
    columns: list
    rows: int


def pack_frame(frame: pd.DataFrame):
    """``frame`` as a :class:`PackedFrame` (its index is dropped), or the frame itself where
    it is no frame, has no columns (its length would be lost), or its column names repeat
    or are missing."""
    if not isinstance(frame, pd.DataFrame) or not len(frame.columns) or not frame.columns.is_unique \
            or frame.columns.hasnans:
        return frame
    return PackedFrame(frame.columns, [_pack(frame[name]) for name in frame.columns], len(frame))


def _pack(column: pd.Series):
    dtype = column.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return "codes", column.cat.codes.to_numpy(), dtype
    if not isinstance(dtype, np.dtype) or dtype.kind not in "iufbmM" or not dtype.isnative:
        return "series", column.reset_index(drop=True), dtype  # (pandas makes a foreign byte order native)
    values = column.to_numpy()
    if dtype.kind != "i" or not len(values):
        return "plain", values, dtype
    starts = np.flatnonzero(values[1:] != values[:-1]) + 1
    if len(starts) + 1 < RUNS_BELOW * len(values):
        bounds = np.concatenate([[0], starts, [len(values)]])
        return "runs", (_ints(values[bounds[:-1]]), _ints(np.diff(bounds))), dtype
    return "ints", _ints(values), dtype


def _ints(values: np.ndarray) -> np.ndarray:
    """Signed integers in the smallest of int8/16/32 that holds them (else as they are)."""
    if values.dtype.kind != "i" or not len(values):
        return values
    lo, hi = values.min(), values.max()
    for small in SMALL_INTS:
        info = np.iinfo(small)
        if small().itemsize < values.dtype.itemsize and info.min <= lo and hi <= info.max:
            return values.astype(small)
    return values


def unpack_frames(parts: list, meta: pd.DataFrame) -> pd.DataFrame:
    """Parts made by :func:`pack_frame` (or frames), concatenated: ``pd.concat`` of the
    frames they were, with a fresh index (``meta``'s copy where there are none).  Each
    column is written once into its whole array where every part has the same names and
    the same dtype for it (categoricals: the same categories); else the frames are
    rebuilt and concatenated by pandas."""
    if not parts:
        return meta.copy()
    packed = [p for p in parts if isinstance(p, PackedFrame)]
    first = packed[0] if packed else None
    if first is None or len(packed) < len(parts) or any(not _same_names(p.names, first.names) for p in packed) \
            or any(not _same(p.columns[c][2], first.columns[c][2]) for p in packed for c in range(len(first.names))):
        return pd.concat([_frame([p]) if isinstance(p, PackedFrame) else p for p in parts], ignore_index=True)
    return _frame(packed)


def _same_names(a: pd.Index, b: pd.Index) -> bool:
    return a.dtype == b.dtype and a.equals(b)


def _same(a, b) -> bool:
    """The same dtype, a categorical's categories in the same order (pandas calls two
    unordered categoricals equal whatever their order; their codes then differ)."""
    if isinstance(a, pd.CategoricalDtype) or isinstance(b, pd.CategoricalDtype):
        return (type(a) is type(b) and a.ordered == b.ordered and a.categories.dtype == b.categories.dtype
                and a.categories.equals(b.categories))
    return type(a) is type(b) and a == b


def _frame(parts: list) -> pd.DataFrame:
    """One frame of packed parts whose names and column dtypes agree (the columns filled
    by :data:`THREADS` threads: NumPy's copies release the GIL)."""
    first = parts[0]
    total = sum(p.rows for p in parts)
    with ThreadPoolExecutor(THREADS if total >= THREADED_ROWS else 1, thread_name_prefix="dcf-unpack") as pool:
        columns = list(pool.map(lambda c: _whole(parts, c, total), range(len(first.names))))
    return pd.DataFrame(dict(zip(first.names, columns)), columns=first.names, copy=False)


def _whole(parts: list, c: int, total: int):
    """Column ``c`` of the parts, whole."""
    kind, _, dtype = parts[0].columns[c]
    if any(p.columns[c][0] == "series" for p in parts):
        return pd.concat([_series(p.columns[c]) for p in parts], ignore_index=True) if len(parts) > 1 \
            else _series(parts[0].columns[c])
    whole = np.empty(total, parts[0].columns[c][1].dtype if kind == "codes" else dtype)
    at = 0
    for p in parts:
        at = _write(p.columns[c], whole, at, p.rows)
    return pd.Categorical.from_codes(whole, dtype=dtype) if isinstance(dtype, pd.CategoricalDtype) else whole


def _write(column, whole: np.ndarray, at: int, rows: int) -> int:
    kind, payload, _ = column
    if kind == "runs":
        values, lengths = payload
        whole[at:at + rows] = np.repeat(values, lengths)
    else:
        whole[at:at + rows] = payload
    return at + rows


def _series(column) -> pd.Series:
    kind, payload, dtype = column
    if kind == "series":
        return payload
    if kind == "codes":
        return pd.Series(pd.Categorical.from_codes(payload, dtype=dtype))
    values = np.repeat(*payload) if kind == "runs" else payload
    return pd.Series(values.astype(dtype, copy=False))
