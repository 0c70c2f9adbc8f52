"""Which format a ratings path holds, and the checks made before anything is read.

:func:`sniff` tells the formats apart (``format="auto"``, see the table in
:mod:`dcf.io`) from the extension and first line: ``::`` makes ``dat``, a tab
``tab``, a comma ``csv``; a CSV whose first line does not end in a number has a
header, whose user, item and rating columns are found by name
(:func:`header_columns`).

Refused, before anything is opened or read: a path that is neither a regular
file nor a folder (a FIFO, a device such as ``/dev/zero``, a socket: reading
one could wait for ever), a file that cannot be opened ("permission denied"),
a folder that mixes ``*.parquet`` parts with other files (hidden files and
names starting with ``_``, such as ``_SUCCESS`` or ``_metadata``, are ignored).
:func:`reading` turns failures to open or decompress a file (a compressed
stream that ends early, too) into :class:`~dcf.errors.DataError`.
"""

from __future__ import annotations

import contextlib
import lzma
import os
import stat
import zlib

from dataclasses import replace

import fsspec

from ..errors import DataError
from .sources import BOM, RatingsSource
from .times import time_column

__all__ = ["FEEDBACKS", "FORMATS", "filesystem", "head_names", "header_columns", "parquet_files", "reading", "sniff"]

FORMATS = ("tab", "dat", "csv", "parquet")
FEEDBACKS = ("explicit", "implicit")  # ratings, or events whose optional value is a positive weight
_USER = {"user", "userid", "user_id", "uid", "customer", "customerid", "customer_id"}
_ITEM = {"item", "itemid", "item_id", "iid", "movie", "movieid", "movie_id", "product", "productid",
         "product_id"}
_RATING = {"rating", "ratings", "score", "stars", "value", "weight", "count"}
_SAMPLE_BYTES = 1 << 16
_TRUNCATED = "cannot be read: the compressed stream ends early (truncated file?)"


def sniff(path, *, format: str = "auto", on_bad_lines: str = "error",
          rating_scale=None, feedback: str = "explicit", times: bool = True) -> RatingsSource:
    """Work out how to read ``path`` from its name and first line.

    With ``feedback="implicit"`` a file of ``user, item`` pairs (two fields, or a CSV
    header without a rating column) is events of weight 1.  With ``times`` the rows
    keep their event times where the source has a time column (:mod:`dcf.io.times`).

    Raises
    ------
    DataError
        Missing, empty, binary, unreadable or unrecognisable file; a path that
        is not a regular file or folder (FIFO, device, socket); a folder mixing
        Parquet parts with other files.
    """
    path = os.fspath(path)
    if on_bad_lines not in ("error", "skip"):
        raise ValueError(f"on_bad_lines must be 'error' or 'skip', not {on_bad_lines!r}")
    if format not in ("auto", *FORMATS):
        raise DataError(path, f"unknown format {format!r}: use one of auto, {', '.join(FORMATS)}")
    if feedback not in FEEDBACKS:
        raise ValueError(f"feedback must be one of {', '.join(FEEDBACKS)}, not {feedback!r}")
    common = dict(on_bad_lines=on_bad_lines,
                  rating_scale=None if rating_scale is None else tuple(map(float, rating_scale)),
                  feedback=feedback)
    fs, local = filesystem(path)
    if not fs.exists(local):
        pattern = "; a pattern such as '*.csv' is not expanded" if any(c in path for c in "*?[") else ""
        raise DataError(path, f"no such file or folder (give one ratings file or a folder of Parquet parts{pattern})"
                        if pattern else "no such file or folder")
    _check_kind(fs, local, path)
    with reading(path):
        is_parquet = format == "parquet" or (format == "auto" and _looks_parquet(fs, local, path))
    if is_parquet:
        return RatingsSource(path, "parquet", timed=bool(times) and _parquet_timed(fs, local, path), **common)
    if fs.isdir(local):
        raise DataError(path, "is a folder without *.parquet files; give a ratings file")
    compression = fsspec.utils.infer_compression(path)
    with reading(path), fsspec.open(path, "rb", compression=compression) as f:
        head = f.read(_SAMPLE_BYTES)
    src = _sniff_text(path, head, format, compression, common)
    if not times:
        return src
    at = (time_column(head_names(head, src)) if src.header
          else 3 if src.n_fields >= 4 and src.columns[2] is not None else None)
    return replace(src, timed=at is not None, time_column=at)


def filesystem(path: str):
    """``(filesystem, path in it)`` of a ratings path, taken literally: a name with ``*``,
    ``?`` or ``[`` in it is that one file, never a pattern fsspec would expand."""
    return fsspec.core.url_to_fs(path)


def head_names(head: bytes, src: RatingsSource) -> list:
    """The header line's column names (``src.header`` is true)."""
    text = head[len(BOM):] if head.startswith(BOM) else head
    first = next(ln for ln in text.decode("utf-8", "replace").splitlines() if ln.strip())
    return [f.strip() for f in first.split(src.sep)]


def _parquet_timed(fs, local: str, path: str) -> bool:
    """Whether any Parquet file's schema has a time column (the rows of a file without
    one are untimed).  Each file's footer is read once more later, for its row groups."""
    import pyarrow.parquet as pq

    for name in parquet_files(fs, local, path) if fs.isdir(local) else [local]:
        try:
            with fs.open(name, "rb") as f:
                if time_column(pq.read_schema(f).names) is not None:
                    return True
        except Exception:  # noqa: BLE001 -- the read task names the file and the problem
            continue
    return False


