"""What a read is about: the resolved source, the lazy result and its report.

:class:`RatingsSource` says how to read one file (what :func:`dcf.io.sniff`
resolved); :class:`Ratings` is the lazily read result, whose ``report`` counts
what happened to the lines (:func:`empty_report`, :func:`merge_reports`).

Limits (errors in both ``on_bad_lines`` modes, naming file and line): a line
longer than :data:`MAX_LINE_BYTES` (64 KiB), an id longer than
:data:`MAX_ID_CHARS` (1,000 characters).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dask.dataframe as dd
import numpy as np
import pandas as pd

from ..ids import frame_from_parts

__all__ = ["BOM", "MAX_EXAMPLES", "MAX_ID_CHARS", "MAX_LINE_BYTES", "META", "META_TIMED", "Ratings", "RatingsSource",
           "empty_report", "field_separator", "merge_reports"]

BOM = b"\xef\xbb\xbf"  # a UTF-8 byte order mark, dropped where a file starts with it
MAX_EXAMPLES = 5  # "line N: problem" examples a report keeps
MAX_LINE_BYTES = 64 << 10  # a longer line is not ratings text: an error naming it
MAX_ID_CHARS = 1000  # a longer user or item id is an error naming its line
META = pd.DataFrame({"user": pd.Series([], dtype=object), "item": pd.Series([], dtype=object),
                     "rating": pd.Series([], dtype=np.float64), "line": pd.Series([], dtype=np.int64)})
META_TIMED = META.assign(time=pd.Series([], dtype=np.float64))  # a read that keeps event times


@dataclass(frozen=True)
class RatingsSource:
    """How to read one ratings file: resolved by :func:`dcf.io.sniff`."""

    path: str
    format: str
    sep: str = "\t"
    header: bool = False
    columns: tuple = (0, 1, 2)  # positions of user, item, rating (None: no rating, each event weighs 1)
    n_fields: int = 3
    compression: str | None = None
    on_bad_lines: str = "error"
    rating_scale: tuple[float, float] | None = None
    feedback: str = "explicit"  # "implicit": the rating is an optional weight; user, item pairs read as 1
    timed: bool = False  # rows keep a ``time`` column (float64 seconds, NaN where unknown)
    time_column: int | None = None  # a text file's time field (None: none, or Parquet's found by name)


def field_separator(src: RatingsSource) -> str:
    """The separator the text parsers split on (``dat``'s ``::`` is first made ``\\x1f``)."""
    return "\x1f" if src.format == "dat" else src.sep


@dataclass
class Ratings:
    """A lazily read ratings source.

    Attributes
    ----------
    source : RatingsSource
    parts : list of dask.delayed.Delayed
        pandas DataFrames with columns ``user``, ``item`` (raw ids, object),
        ``rating`` (float64) and ``line`` (int64, 1-based line or row), and where the
        source has event times (``source.timed``) ``time`` (float64 seconds since the
        epoch, NaN where a row's is unknown; :mod:`dcf.io.times`).
    report : dask.delayed.Delayed
        Computes to a dict of counts: ``lines`` (data lines read, blank ones
        excluded), ``rows`` (kept), ``missing`` (dropped: empty field),
        ``skipped`` (dropped as bad, only with ``on_bad_lines="skip"``), ``untimed``
        (kept rows without a valid time, in a timed read) and ``examples`` (a few ``"line N: problem"`` strings).
    """

    source: RatingsSource
    parts: list
    report: object = field(repr=False)

    @property
    def frame(self) -> dd.DataFrame:
        """The parts as one dask DataFrame."""
        return frame_from_parts(self.parts, META_TIMED if self.source.timed else META, "ratings")


def empty_report() -> dict:
    """A report that counts nothing yet."""
    return {"lines": 0, "rows": 0, "blank": 0, "missing": 0, "skipped": 0, "examples": []}


def merge_reports(*reports: dict) -> dict:
    """Add counts of several block reports; keep the first few examples."""
    out = empty_report()
    for r in reports:
        for key, value in r.items():
            if key == "examples":
                out["examples"] = (out["examples"] + list(value))[:MAX_EXAMPLES]
            else:
                out[key] = out.get(key, 0) + value
    return out
