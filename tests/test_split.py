"""Splits partition the input, are seeded, and do not depend on partitioning."""

import dask
import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import random_ratings
from dcf import split


def _parts(df, n):
    return [dask.delayed(df.iloc[idx]) for idx in np.array_split(np.arange(len(df)), n)]


def _rows(parts):
    frame = pd.concat(dask.compute(*parts, scheduler="sync"), ignore_index=True)
    return sorted(map(tuple, frame[["user", "item", "rating"]].to_numpy().tolist()))


@given(st.integers(0, 1000), st.floats(0.05, 0.95), st.integers(1, 5), st.integers(1, 5))
@settings(max_examples=30, deadline=None)
def test_random_split_partitions_and_ignores_chunking(seed, fraction, n1, n2):
    df = random_ratings(seed, n_users=20, n_items=15)
    train, test = split.random_split(_parts(df, n1), fraction, seed)
    train2, test2 = split.random_split(_parts(df, n2), fraction, seed)
    assert sorted(_rows(train) + _rows(test)) == _rows([dask.delayed(df)])
    assert not set(_rows(train)) & set(_rows(test))
    assert _rows(test) == _rows(test2) and _rows(train) == _rows(train2)


def test_random_split_fraction_and_seed():
    df = random_ratings(0, n_users=200, n_items=100, density=0.3)
    _, test = split.random_split(_parts(df, 3), 0.1, 1)
    share = len(_rows(test)) / len(df)
    assert 0.08 < share < 0.12
    _, other = split.random_split(_parts(df, 3), 0.1, 2)
    assert _rows(test) != _rows(other)


def test_kfold_test_folds_partition_the_input():
    df = random_ratings(4, n_users=40, n_items=30)
    folds = split.kfold(_parts(df, 2), 5, seed=9)
    tests = [r for _, te in folds for r in _rows(te)]
    assert sorted(tests) == _rows([dask.delayed(df)])
    for tr, te in folds:
        assert sorted(_rows(tr) + _rows(te)) == _rows([dask.delayed(df)])


def test_user_holdout_keeps_every_user_in_train():
    df = random_ratings(5, n_users=50, n_items=40, density=0.2)
    train, test = split.user_holdout(_parts(df, 3), 0.2, seed=1)
    with dask.config.set(scheduler="sync"):
        tr = pd.concat(dask.compute(*train))
        te = pd.concat(dask.compute(*test))
    assert len(tr) + len(te) == len(df)
    assert set(te["user"]) <= set(tr["user"])
    sizes = df.groupby("user").size()
    held = te.groupby("user").size().reindex(sizes.index, fill_value=0)
    expected = np.where(sizes > 1, np.ceil(0.2 * sizes - 1e-12), 0)
    assert (held.to_numpy() == expected).all()


_IDS = st.one_of(st.integers(-2**63, 2**63 - 1), st.integers(-5, 10**6), st.integers(2**63 - 70, 2**63 - 1),
                 st.integers(-2**63, -2**63 + 70))


@given(st.lists(st.tuples(_IDS, st.integers(-5, 10**6) | st.integers(-5, 50)), min_size=1, max_size=60),
       st.integers(-2**63, 2**64 - 1), st.booleans())
