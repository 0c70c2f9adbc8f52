"""dcf.blocks called directly: arrays of CSR row blocks, stacking, transposing, row sums."""

import dask
import dask.array as da
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import reference as ref
from conftest import random_ratings
from dcf.blocks import concat_rows, concatenate, outputs, row_blocks, row_stats, stack_rows, transpose_blocks


def _bounds(n, cuts):
    """``[0, ..., n]`` from any cut points (kept inside 1..n-1, no repeats)."""
    inner = sorted({int(c) for c in cuts if 0 < int(c) < n})
    return np.array([0] + inner + [n], dtype=np.int64)


def _user_blocks(R, bounds):
    return [dask.delayed(sp.csr_matrix(R[lo:hi]), pure=True) for lo, hi in zip(bounds[:-1], bounds[1:])]


@st.composite
def blocked_matrices(draw, max_rows=11, max_cols=9):
    """A dense ratings matrix (0 = missing) with random row and column bounds."""
    rows = draw(st.integers(1, max_rows))
    cols = draw(st.integers(1, max_cols))
    R = draw(arrays(np.float64, (rows, cols), elements=st.sampled_from([0.0, 0.0, 1.0, 2.5, 4.0, 5.0])))
    ub = _bounds(rows, draw(st.lists(st.integers(1, max_rows), max_size=4)))
    ib = _bounds(cols, draw(st.lists(st.integers(1, max_cols), max_size=4)))
    return R, ub, ib


@pytest.mark.parametrize("cuts", [[], [1, 2, 3, 4, 5, 6], [4, 9], [16]])
def test_concat_rows_is_the_dense_matrix_in_the_given_chunks(cuts):
    R, _, _ = ref.dense(random_ratings(4, n_users=17, n_items=11))
    bounds = _bounds(17, cuts)
    X = concat_rows(_user_blocks(R, bounds), bounds, 11, "test-rows")
    assert X.shape == (17, 11)
    assert X.chunks == (tuple(np.diff(bounds).tolist()), (11,))
    with dask.config.set(scheduler="sync"):
        got = X.compute()
    assert sp.issparse(got)
    np.testing.assert_array_equal(got.toarray(), R)


def test_concat_rows_of_one_block_is_that_block():
    R = np.array([[1.0, 0.0, 3.0], [0.0, 2.0, 0.0]])
    X = concat_rows(_user_blocks(R, [0, 2]), np.array([0, 2]), 3, "test-rows")
    assert X.numblocks == (1, 1)
    with dask.config.set(scheduler="sync"):
        np.testing.assert_array_equal(X.compute().toarray(), R)


def test_concat_rows_names_the_array_after_its_stage_and_blocks():
    R, _, _ = ref.dense(random_ratings(7, n_users=6, n_items=4))
    bounds = np.array([0, 2, 6])
    X = concat_rows(_user_blocks(R, bounds), bounds, 4, "stage-rows")
    assert X.name.startswith("stage-rows-")
    assert concat_rows(_user_blocks(R, bounds), bounds, 4, "stage-rows").name == X.name  # same blocks
    assert concat_rows(_user_blocks(2 * R, bounds), bounds, 4, "stage-rows").name != X.name  # other blocks
    # dense blocks of another dtype (neighbour ids)
    ids = np.arange(12, dtype=np.int64).reshape(6, 2)
    Y = concat_rows([dask.delayed(ids[:2]), dask.delayed(ids[2:])], bounds, 2, "ids", np.int64,
                    np.zeros((0, 0), np.int64))
    assert Y.dtype == np.int64
    with dask.config.set(scheduler="sync"):
        np.testing.assert_array_equal(Y.compute(), ids)
        np.testing.assert_array_equal(Y[3:5].compute(), ids[3:5])


def test_outputs_are_the_results_of_a_call_as_named_tasks():
    call = dask.delayed(divmod, pure=True)(17, 5, dask_key_name="divide-17-5")
    q, r = outputs(call, 2, ("quotient", "remainder"))
    assert q.key.startswith("quotient-") and r.key.startswith("remainder-")
    same = outputs(call, 2, "part")
    assert all(o.key.startswith("part-") for o in same) and same[0].key != same[1].key
    with dask.config.set(scheduler="sync"):
        assert dask.compute(q, r, *same) == (3, 2, 3, 2)


@pytest.mark.parametrize("chunks", [(1, 11), (5, 11), (17, 11)])
def test_row_blocks_gives_each_chunk_back_with_its_bounds(chunks):
    R, _, _ = ref.dense(random_ratings(5, n_users=17, n_items=11))
    X = da.from_array(sp.csr_matrix(R), chunks=chunks, asarray=False)
    blocks, bounds = row_blocks(X)
    expected = np.concatenate([[0], np.cumsum(X.chunks[0])])
    np.testing.assert_array_equal(bounds, expected)
    assert bounds.dtype == np.int64 and len(blocks) == len(bounds) - 1
    with dask.config.set(scheduler="sync"):
        got = dask.compute(*blocks)
    for (lo, hi), b in zip(zip(bounds[:-1], bounds[1:]), got):
        np.testing.assert_array_equal(sp.csr_matrix(b).toarray(), R[lo:hi])
    # and back: the same matrix
    with dask.config.set(scheduler="sync"):
        np.testing.assert_array_equal(concat_rows(blocks, bounds, 11, "again").compute().toarray(), R)


