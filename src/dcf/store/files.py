"""A saved model's files: opened only when regular, their size and SHA-256, the id files.

Every file of a model folder is opened through :func:`open_regular` (``lstat`` first:
no symbolic link, FIFO or device is ever opened), and every failure to read one
becomes a :class:`~dcf.errors.DataError` naming it (:func:`as_data_error`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from ..ids import IdMap

__all__ = ["as_data_error", "check_file", "ids_frame", "open_regular", "read_ids", "sha256"]

_READ_ERRORS = (OSError, EOFError, ValueError, TypeError, KeyError, RuntimeError, NotImplementedError,
                MemoryError, OverflowError, struct.error, zlib.error, zipfile.BadZipFile,
                zipfile.LargeZipFile)


def sha256(path: Path) -> str:
    """The SHA-256 of the file ``path``, in hex (read in 1 MiB chunks)."""
    with open(path, "rb") as f:
        return _digest(f)


def _digest(f) -> str:
    h = hashlib.sha256()
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
    return h.hexdigest()


def open_regular(path: Path, limit: int | None = None):
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


def check_file(path: Path, want: dict) -> None:
    """``path`` is a regular file of the recorded size and SHA-256."""
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size != want["bytes"]:
            raise DataError(path, f"truncated or altered: {size} bytes, the model recorded {want['bytes']}")
        found = _digest(f)
    if found != want["sha256"]:
        raise DataError(path, "corrupt: its SHA-256 differs from the one recorded in the model")


@contextlib.contextmanager
def as_data_error(path: Path, what: str):
    """Any failure reading ``path`` (zip, .npy, memory) as a :class:`DataError` naming it."""
    try:
        yield
    except DataError:
        raise
    except _READ_ERRORS as exc:
        raise DataError(path, f"{what}: {type(exc).__name__}: {exc}"[:500]) from None


# ------------------------------------------------------------------ id files

def ids_frame(ids: IdMap) -> pd.DataFrame:
    """The id file's frame: one column ``id``, the raw ids in code order (int64 or text)."""
    values = ids.index.to_numpy()
    return pd.DataFrame({"id": values.astype(np.int64) if ids.numeric else values.astype(str)})


def read_ids(path: Path, n: int) -> IdMap:
    """The ids of ``path``: one ``id`` column of ``n`` distinct ids in code order.

    The row count and schema are read from the Parquet footer before any data.
    """
    import pyarrow.parquet as pq

    with open_regular(path) as f, as_data_error(path, "unreadable id file"):
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
    written = ids_frame(ids)["id"].to_numpy()
    same = (values.dtype.kind in "iu" and np.array_equal(written, values) if written.dtype.kind == "i"
            else values.dtype.kind not in "iuf" and np.array_equal(written, values.astype(str)))
    if len(ids) != n or not same:
        raise DataError(path, "ids must be distinct, in code order (sorted), as dcf writes them")
    return ids
