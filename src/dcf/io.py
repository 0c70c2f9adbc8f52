"""Ratings files -> validated ``dask.dataframe`` of (user, item, rating, line).

Formats (``format="auto"`` tells them apart from the extension and first line):

========  =====================================================  ==========
format    looks like                                             header
========  =====================================================  ==========
tab       ``196<TAB>242<TAB>3<TAB>881250949`` (MovieLens u.data)   no
dat       ``1::1193::5::978300760`` (MovieLens ratings.dat)        no
csv       ``userId,movieId,rating,timestamp`` or user,item,rating  yes / no
parquet   a file or a folder of ``*.parquet`` parts                 schema
========  =====================================================  ==========

Text is read in byte blocks that end at line breaks, one task per block, so
the client never holds the file; every row keeps the 1-based line it came
from, so a problem found anywhere later names the line.

Memory: a task parses its block in slices of at most :data:`SLICE_BYTES` (1 MiB;
1/16 of a smaller block), each first with a typed parser (pyarrow: integer ids become ``int64``, ratings
``float64``, nothing else is kept) and, where that parser fails or sees any
problem, with the exact line-by-line parser (same messages, lines and counts).
The peak memory of a read task stays under :data:`READ_MEMORY_MULTIPLE` (8)
times its block, measured with ``benchmarks/read_memory.py`` on 16 MiB blocks:
about 3x for u.data-like lines with integer ids, 4x for 3-field integer lines,
6.6x for text ids that rarely repeat (they are kept as Python strings), 5.7x
when every slice needs the exact parser; it was 31-33x when whole blocks were
parsed as text.  ``blocksize="auto"`` (the default) sizes blocks from the current Dask client's smallest worker memory limit, see
:func:`block_size_for`; without a client blocks are 32 MiB.  Compressed files
cannot be split: they are read whole, in one task.

Limits (errors in both ``on_bad_lines`` modes, naming file and line): a line
longer than :data:`MAX_LINE_BYTES` (64 KiB), an id longer than
:data:`MAX_ID_CHARS` (1,000 characters).  An integer id that fits 64 bits is
kept as ``int64`` (a column of a block where every id is such an integer,
written canonically); every other id is kept exactly as text.

Refused, before anything is opened or read: a path that is neither a regular
file nor a folder (a FIFO, a device such as ``/dev/zero``, a socket: reading
one could wait for ever), a file that cannot be opened ("permission denied"),
a folder that mixes ``*.parquet`` parts with other files (hidden files and
names starting with ``_``, such as ``_SUCCESS`` or ``_metadata``, are ignored),
a compressed stream that ends early, Parquet id columns of list, struct, map or
binary type, and a boolean Parquet rating column.  Parquet ``uint64`` ids at or
above 2**63 are kept exactly, as text, like the same ids in a text file.

Cleaning (the paper's step 1): blank lines are ignored; rows with an empty
user, item or rating field are dropped and counted (``missing``).  Everything
else that is wrong is an error naming file, line and problem -- a line with too
many fields, a rating that is not a number, NaN, infinite, zero or negative, or
outside a declared ``rating_scale`` -- unless ``on_bad_lines="skip"``, in which
case such rows are dropped, counted (``skipped``) and a few examples kept.
Duplicate (user, item) pairs are handled where rows meet, in :mod:`dcf.matrix`.
"""

from __future__ import annotations

import contextlib
import csv
import io as _io
import lzma
import os
import re
import stat
import warnings
import zlib
from dataclasses import dataclass, field, replace

import dask
import dask.dataframe as dd
import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from .ids import frame_from_parts
from .errors import DataError

__all__ = ["RatingsSource", "Ratings", "sniff", "read_ratings", "empty_report", "merge_reports",
           "block_size_for", "resolve_blocksize", "MAX_LINE_BYTES", "MAX_ID_CHARS",
           "READ_MEMORY_MULTIPLE"]

FORMATS = ("tab", "dat", "csv", "parquet")
_USER = {"user", "userid", "user_id", "uid", "customer", "customerid", "customer_id"}
_ITEM = {"item", "itemid", "item_id", "iid", "movie", "movieid", "movie_id", "product", "productid",
         "product_id"}
_RATING = {"rating", "ratings", "score", "stars", "value"}
_BOM = b"\xef\xbb\xbf"
_SAMPLE_BYTES = 1 << 16
_MAX_EXAMPLES = 5
MAX_LINE_BYTES = 64 << 10  # a longer line is not ratings text: an error naming it
MAX_ID_CHARS = 1000  # a longer user or item id is an error naming its line
SLICE_BYTES = 1 << 20  # a block is parsed at most this many bytes at a time (1/16 of a small one)
READ_MEMORY_MULTIPLE = 8  # a read task's peak memory stays under this many times its block
MIN_BLOCKSIZE, MAX_BLOCKSIZE, DEFAULT_BLOCKSIZE = 1 << 20, 64 << 20, 32 << 20
_TRUNCATED = "cannot be read: the compressed stream ends early (truncated file?)"
_NOT_IDS = "ids must be integers or text"
META = pd.DataFrame({"user": pd.Series([], dtype=object), "item": pd.Series([], dtype=object),
                     "rating": pd.Series([], dtype=np.float64), "line": pd.Series([], dtype=np.int64)})