def test_stack_rows_dense_when_every_block_is_else_csr():
    a, b = np.array([[1.0, 0.0]]), np.array([[0.0, 2.0], [3.0, 0.0]])
    dense = stack_rows(a, b)
    assert isinstance(dense, np.ndarray)
    np.testing.assert_array_equal(dense, np.vstack([a, b]))
    mixed = stack_rows(a, sp.csr_matrix(b))
    assert sp.isspmatrix_csr(mixed)
    np.testing.assert_array_equal(mixed.toarray(), np.vstack([a, b]))
    assert sp.isspmatrix_csr(stack_rows(sp.csr_matrix(a), sp.csc_matrix(b)))


def test_concatenate_joins_pieces_in_order():
    got = concatenate(np.array([1.0, 2.0]), np.zeros(0), np.array([3.0]))
    np.testing.assert_array_equal(got, [1.0, 2.0, 3.0])


@given(blocked_matrices())
@settings(max_examples=40, deadline=None)
def test_transpose_blocks_equals_the_dense_transpose(case):
    R, ub, ib = case
    n_users, n_items = R.shape
    with dask.config.set(scheduler="sync"):
        T = transpose_blocks(_user_blocks(R, ub), ub, ib, n_users, "t")
        assert T.shape == (n_items, n_users)
        assert T.chunks == (tuple(np.diff(ib).tolist()), (n_users,))
        parts = dask.compute(*T.to_delayed().ravel().tolist())
    for (lo, hi), p in zip(zip(ib[:-1], ib[1:]), parts):
        assert sp.isspmatrix_csr(p) and p.has_sorted_indices
        np.testing.assert_array_equal(p.toarray(), R.T[lo:hi])


def test_transpose_blocks_names_its_tasks_by_token():
    R, _, _ = ref.dense(random_ratings(6, n_users=7, n_items=5))
    ub, ib = np.array([0, 3, 7]), np.array([0, 2, 5])
    T = transpose_blocks(_user_blocks(R, ub), ub, ib, 7, "tok")
    names = {k[0] if isinstance(k, tuple) else k for k in dict(T.__dask_graph__())}
    assert {"matrix-item-block-tok-0", "matrix-item-block-tok-1"} <= names
    # one task cuts each user block into its item-block pieces (one pass over the block)
    assert {f"matrix-columns-tok-{b}" for b in range(2)} <= names
    assert sum(n.startswith("matrix-slice-") for n in names) == 4


@given(blocked_matrices())
@settings(max_examples=40, deadline=None)
def test_row_stats_equal_dense_sums_and_counts(case):
    R, ub, _ = case
    X = concat_rows(_user_blocks(R, ub), ub, R.shape[1], "test-rows")
    sums, counts = row_stats(X)
    assert sums.chunks == (X.chunks[0],) and counts.chunks == (X.chunks[0],)
    with dask.config.set(scheduler="sync"):
        s, c = dask.compute(sums, counts)
    assert s.dtype == np.float64 and c.dtype == np.int64
    np.testing.assert_allclose(s, R.sum(axis=1), rtol=1e-15)
    np.testing.assert_array_equal(c, (R > 0).sum(axis=1))


def test_row_stats_count_stored_zeros():
    # a stored 0 (a residual of exactly zero) is still a rating: counted, adds nothing
    b = sp.csr_matrix((np.array([0.0, 2.0, 3.0]), np.array([0, 1, 1]), np.array([0, 2, 3])), shape=(2, 2))
    X = concat_rows([dask.delayed(b)], np.array([0, 2]), 2, "test-rows")
    with dask.config.set(scheduler="sync"):
        s, c = dask.compute(*row_stats(X))
    np.testing.assert_array_equal(c, [2, 1])
    np.testing.assert_array_equal(s, [2.0, 3.0])


def test_transpose_and_row_stats_on_a_distributed_cluster(dist_client):
    R, _, _ = ref.dense(random_ratings(9, n_users=19, n_items=13))
    ub, ib = _bounds(19, [5, 6, 14]), _bounds(13, [4, 8])
    T = transpose_blocks(_user_blocks(R, ub), ub, ib, 19, "dist")
    sums, counts = row_stats(T)
    t, s, c = dask.compute(T, sums, counts, scheduler=dist_client)
    np.testing.assert_array_equal(t.toarray(), R.T)
    np.testing.assert_allclose(s, R.sum(axis=0), rtol=1e-15)
    np.testing.assert_array_equal(c, (R > 0).sum(axis=0))