def _is_local(fs) -> bool:
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    return bool({"file", "local"} & set(protocols))


def _check_kind(fs, local: str, path: str) -> None:
    """Refuse a local path that is neither a regular file nor a folder, before opening it
    (opening a FIFO waits for a writer; ``/dev/zero`` never ends)."""
    if not _is_local(fs):
        return
    try:
        mode = os.stat(local).st_mode
    except PermissionError:
        raise DataError(path, "permission denied") from None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return
    kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a character device"
            if stat.S_ISCHR(mode) else "a block device" if stat.S_ISBLK(mode) else "a socket"
            if stat.S_ISSOCK(mode) else "not a plain file")
    raise DataError(path, f"is {kind}, not a regular file or folder: give a ratings file")


@contextlib.contextmanager
def reading(path: str):
    """Turn failures to open or decompress ``path`` into :class:`DataError`."""
    try:
        yield
    except DataError:
        raise
    except PermissionError:
        raise DataError(path, "permission denied") from None
    except EOFError:
        raise DataError(path, _TRUNCATED) from None
    except (OSError, ValueError, zlib.error, lzma.LZMAError) as exc:
        raise DataError(path, f"cannot be read: {exc}") from None


def _looks_parquet(fs, local: str, path: str) -> bool:
    if fs.isdir(local):
        return bool(parquet_files(fs, local, path))
    if local.endswith((".parquet", ".pq")):
        return True
    with fs.open(local, "rb") as f:
        return f.read(4) == b"PAR1"


def parquet_files(fs, local: str, path: str) -> list:
    """The ``*.parquet`` parts under a folder, sorted; a DataError if other files sit beside
    them (hidden names and names starting with ``_``, such as ``_SUCCESS``, ``_metadata``
    or ``_temporary/``, are markers and ignored)."""
    root = local.rstrip("/")
    parts, others = [], []
    for f in sorted(fs.find(root, withdirs=False)):
        rel = f[len(root):].lstrip("/").split("/")
        if any(name.startswith((".", "_")) for name in rel):
            continue
        (parts if f.endswith(".parquet") else others).append(f)
    if parts and others:
        raise DataError(path, f"mixes Parquet parts with other files ({others[0][len(root):].lstrip('/')!r} "
                        "is not a .parquet file): only *.parquet parts would be read; move the "
                        "others out or give one file")
    if _is_local(fs):
        for f in parts:
            _check_kind(fs, f, f)
    return parts


def _sniff_text(path, head: bytes, format, compression, common) -> RatingsSource:
    if head.startswith(BOM):
        head = head[len(BOM):]
    if not head.strip():
        raise DataError(path, "the file is empty: no ratings")
    if b"\x00" in head:
        raise DataError(path, "looks like a binary file (NUL bytes), not ratings text", 1 + head[:head.index(b"\x00")].count(b"\n"))
    lines = head.splitlines()
    n_first = next(i for i, ln in enumerate(lines) if ln.strip())
    try:
        first = lines[n_first].decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(path, "is not UTF-8 text", n_first + 1) from None
    if format == "auto":
        format = "dat" if "::" in first else "tab" if "\t" in first else "csv" if "," in first else None
        if format is None:
            raise DataError(path, "cannot tell the format from the first line "
                            f"{first[:60]!r}: expected tab-, '::'- or comma-separated "
                            "user, item, rating (or give format=)", n_first + 1)
    sep = {"tab": "\t", "dat": "::", "csv": ","}[format]
    fields = [f.strip() for f in first.split(sep)]
    pairs = common["feedback"] == "implicit" and len(fields) == 2  # user, item: each event weighs 1
    header = format == "csv" and not _is_number(fields[-1] if len(fields) < 3 else fields[2])
    if pairs:  # no number to tell a header by: a header is a line of column names, in any format
        low = [f.strip().strip('"').lower() for f in fields]
        header = low[0] in _USER and low[1] in _ITEM
    columns = (0, 1, None) if pairs else (0, 1, 2)
    if header:
        columns = header_columns(path, fields, rating=common["feedback"] == "explicit")
    if len(fields) < 2 or (len(fields) < 3 and not pairs):
        hint = " (or --feedback implicit / feedback='implicit' for user, item pairs)" if len(fields) == 2 else ""
        raise DataError(path, f"expected at least 3 fields (user, item, rating), saw {len(fields)}{hint}",
                        n_first + 1)
    if header and not any(ln.strip() for ln in lines[n_first + 1:]) and len(head) < _SAMPLE_BYTES:
        raise DataError(path, "has a header but no ratings")
    return RatingsSource(path, format, sep, header, columns, len(fields), compression, **common)


def header_columns(path, names, rating: bool = True) -> tuple:
    """Positions of the user, item and rating columns among header ``names``; the rating's
    None where it is absent and not required (implicit feedback: each event weighs 1)."""
    low = [n.strip().strip('"').lower() for n in names]
    found = []
    for role, choices in (("user", _USER), ("item", _ITEM), ("rating", _RATING)):
        hits = [i for i, n in enumerate(low) if n in choices]
        if not hits and role == "rating" and not rating:
            found.append(None)
            continue
        if not hits:
            hint = " (or --feedback implicit / feedback='implicit' for events without one)" if role == "rating" else ""
            raise DataError(path, f"header {names!r} has no {role} column "
                            f"(accepted names: {', '.join(sorted(choices))}){hint}", 1)
        found.append(hits[0])
    return tuple(found)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