@dataclass(frozen=True)
class RatingsSource:
    """How to read one ratings file: resolved by :func:`sniff`."""

    path: str
    format: str
    sep: str = "\t"
    header: bool = False
    columns: tuple[int, int, int] = (0, 1, 2)  # positions of user, item, rating
    n_fields: int = 3
    compression: str | None = None
    on_bad_lines: str = "error"
    rating_scale: tuple[float, float] | None = None


@dataclass
class Ratings:
    """A lazily read ratings source.

    Attributes
    ----------
    source : RatingsSource
    parts : list of dask.delayed.Delayed
        pandas DataFrames with columns ``user``, ``item`` (raw ids, object),
        ``rating`` (float64) and ``line`` (int64, 1-based line or row).
    report : dask.delayed.Delayed
        Computes to a dict of counts: ``lines`` (data lines read, blank ones
        excluded), ``rows`` (kept), ``missing`` (dropped: empty field),
        ``skipped`` (dropped as bad, only with ``on_bad_lines="skip"``) and
        ``examples`` (a few ``"line N: problem"`` strings).
    """

    source: RatingsSource
    parts: list
    report: object = field(repr=False)

    @property
    def frame(self) -> dd.DataFrame:
        """The parts as one dask DataFrame."""
        return frame_from_parts(self.parts, META)


def empty_report() -> dict:
    return {"lines": 0, "rows": 0, "blank": 0, "missing": 0, "skipped": 0, "examples": []}


def merge_reports(*reports: dict) -> dict:
    """Add counts of several block reports; keep the first few examples."""
    out = empty_report()
    for r in reports:
        for key, value in r.items():
            if key == "examples":
                out["examples"] = (out["examples"] + list(value))[:_MAX_EXAMPLES]
            else:
                out[key] = out.get(key, 0) + value
    return out


