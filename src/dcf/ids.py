"""Raw id <-> contiguous integer id maps for users and items.

Ids are mapped once, when the training matrix is built (as Surprise's
``Trainset`` and LensKit's ``Vocabulary`` do).  Inside dcf every user and item
is a contiguous integer ``0..n-1``; raw ids exist only at the edges.

Integer ids are ordered numerically, other ids lexicographically, so "ties
broken by ascending id" means ascending raw id as a user reads it.
"""

from __future__ import annotations

import uuid

import dask
import dask.dataframe as dd
from dask.highlevelgraph import HighLevelGraph
from dask.optimization import cull
import numpy as np
import pandas as pd

__all__ = ["IdMap", "ids_of", "frame_from_parts", "frame_of"]


TABLE_SPAN = 1 << 24  # integer ids within this many values are coded by a lookup table (128 MB at most)


class IdMap:
    """A sorted vocabulary of raw ids.

    Parameters
    ----------
    values : array-like
        Distinct raw ids (any order).  Strings that all spell canonical
        integers (``"7"``, not ``"007"``) are stored as ``int64``.

    Examples
    --------
    >>> m = IdMap(["10", "9", "10"])
    >>> m.index.tolist(), m.to_codes(["9", "11"]).tolist()
    ([9, 10], [0, -1])
    """

    def __init__(self, values):
        values = np.asarray(values)
        if values.dtype.kind in "iu":  # integer ids: no text round trip
            self.index = pd.Index(np.sort(pd.unique(values.astype(np.int64))), dtype=np.int64)
        else:
            index = pd.Index(pd.unique(values.astype(object)))
            self.index = _canonical(index).sort_values()
        self.index.name = None

    def __len__(self) -> int:
        return len(self.index)

    def __dask_tokenize__(self):
        return ("IdMap", dask.base.tokenize(self.index))

    def __getstate__(self):
        return {"index": self.index}  # not the lazily built text index

    def __setstate__(self, state):
        self.index = state["index"]

    def as_delayed(self):
        """This map as one graph key, so tasks share it instead of each carrying a copy
        (a million-user map embedded in hundreds of tasks made graphs huge)."""
        if getattr(self, "_delayed", None) is None:
            self._delayed = dask.delayed(self, pure=True, name=f"id-map-{dask.base.tokenize(self)}")
        return self._delayed

    def __repr__(self) -> str:
        return f"IdMap(n={len(self)}, dtype={self.index.dtype})"

    @property
    def numeric(self) -> bool:
        """Whether the raw ids are integers."""
        return self.index.dtype.kind in "iu"

    def to_codes(self, raw) -> np.ndarray:
        """Map raw ids to contiguous codes; unknown ids map to ``-1``.

        Returns
        -------
        numpy.ndarray of int64, same length as ``raw``.
        """
        raw = np.asarray(raw)
        if raw.dtype.kind == "u" and self.numeric and len(raw) and raw.max() > np.iinfo(np.int64).max:
            out = np.full(len(raw), -1, np.int64)  # past int64: no id of the vocabulary
            small = raw <= np.iinfo(np.int64).max
            out[small] = self.to_codes(raw[small].astype(np.int64))
            return out
        if raw.dtype.kind in "iu" and self.numeric:
            keys = self.index.to_numpy()
            raw = raw.astype(np.int64, copy=False)
            table = self._code_table()
            if table is not None:  # ids within a small range: one lookup each
                lo, codes = table
                inside = (raw >= lo) & (raw < lo + len(codes))
                out = np.full(len(raw), -1, np.int64)
                out[inside] = codes[raw[inside] - lo]
                return out
            pos = np.searchsorted(keys, raw)  # sorted int64 vocabulary: binary search
            found = pos < len(keys)
            found[found] = keys[pos[found]] == raw[found]
            return np.where(found, pos, -1).astype(np.int64)
        if raw.dtype == object and self.numeric and len(raw) and \
                pd.api.types.infer_dtype(raw, skipna=False) == "integer":  # Python ints
            fits = np.fromiter((-(1 << 63) <= int(v) < (1 << 63) for v in raw), bool, len(raw))
            out = np.full(len(raw), -1, np.int64)  # one past int64 is no id of the vocabulary
            out[fits] = self.to_codes(raw[fits].astype(np.int64))
            return out
        # object strings, not raw.astype(str): NumPy's fixed-width text costs 4 bytes x the
        # longest id for every row (a 1,000-character id made it 4 KB a row)
        text = pd.Series(raw, dtype=object).astype(str).to_numpy(dtype=object)
        return self._text_index().get_indexer(text).astype(np.int64)

    def _code_table(self):
        """``(lowest id, code of each id from it)`` when the integer ids span at most
        :data:`TABLE_SPAN` values and four times their number (ids ``1..n`` and the
        like): a lookup instead of a binary search over a million ids, which cost more
        than a second per 2M ratings; None otherwise."""
        if getattr(self, "_table", None) is None:
            keys = self.index.to_numpy()
            span = int(keys[-1]) - int(keys[0]) + 1 if len(keys) else 0
            if 0 < span <= min(TABLE_SPAN, 4 * len(keys) + 1024):
                codes = np.full(span, -1, np.int64)
                codes[keys - keys[0]] = np.arange(len(keys))
                self._table = (int(keys[0]), codes)
            else:
                self._table = False
        return self._table or None

    def _text_index(self) -> pd.Index:
        if getattr(self, "_text", None) is None:
            self._text = pd.Index(self.index.astype(str).to_numpy(dtype=object))
        return self._text

    def canonical(self, raw) -> np.ndarray:
        """Raw ids in the vocabulary's type (object array).

        With integer ids, strings that spell canonical integers become ints;
        anything else is left as it is.
        """
        raw = np.asarray(raw)
        if raw.dtype.kind in "iu":
            return raw.astype(object)
        raw = raw.astype(object, copy=False)
        if not self.numeric or len(raw) == 0:
            return raw
        text = pd.Series(raw, dtype=object).astype(str)
        num = pd.to_numeric(text, errors="coerce")
        ok = num.notna().to_numpy().copy()
        ints = np.zeros(len(raw), np.int64)
        ints[ok] = num[ok].astype(np.int64).to_numpy(copy=True)
        ok &= (pd.Series(ints).astype(str).to_numpy() == text.to_numpy())
        out = raw.copy()
        out[ok] = ints[ok]
        return out

    def to_raw(self, codes) -> np.ndarray:
        """Map codes back to raw ids (numpy array of int64 or object)."""
        return self.index.to_numpy()[np.asarray(codes, dtype=np.int64)]


