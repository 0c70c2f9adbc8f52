"""A (user, item) pair rated more than once where the training side's check cannot see it.

The training matrix finds a repeated pair where its copies meet in one block (exact
duplicates dropped, conflicting ratings raised or, with ``on_bad_lines="skip"``, the first
kept and the rest counted: :func:`dcf.matrix.build_block`).  The batch job's test side
never reached a block: a pair rated twice in a test file, or twice on the test side of a
random split, was predicted and scored twice, a conflict included; and a split by time put
the earlier copy in training and the later one in test.  :func:`checked_pairs` applies the
same rules to any set of parts.  Each part hashes its pairs (:func:`dcf.split.pair_hashes`,
the same for ``7`` and ``"7"``) and one task finds the hashes seen more than once, 8 bytes a
row (the e-commerce shape's 600k test pairs: about 0.1 s of tasks where nothing repeats);
only where one does are those rows fetched, their ids compared (a hash may collide) and
the rules applied, and the parts come back without the dropped rows.
"""

from __future__ import annotations

import dask
import numpy as np
import pandas as pd

from .errors import conflicting_ratings
from .split import pair_hashes

__all__ = ["checked_pairs", "find_repeats", "without_repeats"]


def checked_pairs(parts: list, on_bad_lines: str, source: str) -> tuple:
    """``(parts, counts)``: the explicit ratings ``parts`` (Delayed frames with ``user,
    item, rating, line``) without their repeated pairs' later copies, and ``counts``
    (``{"duplicates": n, "conflicts": m}``).  Of a pair's copies the one of the earliest
    line is kept (the earlier part between equal lines); a later copy with the same rating
    is an exact duplicate, dropped and counted; one with another rating is a conflict: a
    :class:`DataError` naming both lines (``on_bad_lines="error"``) or dropped and counted
    (``"skip"``).  ``source``: the file the lines count in.  :func:`find_repeats`, then
    :func:`without_repeats`, computed here."""
    found = find_repeats(parts)
    return without_repeats(parts, dask.compute(found)[0] if found is not None else None, on_bad_lines, source)


def find_repeats(parts: list):
    """A Delayed array of the pair hashes that occur more than once over ``parts`` (None
    for no parts): what :func:`without_repeats` takes, computed."""
    if not parts:
        return None
    token = dask.base.tokenize(parts)
    hashed = dask.delayed(_hashes, pure=True)
    hashes = [hashed(p, dask_key_name=f"repeats-hash-{token}-{a}") for a, p in enumerate(parts)]
    return dask.delayed(_repeated_hashes, pure=True)(*hashes, dask_key_name=f"repeats-check-{token}")


def without_repeats(parts: list, repeated, on_bad_lines: str, source: str) -> tuple:
    """``(parts, counts)`` of :func:`checked_pairs`, given :func:`find_repeats`' array computed."""
    counts = {"duplicates": 0, "conflicts": 0}
    if repeated is None or not len(repeated):
        return parts, counts
    token = dask.base.tokenize(parts, repeated)
    fetch = dask.delayed(_rows_of, pure=True)
    rows = pd.concat(dask.compute(*[fetch(p, a, repeated, dask_key_name=f"repeats-rows-{token}-{a}")
                                    for a, p in enumerate(parts)]), ignore_index=True)
    drops, counts["duplicates"], counts["conflicts"], clash = _repeated(rows)
    if clash is not None and on_bad_lines == "error":
        raise conflicting_ratings(source, *clash)
    if not len(drops):
        return parts, counts
    at = {int(a): g["row"].to_numpy(np.int64) for a, g in drops.groupby("part")}
    drop = dask.delayed(_without, pure=True)
    kept = [drop(p, at[a], dask_key_name=f"repeats-kept-{token}-{a}") if a in at else p for a, p in enumerate(parts)]
    return kept, counts


def _hashes(frame: pd.DataFrame) -> np.ndarray:
    return pair_hashes(frame, 0) if len(frame) else np.zeros(0, np.uint64)


def _repeated_hashes(*hashes) -> np.ndarray:
    """The distinct hashes that occur more than once over every part's."""
    h = np.sort(np.concatenate(hashes)) if hashes else np.zeros(0, np.uint64)
    return np.unique(h[1:][h[1:] == h[:-1]])


def _rows_of(frame: pd.DataFrame, part: int, repeated: np.ndarray) -> pd.DataFrame:
    """The part's rows whose pair hash is one of ``repeated``: ``hash, part, row, line,
    rating, user, item``."""
    h = _hashes(frame)
    at = np.flatnonzero(np.isin(h, repeated))
    return pd.DataFrame({"hash": h[at], "part": np.full(len(at), part, np.int64), "row": at.astype(np.int64),
                         "line": frame["line"].to_numpy(np.int64)[at],
                         "rating": frame["rating"].to_numpy(np.float64)[at],
                         "user": frame["user"].to_numpy()[at], "item": frame["item"].to_numpy()[at]})


def _repeated(frame: pd.DataFrame):
    """The repeated pairs among rows sharing a hash: ``(rows to drop (part, row),
    duplicates, conflicts, the conflict of the earliest later line or None)``; a conflict as
    ``(user, item, kept rating, its line, other rating, other line)``."""
    none = (frame.iloc[:0][["part", "row"]], 0, 0, None)
    if not len(frame):
        return none
    # the same hash is the same pair but for a collision: the ids' text decides
    twice = frame.assign(u=frame["user"].astype(str), i=frame["item"].astype(str))
    twice = twice.sort_values(["hash", "u", "i", "line", "part", "row"], kind="stable")
    first = ~twice.duplicated(["hash", "u", "i"], keep="first")
    kept = twice[first].set_index(["hash", "u", "i"])
    later = twice[~first]
    if not len(later):
        return none
    keep = kept.loc[list(zip(later["hash"], later["u"], later["i"]))]
    clash = later["rating"].to_numpy() != keep["rating"].to_numpy()
    conflict = None
    if clash.any():
        c = int(np.flatnonzero(clash)[np.argmin(later["line"].to_numpy()[clash])])
        conflict = (later["user"].iloc[c], later["item"].iloc[c], float(keep["rating"].iloc[c]),
                    int(keep["line"].iloc[c]), float(later["rating"].iloc[c]), int(later["line"].iloc[c]))
    return later[["part", "row"]], int((~clash).sum()), int(clash.sum()), conflict


def _without(frame: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
    """The part without the rows at positions ``rows``."""
    keep = np.ones(len(frame), bool)
    keep[rows] = False
    return frame.iloc[np.flatnonzero(keep)].reset_index(drop=True)
