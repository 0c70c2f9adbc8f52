"""The exact line-by-line pass over a slice of text lines (pandas, every field as text).

Used where the typed pass (:mod:`dcf.io.typed`) fails or sees any problem: it
finds lines with too many or too few fields, names them, and hands the fields to
:func:`dcf.io.validate.validate_text`, so every message, line and count comes
from one place.  It also does CSV quoting and spaces after commas.
"""

from __future__ import annotations

import csv
import io as _io
import re
import warnings

import numpy as np
import pandas as pd

from ..errors import DataError
from .blocks import count_lines
from .sources import MAX_EXAMPLES, RatingsSource, field_separator
from .validate import validate_text

__all__ = ["parse_exact"]


def parse_exact(data: bytes, start_line: int, skip_header: int, src: RatingsSource):
    """The exact line-by-line parser: every field as text (pandas), then :func:`validate_text`."""
    bad = []
    sep = field_separator(src)
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
            _refuse_unsplit(data, start_line, src)
            raise DataError(src.path, f"cannot be parsed: {exc}", start_line) from None
    n_lines = count_lines(data)
    for w in caught:
        for m in re.finditer(r"line (\d+): expected (\d+) fields, saw (\d+)", str(w.message)):
            bad.append((start_line + int(m.group(1)) - 1,
                        f"expected {src.n_fields} fields, saw {m.group(3)}"))
    skipped_rel = {ln - start_line for ln, _ in bad}
    kept_rel = np.setdiff1d(np.arange(skip_header, n_lines, dtype=np.int64),
                            np.fromiter(skipped_rel, np.int64, len(skipped_rel)))
    if len(kept_rel) != len(table):  # a quoted newline or similar: the line, else a line range
        _refuse_unsplit(data, start_line, src)
        raise DataError(src.path, f"lines {start_line}-{start_line + n_lines - 1} could not be "
                        "split into one row per line (quoted line breaks are not supported)",
                        start_line)
    n_removed = len(bad)
    fields = _fields_per_line(data, sep, src)
    if fields is not None:  # lines with too few fields (the parser pads them silently)
        short = fields[kept_rel] < src.n_fields
        if short.any():
            bad += [(start_line + int(rel), f"expected {src.n_fields} fields, saw {fields[rel]}")
                    for rel in kept_rel[short][:MAX_EXAMPLES]]
            n_removed += int(short.sum())
            table, kept_rel = table[~short], kept_rel[~short]
    u, it = (table[c].to_numpy(dtype=object) for c in src.columns[:2])
    rc = src.columns[2]  # None: user, item pairs, each event of weight 1
    r = table[rc].to_numpy(dtype=object) if rc is not None else np.full(len(table), "1", object)
    times = None if src.time_column is None else table[src.time_column].to_numpy(dtype=object)
    return validate_text(src, u, it, r, start_line + kept_rel, n_lines - skip_header, bad, n_removed,
                         times=times)


def _refuse_unsplit(data: bytes, start_line: int, src: RatingsSource) -> None:
    """Raise a :class:`DataError` naming the first line that is not one record: a carriage
    return inside it (a lone ``\\r``, which the parser takes for a line break), or, in a CSV
    file, a quoted field it does not close (Python's ``csv`` module, strict, one line at a
    time).  Nothing where no line is found: the caller then names the slice's lines."""
    sep = field_separator(src)
    for rel, line in enumerate(data.split(b"\n")):
        if b"\r" in line[:-1]:
            raise DataError(src.path, "a carriage return (\\r) inside the line splits it in two: lines must end "
                                      "with \\n or \\r\\n", start_line + rel)
        if src.format == "csv" and b'"' in line:
            try:
                next(csv.reader([line.decode("utf-8", "replace").rstrip("\r")], delimiter=sep, strict=True,
                                skipinitialspace=True), None)
            except csv.Error as exc:
                if "unexpected end of data" in str(exc):
                    raise DataError(src.path, "a quoted field is not closed on its line (a record is one line: "
                                              "quoted line breaks are not supported)", start_line + rel) from None


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