def sniff(path, *, format: str = "auto", on_bad_lines: str = "error",
          rating_scale=None) -> RatingsSource:
    """Work out how to read ``path`` from its name and first line.

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
    common = dict(on_bad_lines=on_bad_lines,
                  rating_scale=None if rating_scale is None else tuple(map(float, rating_scale)))
    fs, _, (local,) = fsspec.get_fs_token_paths(path)
    if not fs.exists(local):
        raise DataError(path, "no such file or folder")
    _check_kind(fs, local, path)
    with _reading(path):
        is_parquet = format == "parquet" or (format == "auto" and _looks_parquet(fs, local, path))
    if is_parquet:
        return RatingsSource(path, "parquet", **common)
    if fs.isdir(local):
        raise DataError(path, "is a folder without *.parquet files; give a ratings file")
    compression = fsspec.utils.infer_compression(path)
    with _reading(path), fsspec.open(path, "rb", compression=compression) as f:
        head = f.read(_SAMPLE_BYTES)
    return _sniff_text(path, head, format, compression, common)


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
def _reading(path: str):
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
        return bool(_parquet_files(fs, local, path))
    if local.endswith((".parquet", ".pq")):
        return True
    with fs.open(local, "rb") as f:
        return f.read(4) == b"PAR1"


def _parquet_files(fs, local: str, path: str) -> list:
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
    if head.startswith(_BOM):
        head = head[len(_BOM):]
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
    header = format == "csv" and not _is_number(fields[-1] if len(fields) < 3 else fields[2])
    columns = (0, 1, 2)
    if header:
        columns = _header_columns(path, fields)
    if len(fields) < 3:
        raise DataError(path, f"expected at least 3 fields (user, item, rating), saw {len(fields)}",
                        n_first + 1)
    if header and not any(ln.strip() for ln in lines[n_first + 1:]) and len(head) < _SAMPLE_BYTES:
        raise DataError(path, "has a header but no ratings")
    return RatingsSource(path, format, sep, header, columns, len(fields), compression, **common)


def _header_columns(path, names) -> tuple[int, int, int]:
    low = [n.strip().strip('"').lower() for n in names]
    found = []
    for role, choices in (("user", _USER), ("item", _ITEM), ("rating", _RATING)):
        hits = [i for i, n in enumerate(low) if n in choices]
        if not hits:
            raise DataError(path, f"header {names!r} has no {role} column "
                            f"(accepted names: {', '.join(sorted(choices))})", 1)
        found.append(hits[0])
    return tuple(found)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------- reading

def read_ratings(path, *, format: str = "auto", on_bad_lines: str = "error",
                 rating_scale=None, blocksize: int | str | None = "auto") -> Ratings:
    """Read a ratings file lazily into a validated dask DataFrame.

    Parameters
    ----------
    path : str or os.PathLike
        Local path or fsspec URL; ``.gz``/``.bz2``/``.xz`` are decompressed.
    format : {"auto", "tab", "dat", "csv", "parquet"}
    on_bad_lines : {"error", "skip"}
        ``"error"`` (default) raises :class:`~dcf.errors.DataError` at the
        first bad line; ``"skip"`` drops bad lines and counts them.
    rating_scale : (low, high), optional
        Declared rating range; ratings outside it are bad lines.
    blocksize : int, str or "auto"
        Bytes per task for text input (``"32MiB"`` or a number); ``"auto"``
        sizes them to the current Dask client's workers (:func:`resolve_blocksize`).

    Returns
    -------
    Ratings
        Nothing is read until the frame or report is computed.

    Examples
    --------
    >>> r = read_ratings("u.data")                     # doctest: +SKIP
    >>> r.frame.head()                                 # doctest: +SKIP
    """
    src = sniff(path, format=format, on_bad_lines=on_bad_lines, rating_scale=rating_scale)
    if src.format == "parquet":
        parts, reports = _read_parquet(src)
    else:
        parts, reports = _read_text(src, resolve_blocksize(blocksize))
    token = dask.base.tokenize(src, parts)
    report = dask.delayed(merge_reports, pure=True)(*reports, dask_key_name=f"read-report-{token}")
    return Ratings(src, _same_id_kinds(parts, token), report)


def _same_id_kinds(parts: list, token: str) -> list:
    """Parts whose id columns agree: where one part holds a text id in a column, that
    column is text in every part (the integers as their canonical text), as a file read
    all as text would give; where none does, parts keep their int64 columns.  A part
    holds integer ids typed (``int64``) only when every id in that column of the part
    is an integer, so without this the same id could come as ``7`` and ``"7"``."""
    if len(parts) <= 1:
        return parts
    kinds = [dask.delayed(_text_id_columns, pure=True)(p, dask_key_name=f"id-kinds-{token}-{i}")
             for i, p in enumerate(parts)]
    text = dask.delayed(_union, pure=True)(*kinds, dask_key_name=f"id-kinds-{token}")
    convert = dask.delayed(_ids_as_text, pure=True)
    return [convert(p, text, dask_key_name=f"read-{token}-{i}") for i, p in enumerate(parts)]


def _text_id_columns(frame: pd.DataFrame) -> frozenset:
    return frozenset(c for c in ("user", "item") if frame[c].dtype == object and
                     pd.api.types.infer_dtype(frame[c], skipna=True) not in ("integer", "empty"))


def _union(*sets) -> frozenset:
    return frozenset().union(*sets)


def _ids_as_text(frame: pd.DataFrame, columns: frozenset) -> pd.DataFrame:
    """``frame`` with the id ``columns`` as text (``frame`` itself when they are)."""
    change = {}
    for c in columns:
        col = frame[c]
        if col.dtype != object:
            change[c] = col.to_numpy().astype(str).astype(object)
        elif pd.api.types.infer_dtype(col, skipna=True) not in ("string", "empty"):
            change[c] = np.array([v if isinstance(v, str) else str(v) for v in col], dtype=object)
    if not change:
        return frame
    return frame.assign(**{c: pd.Series(v, index=frame.index, dtype=object) for c, v in change.items()})


def block_size_for(limit: int, threads: int = 1, used: int = 0) -> int:
    """Text block size for workers of ``limit`` bytes running ``threads`` tasks each.

    Each task may use its share of the memory below the pause threshold (80 %),
    less ``used`` (what the idle worker holds already), divided by
    :data:`READ_MEMORY_MULTIPLE` and by a safety factor of 2 (the worker holds
    other data too); the result lies between 1 MiB and 64 MiB.

    Examples
    --------
    >>> block_size_for(3 * 2**30, 2) >> 20, block_size_for(2**30, 4) >> 20
    (64, 12)
    """
    share = (0.8 * int(limit) - int(used)) / max(1, int(threads))
    size = int(share / (2 * READ_MEMORY_MULTIPLE)) >> 20 << 20  # whole MiB
    return int(min(MAX_BLOCKSIZE, max(MIN_BLOCKSIZE, size)))


def resolve_blocksize(blocksize) -> int | None:
    """Bytes per text block: ``"auto"`` follows the current Dask client's smallest
    worker memory limit (:func:`block_size_for`), or 32 MiB without a client or
    limits; a size string (``"16MiB"``) or number is taken as given; ``None``
    means one block per file."""
    if blocksize is None:
        return None
    if blocksize != "auto":
        return dask.utils.parse_bytes(blocksize) if isinstance(blocksize, str) else int(blocksize)
    from .cluster import memory_budget

    try:
        budget = memory_budget()
    except Exception:  # noqa: BLE001 -- a client that cannot answer: the fixed default
        budget = None
    if budget is None:
        return DEFAULT_BLOCKSIZE
    limit, threads, _, idle = budget
    return block_size_for(limit, threads, idle)


def _read_text(src: RatingsSource, blocksize):
    fs, _, (local,) = fsspec.get_fs_token_paths(src.path)
    ranges = _block_ranges(fs, local, None if src.compression else blocksize)
    token = dask.base.tokenize(src, blocksize, fs.ukey(local))
    read = dask.delayed(_read_text_block, pure=True)
    parse = dask.delayed(_parse_text_block, nout=2, pure=True)
    count = dask.delayed(_count_lines, pure=True)
    add = dask.delayed(_add, pure=True)
    parts, reports, start = [], [], 1
    for i, (offset, length) in enumerate(ranges):
        block = read(src.path, offset, length, src.compression, dask_key_name=f"read-bytes-{token}-{i}")
        part, rep = parse(block, start, i == 0, src, dask_key_name=f"read-block-{token}-{i}")
        parts.append(part)
        reports.append(rep)
        n = count(block, dask_key_name=f"count-lines-{token}-{i}")
        start = add(start, n, dask_key_name=f"line-offset-{token}-{i}")
    return parts, reports


def _block_ranges(fs, local: str, blocksize) -> list:
    """``[(offset, length)]`` of the file's blocks; ``[(0, None)]``: the whole file."""
    if not blocksize:
        return [(0, None)]
    size = fs.size(local)
    return [(off, min(blocksize, size - off)) for off in range(0, size, blocksize)] or [(0, 0)]


