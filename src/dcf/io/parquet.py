"""Parquet ratings: a file or a folder of ``*.parquet`` parts, read in row-group parts.

The user, item and rating columns are found by name, as in a CSV header.  Each
task reads at most :data:`PARQUET_PART_ROWS` rows of one file (whole row groups);
``line`` numbers are row numbers in the file, counted from 1.  Integer id and
numeric rating columns are checked as numbers (:func:`dcf.io.validate.validate_numeric`),
anything else as text.  A time column (named as :mod:`dcf.io.times` says: numbers,
timestamps, dates or text) becomes the rows' ``time``.

Refused: id columns of list, struct, map or binary type, and a boolean rating
column.  ``uint64`` ids at or above 2**63 are kept exactly, as text, like the
same ids in a text file.
"""

from __future__ import annotations

from dataclasses import replace

import dask
import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa

from ..blocks import outputs
from ..errors import DataError, FolderRows
from .formats import filesystem, header_columns, parquet_files
from .sources import RatingsSource
from .times import seconds_of_arrow, time_column
from .validate import raw_ids, validate_numeric, validate_text

__all__ = ["PARQUET_PART_ROWS", "parquet_parts"]

PARQUET_PART_ROWS = 2_000_000  # rows per task: one 20M-row file in one task needs > 3 GB
_NOT_IDS = "ids must be integers or text"


def parquet_parts(src: RatingsSource):
    """``(parts, reports, name)``: one delayed frame and report per row-group part of each
    file, and the source's name: for a folder of several files a
    :class:`~dcf.errors.FolderRows`, its files' rows numbered one file after another (by
    their footers' row counts), so that a later error (a pair rated in two files) names
    the file and its row."""
    fs, local = filesystem(src.path)
    folder = fs.isdir(local)
    files = parquet_files(fs, local, src.path) if folder else [local]
    proto = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    urls = [f if proto in ("file", "local") else f"{proto}://{f}" for f in files]
    parse = dask.delayed(_parse_parquet_file, pure=True)
    token = dask.base.tokenize(src, urls, [fs.ukey(f) for f in files])  # a file changed: new keys
    pieces, firsts, line = [], [], 1
    for f, url in zip(files, urls):
        parts, n_rows = _row_group_parts(fs, f, url if folder else None)
        label = (line - 1, f[len(local.rstrip("/")):].lstrip("/")) if folder else None
        pieces += [(url, groups, (first, rows), label) for groups, first, rows in parts]
        firsts.append((line, url))
        line += n_rows
    pairs = [outputs(parse(url, src, groups, span, label, dask_key_name=f"read-parquet-{token}-{i}"),
                     2, ("read-part", "read-block-report"))
             for i, (url, groups, span, label) in enumerate(pieces)]
    name = FolderRows(src.path, firsts) if folder else src.path
    return [p for p, _ in pairs], [r for _, r in pairs], name


def _row_group_parts(fs, path, url=None):
    """``([(row groups or None, first line, rows or None)], rows)``: a file's row groups in
    parts of at most :data:`PARQUET_PART_ROWS` rows (one part per group when a group is
    larger), and its row count.  A file whose footer cannot be read here is one part of
    unknown rows (its task then says why), but a file of a folder (``url``, its name) is a
    DataError now: the files after it are numbered from its row count."""
    import pyarrow.parquet as pq

    try:
        with fs.open(path, "rb") as f:
            meta = pq.ParquetFile(f).metadata
        sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
    except Exception as exc:  # noqa: BLE001 -- reported by the reading task, with the file name
        if url is not None:
            raise DataError(url, f"cannot be read as Parquet: {exc}") from None
        return [(None, 1, None)], 0
    parts, groups, rows, first = [], [], 0, 1
    for g, n in enumerate(sizes):
        if groups and rows + n > PARQUET_PART_ROWS:
            parts.append((groups, first, rows))
            first, groups, rows = first + rows, [], 0
        groups.append(g)
        rows += n
    parts.append((groups or None, first, rows))
    return parts, sum(sizes)


