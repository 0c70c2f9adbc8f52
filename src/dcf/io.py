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

Text is read in byte blocks that end at line breaks (``dask.bytes.read_bytes``),
one task per block, so the client never holds the file; every row keeps the
1-based line it came from, so a problem found anywhere later names the line.

Cleaning (the paper's step 1): blank lines are ignored; rows with an empty
user, item or rating field are dropped and counted (``missing``).  Everything
else that is wrong is an error naming file, line and problem -- a line with too
many fields, a rating that is not a number, NaN, infinite, zero or negative, or
outside a declared ``rating_scale`` -- unless ``on_bad_lines="skip"``, in which
case such rows are dropped, counted (``skipped``) and a few examples kept.
Duplicate (user, item) pairs are handled where rows meet, in :mod:`dcf.matrix`.
"""

from __future__ import annotations

import csv
import io as _io
import os
import re
import warnings
from dataclasses import dataclass, field, replace

import dask
import dask.dataframe as dd
import fsspec
import numpy as np
import pandas as pd
from dask.bytes import read_bytes

from .ids import frame_from_parts
from .errors import DataError

__all__ = ["RatingsSource", "Ratings", "sniff", "read_ratings", "empty_report", "merge_reports"]

FORMATS = ("tab", "dat", "csv", "parquet")
_USER = {"user", "userid", "user_id", "uid", "customer", "customerid", "customer_id"}
_ITEM = {"item", "itemid", "item_id", "iid", "movie", "movieid", "movie_id", "product", "productid",
         "product_id"}
_RATING = {"rating", "ratings", "score", "stars", "value"}
_BOM = b"\xef\xbb\xbf"
_SAMPLE_BYTES = 1 << 16
_MAX_EXAMPLES = 5
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
        Missing, empty, binary or unrecognisable file.
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
    if format == "parquet" or (format == "auto" and _looks_parquet(fs, local)):
        return RatingsSource(path, "parquet", **common)
    if fs.isdir(local):
        raise DataError(path, "is a folder without *.parquet files; give a ratings file")
    compression = fsspec.utils.infer_compression(path)
    try:
        with fsspec.open(path, "rb", compression=compression) as f:
            head = f.read(_SAMPLE_BYTES)
    except (OSError, EOFError, ValueError) as exc:
        raise DataError(path, f"cannot be read: {exc}") from None
    return _sniff_text(path, head, format, compression, common)


def _looks_parquet(fs, local: str) -> bool:
    if fs.isdir(local):
        return bool(fs.glob(local.rstrip("/") + "/**/*.parquet"))
    if local.endswith((".parquet", ".pq")):
        return True
    with fs.open(local, "rb") as f:
        return f.read(4) == b"PAR1"


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
                 rating_scale=None, blocksize: int | str = "64MiB") -> Ratings:
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
    blocksize : int or str
        Bytes per task for text input.

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
        parts, reports = _read_text(src, blocksize)
    report = dask.delayed(merge_reports, pure=True)(*reports, dask_key_name=f"read-report-{dask.base.tokenize(src)}")
    return Ratings(src, parts, report)


def _read_text(src: RatingsSource, blocksize):
    if src.compression:
        blocksize = None  # compressed streams cannot be split
    _, (blocks,) = read_bytes(src.path, delimiter=b"\n", blocksize=blocksize, sample=False,
                              compression=src.compression)
    token = dask.base.tokenize(src, blocksize)
    parse = dask.delayed(_parse_text_block, nout=2, pure=True)
    count = dask.delayed(_count_lines, pure=True)
    add = dask.delayed(_add, pure=True)
    parts, reports, start = [], [], 1
    for i, block in enumerate(blocks):
        part, rep = parse(block, start, i == 0, src, dask_key_name=f"read-block-{token}-{i}")
        parts.append(part)
        reports.append(rep)
        n = count(block, dask_key_name=f"count-lines-{token}-{i}")
        start = add(start, n, dask_key_name=f"line-offset-{token}-{i}")
    return parts, reports


def _add(a: int, b: int) -> int:
    return a + b


def _count_lines(block: bytes) -> int:
    return block.count(b"\n") + (1 if block and not block.endswith(b"\n") else 0)


def _parse_text_block(data: bytes, start_line: int, first: bool, src: RatingsSource):
    """Parse one block of lines; ``start_line`` is the 1-based line of its first line."""
    if first and data.startswith(_BOM):
        data = data[len(_BOM):]
    skip_header = 1 if (first and src.header) else 0
    _check_bytes(data, start_line, src)
    bad = []
    if src.format == "dat":
        data = data.replace(b"::", b"\x1f")
    sep = "\x1f" if src.format == "dat" else src.sep
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
    if len(kept_rel) != len(table):  # a quoted newline or similar: fall back to a block range
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
    files = sorted(fs.glob(local.rstrip("/") + "/**/*.parquet")) if fs.isdir(local) else [local]
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
    try:
        if groups is None:
            table = pd.read_parquet(url)
        else:
            import pyarrow.parquet as pq

            with fsspec.open(url, "rb") as f:
                table = pq.ParquetFile(f).read_row_groups(groups).to_pandas()
    except Exception as exc:  # noqa: BLE001 -- any reader failure is a data problem here
        raise DataError(url, f"cannot be read as Parquet: {exc}") from None
    names = [str(c) for c in table.columns]
    cols = _header_columns(url, names)
    fixed = replace(src, path=url)
    u, it, r = (table.iloc[:, c] for c in cols)
    lines = np.arange(first_line, first_line + len(table))
    if _plain(u, "iu") and _plain(it, "iu") and _plain(r, "iuf"):  # typed columns: no text pass
        return _validate_numeric(fixed, u.to_numpy(np.int64), it.to_numpy(np.int64),
                                 r.to_numpy(np.float64), lines)
    r = r.astype(object).where(r.notna(), "").to_numpy(dtype=object)
    return _validate(fixed, _ids(u), _ids(it), r, lines, len(table), [])


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
