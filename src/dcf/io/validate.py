"""Cleaning rows into a frame and a report, or an error naming the line.

Cleaning (the paper's step 1): blank lines are ignored; rows with an empty
user, item or rating field are dropped and counted (``missing``).  Everything
else that is wrong is an error naming file, line and problem -- a line with too
many fields, a rating that is not a number, NaN, infinite, zero or negative, or
outside a declared ``rating_scale`` -- unless ``on_bad_lines="skip"``, in which
case such rows are dropped, counted (``skipped``) and a few examples kept.
Duplicate (user, item) pairs are handled where rows meet, in :mod:`dcf.matrix`.

:func:`validate_text` checks raw text columns (the exact text pass, Parquet
columns that are not plain numbers, in-memory frames), :func:`validate_numeric`
integer id and numeric rating columns (Parquet) with the same checks and messages;
:func:`validate_frame` validates an in-memory frame part.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import DataError
from .sources import MAX_EXAMPLES, RatingsSource
from .times import seconds_of_frame_column, seconds_of_text, seconds_of_values, time_column

__all__ = ["raw_ids", "validate_frame", "validate_numeric", "validate_text"]


def validate_text(src, users, items, ratings_text, lines, n_lines, bad, n_removed=None, times=None):
    """Turn raw string columns into a clean frame and a report (or raise).

    ``bad`` holds (line, problem) examples the parser already found (lines it
    could not split into the right number of fields); ``n_removed`` counts all
    such lines (default ``len(bad)``).  None of them are among the rows passed in.
    ``times``: each row's time as text, or as float64 seconds (kept as the ``time``
    column, :mod:`dcf.io.times`); None when the source has none.
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
    for i in np.flatnonzero(is_bad)[: MAX_EXAMPLES if src.on_bad_lines == "skip" else 1]:
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
              "examples": [f"line {ln}: {what}" for ln, what in bad[:MAX_EXAMPLES]]}
    return _timed(frame, report, times, keep)


def validate_numeric(src, users, items, rating, lines, times=None):
    """:func:`validate_text` for integer id and numeric rating columns (Parquet): the same
    checks, report and messages, without turning 20 million values into text.  A
    missing rating (null / NaN in a float column) is an empty field, as in text.
    ``times``: float64 seconds (NaN where unknown), or None."""
    missing = np.isnan(rating)
    code = _rating_codes(src, rating, ~missing)
    is_bad = code > 0
    bad = [(int(lines[i]), f"{_problem(code[i], src)}: {format(rating[i], 'g')!r}")
           for i in np.flatnonzero(is_bad)[: MAX_EXAMPLES if src.on_bad_lines == "skip" else 1]]
    if src.on_bad_lines == "error" and missing.any():
        bad.append((int(lines[int(np.flatnonzero(missing)[0])]), "empty rating"))
    _raise_first(src, bad)
    keep = ~missing & ~is_bad
    frame = pd.DataFrame({"user": users[keep], "item": items[keep], "rating": rating[keep],
                          "line": np.asarray(lines)[keep].astype(np.int64)})
    report = {"lines": int(len(rating)), "rows": int(keep.sum()), "blank": 0,
              "missing": int(missing.sum()), "skipped": int(is_bad.sum()),
              "examples": [f"line {ln}: {what}" for ln, what in bad[:MAX_EXAMPLES]]}
    return _timed(frame, report, times, keep)


def _timed(frame, report, times, keep):
    """``frame`` with the kept rows' ``time`` column (float64 seconds) and the report's
    ``untimed`` count, where the source has times."""
    if times is None:
        return frame, report
    times = np.asarray(times)
    seconds = (seconds_of_values(times) if times.dtype.kind in "iuf" else seconds_of_text(times))[keep]
    frame["time"] = seconds
    return frame, {**report, "untimed": int(np.isnan(seconds).sum())}


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


def _problem(code: int, src: RatingsSource) -> str:
    if code == 5:
        lo, hi = src.rating_scale
        return f"rating outside the declared scale [{lo:g}, {hi:g}]"
    return {1: "rating is not a number", 2: "rating is NaN", 3: "rating is infinite",
            4: "rating must be positive"}[int(code)]


def _raise_first(src, bad):
    """Sort the (line, problem) examples; in error mode raise on the first one."""
    bad.sort()
    if bad and src.on_bad_lines == "error":
        line, what = bad[0]
        raise DataError(src.path, what + " (pass on_bad_lines='skip' / --skip-bad-lines to drop "
                        "such lines and count them)", line)


def _int64_ids(col: pd.Series):
    """An integer id column as ``int64`` (None for any other column, or ids beyond it)."""
    kind = col.dtype.kind if isinstance(col.dtype, np.dtype) else ""
    if kind == "i" or (kind == "u" and (len(col) == 0 or int(col.max()) < 2**63)):
        return col.to_numpy(np.int64)
    return None


def raw_ids(col: pd.Series) -> np.ndarray:
    """An id column as objects for :func:`validate_text` (missing ids as ``""``)."""
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
    at = time_column(frame.columns)  # "time", "timestamp", "date", ... (as a header names it)
    times = seconds_of_frame_column(frame.iloc[:, at]) if at is not None else None
    if "rating" not in frame:
        if need_rating:
            raise DataError(name, "no rating column")
        out, rep = validate_text(src, raw_ids(frame["user"]), raw_ids(frame["item"]),
                                 np.full(len(frame), "1", dtype=object), lines, len(frame), [], times=times)
        return out.drop(columns="rating"), rep
    r = frame["rating"]
    users, items = _int64_ids(frame["user"]), _int64_ids(frame["item"])
    if users is not None and items is not None and r.dtype.kind in "iuf":
        # integer ids and numeric ratings: the Parquet path's checks, no text (ML-100K's
        # 80k rows: 0.17 s of validation as text)
        return validate_numeric(src, users, items, r.to_numpy(np.float64), lines, times=times)
    r = r.astype(object).where(r.notna(), "").to_numpy(dtype=object)
    return validate_text(src, raw_ids(frame["user"]), raw_ids(frame["item"]), r, lines, len(frame), [],
                         times=times)
