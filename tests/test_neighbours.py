"""dcf.neighbours called directly: top-k per tile merged per row block, the table and its matrix W."""

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
from dcf.kernels import SimilaritySettings
from dcf.neighbours import NeighbourTable, table_from_blocks, top_k
from dcf.similarity import SimilarityTiles, similarity_tiles


def _chunked(E, size):
    return da.from_array(sp.csr_matrix(E), chunks=(size or E.shape[0], E.shape[1]), asarray=False)


def _tiles_of(S, bounds, token="t"):
    """Hand-made upper-triangle tiles of a dense symmetric ``S``."""
    b = bounds
    tiles = {(x, y): dask.delayed(S[b[x]:b[x + 1], b[y]:b[y + 1]].copy(), pure=True)
             for x in range(len(b) - 1) for y in range(x, len(b) - 1)}
    return SimilarityTiles(tiles, b, token)


def _dense_w(idx, sim, n):
    W = np.zeros((len(idx), n))
    for x in range(len(idx)):
        for j, s in zip(idx[x], sim[x]):
            if j >= 0:
                W[x, j] = s
    return W


def _argsort_topk(S, k):
    """Per row, a dense argsort by similarity descending then id ascending: positive, self excluded."""
    n = len(S)
    idx, sim = np.full((n, k), -1), np.zeros((n, k))
    for x in range(n):
        order = np.lexsort((np.arange(n), -S[x]))
        keep = [j for j in order if j != x and S[x, j] > 0][:k]
        idx[x, :len(keep)], sim[x, :len(keep)] = keep, S[x, keep]
    return idx, sim


pytestmark = pytest.mark.usefixtures("sync")


@pytest.fixture(scope="module")
def items():
    R, _, _ = ref.dense(random_ratings(51, n_users=18, n_items=14, density=0.3))
    return R.T


@pytest.mark.parametrize("k", [1, 3, 20])
@pytest.mark.parametrize("size", [1, 4, None])
@pytest.mark.parametrize("measure", ["cosine", "full-cosine"])
def test_top_k_of_tiles_equals_the_reference(items, measure, size, k):
    st_ = similarity_tiles(_chunked(items, size), SimilaritySettings(measure))
    table = top_k(st_, k)
    assert isinstance(table, NeighbourTable) and table.k == k
    assert table.idx.shape == (14, k) and table.idx.chunks[0] == tuple(np.diff(st_.bounds))
    assert table.W.shape == (14, 14) and table.W.chunks[0] == table.idx.chunks[0]
    idx, sim, W = dask.compute(table.idx, table.sim, table.W)
    exp_idx, exp_sim = ref.topk(ref.similarity(items, measure), k)
    assert idx.dtype == np.int64 and sim.dtype == np.float64
    np.testing.assert_array_equal(idx, exp_idx)
    np.testing.assert_allclose(sim, exp_sim, rtol=1e-12)
    np.testing.assert_array_equal(W.toarray(), _dense_w(idx, sim, 14))


@st.composite
def symmetric_tiles(draw):
    n = draw(st.integers(1, 12))
    A = draw(arrays(np.float64, (n, n), elements=st.sampled_from([-0.5, 0.0, 0.25, 0.5, 0.5, 1.0])))
    S = np.triu(A) + np.triu(A, 1).T  # symmetric, many ties
    np.fill_diagonal(S, 1.0)
    cuts = draw(st.lists(st.integers(1, max(n - 1, 1)), max_size=4))
    bounds = np.array(sorted({0, n} | {c for c in cuts if 0 < c < n}), dtype=np.int64)
    return S, bounds, draw(st.integers(1, 6))


@given(symmetric_tiles())
@settings(max_examples=60, deadline=None)
def test_top_k_lists_equal_a_dense_argsort_with_ties_by_ascending_id(case):
    S, bounds, k = case
    with dask.config.set(scheduler="sync"):
        table = top_k(_tiles_of(S, bounds), k)
        idx, sim, W = dask.compute(table.idx, table.sim, table.W)
    exp_idx, exp_sim = _argsort_topk(S, k)
    np.testing.assert_array_equal(idx, exp_idx)
    np.testing.assert_array_equal(sim, exp_sim)
    np.testing.assert_array_equal(W.toarray(), _dense_w(exp_idx, exp_sim, len(S)))
    assert (idx != np.arange(len(S))[:, None]).all()  # never its own neighbour


def test_k_below_one_is_refused(items):
    with pytest.raises(ValueError, match="k must be at least 1"):
        top_k(similarity_tiles(_chunked(items, 5)), 0)


def test_tile_tasks_are_named_by_graph_and_k(items):
    st_ = similarity_tiles(_chunked(items, 5))
    keys = {k if isinstance(k, str) else k[0] for k in dict(top_k(st_, 2).idx.__dask_graph__())}
    assert {f"neighbour-topk-{st_.token}-2-{a}-{b}" for a in range(3) for b in range(3)} <= keys


@pytest.mark.parametrize("bounds", [[0, 5], [0, 2, 5], [0, 1, 2, 3, 4, 5]])
def test_table_from_blocks_stacks_blocks_and_builds_w(bounds):
    idx = np.array([[2, 4], [0, -1], [0, 3], [2, -1], [-1, -1]])
    sim = np.array([[0.9, 0.1], [0.5, 0.0], [0.9, 0.3], [0.3, 0.0], [0.0, 0.0]])
    bounds = np.array(bounds)
    blocks = list(zip(bounds[:-1], bounds[1:]))
    table = table_from_blocks([dask.delayed(idx[lo:hi]) for lo, hi in blocks],
                              [dask.delayed(sim[lo:hi]) for lo, hi in blocks], bounds, 2, "hand")
    assert table.k == 2 and table.idx.chunks == (tuple(np.diff(bounds)), (2,))
    got_idx, got_sim, W = dask.compute(table.idx, table.sim, table.W)
    np.testing.assert_array_equal(got_idx, idx)
    np.testing.assert_array_equal(got_sim, sim)
    assert sp.issparse(W) and W.nnz == 6
    np.testing.assert_array_equal(W.toarray(), _dense_w(idx, sim, 5))


@pytest.mark.parametrize("size", [3, None])
def test_prefix_equals_the_smaller_top_k_and_cannot_widen(items, size):
    st_ = similarity_tiles(_chunked(items, size))
    table = top_k(st_, 5)
    for k in (1, 3, 5):
        small, direct = table.prefix(k), top_k(st_, k)
        got, want = dask.compute((small.idx, small.sim, small.W), (direct.idx, direct.sim, direct.W))
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_array_equal(got[2].toarray(), want[2].toarray())
        assert small.k == k
    with pytest.raises(ValueError, match="cannot widen a top-5 table to 6"):
        table.prefix(6)


def test_persist_keeps_the_values(items):
    table = top_k(similarity_tiles(_chunked(items, 4)), 3)
    before = dask.compute(table.idx, table.sim)
    assert table.persist() is table
    after = dask.compute(table.idx, table.sim)
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])


def test_top_k_on_a_distributed_cluster(items, dist_client):
    with dask.config.set(scheduler=dist_client):
        table = top_k(similarity_tiles(_chunked(items, 3)), 4).persist()
        idx, sim, W = dask.compute(table.idx, table.sim, table.W)
    exp_idx, exp_sim = ref.topk(ref.similarity(items), 4)
    np.testing.assert_array_equal(idx, exp_idx)
    np.testing.assert_allclose(sim, exp_sim, rtol=1e-12)
    np.testing.assert_array_equal(W.toarray(), _dense_w(exp_idx, sim, 14))