@settings(max_examples=80, deadline=None)
def test_pair_uniform_is_pandas_hash_of_the_ids_text(pairs, seed, text_users):
    # the split is pandas' hash of (user, item) as text, whatever the id columns' types:
    # the per-distinct-id computation (a table over a narrow range of integers, pandas'
    # factorize over a wide one) gives exactly the numbers of the plain formula
    from dcf.split import pair_uniform

    users = [str(u) for u, _ in pairs] if text_users else [u for u, _ in pairs]
    frame = pd.DataFrame({"user": pd.Series(users, dtype=object if text_users else np.int64),
                          "item": np.array([i for _, i in pairs], dtype=np.int64)})
    text = pd.DataFrame({"user": [str(u) for u, _ in pairs], "item": [str(i) for _, i in pairs]}, dtype=object)
    h = pd.util.hash_pandas_object(text, index=False, hash_key=f"{seed & 0xFFFFFFFFFFFFFFFF:016x}")
    expected = (h.to_numpy(np.uint64) >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    assert np.array_equal(pair_uniform(frame, seed), expected)


def test_the_split_keeps_every_column_dtype():
    # the train and test parts hold the input's columns as they were: object ids stay
    # object (pandas would infer text), nullable integers stay nullable
    from dcf.split import _split_two

    frame = pd.DataFrame({"user": pd.Series([f"u{i}" for i in range(200)], dtype=object),
                          "item": pd.array(range(200), dtype="Int64"),
                          "rating": np.linspace(1, 5, 200), "line": np.arange(1, 201)})
    frame["text"] = pd.Series([str(i) for i in range(200)], dtype="str")
    train, test = _split_two(frame, 0, 0.3)
    for part in (train, test):
        assert part.dtypes.to_dict() == frame.dtypes.to_dict()
        assert isinstance(part.index, pd.RangeIndex) and part.index.start == 0
    both = pd.concat([train, test]).sort_values("line")
    assert both["user"].tolist() == frame["user"].tolist() and 0 < len(test) < 200


def _timed(seed, n_users=15, n_items=12):
    df = random_ratings(seed, n_users=n_users, n_items=n_items, density=0.4)
    rng = np.random.default_rng(seed)
    return df.assign(time=rng.integers(0, 40, len(df)).astype(np.float64))  # few distinct times: ties


@given(st.integers(0, 1000), st.floats(0.05, 0.95), st.integers(1, 4), st.integers(1, 4))
@settings(max_examples=30, deadline=None)
def test_time_split_cuts_once_and_partitions(seed, fraction, n1, n2):
    df = _timed(seed)
    train, test = split.time_split(_parts(df, n1), test_fraction=fraction)
    again = split.time_split(_parts(df.sample(frac=1, random_state=seed), n2), test_fraction=fraction)
    assert sorted(_rows(train) + _rows(test)) == _rows([dask.delayed(df)])
    assert _rows(test) == _rows(again[1])
    t = np.sort(df["time"].to_numpy())
    cut = t[min(int(np.floor((1 - fraction) * len(t))), len(t) - 1)]
    late = df[df["time"] >= cut]
    assert _rows(test) == sorted(map(tuple, late[["user", "item", "rating"]].to_numpy().tolist()))
    _, at = split.time_split(_parts(df, n1), at=20)
    assert _rows(at) == sorted(map(tuple, df.loc[df["time"] >= 20, ["user", "item", "rating"]].to_numpy().tolist()))


@given(st.integers(0, 1000), st.integers(1, 3), st.integers(1, 4))
@settings(max_examples=20, deadline=None)
def test_leave_last_out_holds_out_each_users_latest(seed, n, chunks):
    df = _timed(seed)
    train, test = split.leave_last_out(_parts(df, chunks), n, seed=3)
    _, again = split.leave_last_out(_parts(df.sample(frac=1, random_state=1), 2), n, seed=3)
    test_rows = pd.concat(dask.compute(*test, scheduler="sync"))
    assert sorted(_rows(train) + _rows(test)) == _rows([dask.delayed(df)])
    assert _rows(test) == _rows(again)  # ties broken by the pair hash, not the row order
    for user, rows in df.groupby("user"):
        held = test_rows[test_rows["user"] == user]
        if len(rows) <= n:
            assert held.empty  # a user with at most n ratings keeps them all in train
            continue
        assert len(held) == n
        assert held["time"].min() >= rows["time"].nlargest(n).min()  # the latest, ties aside
        assert rows.loc[~rows["item"].isin(held["item"]), "time"].max() <= held["time"].min()


def test_time_splits_refuse_what_they_cannot_do():
    import pytest

    from dcf.errors import ConfigError, DataError

    df = random_ratings(3)  # no time column
    with pytest.raises(DataError, match="no time column"):
        split.time_split(_parts(df, 2), test_fraction=0.2)
    with pytest.raises(DataError, match="no time column"):
        split.leave_last_out(_parts(df, 2))
    with pytest.raises(ConfigError, match="one of them"):
        split.time_split(_parts(_timed(1), 2), at=3, test_fraction=0.2)
    with pytest.raises(ConfigError, match="at least 1"):
        split.leave_last_out(_parts(_timed(1), 2), 0)
    _, test = split.time_split(_parts(_timed(1).assign(time=pd.Timestamp("2020-01-02").timestamp()), 2),
                               at="2020-01-01")
    assert len(_rows(test)) == len(_timed(1))



def test_time_splits_take_a_pandas_frame_and_give_frames():
    df = _timed(9)
    train, test = split.time_split(df, test_fraction=0.25)
    assert isinstance(train, pd.DataFrame) and isinstance(test, pd.DataFrame)
    assert len(train) + len(test) == len(df) and train["time"].max() < test["time"].min()
    train, test = split.leave_last_out(df, 1)
    assert len(test) == int((df.groupby("user").size() > 1).sum())
    train, test = split.random_split(df, 0.2, 0)
    assert sorted(_rows([dask.delayed(train), dask.delayed(test)])) == _rows([dask.delayed(df)])
