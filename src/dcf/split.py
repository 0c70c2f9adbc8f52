"""Seeded train/test splits that partition the input.

Every split is decided by a seeded hash of the (user, item) pair, not by a
random stream, so it does not depend on how the input is cut into partitions
or blocks ("chunk size changes speed, never results"), and the copies of a
duplicated pair always land on the same side.

* :func:`random_split` -- each rating goes to test with probability
  ``test_fraction`` (the paper's 1:9 split is ``test_fraction=0.1``);
* :func:`kfold` -- k disjoint test folds covering every rating;
* :func:`user_holdout` -- per user, the ``ceil(fraction * n_u)`` ratings with
  the smallest hash are held out (users with one rating keep it in train).

And by time, where the ratings carry one (a ``time`` column: :mod:`dcf.io.times`):

* :func:`time_split` -- one global cut: every rating at or after it is test (a given
  time, or the time that leaves the latest ``test_fraction`` of the ratings as test);
* :func:`leave_last_out` -- per user, the ``n`` latest ratings are test (ties: the pair
  hash), users with at most ``n`` ratings keep them all in train.
"""

from __future__ import annotations



import dask
import numpy as np
import pandas as pd

from . import io as dio
from . import kernels
from .blocks import outputs
from .errors import ConfigError, DataError
from .ids import frame_from_parts

__all__ = ["pair_hashes", "pair_uniform", "random_split", "kfold", "user_holdout", "time_split", "leave_last_out"]


