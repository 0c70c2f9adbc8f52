"""A frame's parts packed on the workers and unpacked in the client (dcf.cluster.frames):
always exactly what pandas' concatenation of the parts gives, in fewer bytes."""

from __future__ import annotations

import pickle
from unittest import mock

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dcf.cluster import frames
from dcf.cluster.frames import PackedFrame, pack_frame, unpack_frames

KINDS = ["runs", "int64", "int32", "big", "uint", "float", "bool", "category", "category-other", "category-swapped",
         "object", "str", "time"]


def _column(kind: str, rows: int, rng) -> object:
    if kind == "runs":  # a user's N recommendations: few distinct runs
        return np.repeat(rng.integers(-5, 10**12, rows // 5 + 1), 5)[:rows]
    if kind == "int64":
        return rng.integers(-300, 70_000, rows)
    if kind == "int32":
        return rng.integers(-5, 5, rows).astype(np.int32)
    if kind == "big":  # the extremes of int64: nothing smaller holds them
        return rng.choice(np.array([np.iinfo(np.int64).min, 0, np.iinfo(np.int64).max]), rows)
    if kind == "uint":
        return rng.integers(0, 2**40, rows).astype(np.uint64)
    if kind == "float":
        return np.where(rng.random(rows) < 0.2, np.nan, rng.standard_normal(rows))
    if kind == "bool":
        return rng.random(rows) < 0.5
    if kind.startswith("category"):  # swapped: the same categories in another order (pandas: an equal dtype)
        cats = {"category": ["none", "popular"], "category-other": ["popular", "global_mean", "none"],
                "category-swapped": ["popular", "none"]}[kind]
        return pd.Categorical.from_codes(rng.integers(-1, len(cats), rows).astype(np.int8), categories=cats)
    if kind == "object":
        return np.array([("u%d" % v) if v % 3 else v for v in rng.integers(0, 9, rows)], dtype=object)
    if kind == "str":
        return pd.array(["i%d" % v for v in rng.integers(0, 9, rows)], dtype="str")
    return pd.to_datetime(rng.integers(0, 2 * 10**9, rows), unit="s")


@given(st.integers(0, 10_000), st.lists(st.integers(0, 40), min_size=1, max_size=4),
       st.lists(st.sampled_from(KINDS), min_size=1, max_size=5), st.booleans(), st.booleans())
@settings(max_examples=150, deadline=None)
def test_unpacked_parts_are_pandas_concatenation_of_the_parts(seed, lengths, kinds, mixed, threaded):
    rng = np.random.default_rng(seed)
    parts = []
    for i, rows in enumerate(lengths):
        # mixed: a part's column of another kind (dtypes differ: pandas decides the result)
        cols = [kinds[(c + i) % len(kinds)] if mixed else kinds[c] for c in range(len(kinds))]
        if mixed and i % 2:  # the same categories in another order: codes mean other values
            cols = ["category-swapped" if k == "category" else k for k in cols]
        frame = pd.DataFrame({f"c{c}": _column(kind, rows, rng) for c, kind in enumerate(cols)},
                             index=rng.permutation(rows) + 7)
        parts.append(frame)
    want = pd.concat(parts, ignore_index=True)
    with mock.patch.object(frames, "THREADED_ROWS", 0 if threaded else 10**9):  # columns filled by threads
        got = unpack_frames([pack_frame(p) for p in parts], parts[0].iloc[:0])
    pd.testing.assert_frame_equal(got, want, check_exact=True, check_column_type=True, check_index_type=True)
    # frames and packed parts mixed (a part that could not be packed travels as it is)
    got = unpack_frames([parts[0]] + [pack_frame(p) for p in parts[1:]], parts[0].iloc[:0])
    pd.testing.assert_frame_equal(got, want, check_exact=True)


def test_categories_in_another_order_keep_their_values():
    first = pd.DataFrame({"c": pd.Categorical(["a", "b"], categories=["a", "b"])})
    other = pd.DataFrame({"c": pd.Categorical(["a", "b"], categories=["b", "a"])})
    got = unpack_frames([pack_frame(first), pack_frame(other)], first.iloc[:0])
    pd.testing.assert_frame_equal(got, pd.concat([first, other], ignore_index=True))
    assert got["c"].tolist() == ["a", "b", "a", "b"]


def test_no_parts_is_the_meta_and_repeated_names_travel_as_the_frame():
    meta = pd.DataFrame({"user": np.zeros(0, np.int64), "score": np.zeros(0)})
    got = unpack_frames([], meta)
    pd.testing.assert_frame_equal(got, meta)
    assert got is not meta
    twice = pd.DataFrame([[1, 2]], columns=["a", "a"])
    assert pack_frame(twice) is twice
    for odd in (pd.DataFrame(index=range(3)),  # no columns: the rows' count would be lost
                pd.DataFrame([[1, 2]], columns=pd.Index([np.nan, None], dtype=object)),
                pd.DataFrame({"x": np.array([1, 2], dtype=">i8"), "y": np.array([0.5, 1.5], dtype=">f8")})):
        pd.testing.assert_frame_equal(unpack_frames([pack_frame(odd), pack_frame(odd)], odd.iloc[:0]),
                                      pd.concat([odd, odd], ignore_index=True), check_exact=True)
    pd.testing.assert_frame_equal(unpack_frames([twice, twice], twice.iloc[:0]),
                                  pd.concat([twice, twice], ignore_index=True))


def _lists(users: int, n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "user": np.repeat(rng.integers(0, 10**9, users), n), "rank": np.tile(np.arange(1, n + 1), users),
        "item": rng.integers(0, 150_000, users * n), "score": rng.random(users * n),
        "fallback": pd.Categorical.from_codes(rng.integers(0, 2, users * n).astype(np.int8),
                                              categories=["none", "popular"])})


def test_recommendation_lists_pack_into_less_than_half_their_bytes():
    # the batch job's Top-N lists: user ids in runs of N, ranks 1..N, item ids below 2**31
    frame = _lists(5_000, 20, 0)
    packed = pack_frame(frame)
    assert isinstance(packed, PackedFrame)
    kinds = {name: col[0] for name, col in zip(packed.names, packed.columns)}
    assert kinds == {"user": "runs", "rank": "ints", "item": "ints", "score": "plain", "fallback": "codes"}
    assert packed.columns[1][1].dtype == np.int8 and packed.columns[2][1].dtype == np.int32
    size = len(pickle.dumps(packed, protocol=5))
    assert size < 0.5 * len(pickle.dumps(frame, protocol=5))
    pd.testing.assert_frame_equal(unpack_frames([packed], frame.iloc[:0]), frame, check_exact=True)


@pytest.mark.parametrize("values", [np.array([-129, 127]), np.array([-(2**31), 2**31 - 1]),
                                    np.array([-(2**31) - 1, 0]), np.array([0, 2**31])])
def test_integers_take_the_smallest_type_that_holds_them_exactly(values):
    frame = pd.DataFrame({"x": np.tile(values, 3)[[0, 1, 2, 5, 3, 4]]})  # no runs
    packed = pack_frame(frame)
    small = packed.columns[0][1]
    lo, hi = values.min(), values.max()
    want = next(t for t in (np.int8, np.int16, np.int32, np.int64)
                if np.iinfo(t).min <= lo and hi <= np.iinfo(t).max)
    assert small.dtype == want
    pd.testing.assert_frame_equal(unpack_frames([packed, packed], frame.iloc[:0]),
                                  pd.concat([frame, frame], ignore_index=True), check_exact=True)