def _read_text_block(path: str, offset: int, length, compression) -> bytes:
    """The lines that start in ``[offset, offset + length)`` (the whole stream when
    ``length`` is None).  A line running more than :data:`MAX_LINE_BYTES` past the end
    is cut there (the parser then names it); a block inside such a line is empty."""
    with _reading(path), fsspec.open(path, "rb", compression=compression) as f:
        if length is None:
            return f.read()
        start = _line_start(f, offset)
        end = _line_start(f, offset + length)
        if end is None:
            end = offset + length + MAX_LINE_BYTES + 1
        if start is None or start >= end:
            return b""
        f.seek(start)
        return f.read(end - start)


def _line_start(f, pos: int):
    """The first line start at or after ``pos`` (the end of the file counts), or None
    when none comes within :data:`MAX_LINE_BYTES`."""
    if pos == 0:
        return 0
    f.seek(pos - 1)
    ahead = f.read(MAX_LINE_BYTES + 2)
    at = ahead.find(b"\n")
    if at >= 0:
        return pos + at
    return pos - 1 + len(ahead) if len(ahead) < MAX_LINE_BYTES + 2 else None


def _add(a: int, b: int) -> int:
    return a + b


def _count_lines(block: bytes) -> int:
    return block.count(b"\n") + (1 if block and not block.endswith(b"\n") else 0)