def _parse_parquet_file(url: str, src: RatingsSource, groups=None, span=(1, None), folder=None):
    """One part of a Parquet file (``groups``: its row groups, None = all; ``span``: its
    first row's number in the file, counted from 1, and its rows as the footer said when
    the graph was built, None if unknown: a file changed since is a DataError); ``line``
    numbers are row numbers in the file, and checked as such (an error names the file and
    its row); ``folder``: ``(rows of the folder's files before this one, the file's name in
    the folder)`` for a part of a folder, whose lines then continue the earlier files'
    (:func:`parquet_parts`) and whose examples name the file."""
    import pyarrow.parquet as pq

    try:
        with fsspec.open(url, "rb") as f:
            file = pq.ParquetFile(f)
            table = file.read() if groups is None else file.read_row_groups(groups)
    except Exception as exc:  # noqa: BLE001 -- any reader failure is a data problem here
        raise DataError(url, f"cannot be read as Parquet: {exc}") from None
    names = [str(c) for c in table.column_names]
    cols = header_columns(url, names, rating=src.feedback == "explicit")
    _check_parquet_types(url, table.schema, cols)
    n_rows = table.num_rows
    first_line, expected = span
    if expected is not None and n_rows != expected:  # the lines of the files after it would be wrong
        raise DataError(url, f"changed while it was read: its row groups held {expected:,} rows when the job "
                        f"started and {n_rows:,} now")
    u, it = (table.column(c).to_pandas() for c in cols[:2])
    # no rating column (implicit feedback): each row an event of weight 1
    r = table.column(cols[2]).to_pandas() if cols[2] is not None else pd.Series(np.ones(n_rows))
    times = None
    if src.timed:  # a part without the time column: its rows are untimed
        at = time_column(names)
        times = seconds_of_arrow(table.column(at)) if at is not None else np.full(n_rows, np.nan)
    del table
    fixed = replace(src, path=url)
    lines = np.arange(first_line, first_line + n_rows)
    users, items = _int64_ids(u), _int64_ids(it)
    if users is not None and items is not None and _plain(r, "iuf"):  # typed: no text pass
        frame, report = validate_numeric(fixed, users, items, r.to_numpy(np.float64), lines, times=times)
    else:
        r = r.astype(object).where(r.notna(), "").to_numpy(dtype=object)
        frame, report = validate_text(fixed, _parquet_ids(u), _parquet_ids(it), r, lines, n_rows, [], times=times)
    if folder is not None:
        before, name = folder
        frame["line"] += before
        report = {**report, "examples": [f"{name} {e}" for e in report.get("examples", [])]}
    return frame, report


def _check_parquet_types(url: str, schema, cols) -> None:
    """Refuse id columns that cannot hold ids and rating columns that cannot hold numbers."""
    for role, c in zip(("user id", "item id", "rating"), cols):
        if c is None:  # no rating column: events of weight 1
            continue
        kind = schema.field(c).type
        name = schema.field(c).name
        if role == "rating" and pa.types.is_boolean(kind):
            raise DataError(url, f"rating column is boolean, expected numbers (column {name!r})")
        if pa.types.is_nested(kind) or pa.types.is_binary(kind) or pa.types.is_large_binary(kind) \
                or pa.types.is_fixed_size_binary(kind) or str(kind).startswith("binary_view"):
            wanted = _NOT_IDS if role != "rating" else "expected numbers"
            raise DataError(url, f"{role} column {name!r} has type {kind}: {wanted}")


def _int64_ids(col: pd.Series):
    """A NumPy integer id column as int64, or None (other types, or uint64 values at or
    above 2**63, which int64 cannot hold)."""
    if not _plain(col, "iu"):
        return None
    if col.dtype.kind == "u" and len(col) and int(col.max()) >= 1 << 63:
        return None
    return col.to_numpy(np.int64)


def _parquet_ids(col: pd.Series) -> np.ndarray:
    """Raw ids of a Parquet column for the text path.  An unsigned column holding values
    at or above 2**63 becomes text, all of it, as the same ids read from a text file."""
    ids = raw_ids(col)
    if pd.api.types.is_unsigned_integer_dtype(col.dtype) and len(col) and col.max() >= 1 << 63:
        ids = np.array([v if isinstance(v, str) else str(v) for v in ids], dtype=object)
    return ids


def _plain(col: pd.Series, kinds: str) -> bool:
    """A NumPy-typed column of one of ``kinds`` (nullable extension types are not)."""
    return isinstance(col.dtype, np.dtype) and col.dtype.kind in kinds
