"""Id columns that agree across the parts of one read: :func:`same_id_kinds`."""

from __future__ import annotations

import dask
import numpy as np
import pandas as pd

__all__ = ["same_id_kinds"]


def same_id_kinds(parts: list, token: str) -> list:
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
