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
