"""A text file's read tasks, and parsing one block of lines in slices.

:func:`text_parts` builds one read task and one parse task per block
(:mod:`dcf.io.blocks`); every row keeps the 1-based line it came from (each
block's first line is the previous one's plus its line count, added once the block
is parsed: no parse waits for another block's), so a problem found anywhere later
names the line.

Memory: a task parses its block in slices of at most :data:`SLICE_BYTES` (1 MiB;
1/16 of a smaller block), each first with a typed parser (pyarrow: integer ids become ``int64``, ratings
and times ``float64``, nothing else is kept; :mod:`dcf.io.typed`) and, where that parser fails or sees any
problem, with the exact line-by-line parser (same messages, lines and counts; :mod:`dcf.io.exact`).
The peak memory of a read task stays under :data:`~dcf.io.blocks.READ_MEMORY_MULTIPLE` (8)
times its block, measured with ``benchmarks/read_memory.py`` on 16 MiB blocks:
about 3x for u.data-like lines with integer ids, 4x for 3-field integer lines,
6.6x for text ids that rarely repeat (they are kept as Python strings), 5.7x
when every slice needs the exact parser; it was 31-33x when whole blocks were
parsed as text.

Before parsing, a slice is refused with its first bad line named when it holds a
NUL byte or invalid UTF-8, a line longer than :data:`~dcf.io.sources.MAX_LINE_BYTES`
or an id longer than :data:`~dcf.io.sources.MAX_ID_CHARS`.
"""

from __future__ import annotations

import re

import dask
import numpy as np
import pandas as pd

from ..blocks import outputs
from ..errors import DataError
from .blocks import block_ranges, count_breaks, count_lines, read_text_block
from .exact import parse_exact
from .formats import filesystem
from .sources import BOM, MAX_ID_CHARS, MAX_LINE_BYTES, META, META_TIMED, RatingsSource, merge_reports
from .typed import parse_typed, typed_ids

__all__ = ["SLICE_BYTES", "parse_text_block", "text_parts"]

SLICE_BYTES = 1 << 20  # a block is parsed at most this many bytes at a time (1/16 of a small one)


def text_parts(src: RatingsSource, blocksize):
    """``(parts, reports)``: one delayed frame and report per block of a text file."""
    fs, local = filesystem(src.path)
    ranges = block_ranges(fs, local, None if src.compression else blocksize)
    token = dask.base.tokenize(src, blocksize, fs.ukey(local))
    read = dask.delayed(read_text_block, pure=True)
    parse = dask.delayed(_parse_block, pure=True)
    place = dask.delayed(_placed, pure=True)
    count = dask.delayed(count_lines, pure=True)
    add = dask.delayed(_add, pure=True)
    parts, reports, start = [], [], 1
    for i, (offset, length) in enumerate(ranges):
        block = read(src.path, offset, length, src.compression, dask_key_name=f"read-bytes-{token}-{i}")
        parsed = parse(block, i == 0, src, dask_key_name=f"read-block-{token}-{i}")
        part, rep = outputs(place(parsed, start, dask_key_name=f"read-lines-{token}-{i}"),
                            2, ("read-part", "read-block-report"))
        parts.append(part)
        reports.append(rep)
        n = count(block, dask_key_name=f"count-lines-{token}-{i}")
        start = add(start, n, dask_key_name=f"line-offset-{token}-{i}")
    return parts, reports


def _add(a: int, b: int) -> int:
    return a + b


# Each block is parsed with its lines numbered from 1 (_parse_block) and renumbered from
# its first line's place in the file once that is known (_placed): the parses wait for no
# other block.  Parsing block i with the file's line numbers waited for the line counts of
# blocks 0 .. i-1, a chain of small tasks that a worker of one thread ran only after the
# parse it had started: 4 workers x 1 thread read the e-commerce file's three blocks one
# after the other (1.95 s against 0.92 s on 2 x 2; benchmarks/RESULTS.md).


def _parse_block(data: bytes, first: bool, src: RatingsSource):
    """:func:`parse_text_block` with the block's lines numbered from 1: ``(frame,
    report, None)``, or ``(None, None, error)`` where it refuses the block (the
    :class:`DataError`, its line the block's)."""
    try:
        return (*parse_text_block(data, 1, first, src), None)
    except DataError as exc:
        return None, None, exc


def _placed(parsed, start_line: int):
    """A block parsed by :func:`_parse_block`, its lines renumbered from ``start_line``
    (the file's line of its first line): ``(frame, report)``; its error raised with the
    file's line."""
    frame, report, error = parsed
    shift = int(start_line) - 1
    if error is not None:
        raise DataError(error.path, _renumbered(error.problem, shift),
                        None if error.line is None else error.line + shift)
    if not shift:
        return frame, report
    examples = [_renumbered(x, shift) for x in report.get("examples", ())]
    return frame.assign(line=frame["line"].to_numpy(np.int64) + shift), {**report, "examples": examples}