def _parse_text_block(data: bytes, start_line: int, first: bool, src: RatingsSource):
    """Parse one block of lines; ``start_line`` is the 1-based line of its first line.

    The block is parsed :data:`SLICE_BYTES` at a time (whole lines), so the memory a
    task needs beyond its block and its typed result is that of one slice.
    """
    if first and data.startswith(_BOM):
        data = data[len(_BOM):]
    skip_header = 1 if (first and src.header) else 0
    out, reports, lo, line = _Columns(data.count(b"\n") + 1), [], 0, start_line
    size = min(SLICE_BYTES, max(2 * MAX_LINE_BYTES, len(data) // 16))
    while lo < len(data):
        hi = _slice_end(data, lo, line, src, size)
        piece = data[lo:hi]
        frame, report = _parse_slice(piece, line, skip_header if lo == 0 else 0, src)
        out.append(frame)
        reports.append(report)
        line += piece.count(b"\n")
        lo = hi
    return out.frame(), merge_reports(*reports)


def _slice_end(data: bytes, lo: int, line: int, src: RatingsSource, size: int) -> int:
    """Where the slice starting at ``lo`` ends: after the last line break within ``size``
    bytes (more than :data:`MAX_LINE_BYTES`), or the end of the block."""
    if len(data) - lo <= size:
        return len(data)
    cut = data.rfind(b"\n", lo, lo + size)
    if cut < 0:
        raise _long_line(src, line)
    return cut + 1


def _long_line(src: RatingsSource, line: int) -> DataError:
    return DataError(src.path, f"line is longer than {MAX_LINE_BYTES:,} bytes: not ratings text "
                     "(a wrong file, or line breaks missing?)", line)


def _check_line_lengths(data: bytes, start_line: int, src: RatingsSource) -> None:
    if len(data) <= MAX_LINE_BYTES:
        return
    ends = np.flatnonzero(np.frombuffer(data, np.uint8) == 10)
    starts = np.concatenate(([0], ends + 1))
    lengths = np.append(ends, len(data)) - starts
    long = np.flatnonzero(lengths > MAX_LINE_BYTES)
    if len(long):
        raise _long_line(src, start_line + int(long[0]))


def _parse_slice(data: bytes, start_line: int, skip_header: int, src: RatingsSource):
    """One slice of whole lines -> (frame with typed ids, report)."""
    _check_bytes(data, start_line, src)
    _check_line_lengths(data, start_line, src)
    if src.format == "dat":
        data = data.replace(b"::", b"\x1f")
    parsed = _parse_typed(data, start_line, skip_header, src)
    if parsed is None:
        frame, report = _parse_exact(data, start_line, skip_header, src)
        frame = {"user": _typed_ids(frame["user"].to_numpy(dtype=object)),
                 "item": _typed_ids(frame["item"].to_numpy(dtype=object)),
                 "rating": frame["rating"].to_numpy(), "line": frame["line"].to_numpy()}
    else:
        frame, report = parsed
    _check_id_lengths(frame, src)
    return frame, report


def _check_id_lengths(frame: dict, src: RatingsSource) -> None:
    for role in ("user", "item"):
        ids = frame[role]
        if ids.dtype != object or not len(ids):
            continue
        lengths = pd.Series(ids, dtype=object).str.len().to_numpy()
        long = np.flatnonzero(lengths > MAX_ID_CHARS)
        if len(long):
            i = int(long[0])
            raise DataError(src.path, f"{role} id is {int(lengths[i]):,} characters long, more than "
                            f"the limit of {MAX_ID_CHARS:,}: not a ratings file?", int(frame["line"][i]))


def _sep(src: RatingsSource) -> str:
    return "\x1f" if src.format == "dat" else src.sep


def _parse_typed(data: bytes, start_line: int, skip_header: int, src: RatingsSource):
    """The fast path: pyarrow reads the id and rating columns; ``None`` (use the exact
    parser) unless every line has the right number of fields, every id is non-empty and
    every rating a valid number, so that the exact parser would give the same rows."""
    if src.format == "csv" and any(c in data for c in (b'"', b" ", b"\t")):
        return None  # quoting and skipinitialspace: only the exact parser does them
    n_lines = _count_lines(data) - skip_header
    if n_lines <= 0:
        return None
    names = [f"f{i}" for i in range(src.n_fields)]
    wanted = [names[c] for c in src.columns]
    try:
        table = pacsv.read_csv(
            pa.BufferReader(data),
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=skip_header, use_threads=False,
                                           block_size=max(1 << 20, len(data) + 1)),
            parse_options=pacsv.ParseOptions(delimiter=_sep(src), quote_char=False, double_quote=False,
                                             escape_char=False, ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in wanted},
                                                 include_columns=wanted, strings_can_be_null=False),
            memory_pool=_pool())
    except pa.ArrowException:
        return None
    if table.num_rows != n_lines:
        return None
    rating = _typed_ratings(table.column(wanted[2]), src)
    users = _typed_ids(table.column(wanted[0]), strict=True)
    items = None if users is None else _typed_ids(table.column(wanted[1]), strict=True)
    if rating is None or items is None:
        return None
    lines = np.arange(start_line + skip_header, start_line + skip_header + n_lines, dtype=np.int64)
    report = {**empty_report(), "lines": n_lines, "rows": n_lines}
    return {"user": users, "item": items, "rating": rating, "line": lines}, report


def _pool():
    """pyarrow allocates from the C heap here, as NumPy and pandas do: its own pool
    (mimalloc) kept each slice's freed buffers as extra resident memory."""
    return pa.system_memory_pool()


def _typed_ratings(column, src: RatingsSource):
    """Ratings as float64 if every one is a finite positive number (within the declared
    scale), else None."""
    try:
        values = pc.cast(column, pa.float64(), memory_pool=_pool()).to_numpy()
    except pa.ArrowException:
        return None
    ok = np.isfinite(values) & (values > 0)
    if src.rating_scale is not None:
        ok &= (values >= src.rating_scale[0]) & (values <= src.rating_scale[1])
    return values if ok.all() else None


def _typed_ids(values, strict: bool = False):
    """Ids as ``int64`` when every one spells a canonical integer that fits (``"7"``, not
    ``"07"``, ``"+7"`` or ``" 7"``), else exactly as text (objects, equal ids sharing one
    string).  ``strict``: None when an id is empty or blank (the exact parser counts it)."""
    array = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else \
        pa.array(values, type=pa.string())
    if not len(array):
        return np.empty(0, dtype=object)
    try:
        ints = pc.cast(array, pa.int64(), memory_pool=_pool())
        same = pc.equal(pc.cast(ints, pa.string(), memory_pool=_pool()), array, memory_pool=_pool())
        if pc.all(same).as_py():
            return ints.to_numpy()
    except pa.ArrowException:
        pass
    encoded = pc.dictionary_encode(array, memory_pool=_pool())
    uniques = encoded.dictionary.to_numpy(zero_copy_only=False)
    if strict and any(not s.strip() for s in uniques):
        return None
    return uniques[encoded.indices.to_numpy()]


