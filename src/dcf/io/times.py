"""Event times: which column holds them, and their values as seconds.

A read keeps each row's time when the source has one (``read_ratings(times=True)``,
the default): the fourth field of a headerless file (MovieLens ``u.data``,
``ratings.dat``, a headerless CSV of four or more fields), the column a CSV header
or a Parquet schema names ``timestamp``, ``time``, ``datetime``, ``date``, ``ts`` or
``event_time``.  The frame's ``time`` column is ``float64`` seconds since the Unix
epoch (UTC): a number is taken as such seconds, an ISO 8601 date or date-time
(``2015-06-01``, ``2015-06-01T12:00:00Z``; without a zone, UTC; any year pandas
parses, 1 to 9999) is converted, a
Parquet timestamp or date column too.  A time that is none of these (empty, text, NaN,
infinite, a boolean, pandas' words ``now`` and ``today``) is NaN and counted in the report as ``untimed``: the row is kept, since only
time decay reads the time, and time decay refuses such a row naming its line
(:func:`dcf.decay.decayed_weights`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["TIME_NAMES", "time_column", "seconds_of_text", "seconds_of_values", "seconds_of_arrow",
           "seconds_of_frame_column", "parse_time"]

TIME_NAMES = ("timestamp", "time", "datetime", "date", "ts", "event_time", "eventtime", "time_stamp")


def time_column(names) -> int | None:
    """Position of the time column among header or schema ``names``, None without one."""
    low = [str(n).strip().strip('"').lower() for n in names]
    hits = [i for i, n in enumerate(low) if n in TIME_NAMES]
    return hits[0] if hits else None


def seconds_of_values(values) -> np.ndarray:
    """Numbers (a NumPy array) as float64 seconds, NaN where not finite."""
    out = np.asarray(values, dtype=np.float64).copy()
    out[~np.isfinite(out)] = np.nan
    return out


def seconds_of_text(text) -> np.ndarray:
    """Text fields as float64 seconds: numbers as they are, ISO 8601 dates and date-times
    converted (UTC where no zone is given), NaN for anything else."""
    series = pd.Series(np.asarray(text, dtype=object), dtype=object)
    numbers = seconds_of_values(pd.to_numeric(series, errors="coerce").to_numpy(np.float64))
    rest = np.isnan(numbers) & series.astype(str).str.strip().ne("").to_numpy()
    if rest.any():
        numbers[rest] = _iso_seconds(series[rest])
    return numbers


def _iso_seconds(series: pd.Series) -> np.ndarray:
    text = series.astype(str).str.strip()
    text = text.where(~text.str.lower().isin(_SPECIAL), "")
    stamps = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
    return _stamp_seconds(stamps.dt.tz_localize(None))


def _stamp_seconds(stamps: pd.Series) -> np.ndarray:
    """Naive (UTC) datetimes as float64 seconds, NaN where missing, in their own unit
    (a cast to nanoseconds wrapped dates outside 1677-2262 around silently)."""
    values = stamps.to_numpy()
    unit, count = np.datetime_data(values.dtype)
    ticks, per = values.view(np.int64), int(_PER_SECOND[unit]) // count  # ticks of 1 / per second
    out = (ticks // per).astype(np.float64) + (ticks % per) / per  # whole seconds exact past 2**53 ticks
    out[stamps.isna().to_numpy()] = np.nan
    return out


_PER_SECOND = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}
_SPECIAL = ("now", "today")  # words pandas reads as the wall clock: not a time of the data


def seconds_of_arrow(column) -> np.ndarray:
    """A pyarrow (Parquet) column as float64 seconds: numbers, timestamps (any unit and
    zone), dates, or text as :func:`seconds_of_text` reads it."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    kind = column.type
    if pa.types.is_timestamp(kind):
        per = {"s": 1, "ms": 1e3, "us": 1e6, "ns": 1e9}[kind.unit]
        ints = pc.cast(column, pa.int64()).to_numpy(zero_copy_only=False)
        out = np.asarray(ints, dtype=np.float64) / per
        out[~column.is_valid().to_numpy(zero_copy_only=False)] = np.nan
        return out
    if pa.types.is_date(kind):
        days = pc.cast(pc.cast(column, pa.date32()), pa.int32()).to_numpy(zero_copy_only=False)
        out = np.asarray(days, dtype=np.float64) * 86400.0
        out[~column.is_valid().to_numpy(zero_copy_only=False)] = np.nan
        return out
    if pa.types.is_boolean(kind):  # not a time
        return np.full(len(column), np.nan)
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        # not safe: an integer past 2**53 is the nearest double, as its text would be
        return seconds_of_values(pc.cast(column, pa.float64(), safe=False).to_numpy(zero_copy_only=False))
    return seconds_of_text(column.to_pandas().astype(object).where(lambda s: s.notna(), "").to_numpy())


def seconds_of_frame_column(col: pd.Series) -> np.ndarray:
    """An in-memory frame's ``time`` column as float64 seconds: numbers, datetimes
    (naive ones read as UTC), or text."""
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        return _stamp_seconds(col.dt.tz_convert(None) if getattr(col.dt, "tz", None) is not None else col)
    if pd.api.types.is_bool_dtype(col.dtype):
        return np.full(len(col), np.nan)  # not a time
    if isinstance(col.dtype, np.dtype) and col.dtype.kind in "iuf":
        return seconds_of_values(col.to_numpy(np.float64))
    return seconds_of_text(col.astype(object).where(col.notna(), "").to_numpy(dtype=object))


def parse_time(value) -> float:
    """One reference time (``reference_time=``, ``--reference-time``) as seconds: a number
    of seconds since the epoch or an ISO 8601 date / date-time; ValueError otherwise."""
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"reference_time must be seconds since the epoch or an ISO 8601 date, not {value!r}")
    try:
        seconds = (seconds_of_values([value]) if isinstance(value, (int, float, np.number))
                   else seconds_of_text([str(value)]))[0]
    except OverflowError:  # an integer past a double's range
        seconds = np.nan
    if not np.isfinite(seconds):
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise ValueError(f"reference_time {shown} is neither seconds since the epoch nor an ISO 8601 date")
    return float(seconds)
