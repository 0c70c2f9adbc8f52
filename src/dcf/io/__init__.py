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

:func:`read_ratings` ties the steps together; each lives in its own module:

- :mod:`~dcf.io.sources` -- :class:`RatingsSource`, :class:`Ratings`, reports, limits;
- :mod:`~dcf.io.formats` -- :func:`sniff`: which format a path holds, refusals before reading;
- :mod:`~dcf.io.blocks` -- text block sizes (``blocksize="auto"``) and reading a byte block;
- :mod:`~dcf.io.text` -- a text file's tasks; a block parsed in slices, within a memory bound;
- :mod:`~dcf.io.typed` -- the fast typed (pyarrow) pass over a slice;
- :mod:`~dcf.io.exact` -- the exact line-by-line pass, where the typed one gives up;
- :mod:`~dcf.io.validate` -- cleaning rows, the error and skip rules, :func:`validate_frame`;
- :mod:`~dcf.io.parquet` -- Parquet files and folders, in row-group parts;
- :mod:`~dcf.io.times` -- which column holds event times, and their values as seconds;
- :mod:`~dcf.io.id_kinds` -- id columns that agree across the parts of one read.

Every row keeps the 1-based line (or Parquet row) it came from, so a problem
found anywhere later names the line, and its event time where the source has one.  An integer id that fits 64 bits is kept as
``int64``; every other id is kept exactly as text.
"""

from __future__ import annotations

from dataclasses import replace

import dask

from .blocks import (DEFAULT_BLOCKSIZE, MAX_BLOCKSIZE, MIN_BLOCKSIZE, READ_MEMORY_MULTIPLE,
                     block_size_for, resolve_blocksize)
from .formats import FEEDBACKS, FORMATS, sniff
from .id_kinds import same_id_kinds
from .parquet import PARQUET_PART_ROWS, parquet_parts
from .sources import (MAX_ID_CHARS, MAX_LINE_BYTES, META, META_TIMED, Ratings, RatingsSource, empty_report,
                      merge_reports)
from .times import TIME_NAMES, parse_time
from .text import SLICE_BYTES, text_parts
from .validate import validate_frame

__all__ = ["DEFAULT_BLOCKSIZE", "FEEDBACKS", "FORMATS", "MAX_BLOCKSIZE", "MAX_ID_CHARS", "MAX_LINE_BYTES", "META",
           "META_TIMED", "MIN_BLOCKSIZE", "PARQUET_PART_ROWS", "READ_MEMORY_MULTIPLE", "SLICE_BYTES", "TIME_NAMES", "Ratings",
           "RatingsSource", "block_size_for", "empty_report", "merge_reports", "parquet_parts", "parse_time",
           "read_ratings", "resolve_blocksize", "sniff", "text_parts", "validate_frame"]


def read_ratings(path, *, format: str = "auto", on_bad_lines: str = "error",
                 rating_scale=None, blocksize: int | str | None = "auto", feedback: str = "explicit",
                 times: bool = True) -> Ratings:
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
    feedback : {"explicit", "implicit"}
        ``implicit``: events; the rating column is an optional positive weight, and a
        file of ``user, item`` pairs (or a CSV header or Parquet schema without a rating
        column) reads each event as weight 1.  Repeated pairs are summed later, by the
        matrix (:func:`dcf.matrix.build_matrix`).
    times : bool
        Keep each row's event time (a ``time`` column, float64 seconds since the epoch)
        where the source has one: a headerless file's fourth field, or a column a header
        or schema names ``timestamp``, ``time``, ``date``... (:mod:`dcf.io.times`).
        False reads no time (a little less work).
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
    src = sniff(path, format=format, on_bad_lines=on_bad_lines, rating_scale=rating_scale, feedback=feedback,
                times=times)
    if src.format == "parquet":
        parts, reports, name = parquet_parts(src)
        src = replace(src, path=name)  # a folder's: where its rows are numbered
    else:
        parts, reports = text_parts(src, resolve_blocksize(blocksize))
    token = dask.base.tokenize(src, parts)
    report = dask.delayed(merge_reports, pure=True)(*reports, dask_key_name=f"read-report-{token}")
    return Ratings(src, same_id_kinds(parts, token), report)