class _Columns:
    """A block's output columns, allocated once for every line it could hold and filled
    slice by slice (concatenating slices at the end needed the output twice over).

    An id column that is text in some slice is text in all of them: the integers'
    text is their canonical spelling, the text they were read from.
    """

    def __init__(self, capacity: int):
        self.n = 0
        self.columns = {"user": np.empty(capacity, np.int64), "item": np.empty(capacity, np.int64),
                        "rating": np.empty(capacity, np.float64), "line": np.empty(capacity, np.int64)}

    def append(self, piece: dict) -> None:
        m = len(piece["line"])
        for name, values in piece.items():
            column = self.columns[name]
            if values.dtype == object and column.dtype != object:
                text = np.empty(len(column), dtype=object)
                text[:self.n] = column[:self.n].astype(str).astype(object)
                column = self.columns[name] = text
            elif column.dtype == object and values.dtype != object:
                values = values.astype(str).astype(object)
            column[self.n:self.n + m] = values
        self.n += m

    def frame(self) -> pd.DataFrame:
        if self.n == 0:
            return META.iloc[:0].copy()
        columns = {}
        for name, column in self.columns.items():
            column = column[:self.n] if self.n > 0.9 * len(column) else column[:self.n].copy()
            columns[name] = pd.Series(column, dtype=column.dtype, copy=False)  # object stays object
        self.columns = {}
        return pd.DataFrame(columns, copy=False)


def _parse_exact(data: bytes, start_line: int, skip_header: int, src: RatingsSource):
    """The exact line-by-line parser: every field as text (pandas), then :func:`_validate`."""
    bad = []
    sep = _sep(src)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            table = pd.read_csv(
                _io.BytesIO(data), sep=sep, header=None, names=range(src.n_fields), dtype=str,
                keep_default_na=False, na_filter=False, skip_blank_lines=False,
                skiprows=skip_header, on_bad_lines="warn", engine="c",
                quoting=csv.QUOTE_MINIMAL if src.format == "csv" else csv.QUOTE_NONE,
                skipinitialspace=src.format == "csv", encoding="utf-8", encoding_errors="strict")
        except pd.errors.EmptyDataError:
            table = pd.DataFrame({i: pd.Series([], dtype=object) for i in range(src.n_fields)})
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
            raise DataError(src.path, f"cannot be parsed: {exc}", start_line) from None
    n_lines = _count_lines(data)
    for w in caught:
        for m in re.finditer(r"line (\d+): expected (\d+) fields, saw (\d+)", str(w.message)):
            bad.append((start_line + int(m.group(1)) - 1,
                        f"expected {src.n_fields} fields, saw {m.group(3)}"))
    skipped_rel = {ln - start_line for ln, _ in bad}
    kept_rel = np.setdiff1d(np.arange(skip_header, n_lines, dtype=np.int64),
                            np.fromiter(skipped_rel, np.int64, len(skipped_rel)))
    if len(kept_rel) != len(table):  # a quoted newline or similar: fall back to a line range
        raise DataError(src.path, f"lines {start_line}-{start_line + n_lines - 1} could not be "
                        "split into one row per line (quoted line breaks are not supported)",
                        start_line)
    n_removed = len(bad)
    fields = _fields_per_line(data, sep, src)
    if fields is not None:  # lines with too few fields (the parser pads them silently)
        short = fields[kept_rel] < src.n_fields
        if short.any():
            bad += [(start_line + int(rel), f"expected {src.n_fields} fields, saw {fields[rel]}")
                    for rel in kept_rel[short][:_MAX_EXAMPLES]]
            n_removed += int(short.sum())
            table, kept_rel = table[~short], kept_rel[~short]
    u, it, r = (table[c].to_numpy(dtype=object) for c in src.columns)
    return _validate(src, u, it, r, start_line + kept_rel, n_lines - skip_header, bad, n_removed)


def _fields_per_line(data: bytes, sep: str, src) -> np.ndarray | None:
    """Fields on every line of the block (separators + 1); blank lines count as full.

    ``None`` where quoting makes separator counts unreliable (a CSV with quotes).
    """
    if src.format == "csv" and b'"' in data:
        return None
    buf = np.frombuffer(data, np.uint8)
    if not len(buf):
        return np.zeros(0, np.int64)
    ends = np.flatnonzero(buf == 10)
    if len(buf) and buf[-1] != 10:
        ends = np.append(ends, len(buf))
    starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)
    seps = np.concatenate([[0], np.cumsum(buf == ord(sep))])
    visible = np.concatenate([[0], np.cumsum(buf > 32)])
    fields = seps[ends] - seps[starts] + 1
    blank = (visible[ends] - visible[starts]) == 0
    fields[blank] = src.n_fields
    return fields


def _check_bytes(data: bytes, start_line: int, src: RatingsSource) -> None:
    """Fail on NUL bytes and invalid UTF-8, naming the first bad line."""
    try:
        data.decode("utf-8")
        if b"\x00" not in data:
            return
        pos, what = data.index(b"\x00"), "contains a NUL byte (binary file?)"
    except UnicodeDecodeError as exc:
        pos, what = exc.start, "is not valid UTF-8 text"
    line = start_line + data[:pos].count(b"\n")
    raise DataError(src.path, what, line)


