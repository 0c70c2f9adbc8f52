"""The typed pass over a slice of text lines: pyarrow reads the id and rating columns.

Integer ids become ``int64``, ratings ``float64``, nothing else is kept.  Where
this parser fails or sees any problem (a wrong number of fields, an empty id, a
rating that is not a valid number), :func:`parse_typed` gives ``None`` and the
slice goes through the exact parser (:mod:`dcf.io.exact`), which gives the same
messages, lines and counts.  An integer id that fits 64 bits is kept as ``int64``
(a column of a slice where every id is such an integer, written canonically);
every other id is kept exactly as text (:func:`typed_ids`).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from .blocks import count_lines
from .sources import RatingsSource, empty_report, field_separator

__all__ = ["parse_typed", "typed_ids"]


def parse_typed(data: bytes, start_line: int, skip_header: int, src: RatingsSource):
    """The fast path: pyarrow reads the id and rating columns; ``None`` (use the exact
    parser) unless every line has the right number of fields, every id is non-empty and
    every rating a valid number, so that the exact parser would give the same rows."""
    if src.format == "csv" and any(c in data for c in (b'"', b" ", b"\t")):
        return None  # quoting and skipinitialspace: only the exact parser does them
    n_lines = count_lines(data) - skip_header
    if n_lines <= 0:
        return None
    names = [f"f{i}" for i in range(src.n_fields)]
    wanted = [names[c] for c in src.columns]
    try:
        table = pacsv.read_csv(
            pa.BufferReader(data),
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=skip_header, use_threads=False,
                                           block_size=max(1 << 20, len(data) + 1)),
            parse_options=pacsv.ParseOptions(delimiter=field_separator(src), quote_char=False,
                                             double_quote=False, escape_char=False,
                                             ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in wanted},
                                                 include_columns=wanted, strings_can_be_null=False),
            memory_pool=_pool())
    except pa.ArrowException:
        return None
    if table.num_rows != n_lines:
        return None
    rating = _typed_ratings(table.column(wanted[2]), src)
    users = typed_ids(table.column(wanted[0]), strict=True)
    items = None if users is None else typed_ids(table.column(wanted[1]), strict=True)
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


def typed_ids(values, strict: bool = False):
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
