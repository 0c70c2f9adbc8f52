"""The ``.npz`` files of a saved model: member headers, layouts, arrays and their checks.

A layout names the members a file must hold with their dtypes and shapes;
:func:`read_npz` checks every member's ``.npy`` header and zip entry against it
before anything is allocated.  :func:`csr` and :func:`neighbour_table` check the
arrays read, :func:`check_summary` the metadata's ``global_mean`` and
``rating_range`` against the saved ratings.
"""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from numpy.lib import format as npformat

from ..errors import DataError
from .files import as_data_error, open_regular

__all__ = ["check_summary", "csr", "csr_layout", "neighbour_table", "read_npz", "table_layout"]

_INTEGERS = (np.dtype(np.int32), np.dtype(np.int64))
_FLOATS = (np.dtype(np.float64),)


def csr_layout(n_rows: int, n_cols: int) -> dict:
    """Expected members of a CSR ``.npz``: name -> (dtypes, shape; None = any length)."""
    return {"data": (_FLOATS, (None,)), "indices": (_INTEGERS, (None,)),
            "indptr": (_INTEGERS, (n_rows + 1,)), "_limit": n_rows * n_cols}


def table_layout(n: int, k: int) -> dict:
    """Expected members of ``neighbours.npz``: ``idx`` int64 and ``sim`` float64, both (n, k)."""
    return {"idx": ((np.dtype(np.int64),), (n, k)), "sim": (_FLOATS, (n, k))}


def read_npz(path: Path, layout: dict, read: bool = True) -> dict | None:
    """The arrays of ``path``, after every member's header matched ``layout``.

    Members must be stored (not compressed), as :func:`~dcf.store.save` writes them,
    and each member's declared size must equal what its header's shape and dtype
    imply, so the bytes on disk bound what is allocated.  ``read=False`` checks only.
    """
    with open_regular(path) as f, as_data_error(path, "unreadable array file"):
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


def csr(arrays: dict, path: Path, shape) -> sp.csr_matrix:
    """A checked CSR matrix of finite values (``indptr`` and ``indices`` in range)."""
    try:
        m = sp.csr_matrix((arrays["data"], arrays["indices"], arrays["indptr"]), shape=tuple(shape))
        m.check_format(full_check=True)
    except (ValueError, TypeError) as exc:
        raise DataError(path, f"not a valid {shape[0]} x {shape[1]} sparse matrix: {exc}") from None
    if not np.isfinite(m.data).all():
        raise DataError(path, "holds values that are not finite numbers")
    return m


def neighbour_table(arrays: dict, path: Path, n: int):
    """``(idx, sim)``: ids in ``-1..n-1``, finite similarities."""
    idx, sim = arrays["idx"], arrays["sim"]
    if idx.size and (idx.min() < -1 or idx.max() >= n):
        raise DataError(path, f"neighbour ids must lie in -1..{n - 1}, found {idx.min()}..{idx.max()}")
    if not np.isfinite(sim).all():
        raise DataError(path, "holds similarities that are not finite numbers")
    return idx, sim


def check_summary(ratings: sp.csr_matrix, meta: dict, path: Path) -> None:
    """``global_mean`` and ``rating_range`` are the mean, least and largest saved rating."""
    if ratings.nnz == 0:
        raise DataError(path, "the saved ratings are empty")
    found = {"global_mean": float(np.mean(ratings.data)),
             "rating_range": [float(ratings.data.min()), float(ratings.data.max())]}
    for field, value in found.items():
        if not np.allclose(meta[field], value, rtol=1e-9, atol=0):
            raise DataError(path, f"field {field!r} is {meta[field]!r} but the saved ratings give {value!r}")