def _renumbered(text: str, shift: int) -> str:
    """A report's example (``"line N: problem"``) or a refusal (``"lines A-B ..."``,
    :mod:`dcf.io.exact`) with its leading line numbers moved on by ``shift``."""
    return _LEADING_LINES.sub(lambda m: m.group(1) + "-".join(str(int(n) + shift) for n in m.group(2).split("-")),
                              text, count=1)


_LEADING_LINES = re.compile(r"^(lines? )(\d+(?:-\d+)?)\b")


def parse_text_block(data: bytes, start_line: int, first: bool, src: RatingsSource):
    """Parse one block of lines; ``start_line`` is the 1-based line of its first line.

    The block is parsed :data:`SLICE_BYTES` at a time (whole lines), so the memory a
    task needs beyond its block and its typed result is that of one slice.
    """
    if first and data.startswith(BOM):
        data = data[len(BOM):]
    skip_header = 1 if (first and src.header) else 0
    out, reports, lo, line = _Columns(count_breaks(data) + 1, src.timed), [], 0, start_line
    size = min(SLICE_BYTES, max(2 * MAX_LINE_BYTES, len(data) // 16))
    text_ids = set()  # roles seen with text ids: later slices read them as text at once
    while lo < len(data):
        hi = _slice_end(data, lo, line, src, size)
        piece = data[lo:hi]
        breaks = count_breaks(piece)
        n_lines = breaks + (0 if piece.endswith(b"\n") else 1)
        frame, report = _parse_slice(piece, line, skip_header if lo == 0 else 0, src, n_lines, text_ids)
        out.append(frame)
        reports.append(report)
        line += breaks
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
    """Fail on the first line longer than :data:`MAX_LINE_BYTES`; the lines are measured
    only where :func:`_no_line_past` cannot rule one out."""
    if _no_line_past(data, MAX_LINE_BYTES):
        return
    ends = np.flatnonzero(np.frombuffer(data, np.uint8) == 10)
    starts = np.concatenate(([0], ends + 1))
    lengths = np.append(ends, len(data)) - starts
    long = np.flatnonzero(lengths > MAX_LINE_BYTES)
    if len(long):
        raise _long_line(src, start_line + int(long[0]))


def _no_line_past(data: bytes, limit: int) -> bool:
    """True when every stretch of ``limit // 2 + 1`` bytes holds a line break: then no
    run without one, so no line, is longer than ``limit`` bytes (a run of ``2h - 1``
    bytes holds a whole stretch of ``h``).  A few byte searches; False says only that
    a line may be longer."""
    half = limit // 2 + 1
    return all(data.find(b"\n", lo, lo + half) >= 0 for lo in range(0, len(data) - half + 1, half))


def _parse_slice(data: bytes, start_line: int, skip_header: int, src: RatingsSource,
                 n_lines: int, text_ids: set):
    """One slice of whole lines (``n_lines`` of them) -> (frame with typed ids, report)."""
    _check_bytes(data, start_line, src)
    _check_line_lengths(data, start_line, src)
    if src.format == "dat":
        data = data.replace(b"::", b"\x1f")
    parsed = parse_typed(data, start_line, skip_header, src, n_lines, text_ids)
    if parsed is None:
        frame, report = parse_exact(data, start_line, skip_header, src)
        frame = {"user": typed_ids(frame["user"].to_numpy(dtype=object)),
                 "item": typed_ids(frame["item"].to_numpy(dtype=object)),
                 "rating": frame["rating"].to_numpy(), "line": frame["line"].to_numpy(),
                 **({"time": frame["time"].to_numpy()} if "time" in frame else {})}
    else:
        frame, report = parsed
    _check_id_lengths(frame, src, data)
    return frame, report


def _check_id_lengths(frame: dict, src: RatingsSource, data: bytes) -> None:
    """Fail on the first id longer than :data:`MAX_ID_CHARS` characters.  None can be
    where no line is longer than that many bytes (a character is a byte or more,
    :func:`_no_line_past`); only otherwise are the ids measured (0.4 s of a 16 MiB block
    of text ids)."""
    if _no_line_past(data, MAX_ID_CHARS):
        return
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


class _Columns:
    """A block's output columns, allocated once for every line it could hold and filled
    slice by slice (concatenating slices at the end needed the output twice over).

    An id column that is text in some slice is text in all of them: the integers'
    text is their canonical spelling, the text they were read from.
    """

    def __init__(self, capacity: int, timed: bool = False):
        self.n, self.timed = 0, timed
        self.columns = {"user": np.empty(capacity, np.int64), "item": np.empty(capacity, np.int64),
                        "rating": np.empty(capacity, np.float64), "line": np.empty(capacity, np.int64)}
        if timed:
            self.columns["time"] = np.empty(capacity, np.float64)

    def append(self, piece: dict) -> None:
        m = len(piece["line"])
        if not m:  # no rows, no ids: a slice of blank or skipped lines says nothing of their type
            return
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
            return (META_TIMED if self.timed else META).iloc[:0].copy()
        columns = {}
        for name, column in self.columns.items():
            column = column[:self.n] if self.n > 0.9 * len(column) else column[:self.n].copy()
            columns[name] = pd.Series(column, dtype=column.dtype, copy=False)  # object stays object
        self.columns = {}
        return pd.DataFrame(columns, copy=False)
