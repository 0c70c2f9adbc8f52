"""The typed pass over a slice of text lines: pyarrow reads the id and rating columns.

Integer ids become ``int64``, ratings ``float64``, nothing else is kept.  Where
this parser fails or sees any problem (a wrong number of fields, an empty id, a
rating that is not a valid number), :func:`parse_typed` gives ``None`` and the
slice goes through the exact parser (:mod:`dcf.io.exact`), which gives the same
messages, lines and counts.  An integer id that fits 64 bits is kept as ``int64``
(a column of a slice where every id is such an integer, written canonically);
every other id is kept exactly as text (:func:`typed_ids`).

Two ways to the same columns: where the slice's bytes rule out every
non-canonical spelling pyarrow's integer parser would accept (a sign, spaces,
leading zeros, hexadecimal: :func:`canonical_numbers`), the ids are parsed as
``int64`` and the ratings as ``float64`` by the CSV reader itself; otherwise, or
where that fails (text ids), every id is read as text and kept as an integer only
where its text is the integer's own.  The first way was 2x quicker on the 20M
file's slices (the text way cast each id to an integer and back to text).
"""

from __future__ import annotations

import sys

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from .blocks import count_lines
from .sources import RatingsSource, empty_report, field_separator
from .times import seconds_of_values

__all__ = ["canonical_numbers", "parse_typed", "typed_ids"]

_SPACES = (b" ", b"\t", b"\x0b", b"\x0c")


def parse_typed(data: bytes, start_line: int, skip_header: int, src: RatingsSource,
                n_lines: int | None = None, text_ids: set | None = None):
    """The fast path: pyarrow reads the id and rating columns; ``None`` (use the exact
    parser) unless every line has the right number of fields, every id is non-empty and
    every rating a valid number, so that the exact parser would give the same rows.

    ``n_lines``: the slice's lines, when the caller has counted them.  ``text_ids``: a
    set the caller keeps across a block's slices; roles (``"user"``, ``"item"``) found to
    hold text ids are added, and later slices read them as text at once.
    """
    if src.format == "csv" and any(c in data for c in (b'"', b" ", b"\t")):
        return None  # quoting and skipinitialspace: only the exact parser does them
    n_lines = (count_lines(data) if n_lines is None else n_lines) - skip_header
    if n_lines <= 0:
        return None
    text_ids = set() if text_ids is None else text_ids
    names = [f"f{i}" for i in range(src.n_fields)]
    wanted = {role: names[c] for role, c in zip(("user", "item", "rating", "time"), (*src.columns, src.time_column))
              if c is not None}
    weighed = "rating" in wanted  # else pairs: each event weighs 1
    numbers = {wanted[role]: pa.float64() for role in ("rating", "time") if role in wanted}
    columns = None
    if len(text_ids) < 2 and canonical_numbers(data, field_separator(src)):
        types = {wanted[role]: pa.string() if role in text_ids else pa.int64() for role in ("user", "item")}
        columns = _read(data, skip_header, src, names, {**types, **numbers}, n_lines)
    if columns is None:
        columns = _read(data, skip_header, src, names, {n: pa.string() for n in wanted.values()}, n_lines)
        if columns is None:
            return None
        rating = _typed_ratings(columns[wanted["rating"]], src) if weighed else np.ones(n_lines)
    else:
        rating = _checked_ratings(columns[wanted["rating"]].to_numpy(), src) if weighed else np.ones(n_lines)
    ids = {}
    for role in ("user", "item"):
        column = columns[wanted[role]]
        ids[role] = column.to_numpy() if pa.types.is_integer(column.type) else \
            typed_ids(column, strict=True, maybe_int=role not in text_ids)
        if ids[role] is None:
            return None
        if ids[role].dtype == object:
            text_ids.add(role)
    if rating is None:
        return None
    lines = np.arange(start_line + skip_header, start_line + skip_header + n_lines, dtype=np.int64)
    report = {**empty_report(), "lines": n_lines, "rows": n_lines}
    out = {"user": ids["user"], "item": ids["item"], "rating": rating, "line": lines}
    if "time" in wanted:
        column = columns[wanted["time"]]
        if not pa.types.is_floating(column.type):
            try:
                column = pc.cast(column, pa.float64(), memory_pool=_pool())
            except pa.ArrowException:
                return None  # dates, or text: the exact pass reads them
        out["time"] = seconds_of_values(column.to_numpy(zero_copy_only=False))
        report["untimed"] = int(np.isnan(out["time"]).sum())
    return out, report


