"""dcf.similarity called directly: tiles, rows, shared matrix, stats and sizing, against dense NumPy."""

import collections
import time

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
from dcf import kernels
from dcf.blocks import row_blocks
from dcf.errors import ConfigError
from dcf.kernels import SimilaritySettings
from dcf.similarity import (PAIR_COST, balanced_cuts, block_limit, check_whole_rows, entity_norms, entity_stats, method,
                            prepare, shared_matrix, shared_parts, similarity_by_rows, similarity_rows, similarity_tiles,
                            whole_rows_bytes)

# (measure, options, reference): the raw-value measures, whose reference takes the ratings as they are
MEASURES = [
    ("cosine", dict(), "similarity"),
    ("cosine", dict(min_support=3, shrinkage=2.0), "similarity"),
    ("full-cosine", dict(), "similarity"),
    ("pearson", dict(min_support=2, significance=4.0), "measure"),
    ("jaccard", dict(shrinkage=1.0, min_similarity=0.2), "measure"),
    ("cooccurrence", dict(min_support=2), "measure"),
    ("lift", dict(significance=3.0), "measure"),
    ("llr", dict(min_support=2), "measure"),
]


def _chunked(E, size):
    """``E`` (dense) as a dask array of CSR chunks of ``size`` rows."""
    return da.from_array(sp.csr_matrix(E), chunks=(size or E.shape[0], E.shape[1]), asarray=False)


def _expected(E, measure, opts, kind):
    if kind == "similarity":
        return ref.similarity(E, measure, opts.get("min_support", 1), opts.get("shrinkage", 0.0))
    return ref.measure(E, measure, opts.get("min_support", 1), opts.get("shrinkage", 0.0),
                       opts.get("significance", 0.0), opts.get("min_similarity", 0.0))


def _assembled(st_):
    """The whole matrix from the upper-triangle tiles (lower ones read as transposes)."""
    n = int(st_.bounds[-1])
    out = np.zeros((n, n))
    tiles = dict(zip(st_.tiles, dask.compute(*st_.tiles.values())))
    b = st_.bounds
    for a in range(st_.n_blocks):
        for c in range(st_.n_blocks):
            _, transposed = st_.tile(a, c)
            t = tiles[(a, c) if a <= c else (c, a)]
            out[b[a]:b[a + 1], b[c]:b[c + 1]] = t.T if transposed else t
    return out


def _dense(block):
    return block.toarray() if sp.issparse(block) else np.asarray(block)


def _compact_dense(C):
    C = kernels.unpacked(C)
    return sp.csr_matrix((C.data.astype(np.float64), C.indices.astype(np.int64), C.indptr), shape=C.shape).toarray()


pytestmark = pytest.mark.usefixtures("sync")


@pytest.fixture(scope="module")
def items():
    """Items x users of a small random frame (every item and user rated at least once)."""
    R, _, _ = ref.dense(random_ratings(41, n_users=16, n_items=13, density=0.35))
    return R.T


