"""A (user, item) pair rated more than once where the training side's check cannot see it.

The training matrix finds a repeated pair where its copies meet in one block (exact
duplicates dropped, conflicting ratings raised or, with ``on_bad_lines="skip"``, the first
kept and the rest counted: :func:`dcf.matrix.build_block`).  The batch job's test side
never reached a block: a pair rated twice in a test file, or twice on the test side of a
random split, was predicted and scored twice, a conflict included; and a split by time put
the earlier copy in training and the later one in test.  :func:`checked_pairs` applies the
same rules to any set of parts: every row goes to a bucket by the hash of its pair
(:func:`dcf.split.pair_hashes`, the same for ``7`` and ``"7"``), one task a bucket finds
the pairs it holds more than once, and the parts come back without the dropped rows.
"""

from __future__ import annotations

import dask
import numpy as np
import pandas as pd

from .blocks import outputs
from .errors import DataError
from .split import pair_hashes

__all__ = ["checked_pairs", "find_repeats", "without_repeats"]

def checked_pairs(parts: list, on_bad_lines: str, source: str, buckets: int | None = None) -> tuple:
    """``(parts, counts)``: the explicit ratings ``parts`` (Delayed frames with ``user,
    item, rating, line``) without their repeated pairs' later copies, and ``counts``
    (``{"duplicates": n, "conflicts": m}``).  Of a pair's copies the one of the earliest
    line is kept (the earlier part between equal lines); a later copy with the same rating
    is an exact duplicate, dropped and counted; one with another rating is a conflict: a
    :class:`DataError` naming both lines (``on_bad_lines="error"``) or dropped and counted
    (``"skip"``).  ``source``: the file the lines count in.  :func:`find_repeats` then
    :func:`without_repeats`, computed here."""
    found = find_repeats(parts, buckets)
    return without_repeats(parts, list(dask.compute(*found)), on_bad_lines, source)


def find_repeats(parts: list, buckets: int | None = None) -> list:
    """One Delayed result a bucket (:func:`without_repeats` takes them computed): the rows
    go to ``buckets`` buckets (default one a part) by their pair's hash."""
    if not parts:
        return []
    b = max(1, int(buckets or len(parts)))
    token = dask.base.tokenize(parts, b)
    cut = dask.delayed(_bucketed, pure=True)
    pieces = [outputs(cut(p, a, b, dask_key_name=f"repeats-route-{token}-{a}"), b, "repeats-piece")
              for a, p in enumerate(parts)]
    check = dask.delayed(_repeated, pure=True)
    return [check(*[pieces[a][c] for a in range(len(parts))], dask_key_name=f"repeats-check-{token}-{c}")
            for c in range(b)]


def without_repeats(parts: list, found: list, on_bad_lines: str, source: str) -> tuple:
    """``(parts, counts)`` of :func:`checked_pairs`, given :func:`find_repeats`' results computed."""
    counts = {"duplicates": int(sum(f[1] for f in found)), "conflicts": int(sum(f[2] for f in found))}
    clashes = [f[3] for f in found if f[3] is not None]
    if clashes and on_bad_lines == "error":
        user, item, kept, first, value, line = min(clashes, key=lambda c: c[5])
        raise DataError(source, f"conflicting ratings for user {user!r} item {item!r}: {kept:g} (line {first}) and "
                        f"{value:g} (line {line}) (pass on_bad_lines='skip' / --skip-bad-lines to keep the first "
                        "and count the rest)", line)
    drops = [f[0] for f in found if len(f[0])]
    if not drops:
        return parts, counts
    drops = pd.concat(drops, ignore_index=True)
    rows = {int(a): g["row"].to_numpy(np.int64) for a, g in drops.groupby("part")}
    token = dask.base.tokenize(parts, drops)
    drop = dask.delayed(_without, pure=True)
    kept = [drop(p, rows[a], dask_key_name=f"repeats-kept-{token}-{a}") if a in rows else p
            for a, p in enumerate(parts)]
    return kept, counts


def _bucketed(frame: pd.DataFrame, part: int, buckets: int):
    """The part's rows by bucket (their pair hash modulo ``buckets``): a tuple of frames
    ``hash, part, row, line, rating, user, item``."""
    h = pair_hashes(frame, 0) if len(frame) else np.zeros(0, np.uint64)
    cols = pd.DataFrame({"hash": h, "part": np.full(len(frame), part, np.int64),
                         "row": np.arange(len(frame), dtype=np.int64),
                         "line": frame["line"].to_numpy(np.int64), "rating": frame["rating"].to_numpy(np.float64),
                         "user": frame["user"].to_numpy(), "item": frame["item"].to_numpy()})
    at = (h % np.uint64(buckets)).astype(np.int64)
    order = np.argsort(at, kind="stable")
    cuts = np.searchsorted(at[order], np.arange(buckets + 1))
    return tuple(cols.iloc[order[cuts[c]:cuts[c + 1]]] for c in range(buckets))


def _repeated(*pieces):
    """One bucket's repeated pairs: ``(rows to drop (part, row), duplicates, conflicts,
    the first conflict by line or None)``; a conflict as ``(user, item, kept rating, its
    line, other rating, other line)``."""
    frame = pd.concat(pieces, ignore_index=True)
    none = (frame.iloc[:0][["part", "row"]], 0, 0, None)
    twice = frame[frame["hash"].duplicated(keep=False)]
    if not len(twice):
        return none
    # the same hash is the same pair but for a collision: the ids' text decides
    twice = twice.assign(u=twice["user"].astype(str), i=twice["item"].astype(str))
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
        conflict = (_plain(later["user"].iloc[c]), _plain(later["item"].iloc[c]), float(keep["rating"].iloc[c]),
                    int(keep["line"].iloc[c]), float(later["rating"].iloc[c]), int(later["line"].iloc[c]))
    return later[["part", "row"]], int((~clash).sum()), int(clash.sum()), conflict


def _plain(value):
    """An id as a plain Python value (``1``, not ``np.int64(1)``)."""
    return value.item() if isinstance(value, np.generic) else value


def _without(frame: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
    """The part without the rows at positions ``rows``."""
    keep = np.ones(len(frame), bool)
    keep[rows] = False
    return frame.iloc[np.flatnonzero(keep)].reset_index(drop=True)