def _validate(src, users, items, ratings_text, lines, n_lines, bad, n_removed=None):
    """Turn raw string columns into a clean frame and a report (or raise).

    ``bad`` holds (line, problem) examples the parser already found (lines it
    could not split into the right number of fields); ``n_removed`` counts all
    such lines (default ``len(bad)``).  None of them are among the rows passed in.
    """
    n_structural = len(bad) if n_removed is None else n_removed
    users = np.asarray(users, dtype=object)
    items = np.asarray(items, dtype=object)
    text = pd.Series(ratings_text, dtype=object)
    empty = lambda a: pd.Series(a, dtype=object).fillna("").astype(str).str.strip().eq("").to_numpy()
    eu, ei, er = empty(users), empty(items), empty(text)
    blank = eu & ei & er
    missing = (eu | ei | er) & ~blank
    rating = pd.to_numeric(text.where(~er, "0"), errors="coerce").to_numpy(dtype=np.float64)
    live = ~(blank | missing)
    code = _rating_codes(src, rating, live)
    code[live & np.isnan(rating)] = 1
    nan_text = text.astype(str).str.strip().str.lower().isin(["nan", "-nan", "+nan"]).to_numpy()
    code[live & nan_text] = 2
    is_bad = code > 0
    for i in np.flatnonzero(is_bad)[: _MAX_EXAMPLES if src.on_bad_lines == "skip" else 1]:
        bad.append((int(lines[i]), f"{_problem(code[i], src)}: {text.iloc[i]!r}"))
    if src.on_bad_lines == "error" and missing.any():  # an empty field is bad input too
        i = int(np.flatnonzero(missing)[0])
        empty_fields = [n for n, e in (("user id", eu[i]), ("item id", ei[i]), ("rating", er[i])) if e]
        bad.append((int(lines[i]), f"empty {' and '.join(empty_fields)}"))
    _raise_first(src, bad)
    keep = live & ~is_bad
    n_bad_total = int(is_bad.sum()) + n_structural
    frame = pd.DataFrame({"user": pd.Series(users[keep], dtype=object),
                          "item": pd.Series(items[keep], dtype=object),
                          "rating": rating[keep], "line": np.asarray(lines)[keep].astype(np.int64)})
    report = {"lines": int(n_lines - blank.sum()), "rows": int(keep.sum()), "blank": int(blank.sum()),
              "missing": int(missing.sum()), "skipped": int(n_bad_total),
              "examples": [f"line {ln}: {what}" for ln, what in bad[:_MAX_EXAMPLES]]}
    return frame, report


def _rating_codes(src, rating, live):
    """Problem code per row among the ``live`` ones: 3 infinite, 4 not positive,
    5 outside the declared scale (0 = fine; the text parser adds 1 and 2)."""
    code = np.zeros(len(rating), np.int8)
    code[live & np.isinf(rating)] = 3
    finite = live & np.isfinite(rating)
    code[finite & (rating <= 0)] = 4
    if src.rating_scale is not None:
        lo, hi = src.rating_scale
        code[finite & (rating > 0) & ((rating < lo) | (rating > hi))] = 5
    return code


def _raise_first(src, bad):
    """Sort the (line, problem) examples; in error mode raise on the first one."""
    bad.sort()
    if bad and src.on_bad_lines == "error":
        line, what = bad[0]
        raise DataError(src.path, what + " (pass on_bad_lines='skip' / --skip-bad-lines to drop "
                        "such lines and count them)", line)


def _read_parquet(src: RatingsSource):
    fs, _, (local,) = fsspec.get_fs_token_paths(src.path)
    files = _parquet_files(fs, local, src.path) if fs.isdir(local) else [local]
    proto = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    urls = [f if proto in ("file", "local") else f"{proto}://{f}" for f in files]
    parse = dask.delayed(_parse_parquet_file, nout=2, pure=True)
    token = dask.base.tokenize(src, urls)
    pieces = [(url, groups, first) for f, url in zip(files, urls) for groups, first in _row_group_parts(fs, f)]
    pairs = [parse(url, src, groups, first, dask_key_name=f"read-parquet-{token}-{i}")
             for i, (url, groups, first) in enumerate(pieces)]
    return [p for p, _ in pairs], [r for _, r in pairs]


PARQUET_PART_ROWS = 2_000_000  # rows per task: one 20M-row file in one task needs > 3 GB


def _row_group_parts(fs, path):
    """``[(row groups or None, first line)]``: a file's row groups in parts of at most
    :data:`PARQUET_PART_ROWS` rows (one part per group when a group is larger); the whole
    file as one part when its footer cannot be read here (the task then says why)."""
    import pyarrow.parquet as pq

    try:
        with fs.open(path, "rb") as f:
            meta = pq.ParquetFile(f).metadata
        sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
    except Exception:  # noqa: BLE001 -- reported by the reading task, with the file name
        return [(None, 1)]
    parts, groups, rows, first = [], [], 0, 1
    for g, n in enumerate(sizes):
        if groups and rows + n > PARQUET_PART_ROWS:
            parts.append((groups, first))
            first, groups, rows = first + rows, [], 0
        groups.append(g)
        rows += n
    parts.append((groups or None, first))
    return parts


