"""The rating matrix: blocks, statistics, and the pydata-sparse boundary."""

import dask
import dask.array as da
import numpy as np
import pytest
import sparse
from hypothesis import given, settings
from hypothesis import strategies as st

import reference as ref
from conftest import random_ratings
from dcf import DataError, ItemKNN
from dcf.matrix import build_matrix, to_pydata_sparse


@pytest.mark.parametrize("row_block,col_block", [(1, 1), (4, 3), (None, None), (1000, 1000)])
def test_blocks_and_statistics_match_dense(row_block, col_block):
    df = random_ratings(8, n_users=17, n_items=11)
    R, users, items = ref.dense(df)
    parts = [dask.delayed(df.iloc[i::3].assign(line=np.arange(len(df.iloc[i::3])))) for i in range(3)]
    with dask.config.set(scheduler="sync"):
        m = build_matrix(parts, row_block=row_block, col_block=col_block)
        by_user, by_item, um, inorm = dask.compute(m.by_user, m.by_item, m.means("user"),
                                                   m.norms("item"))
    assert list(m.users.index) == list(users) and list(m.items.index) == list(items)
    np.testing.assert_array_equal(by_user.toarray(), R)
    np.testing.assert_array_equal(by_item.toarray(), R.T)
    np.testing.assert_allclose(um, [r[r > 0].mean() for r in R])
    np.testing.assert_allclose(inorm, np.sqrt((R ** 2).sum(0)))


def test_pydata_sparse_in_and_out_give_the_same_model():
    df = random_ratings(12, n_users=20, n_items=14, density=0.3)
    R, _, _ = ref.dense(df)
    X = da.from_array(sparse.COO.from_numpy(R), chunks=(7, 5))
    with dask.config.set(scheduler="sync"):
        from_coo = ItemKNN(k=3).fit(X)
        from_frame = ItemKNN(k=3).fit(df)
        np.testing.assert_array_equal(*dask.compute(from_coo.sim_, from_frame.sim_))
        exported = to_pydata_sparse(from_coo.matrix_.by_user).compute()
    assert isinstance(exported, sparse.COO)
    np.testing.assert_array_equal(exported.todense(), R)


def test_array_input_rejects_negative_ratings():
    R = np.array([[1.0, 0.0], [0.0, -2.0]])
    with pytest.raises(DataError, match=r"row 1, column 1"):
        with dask.config.set(scheduler="sync"):
            ItemKNN(k=1).fit(da.from_array(R, chunks=1))


@given(st.lists(st.integers(-2**63, 2**63 - 1), min_size=1, max_size=40, unique=True),
       st.integers(0, 2**20), st.lists(st.integers(-2**63, 2**63 - 1), max_size=40), st.data())
@settings(max_examples=100, deadline=None)
def test_id_codes_by_table_and_by_search_agree(ids, shift, strangers, data):
    # integer ids in a small range are coded by a lookup table, others by a binary
    # search over the sorted vocabulary: both give each id its rank, -1 to the unknown
    from dcf.ids import IdMap

    close = sorted({shift + (i % 500) for i in ids})  # a small range: the table
    for vocab in (close, ids):
        m = IdMap(np.array(vocab, dtype=np.int64))
        rank = {v: r for r, v in enumerate(sorted(set(vocab)))}
        raw = vocab + strangers + data.draw(st.lists(st.sampled_from(vocab), max_size=20))
        assert m.to_codes(np.array(raw, dtype=np.int64)).tolist() == [rank.get(v, -1) for v in raw]