@pytest.mark.parametrize("size", [1, 5, None])
@pytest.mark.parametrize("measure,opts,kind", MEASURES)
def test_tiles_assemble_to_the_reference(items, measure, opts, kind, size):
    st_ = similarity_tiles(_chunked(items, size), SimilaritySettings(measure, **opts))
    nb = st_.n_blocks
    assert sorted(st_.tiles) == [(a, b) for a in range(nb) for b in range(a, nb)]  # upper triangle only
    np.testing.assert_allclose(_assembled(st_), _expected(items, measure, opts, kind), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("size", [2, 6])
def test_similarity_rows_of_tiles_are_whole_rows_dense_or_csr(items, size):
    st_ = similarity_tiles(_chunked(items, size))
    expected = ref.similarity(items)
    for fraction, kind in [(0.0, np.ndarray), (2.0, sp.csr_matrix)]:
        S = similarity_rows(st_, dense_fraction=fraction)
        assert S.shape == (13, 13) and S.chunks[0] == tuple(np.diff(st_.bounds))
        blocks, _ = row_blocks(S)
        got = dask.compute(*blocks)
        assert all(isinstance(b, kind) for b in got)
        np.testing.assert_allclose(np.vstack([_dense(b) for b in got]), expected, rtol=1e-12, atol=1e-12)


def test_unknown_measure_is_refused(items):
    with pytest.raises(ValueError, match="unknown similarity 'dice'"):
        similarity_tiles(_chunked(items, 4), SimilaritySettings("dice"))
    with pytest.raises(ValueError, match="unknown similarity 'dice'"):
        similarity_by_rows(_chunked(items, 4), _chunked(items.T, 4), 3, SimilaritySettings("dice"))


@pytest.mark.parametrize("grouped", [False, True])
@pytest.mark.parametrize("size", [1, 4, None])
@pytest.mark.parametrize("measure,opts,kind", MEASURES)
def test_by_rows_top_k_and_whole_rows_equal_the_reference_and_the_tiles(items, measure, opts, kind, size,
                                                                        grouped):
    k = 4
    P, Q = _chunked(items, size), _chunked(items.T, 5)
    expected = _expected(items, measure, opts, kind)
    extra = {}
    if grouped:
        extra = dict(work=dask.compute(entity_stats(Q))[0][1], groups=3)
    # top-k lists only (grouped ranges of equal cost where asked; the fast path for full-cosine)
    bounds, token, blocks = similarity_by_rows(P, Q, k, SimilaritySettings(measure, **opts), **extra)
    assert bounds[0] == 0 and bounds[-1] == 13 and token.endswith(f"-{k}")
    if grouped:
        assert len(bounds) - 1 <= 3
    else:
        np.testing.assert_array_equal(bounds, np.concatenate([[0], np.cumsum(P.chunks[0])]))
    got = dask.compute(blocks)[0]
    assert all(rows is None for _, _, rows in got)
    idx, sim = np.vstack([b[0] for b in got]), np.vstack([b[1] for b in got])
    exp_idx, exp_sim = ref.topk(expected, k)
    np.testing.assert_array_equal(idx, exp_idx)
    np.testing.assert_allclose(sim, exp_sim, rtol=1e-9, atol=1e-12)
    # whole rows (one task per chunk): the tiles' values, bit for bit
    _, _, blocks = similarity_by_rows(P, Q, k, SimilaritySettings(measure, **opts), whole_rows=True, dense_fraction=0.0,
                                      **extra)
    rows = np.vstack([_dense(b[2]) for b in dask.compute(blocks)[0]])
    np.testing.assert_allclose(rows, expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(rows, _assembled(similarity_tiles(P, SimilaritySettings(measure, **opts))))


@given(arrays(np.float64, st.tuples(st.integers(2, 10), st.integers(1, 8)),
              elements=st.sampled_from([0.0, 0.0, 1.0, 2.0, 3.5, 5.0])), st.integers(1, 10), st.integers(1, 10))
@settings(max_examples=30, deadline=None)
def test_cosine_rows_are_symmetric_bounded_with_unit_diagonal(E, size, q_size):
    with dask.config.set(scheduler="sync"):
        _, _, blocks = similarity_by_rows(_chunked(E, size), _chunked(E.T, q_size), 2, SimilaritySettings("cosine"),
                                          whole_rows=True, dense_fraction=0.0)
        S = np.vstack([b[2] for b in dask.compute(blocks)[0]])
    np.testing.assert_array_equal(S, S.T)
    assert (S >= 0).all() and (S <= 1 + 1e-12).all()
    np.testing.assert_array_equal(np.diag(S), np.ones(len(E)))
    np.testing.assert_allclose(S, ref.similarity(E), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("size", [1, 5, None])
def test_entity_norms_are_row_norms_or_counts(items, size):
    P = _chunked(items, size)
    norms, counts = dask.compute(entity_norms(P, "full-cosine"), entity_norms(P, "jaccard"))
    np.testing.assert_allclose(norms, np.sqrt((items ** 2).sum(axis=1)), rtol=1e-15)
    np.testing.assert_array_equal(counts, (items > 0).sum(axis=1))


def test_entity_norms_of_two_matrices_computed_together_are_their_own(items):
    a, b = dask.compute(entity_norms(_chunked(items, 4)), entity_norms(_chunked(2 * items, 4)))
    np.testing.assert_allclose(a, np.sqrt((items ** 2).sum(axis=1)), rtol=1e-15)
    np.testing.assert_allclose(b, 2 * np.sqrt((items ** 2).sum(axis=1)), rtol=1e-15)


@pytest.mark.parametrize("size", [1, 4, 16])
def test_entity_stats_are_the_ratings_summary_and_each_entity_s_cost(items, size):
    Q = _chunked(items.T, size)  # users x items
    (low, high, total, count), work = dask.compute(entity_stats(Q))[0]
    rated = items.T > 0
    assert (low, high) == (items[items > 0].min(), items[items > 0].max())
    assert total == pytest.approx(items.sum(), rel=1e-15) and count == rated.sum()
    # per item: over its raters, each rater's number of ratings plus PAIR_COST
    expected = rated.T.astype(float) @ (rated.sum(axis=1) + PAIR_COST)
    np.testing.assert_array_equal(work, expected)


@pytest.mark.parametrize("pack", [False, True])
@pytest.mark.parametrize("size", [1, 5, None])
def test_shared_matrix_is_the_whole_matrix(items, size, pack):
    Q = _chunked(items.T, size)
    C = shared_matrix(Q, pack).compute()
    assert isinstance(C, kernels.CompactCSR) and C.shape == items.T.shape
    assert (C.packed is not None) == pack  # a 1-5 scale packs
    np.testing.assert_array_equal(_compact_dense(C), items.T)
    assert len(shared_parts(Q, pack)) == Q.numblocks[0]


@pytest.mark.parametrize("where", [None, [("a", 2), ("b", 1), ("a", 2), ("a", 2)]])
def test_prepare_gives_entity_stats_and_the_parts_of_the_values(items, where):
    raw = _chunked(items.T, 4)  # 4 blocks of users
    centred = raw.map_blocks(lambda b: b.multiply(0.5).tocsr() if b.nnz else b, dtype=np.float64,
                             meta=sp.csr_matrix((0, 0)))
    stats, runs = prepare(raw, centred, pack=False, where=where)
    assert len(runs) == (4 if where is None else 3)  # one per block, or per worker thread (a: 2, b: 1)
    (summary, work), joined = dask.compute(stats, shared_matrix(centred, parts=runs))
    exp_summary, exp_work = dask.compute(entity_stats(raw))[0]
    assert summary == exp_summary  # the same bits, summed in block order
    np.testing.assert_array_equal(work, exp_work)
    np.testing.assert_array_equal(_compact_dense(joined), 0.5 * items.T)


@given(st.lists(st.integers(0, 50), min_size=1, max_size=40), st.integers(1, 12))
@settings(max_examples=100, deadline=None)
def test_balanced_cuts_partition_0_to_n_in_even_ranges(work, groups):
    cuts = balanced_cuts(np.array(work, float), groups)
    n = len(work)
    assert cuts.dtype == np.int64 and cuts[0] == 0 and cuts[-1] == n
    assert (np.diff(cuts) > 0).all()  # non-empty, non-decreasing ranges covering 0..n
    assert len(cuts) - 1 <= groups
    cost = np.array(work, float) + 1.0
    sums = np.add.reduceat(cost, cuts[:-1])
    assert sums.max() <= cost.sum() / groups + cost.max() + 1e-9


def test_balanced_cuts_of_equal_work_are_equal_ranges():
    np.testing.assert_array_equal(balanced_cuts(np.zeros(12), 4), [0, 3, 6, 9, 12])
    np.testing.assert_array_equal(balanced_cuts(np.zeros(5), 1), [0, 5])
    np.testing.assert_array_equal(balanced_cuts(np.zeros(3), 10), [0, 1, 2, 3])
    # one heavy entity gets a range of its own
    np.testing.assert_array_equal(balanced_cuts(np.array([0, 0, 97.0, 0, 0]), 2), [0, 3, 5])


def test_method_rows_while_the_shared_matrix_fits_a_quarter_of_the_room():
    assert method(None, 10**6, 10**9) == "rows"
    budget = (4e9, 2, 8e9, 0.0)  # room: 0.8 * 4 GB - 300 MB = 2.9 GB, a quarter 725 MB
    assert method(budget, 1000, 60_000_000) == "rows"  # 720 MB
    assert method(budget, 1000, 61_000_000) == "tiles"  # 732 MB
    # a worker already using 1 GB leaves less room
    assert method((4e9, 2, 8e9, 1e9), 1000, 50_000_000) == "tiles"


def test_block_limit_sizes_blocks_from_the_memory_budget():
    assert block_limit(None, whole_rows=True) is None
    budget = (4e9, 2, 8e9, 0.0)
    per_task = (0.8 * 4e9 - 300e6) / 2 / 2
    assert block_limit(budget, False)(5000, 100, 1000) == 5000  # rows: no cap, whole rows or not
    assert block_limit(budget, True)(5000, 100, 1000) == 5000  # (its tasks: whole_row_cuts)
    assert block_limit(budget, False, forced="tiles")(5000) == int(np.sqrt(per_task / 80))
    assert block_limit(budget, True, forced="tiles")(5000) == min(int(np.sqrt(per_task / 80)),
                                                                  int(per_task / (32 * 5000)))
    assert block_limit(budget, False)(0) == 1


def test_block_limit_refuses_budgets_that_cannot_work():
    with pytest.raises(ConfigError, match="before any work"):
        block_limit((1e9, 2, 2e9, 7e8), False)
    # the tiles method assembles dense n x n rows; the rows method keeps the non-zero
    # similarities only (check_whole_rows, once their number is known)
    with pytest.raises(ConfigError, match="rated neighbourhood keeps all 40,000 x 40,000"):
        block_limit((4e9, 2, 8e9, 0.0), True, forced="tiles")(40_000)
    per_task = (0.8 * 4e9 - 300e6) / 2 / 2
    assert block_limit((4e9, 2, 8e9, 0.0), True)(40_000, 100, 1000) == 40_000
    assert block_limit((4e9, 2, 8e9, 0.0), True, forced="tiles")(20_000) == int(per_task / (32 * 20_000))
    with pytest.raises(ConfigError, match="too little for similarity blocks of 16 whole rows"):
        block_limit((0.6e9, 8, 1e12, 0.0), True)(50_000)


def test_by_rows_on_a_distributed_cluster_equals_sync(items, dist_client):
    P, Q = _chunked(items, 3), _chunked(items.T, 4)
    work = dask.compute(entity_stats(Q))[0][1]
    for measure in ["cosine", "full-cosine"]:
        args = (P, Q, 3, SimilaritySettings(measure))
        _, _, local = similarity_by_rows(*args, work=work, groups=4)
        local = dask.compute(local)[0]
        with dask.config.set(scheduler=dist_client):
            _, _, remote = similarity_by_rows(*args, work=work, groups=4)
            remote = dask.compute(remote)[0]
        for (li, ls, _), (ri, rs, _) in zip(local, remote):
            np.testing.assert_array_equal(li, ri)
            np.testing.assert_array_equal(ls, rs)
        exp_idx, exp_sim = ref.topk(ref.similarity(items, measure), 3)
        np.testing.assert_array_equal(np.vstack([r[0] for r in remote]), exp_idx)
        np.testing.assert_allclose(np.vstack([r[1] for r in remote]), exp_sim, rtol=1e-12)


def test_by_rows_gives_every_worker_its_share_of_the_tasks(items, dist_client):
    # four tasks on two threads are not "root-ish" to Dask, which would place them all
    # on the worker holding their shared matrix (the other idle until work stealing)
    from distributed import get_task_stream

    P, Q = _chunked(items, 3), _chunked(items.T, 4)
    work = dask.compute(entity_stats(Q))[0][1]
    for measure in ["full-cosine", "llr"]:
        with dask.config.set(scheduler=dist_client), get_task_stream(dist_client) as stream:
            _, _, blocks = similarity_by_rows(P, Q, 3, SimilaritySettings(measure), work=work, groups=4)
            dask.compute(blocks)
        ran = collections.Counter(t["worker"] for t in stream.data if str(t["key"]).startswith("similarity-block"))
        assert sorted(ran.values()) == [2, 2] and set(ran) == set(dist_client.scheduler_info()["workers"])


def test_by_rows_builds_a_graph_and_starts_nothing(items, dist_client):
    # the pins are annotations: building the graph under a client runs no task, and the
    # graph still computes anywhere (here on the local scheduler)
    from distributed import get_task_stream

    P, Q = _chunked(items, 3), _chunked(items.T, 4)
    work = dask.compute(entity_stats(Q))[0][1]
    with dask.config.set(scheduler=dist_client), get_task_stream(dist_client) as stream:
        _, _, blocks = similarity_by_rows(P, Q, 3, SimilaritySettings("full-cosine"), work=work, groups=4)
        time.sleep(0.3)
    assert not [t for t in stream.data if str(t["key"]).startswith("similarity")]
    got = dask.compute(blocks, scheduler="sync")[0]
    exp_idx, _ = ref.topk(ref.similarity(items, "full-cosine"), 3)
    np.testing.assert_array_equal(np.vstack([b[0] for b in got]), exp_idx)


def test_a_fit_gives_every_worker_its_share_of_the_similarity_tasks():
    # a shared matrix that looks costly to move (a slow network, as the e-commerce shape's
    # 50 MB matrix is to Dask's cost model) and no work stealing: unpinned, Dask sends every
    # similarity task to the worker holding the matrix
    from distributed import Client, LocalCluster, get_task_stream

    from dcf import ItemKNN

    frame = random_ratings(5, n_users=60, n_items=40, density=0.4)
    with dask.config.set({"distributed.scheduler.bandwidth": 1, "distributed.scheduler.work-stealing": False}), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client, get_task_stream(client) as stream:
        model = ItemKNN(k=5, similarity="full-cosine", neighbourhood="global").fit(frame)
        got = model.neighbours_.idx.compute()  # the fit persisted its lists: they are done once here
        workers = set(client.scheduler_info()["workers"])
    ran = collections.Counter(t["worker"] for t in stream.data if str(t["key"]).startswith("similarity-block"))
    assert sorted(ran.values()) == [2, 2] and set(ran) == workers, ran
    with dask.config.set(scheduler="sync"):
        local = ItemKNN(k=5, similarity="full-cosine", neighbourhood="global").fit(frame)
    np.testing.assert_array_equal(got, local.neighbours_.idx.compute())


@given(st.integers(0, 2**32 - 1), st.integers(1, 40), st.integers(1, 30), st.floats(0.02, 0.6))
@settings(max_examples=40, deadline=None)
def test_whole_rows_bytes_bounds_the_similarities_the_rows_keep(seed, n_users, n_items, density):
    rng = np.random.default_rng(seed)
    R = np.where(rng.random((n_users, n_items)) < density, rng.integers(1, 6, (n_users, n_items)), 0).astype(float)
    Q = sp.csr_matrix(R)  # others x entities
    _, work = entity_stats(da.from_array(Q, chunks=(max(n_users // 2, 1), n_items))).compute(scheduler="sync")
    counts = (R > 0).sum(axis=0)
    kept, need = whole_rows_bytes(work, counts)
    rows = kernels.similarity_rows(sp.csr_matrix(R.T), Q, 0, SimilaritySettings("cosine"), dense=True, csr=True)[0]
    # each entity's row: at most its co-rated entities (products) and itself, at most n
    co_rated = ((R.T > 0).astype(int) @ (R > 0).astype(int) > 0).sum(axis=1)
    want = np.minimum(np.maximum(co_rated, 1), n_items)
    assert rows.nnz <= kept <= n_items * n_items and kept >= want.sum()
    assert need <= 8.0 * n_items * n_items and need <= 12 * kept


@given(st.integers(0, 2**32 - 1), st.integers(1, 300), st.integers(1, 8), st.floats(0.5, 3.0), st.booleans(),
       st.booleans())
@settings(max_examples=80, deadline=None)
def test_whole_row_cuts_hold_each_tasks_rows_in_its_memory(seed, n, groups, scale, with_counts, dense):
    # the rated neighbourhood's tasks: even work, then cut again wherever a range's rows
    # (at most one similarity a product, and at most n; a refresh's dense rows: n each)
    # would pass a task's bytes
    from dcf.similarity import task_bytes, whole_row_cuts
    from dcf.similarity.plan import ROW_BYTES_PER_ENTRY, ROW_PEAK_BYTES, WORKER_BASELINE_BYTES

    rng = np.random.default_rng(seed)
    work = rng.pareto(1.0, n) * rng.choice([10.0, 1e3, 1e5])
    counts = rng.integers(0, 5, n) if with_counts else None
    paid = 0.0 if counts is None else PAIR_COST * counts
    kept = np.minimum(np.maximum(work - paid, 0.0), n - 1) + 1.0
    each = np.full(n, ROW_BYTES_PER_ENTRY * n) if dense else ROW_PEAK_BYTES * kept
    room = scale * each.sum() / groups  # about one even range's rows, more or less
    budget = ((4 * room + WORKER_BASELINE_BYTES) / 0.8, 2, 8e9, 0.0)  # a task holds `room` bytes
    assert task_bytes(budget) == pytest.approx(room)
    cuts = whole_row_cuts(work, counts, groups, budget, dense=dense)
    even = balanced_cuts(work, groups)
    assert cuts[0] == 0 and cuts[-1] == n and (np.diff(cuts) > 0).all()
    assert set(even) <= set(cuts)  # the even cuts, each maybe cut again
    for lo, hi in zip(cuts[:-1], cuts[1:]):  # within the room, or a single row
        assert hi - lo == 1 or each[lo:hi].sum() <= room * (1 + 1e-9)
        if hi < n and hi not in set(even):  # and no more cuts than needed: one more row would not fit
            assert each[lo:hi + 1].sum() > room * (1 - 1e-9)
    np.testing.assert_array_equal(whole_row_cuts(work, counts, groups, None), even)


def test_check_whole_rows_refuses_rows_the_workers_cannot_hold():
    n = 1000
    work = np.full(n, 5000.0 + PAIR_COST)  # 5,000 products and one rating each: full rows of 1,000
    counts = np.ones(n)
    assert whole_rows_bytes(work, counts) == (n * n, 8.0 * n * n)
    check_whole_rows(None, work, counts)
    check_whole_rows((1e9, 2, 2e9, 0.0), work, counts)  # 8 MB of 1.4 GB
    with pytest.raises(ConfigError, match=r"keeps up to 1,000,000 similarities of 1,000 entities \(0.01 GB\)"):
        check_whole_rows((5e6, 2, 1e7, 0.0), work, counts)
    sparse = np.full(n, 3.0 + PAIR_COST)  # 3 products: 3 similarities and the diagonal, 48 bytes a row
    assert whole_rows_bytes(sparse, counts) == (4 * n, 48.0 * n)