def _problem(code: int, src: RatingsSource) -> str:
    if code == 5:
        lo, hi = src.rating_scale
        return f"rating outside the declared scale [{lo:g}, {hi:g}]"
    return {1: "rating is not a number", 2: "rating is NaN", 3: "rating is infinite",
            4: "rating must be positive"}[int(code)]


def _parse_parquet_file(url: str, src: RatingsSource, groups=None, first_line: int = 1):
    """One part of a Parquet file (``groups``: its row groups, None = all); ``line`` numbers
    are row numbers in the file, counted from 1."""
    import pyarrow.parquet as pq

    try:
        with fsspec.open(url, "rb") as f:
            file = pq.ParquetFile(f)
            table = file.read() if groups is None else file.read_row_groups(groups)
    except Exception as exc:  # noqa: BLE001 -- any reader failure is a data problem here
        raise DataError(url, f"cannot be read as Parquet: {exc}") from None
    names = [str(c) for c in table.column_names]
    cols = _header_columns(url, names)
    _check_parquet_types(url, table.schema, cols)
    n_rows = table.num_rows
    u, it, r = (table.column(c).to_pandas() for c in cols)
    del table
    fixed = replace(src, path=url)
    lines = np.arange(first_line, first_line + n_rows)
    users, items = _int64_ids(u), _int64_ids(it)
    if users is not None and items is not None and _plain(r, "iuf"):  # typed: no text pass
        return _validate_numeric(fixed, users, items, r.to_numpy(np.float64), lines)
    r = r.astype(object).where(r.notna(), "").to_numpy(dtype=object)
    return _validate(fixed, _parquet_ids(u), _parquet_ids(it), r, lines, n_rows, [])


def _check_parquet_types(url: str, schema, cols) -> None:
    """Refuse id columns that cannot hold ids and rating columns that cannot hold numbers."""
    for role, c in zip(("user id", "item id", "rating"), cols):
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
    ids = _ids(col)
    if pd.api.types.is_unsigned_integer_dtype(col.dtype) and len(col) and col.max() >= 1 << 63:
        ids = np.array([v if isinstance(v, str) else str(v) for v in ids], dtype=object)
    return ids


def _plain(col: pd.Series, kinds: str) -> bool:
    """A NumPy-typed column of one of ``kinds`` (nullable extension types are not)."""
    return isinstance(col.dtype, np.dtype) and col.dtype.kind in kinds


def _validate_numeric(src, users, items, rating, lines):
    """:func:`_validate` for integer id and numeric rating columns (Parquet): the same
    checks, report and messages, without turning 20 million values into text.  A
    missing rating (null / NaN in a float column) is an empty field, as in text."""
    missing = np.isnan(rating)
    code = _rating_codes(src, rating, ~missing)
    is_bad = code > 0
    bad = [(int(lines[i]), f"{_problem(code[i], src)}: {format(rating[i], 'g')!r}")
           for i in np.flatnonzero(is_bad)[: _MAX_EXAMPLES if src.on_bad_lines == "skip" else 1]]
    if src.on_bad_lines == "error" and missing.any():
        bad.append((int(lines[int(np.flatnonzero(missing)[0])]), "empty rating"))
    _raise_first(src, bad)
    keep = ~missing & ~is_bad
    frame = pd.DataFrame({"user": users[keep], "item": items[keep], "rating": rating[keep],
                          "line": np.asarray(lines)[keep].astype(np.int64)})
    report = {"lines": int(len(rating)), "rows": int(keep.sum()), "blank": 0,
              "missing": int(missing.sum()), "skipped": int(is_bad.sum()),
              "examples": [f"line {ln}: {what}" for ln, what in bad[:_MAX_EXAMPLES]]}
    return frame, report


def _ids(col: pd.Series) -> np.ndarray:
    if col.dtype.kind in "iu":
        return col.to_numpy().astype(object)
    return col.astype(object).where(col.notna(), "").to_numpy(dtype=object)


def validate_frame(frame: pd.DataFrame, name: str = "DataFrame", on_bad_lines: str = "error",
                   need_rating: bool = True, part: int = 0):
    """Validate an in-memory frame part like a file block.

    Rows are numbered from the frame's integer index (+1), so messages say
    ``DataFrame:ROW: problem``.  Returns ``(frame, report)``.
    """
    index = frame.index.to_numpy()
    lines = (index.astype(np.int64) + 1 if index.dtype.kind in "iu"
             else np.arange(1, len(frame) + 1, dtype=np.int64))
    src = RatingsSource(name, "frame", on_bad_lines=on_bad_lines)
    if "rating" not in frame:
        if need_rating:
            raise DataError(name, "no rating column")
        out, rep = _validate(src, _ids(frame["user"]), _ids(frame["item"]),
                             np.full(len(frame), "1", dtype=object), lines, len(frame), [])
        return out.drop(columns="rating"), rep
    r = frame["rating"]
    r = r.astype(object).where(r.notna(), "").to_numpy(dtype=object)
    return _validate(src, _ids(frame["user"]), _ids(frame["item"]), r, lines, len(frame), [])