def pair_uniform(frame: pd.DataFrame, seed: int) -> np.ndarray:
    """A uniform [0, 1) number per row, a pure function of (user, item, seed).

    The number is pandas' ``hash_pandas_object`` (``index=False``, the seed as its key)
    of the two ids as the text a file would hold, so the split does not depend on the
    format (``7`` and ``"7"`` go the same way).  It is computed once per distinct id
    and combined as pandas combines columns: the same numbers, without a text object
    per row (a 20M-rating split: 37 s of tasks -> about 3 s).
    """
    return (pair_hashes(frame, seed) >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def pair_hashes(frame: pd.DataFrame, seed: int) -> np.ndarray:
    """The 64-bit hash of each row's (user, item) that :func:`pair_uniform` scales: a
    pair's copies hash alike whatever the ids' type (``7`` and ``"7"``)."""
    key = f"{int(seed) & 0xFFFFFFFFFFFFFFFF:016x}"
    return _combined([_id_hashes(frame["user"], key), _id_hashes(frame["item"], key)])


def _id_hashes(col: pd.Series, key: str) -> np.ndarray:
    """pandas' hash of each id's text (``hash_array`` of the text objects); for integers,
    once per distinct id, from its digits (:func:`dcf.kernels.int_text_hashes`)."""
    if isinstance(col.dtype, np.dtype) and col.dtype.kind in "iu":
        codes, uniques = _factorize(col.to_numpy())  # integers: one hash per distinct id
        if uniques.dtype.kind == "i" or (len(uniques) == 0 or int(uniques.max()) < 2**63):
            return kernels.int_text_hashes(uniques.astype(np.int64), key)[codes]
        return pd.util.hash_array(_text(pd.Series(uniques)), hash_key=key, categorize=False)[codes]
    return pd.util.hash_array(_text(col), hash_key=key)


def _factorize(values: np.ndarray):
    """``(codes, uniques)`` of integers: by a table over their range where it is at most
    twice their number (ids numbered from 1 or so: 4x quicker than hashing them), else
    pandas' ``factorize``."""
    if len(values):
        lo, hi = int(values.min()), int(values.max())
        if hi - lo < 2 * len(values) + (1 << 16):
            offsets = (values - lo).astype(np.intp)
            present = np.zeros(hi - lo + 1, np.bool_)
            present[offsets] = True
            uniques = np.flatnonzero(present)
            code_of = np.zeros(len(present), np.int32 if len(uniques) < 2 ** 31 else np.int64)
            code_of[uniques] = np.arange(len(uniques))
            return code_of[offsets], (uniques + lo).astype(values.dtype)
    return pd.factorize(values, sort=False)


def _combined(hashes: list) -> np.ndarray:
    """pandas' combination of column hashes into one per row (``combine_hash_arrays``,
    CPython's tuple hash), as ``hash_pandas_object`` of a frame does it."""
    out = np.zeros_like(hashes[0]) + np.uint64(0x345678)
    mult = np.uint64(1000003)
    for i, h in enumerate(hashes):
        inverse = len(hashes) - i
        out ^= h
        out *= mult
        mult += np.uint64(82520 + inverse + inverse)
    return out + np.uint64(97531)


def _text(col: pd.Series) -> np.ndarray:
    """Ids as the text a file would hold (so a split does not depend on the format):
    an integer's decimal digits."""
    if isinstance(col.dtype, np.dtype) and col.dtype.kind in "iu":
        out = np.empty(len(col), dtype=object)
        out[:] = [str(v) for v in col.to_numpy().tolist()]  # half the time of astype(str)
        return out
    return col.astype(str).to_numpy(dtype=object)


def _check_fraction(f):
    if not 0.0 < float(f) < 1.0:
        raise ValueError(f"test fraction must be between 0 and 1, not {f}")


def _select(frame, seed, lo, hi, inside):
    u = pair_uniform(frame, seed)
    m = (u >= lo) & (u < hi)
    return frame[m if inside else ~m].reset_index(drop=True)


def _wrap(data, *splits):
    """Give back ``Ratings`` when given ``Ratings``, else lists of parts."""
    if not isinstance(data, dio.Ratings):
        return splits
    return tuple(dio.Ratings(data.source, parts, data.report) for parts in splits)


def _parts(data):
    """The Delayed frame parts of ``data``: a ``Ratings``' own, or one part holding a
    pandas frame, or the list given."""
    if isinstance(data, pd.DataFrame):
        return [dask.delayed(data.reset_index(drop=True), pure=True)]
    return data.parts if isinstance(data, dio.Ratings) else data


def _as_given(data, pair):
    """``(train, test)`` as pandas frames where ``data`` was one, else as they are."""
    if isinstance(data, pd.DataFrame):
        return tuple(pd.concat(dask.compute(*side), ignore_index=True) if side else data.iloc[:0] for side in pair)
    return pair


def random_split(data, test_fraction: float = 0.1, seed: int = 0):
    """Split into ``(train, test)``.

    ``data`` is a :class:`dcf.io.Ratings` (then two ``Ratings`` come back) or
    a list of Delayed frame parts (then two lists).
    """
    _check_fraction(test_fraction)
    two = dask.delayed(_split_two, pure=True)
    pairs = [outputs(two(p, seed, test_fraction, dask_key_name=f"split-{dask.base.tokenize(p, seed, test_fraction)}"),
                     2, ("split-train", "split-test")) for p in _parts(data)]  # one hash pass per part
    return _as_given(data, _wrap(data, [tr for tr, _ in pairs], [te for _, te in pairs]))


def _split_two(frame, seed, test_fraction):
    test = pair_uniform(frame, seed) < test_fraction
    return _rows(frame, np.flatnonzero(~test)), _rows(frame, np.flatnonzero(test))


def _rows(frame: pd.DataFrame, at: np.ndarray) -> pd.DataFrame:
    """Rows ``at`` of a frame, a new RangeIndex, every column's dtype kept (object ids
    stay object, not inferred as text): half the time of boolean indexing and
    ``reset_index`` on 4 columns."""
    columns = {}
    for name in frame.columns:
        col = frame[name]
        values = col.to_numpy().take(at) if isinstance(col.dtype, np.dtype) else col.array.take(at)
        columns[name] = pd.Series(values, dtype=col.dtype, copy=False)
    return pd.DataFrame(columns, copy=False)


def kfold(data, n_splits: int = 5, seed: int = 0):
    """``n_splits`` (train, test) pairs; the test folds partition the input."""
    if int(n_splits) < 2:
        raise ValueError(f"n_splits must be at least 2, not {n_splits}")
    sel = dask.delayed(_select, pure=True)
    parts = _parts(data)
    folds = []
    for f in range(n_splits):
        lo, hi = f / n_splits, (f + 1) / n_splits
        hi = 1.0 + 1e-9 if f == n_splits - 1 else hi
        folds.append(_wrap(data, [sel(p, seed, lo, hi, False) for p in parts],
                           [sel(p, seed, lo, hi, True) for p in parts]))
    return folds


def user_holdout(data, test_fraction: float = 0.1, seed: int = 0, npartitions=None):
    """Per-user holdout; returns ``(train, test)`` like :func:`random_split`.

    Rows are grouped by user with a dask shuffle, then in each group the
    ``ceil(test_fraction * n_u)`` rows with the smallest pair hash go to test
    (none for a user with a single rating).
    """
    _check_fraction(test_fraction)
    parts = _parts(data)
    meta = dask.compute(parts[0])[0].iloc[:0] if parts else None
    ddf = frame_from_parts(parts, meta, "split-part")
    ddf = ddf.shuffle("user", npartitions=npartitions or len(parts), shuffle_method="tasks")
    flagged = ddf.map_partitions(_flag_user_holdout, test_fraction, seed,
                                 meta=meta.assign(_test=pd.Series([], dtype=bool)))
    out = flagged.to_delayed()
    pick = dask.delayed(_pick, pure=True)
    return _wrap(data, [pick(p, False) for p in out], [pick(p, True) for p in out])


def _flag_user_holdout(frame, fraction, seed):
    frame = frame.reset_index(drop=True)
    u = pair_uniform(frame, seed)
    users = frame["user"].astype(str).to_numpy(dtype=object)
    tmp = pd.DataFrame({"user": users, "u": u})
    rank = tmp.groupby("user")["u"].rank(method="first").to_numpy()
    size = tmp.groupby("user")["u"].transform("size").to_numpy()
    quota = np.where(size > 1, np.ceil(fraction * size - 1e-12), 0)
    return frame.assign(_test=rank <= quota)


def _pick(frame, test):
    return frame[frame["_test"] == test].drop(columns="_test").reset_index(drop=True)




def _times_of(frame: pd.DataFrame, where: str = "the ratings") -> np.ndarray:
    if "time" not in frame.columns:
        raise DataError(where, "has no time column, which a split by time needs (a file with a timestamp column, "
                               "read with times=True)")
    return frame["time"].to_numpy(np.float64)


def time_split(data, at=None, test_fraction: float | None = None):
    """Split at one time: ``(train, test)`` with test the ratings whose time is at or after
    the cut, like :func:`random_split` (``Ratings`` in, ``Ratings`` out).

    ``at``: the cut, seconds since the epoch or an ISO 8601 date; or ``test_fraction``:
    the cut is the time of the rating at position ``floor((1 - f) N)`` in time order, so
    the latest ratings (about ``f`` of them; ratings at the cut's very time all go to test)
    are test.  One of the two.
    """
    if (at is None) == (test_fraction is None):
        raise ConfigError("time_split takes the cut (at=TIME) or the test share (test_fraction=F), one of them")
    parts = _parts(data)
    if at is not None:
        cut = float(dio.parse_time(at)) if isinstance(at, str) else float(at)
    else:
        _check_fraction(test_fraction)
        times = np.sort(np.concatenate(dask.compute(*[dask.delayed(_times_of, pure=True)(p) for p in parts]) or
                                       [np.zeros(0)]))
        if not len(times):
            return _as_given(data, _wrap(data, list(parts), []))
        cut = float(times[min(int(np.floor((1 - test_fraction) * len(times))), len(times) - 1)])
    two = dask.delayed(_cut_two, pure=True)
    pairs = [outputs(two(p, cut, dask_key_name=f"split-{dask.base.tokenize(p, cut)}"), 2, ("split-train", "split-test"))
             for p in parts]
    return _as_given(data, _wrap(data, [tr for tr, _ in pairs], [te for _, te in pairs]))


def _cut_two(frame, cut):
    late = _times_of(frame) >= cut
    return _rows(frame, np.flatnonzero(~late)), _rows(frame, np.flatnonzero(late))


def leave_last_out(data, n: int = 1, seed: int = 0, npartitions=None):
    """Per user, the ``n`` latest ratings are test (ties in time: the smaller pair hash
    first), the rest train; a user with at most ``n`` ratings keeps them all in train.
    Returns ``(train, test)`` like :func:`random_split` (rows grouped by user with a dask
    shuffle, as :func:`user_holdout`)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"leave_last_out's n must be a whole number of at least 1, not {n!r}")
    parts = _parts(data)
    meta = dask.compute(parts[0])[0].iloc[:0] if len(parts) else None
    if meta is not None:
        _times_of(meta)
    ddf = frame_from_parts(parts, meta, "split-part")
    ddf = ddf.shuffle("user", npartitions=npartitions or len(parts), shuffle_method="tasks")
    flagged = ddf.map_partitions(_flag_last, int(n), seed, meta=meta.assign(_test=pd.Series([], dtype=bool)))
    out = flagged.to_delayed()
    pick = dask.delayed(_pick, pure=True)
    return _as_given(data, _wrap(data, [pick(p, False) for p in out], [pick(p, True) for p in out]))


def _flag_last(frame, n, seed):
    frame = frame.reset_index(drop=True)
    users = frame["user"].astype(str).to_numpy(dtype=object)
    tmp = pd.DataFrame({"user": users, "time": -_times_of(frame), "u": pair_uniform(frame, seed)})
    rank = tmp.sort_values(["user", "time", "u"], kind="stable").groupby("user").cumcount()
    size = tmp.groupby("user")["u"].transform("size").to_numpy()
    return frame.assign(_test=(rank.reindex(tmp.index).to_numpy() < n) & (size > n))