def canonical_numbers(data: bytes, sep: str) -> bool:
    """True when no field of ``data`` could be a non-canonical integer that pyarrow's
    integer parser accepts: no spaces or tabs (other than a tab separator), no ``-0``,
    no field starting with ``0`` followed by a digit or letter (``07``, ``0x1F``).
    (A sign ``+``, ``1e3`` and non-ASCII digits the parser refuses by itself.)

    Single-byte searches and NumPy over the bytes read as pairs: about 1 ms a MiB,
    where Python's two-byte searches took 8 ms (0.5 s of a 64 MiB block's 1.3 s)."""
    if any(c in data for c in _SPACES if c != sep.encode()):
        return False
    if b"-" in data and len(_pairs(data, (ord("-"),), ord("0"))):
        return False
    zero_at = _pairs(data, (10, ord(sep)), ord("0")) + 1  # fields that start with 0
    if data.startswith(b"0"):
        zero_at = np.append(zero_at, 0)
    after = np.frombuffer(data, np.uint8)[zero_at[zero_at + 1 < len(data)] + 1] | 32  # letters in lower case
    return not (((after >= 48) & (after <= 57)) | ((after >= 97) & (after <= 122))).any()


def _pairs(data: bytes, firsts: tuple, second: int) -> np.ndarray:
    """Positions ``p`` where ``data[p]`` is one of ``firsts`` and ``data[p + 1]`` is
    ``second`` (byte values), unordered."""
    hits = [np.zeros(0, np.int64)]
    for offset in (0, 1):
        words = np.frombuffer(data, np.uint16, count=(len(data) - offset) // 2, offset=offset)
        for first in firsts:
            word = int.from_bytes(bytes((first, second)), sys.byteorder)
            hits.append(2 * np.flatnonzero(words == word) + offset)
    return np.concatenate(hits)


def _read(data: bytes, skip_header: int, src: RatingsSource, names: list, types: dict, n_lines: int):
    """The wanted columns read with ``types`` (name -> column), or None where pyarrow
    refuses a value or sees another number of lines."""
    try:
        table = pacsv.read_csv(
            pa.BufferReader(data),
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=skip_header, use_threads=False,
                                           block_size=max(1 << 20, len(data) + 1)),
            parse_options=pacsv.ParseOptions(delimiter=field_separator(src), quote_char=False,
                                             double_quote=False, escape_char=False,
                                             ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(column_types=types, include_columns=list(types),
                                                 strings_can_be_null=False, null_values=[]),
            memory_pool=_pool())
    except pa.ArrowException:
        return None
    if table.num_rows != n_lines:
        return None
    return {name: table.column(name).combine_chunks(memory_pool=_pool()) for name in types}


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
    return _checked_ratings(values, src)


def _checked_ratings(values: np.ndarray, src: RatingsSource):
    """``values`` if every one is a finite positive number within the declared scale."""
    ok = np.isfinite(values) & (values > 0)
    if src.rating_scale is not None:
        ok &= (values >= src.rating_scale[0]) & (values <= src.rating_scale[1])
    return values if ok.all() else None


def typed_ids(values, strict: bool = False, maybe_int: bool = True):
    """Ids as ``int64`` when every one spells a canonical integer that fits (``"7"``, not
    ``"07"``, ``"+7"`` or ``" 7"``), else exactly as text (objects, equal ids sharing one
    string).  ``strict``: None when an id is empty or blank (the exact parser counts it).
    ``maybe_int`` False: the caller knows the column is text (an earlier slice's was)."""
    array = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else \
        pa.array(values, type=pa.string())
    if not len(array):
        return np.empty(0, dtype=object)
    if maybe_int:
        try:
            ints = pc.cast(array, pa.int64(), memory_pool=_pool())
            same = pc.equal(pc.cast(ints, pa.string(), memory_pool=_pool()), array, memory_pool=_pool())
            if pc.all(same).as_py():
                return ints.to_numpy()
        except pa.ArrowException:
            pass
    encoded = pc.dictionary_encode(array, memory_pool=_pool())
    uniques = encoded.dictionary.to_numpy(zero_copy_only=False)
    if strict and any(not uniques[i].strip() for i in _maybe_blank(encoded.dictionary)):
        return None
    return uniques[encoded.indices.to_numpy()]


def _maybe_blank(strings: pa.Array) -> np.ndarray:
    """Positions of the strings that may be empty or all whitespace: those that are empty
    or do not start with a visible ASCII character (the rest cannot be blank), so that
    Python's ``str.strip`` decides only those (0.8 s of a 16 MiB block of text ids, each
    stripped, before)."""
    large = strings.type == pa.large_string()
    offsets = np.frombuffer(strings.buffers()[1], np.int64 if large else np.int32, count=len(strings) + 1,
                            offset=strings.offset * (8 if large else 4))
    data = strings.buffers()[2]
    chars = np.frombuffer(data, np.uint8) if data is not None and data.size else np.zeros(1, np.uint8)
    starts, lengths = offsets[:-1], np.diff(offsets)
    first = chars[np.minimum(starts, len(chars) - 1)]
    return np.flatnonzero((lengths == 0) | (first <= 32) | (first >= 127))