def _canonical(index: pd.Index) -> pd.Index:
    as_int = _as_int_or_none(index)
    return as_int if as_int is not None else index.astype(str).astype(object)


def _as_int_or_none(index: pd.Index):
    """Integers if every id spells a canonical integer, else None."""
    if index.dtype.kind in "iu":
        return index.astype(np.int64)
    text = index.astype(str)
    ints = pd.to_numeric(pd.Series(text, dtype=object), errors="coerce", downcast=None)
    if ints.isna().any() or ints.dtype.kind not in "iu":
        return None
    ints = ints.astype(np.int64)
    if not (ints.astype(str).to_numpy(dtype=object) == np.asarray(text, dtype=object)).all():
        return None
    return pd.Index(ints.to_numpy(), dtype=np.int64)


def ids_of(col: pd.Series) -> np.ndarray:
    """A raw id column as int64 when it is one (fast paths), else as objects."""
    if isinstance(col.dtype, np.dtype) and col.dtype.kind in "iu":
        return col.to_numpy(np.int64)
    return col.to_numpy(dtype=object)


def frame_from_parts(parts, meta: pd.DataFrame, stage: str = "frame") -> dd.DataFrame:
    """A dask DataFrame over Delayed pandas parts, raw id columns left as they are.

    dask-expr would otherwise turn object columns into strings, so integer ids
    would come back as ``"7"``.  ``stage`` names its tasks on the dashboard.
    """
    parts = list(parts)
    if not parts:
        with dask.config.set({"dataframe.convert-string": False}):
            return dd.from_delayed(parts, meta=meta, verify_meta=False, prefix=stage)
    # from_graph, not from_delayed: the latter wraps every part in a task named
    # "delayed-container"; here each partition is an alias of its part, named by ``stage``.
    # Culled to what the parts need: a graph that also ends in other keys (a sibling output
    # of a task, such as a read's report) made ``dask.compute(frame, report)`` hand the
    # report back for the frame (Dask 2026.8 takes such a graph's ends for its outputs)
    keys = [p.key for p in parts]
    graph, _ = cull(dict(HighLevelGraph.merge(*[p.__dask_graph__() for p in parts])), keys)
    with dask.config.set({"dataframe.convert-string": False}):
        return dd.from_graph(graph, meta, (None,) * (len(parts) + 1), keys, stage)


def frame_of(frame: pd.DataFrame, stage: str) -> dd.DataFrame:
    """A pandas frame already computed (an answer of the model held in this process), as
    a one-partition dask DataFrame whose one task is named ``held-answer`` and its
    partition ``stage``, raw id columns left as they are."""
    part = dask.delayed(frame, name=f"held-answer-{uuid.uuid4().hex}")  # each answer its own key, untokenized
    return frame_from_parts([part], frame.iloc[:0], stage)

