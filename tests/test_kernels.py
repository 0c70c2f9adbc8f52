"""Kernels against the dense reference, and their properties."""

from unittest import mock

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import reference as ref
from dcf import kernels
from dcf.kernels import direct
from dcf.kernels import rows as kernel_rows
from dcf.kernels import select
from dcf.kernels.codec import few_values


def sparse_ratings(draw, max_rows=12, max_cols=10):
    rows = draw(st.integers(1, max_rows))
    cols = draw(st.integers(1, max_cols))
    vals = draw(arrays(np.float64, (rows, cols), elements=st.sampled_from([0.0, 0.0, 1.0, 2.0, 3.5, 5.0])))
    return vals


@st.composite
def rating_matrices(draw):
    return sparse_ratings(draw)


@given(rating_matrices(), st.sampled_from(["cosine", "full-cosine"]), st.integers(0, 3),
       st.sampled_from([0.0, 2.5]))
@settings(max_examples=60, deadline=None)
def test_similarity_tile_matches_reference(P, measure, min_support, shrinkage):
    expected = ref.similarity(P, measure, min_support, shrinkage)
    got = kernels.similarity_tile(sp.csr_matrix(P), sp.csr_matrix(P), measure, min_support,
                                  shrinkage, diagonal=True)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@given(rating_matrices(), st.integers(1, 11))
@settings(max_examples=60, deadline=None)
def test_similarity_is_symmetric_bounded_and_tiles_agree(P, cut):
    S = kernels.similarity_tile(sp.csr_matrix(P), sp.csr_matrix(P), diagonal=True)
    assert np.allclose(S, S.T)
    assert (S >= 0).all() and (S <= 1 + 1e-12).all()
    cut = min(cut, P.shape[0])
    A, B = sp.csr_matrix(P[:cut]), sp.csr_matrix(P[cut:])
    if B.shape[0]:
        np.testing.assert_array_equal(kernels.similarity_tile(A, B), S[:cut, cut:])


def test_single_co_rater_gives_similarity_one():
    # the paper's formula 1 over the co-rated set: one common user -> exactly 1.0
    P = sp.csr_matrix(np.array([[5.0, 0, 3.0], [2.0, 4.0, 0]]))
    S = kernels.similarity_tile(P, P, "cosine", diagonal=True)
    assert S[0, 1] == 1.0
    full = kernels.similarity_tile(P, P, "full-cosine", diagonal=True)
    assert full[0, 1] == pytest.approx(10 / np.sqrt(34 * 20))


@given(arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 15)),
              elements=st.sampled_from([-1.0, 0.0, 0.25, 0.5, 1.0])), st.integers(1, 8))
@settings(max_examples=80, deadline=None)
def test_topk_rows_equals_reference_and_merge_equals_global(S, k):
    n = S.shape[1]
    S = S[:n]  # rows are the first entities of a square similarity matrix
    rows = S.shape[0]
    full = np.zeros((n, n))
    full[:rows] = S
    exp_idx, exp_sim = ref.topk(full, k)
    idx, sim = kernels.topk_rows(S, k, 0, 0)
    np.testing.assert_array_equal(idx, exp_idx[:rows])
    np.testing.assert_array_equal(sim, exp_sim[:rows])
    # split the columns into tiles, top-k per tile, merge: same answer
    cuts = sorted({0, n // 3, (2 * n) // 3, n})
    parts = [kernels.topk_rows(S[:, a:b], k, a, 0) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]
    m_idx, m_sim = kernels.merge_topk(parts, k)
    np.testing.assert_array_equal(m_idx, idx)
    np.testing.assert_array_equal(m_sim, sim)


def test_top_columns_breaks_ties_by_lower_column():
    v = np.array([[1.0, 3.0, 3.0, 2.0, 3.0]])
    cols, vals = kernels.top_columns(v, 2)
    assert cols.tolist() == [[1, 2]] and vals.tolist() == [[3.0, 3.0]]


def test_csr_from_triplets_drops_exact_duplicates_and_reports_conflicts():
    rows = [0, 0, 1, 1, 0]
    cols = [2, 2, 0, 0, 1]
    vals = [4.0, 4.0, 3.0, 5.0, 1.0]
    lines = [10, 11, 12, 13, 14]
    m, dups, conflicts = kernels.csr_from_triplets(rows, cols, vals, (2, 3), lines)
    assert m.toarray().tolist() == [[0, 1, 4], [3, 0, 0]]
    assert dups == 1
    assert conflicts.tolist() == [[1, 0, 12, 13, 5.0]]


@given(st.integers(0, 2**32 - 1), st.integers(0, 300), st.integers(1, 9), st.integers(1, 9), st.booleans())
@settings(max_examples=80, deadline=None)
def test_csr_from_triplets_equals_the_plain_pass_over_sorted_ratings(seed, n, n_rows, n_cols, few_lines):
    rng = np.random.default_rng(seed)
    rows, cols = rng.integers(0, n_rows, n), rng.integers(0, n_cols, n)
    vals = rng.choice([1.0, 2.0, 3.5], n)
    lines = rng.integers(0, 5 if few_lines else 10**9, n)  # repeated lines: ties keep the given order
    m, dups, conflicts = kernels.csr_from_triplets(rows, cols, vals, (n_rows, n_cols), lines)
    dense, ref_dups, ref_conflicts = ref.triplets(rows, cols, vals, n_rows, n_cols, lines)
    assert m.has_sorted_indices and m.indices.dtype == np.int32 and m.indptr.dtype == np.int32
    assert np.all(np.diff(m.indices)[np.diff(np.repeat(np.arange(n_rows), np.diff(m.indptr))) == 0] > 0)
    assert np.array_equal(m.toarray(), dense) and m.nnz == np.count_nonzero(dense)
    assert dups == ref_dups and conflicts.tolist() == [list(map(float, t)) for t in ref_conflicts]


def test_csr_from_triplets_refuses_an_index_outside_the_block():
    with pytest.raises(ValueError, match="outside the block"):
        kernels.csr_from_triplets([0, 2], [0, 0], [1.0, 1.0], (2, 2))


@given(st.integers(0, 2**32 - 1), st.floats(0.001, 1.0), st.floats(0.001, 0.3), st.integers(1, 40))
@settings(max_examples=60, deadline=None)
def test_score_pairs_reads_long_sparse_rows_as_the_dense_ones(seed, s_density, r_density, k):
    # a whole similarity row (the rated neighbourhood) is long, a user's ratings few: the
    # sparse path skips through the row to each rating; it must find what the dense one reads
    rng = np.random.default_rng(seed)
    n, users = 700, 12
    S = np.where(rng.random((30, n)) < s_density, rng.random((30, n)), 0.0)
    R = np.where(rng.random((users, n)) < r_density, rng.integers(1, 6, (users, n)), 0).astype(float)
    x, y = rng.integers(0, 30, 200), rng.integers(0, users, 200)
    dense = kernels.score_pairs(S, x, y, sp.csr_matrix(R), k)
    sparse = kernels.score_pairs(sp.csr_matrix(S), x, y, sp.csr_matrix(R), k)
    for a, b in zip(dense, sparse):
        np.testing.assert_array_equal(a, b)


@given(st.integers(0, 10_000), st.integers(1, 6), st.booleans(),
       st.sampled_from([1.0, 0.5, 2.0]) | st.floats(0.1, 4.0))
@settings(max_examples=60, deadline=None)
def test_score_pairs_matches_surprise_loop(seed, k, centred, rho):
    rng = np.random.default_rng(seed)
    R = rng.choice([0, 0, 1, 2, 3, 4, 5], size=(9, 7)).astype(float)  # users x items
    R[R.sum(1) == 0, 0] = 3.0
    P = R.T  # item-based entities = items
    S = ref.similarity(P)
    means = np.array([row[row > 0].mean() if (row > 0).any() else 0 for row in P])
    pairs = [(u, i) for u in range(9) for i in range(7)]
    x = np.array([i for _, i in pairs])
    y = np.array([u for u, _ in pairs])
    s, v, n = kernels.score_pairs(S, x, y, sp.csr_matrix(R), k, means if centred else None, amplification=rho)
    # the same sums from the similarities as a sparse table (every positive one listed)
    sparse = kernels.score_pairs(sp.csr_matrix(np.where(S > 0, S, 0.0)), x, y, sp.csr_matrix(R), k,
                                 means if centred else None, amplification=rho)
    assert all(np.array_equal(a, b) for a, b in zip((s, v, n), sparse))
    for p, (u, i) in enumerate(pairs):
        cands = sorted((-S[i, j], j) for j in range(7) if R[u, j] > 0)[:k]
        # the neighbours are chosen by s; with case amplification each weighs s ** rho
        used = [((-a) ** rho, j) for a, j in cands if -a > 0]
        assert n[p] == len(used)
        assert s[p] == pytest.approx(sum(a for a, _ in used), rel=1e-12, abs=1e-300)
        c = (lambda j: means[j]) if centred else (lambda j: 0.0)
        assert v[p] == pytest.approx(sum(a * (R[u, j] - c(j)) for a, j in used), rel=1e-12, abs=1e-12)


@given(st.integers(0, 10_000), st.integers(1, 8), st.booleans(), st.booleans())
@settings(max_examples=60, deadline=None)
def test_score_pairs_adds_in_surprises_order_to_the_bit(seed, k, sparse, baseline):
    # a vectorised NumPy formulation of the same rule (sort by similarity, then by
    # neighbour; add in that order): the compiled loops give the same bits
    rng = np.random.default_rng(seed)
    R = rng.choice([0, 0, 0, 1, 2, 3, 4, 5], size=(12, 9)).astype(float)
    S = np.round(rng.uniform(-0.5, 1, (9, 9)), 1)  # ties and non-positive similarities
    if sparse:
        S[rng.random(S.shape) < 0.4] = 0.0
    x, y = rng.integers(0, 9, 40), rng.integers(0, 12, 40)
    centre = rng.uniform(1, 5, 9) if baseline else None
    offset = rng.normal(0, 1, 40) if baseline else None
    Q = sp.csr_matrix(R)
    got = kernels.score_pairs(sp.csr_matrix(S) if sparse else S, x, y, Q, k, centre, offset)
    counts = np.diff(Q.indptr)[y]
    rep = np.repeat(np.arange(40), counts)
    nb = np.concatenate([Q.indices[Q.indptr[v]:Q.indptr[v + 1]] for v in y]).astype(np.int64)
    r = np.concatenate([Q.data[Q.indptr[v]:Q.indptr[v + 1]] for v in y])
    s = S[x[rep], nb]
    live = s > 0
    rep, nb, r, s = rep[live], nb[live], r[live], s[live]
    order = np.lexsort((nb, -s, rep))
    rep, nb, r, s = rep[order], nb[order], r[order], s[order]
    use = (np.arange(len(rep)) - np.searchsorted(rep, rep, side="left")) < k
    rep, nb, r, s = rep[use], nb[use], r[use], s[use]
    val = r if centre is None else r - (centre[nb] + offset[rep])
    want = (np.bincount(rep, weights=s, minlength=40), np.bincount(rep, weights=s * val, minlength=40),
            np.bincount(rep, minlength=40))
    for a, b in zip(got, want):
        assert np.array_equal(a, b)


def _csr_entries(scores, has):
    m = sp.csr_matrix(np.where(has, scores, 0.0))
    return m.indptr, m.indices, m.data, np.ones(m.nnz, bool)


def test_top_n_excludes_rated_fills_by_popularity_and_pads():
    scores = np.array([[4.0, 5.0, 4.0, 1.0], [2.0, 2.0, 2.0, 2.0]])
    has = np.array([[True, True, True, False], [False, False, False, False]])
    rated = sp.csr_matrix(np.array([[0, 1, 0, 0], [1, 1, 1, 0]], float))
    order = np.array([3, 2, 1, 0])  # item 3 most popular
    cols, vals, filled = kernels.top_n(*_csr_entries(scores, has), rated, 3, order)
    # row 0: item 1 rated; 0 and 2 tie at 4.0 -> more popular (2) first; then 3 filled in
    assert cols[0].tolist() == [2, 0, 3] and filled[0].tolist() == [False, False, True]
    assert vals[0].tolist() == [4.0, 4.0, 0.0]
    # row 1: only item 3 unrated -> filled, then padding
    assert cols[1].tolist() == [3, -1, -1] and filled[1].tolist() == [True, False, False]


@given(st.integers(0, 100_000), st.integers(1, 9))
@settings(max_examples=60, deadline=None)
def test_top_n_equals_a_full_sort(seed, n):
    rng = np.random.default_rng(seed)
    r, m = 5, 12
    scores = rng.choice([1.0, 2.5, 3.0, 4.0, 5.0], size=(r, m))
    has = rng.random((r, m)) < 0.6
    rated = sp.csr_matrix((rng.random((r, m)) < 0.3).astype(float))
    order = rng.permutation(m)
    rank = np.argsort(order)
    cols, vals, filled = kernels.top_n(*_csr_entries(scores, has), rated, n, order)
    dense_rated = rated.toarray() > 0
    for i in range(r):
        scored = sorted((-scores[i, j], rank[j], j) for j in range(m) if has[i, j] and not dense_rated[i, j])
        rest = sorted((rank[j], j) for j in range(m) if not has[i, j] and not dense_rated[i, j])
        want = [j for *_, j in scored] + [j for _, j in rest]
        want = (want + [-1] * n)[:n]
        assert cols[i].tolist() == want
        assert filled[i].tolist() == [k >= len(scored) and w >= 0 for k, w in enumerate(want)]


def assert_same_rows_as_csr(rows_csr, dense):
    """``rows_csr`` holds exactly ``dense``'s non-zero doubles, sorted, without zeros."""
    assert sp.isspmatrix_csr(rows_csr) and rows_csr.shape == dense.shape
    assert rows_csr.has_sorted_indices and (np.diff(rows_csr.indices) > 0)[np.diff(
        np.repeat(np.arange(dense.shape[0]), np.diff(rows_csr.indptr))) == 0].all()
    assert (rows_csr.data != 0).all() and rows_csr.nnz == np.count_nonzero(dense)
    np.testing.assert_array_equal(rows_csr.toarray(), dense)


@given(rating_matrices(), st.sampled_from(["cosine", "full-cosine"]), st.integers(0, 3),
       st.sampled_from([0.0, 2.5]), st.integers(0, 12), st.integers(1, 6))
@settings(max_examples=80, deadline=None)
def test_similarity_rows_equal_the_tiles_bit_for_bit(P, measure, min_support, shrinkage, cut, k):
    # the rows method (sparse accumulator over the whole matrix) and the tile method give
    # the same doubles: same products, summed in the same (ascending) order
    full = kernels.similarity_tile(sp.csr_matrix(P), sp.csr_matrix(P), measure, min_support,
                                   shrinkage, diagonal=True)
    np.testing.assert_allclose(full, ref.similarity(P, measure, min_support, shrinkage),
                               rtol=1e-12, atol=1e-12)
    cut = min(cut, P.shape[0])
    Q = sp.csr_matrix(P.T)
    norms = kernels.row_norms(sp.csr_matrix(P))
    for lo, hi in ((0, cut), (cut, P.shape[0])):
        rows, idx, sim = kernels.similarity_rows(sp.csr_matrix(P[lo:hi]), Q, lo,
                                                 kernels.SimilaritySettings(measure, min_support, shrinkage),
                                                 k, norms[lo:hi], norms, dense=True)
        np.testing.assert_array_equal(rows, full[lo:hi])
        rows_csr = kernels.similarity_rows(sp.csr_matrix(P[lo:hi]), Q, lo,
                                           kernels.SimilaritySettings(measure, min_support, shrinkage),
                                           None, norms[lo:hi], norms, dense=True, csr=True)[0]
        assert_same_rows_as_csr(rows_csr, rows)
        want_idx, want_sim = kernels.topk_rows(full[lo:hi], k, 0, lo)
        np.testing.assert_array_equal(idx, want_idx)
        np.testing.assert_array_equal(sim, want_sim)


def test_similarity_rows_needs_norms_for_full_cosine():
    P = sp.csr_matrix(np.array([[1.0, 2.0], [0.0, 3.0]]))
    with pytest.raises(ValueError, match="norms"):
        kernels.similarity_rows(P, P.T.tocsr(), 0, kernels.SimilaritySettings("full-cosine"), k=1)


@given(st.integers(0, 100_000), st.integers(1, 8), st.sampled_from(["item", "user"]),
       st.booleans(), st.integers(1, 3), st.booleans(), st.booleans(), st.sampled_from([None, 1, 2, 4]))
@settings(max_examples=100, deadline=None)
def test_recommend_rows_equals_a_dense_loop(seed, n, based, centred, min_k, divide, signed, tile):
    # signed: some similarities negative (the models' lists keep positive ones only, but
    # the kernel takes any stored entry): a column needs a positive sum of them; tile: the
    # columns summed a few at a time (a large catalogue's ranges), B's rows then unsorted
    from dcf.kernels import topn

    rng = np.random.default_rng(seed)
    users, items = 7, 9
    R = rng.choice([0, 0, 0, 1, 2, 3, 4, 5], size=(users, items)).astype(float)
    ent = items if based == "item" else users
    weights = [-0.5, -0.25, 0.25, 0.5, 1.0] if signed else [0.25, 0.5, 1.0]
    W = np.where(rng.random((ent, ent)) < 0.4, rng.choice(weights, size=(ent, ent)), 0.0)
    np.fill_diagonal(W, 0.0)
    if tile is not None:  # sums that round: a column's terms added out of order would show
        W = W * (1 + rng.random(W.shape) / 3)
    means = rng.choice([2.0, 3.5], size=ent) if centred else np.zeros(ent)
    order = rng.permutation(items)
    rank = np.argsort(order)
    lo, hi = 1.0, 5.0
    if based == "item":  # A = ratings (centred by item), B = W^T
        # a rating equal to its mean stays stored: the pattern is R's, not the values'
        A = sp.csr_matrix((np.asarray((R - means[None, :])[R > 0]), np.nonzero(R > 0)), shape=R.shape)
        B = sp.csr_matrix(W.T)
        row_add, col_add = None, means if centred else None
    else:  # A = W rows, B = ratings (centred by user)
        A = sp.csr_matrix(W)
        B = sp.csr_matrix((np.asarray((R - means[:, None])[R > 0]), np.nonzero(R > 0)), shape=R.shape)
        row_add, col_add = (means if centred else None), None
    if tile is not None:  # each row's entries in reverse column order: read from where it stopped, it must sort
        B = sp.csr_matrix(([v for r in range(B.shape[0]) for v in B.data[B.indptr[r]:B.indptr[r + 1]][::-1]],
                           [c for r in range(B.shape[0]) for c in B.indices[B.indptr[r]:B.indptr[r + 1]][::-1]],
                           B.indptr), shape=B.shape)
        B.has_sorted_indices = False
    with mock.patch.object(topn, "COLUMN_TILE", tile or topn.COLUMN_TILE), \
            mock.patch.object(topn, "TILE_WORTH", 0 if tile else topn.TILE_WORTH):  # (a few entries: tiled all the same)
        cols, vals, filled = kernels.recommend_rows(A, B, sp.csr_matrix(R), n, order, sim_left=based == "user",
                                                    min_k=min_k, adds=(row_add, col_add), rating_range=(lo, hi),
                                                    divide=divide)
    for u in range(users):
        scored, rest = [], []
        for i in range(items):
            if R[u, i] > 0:
                continue
            if based == "item":
                terms = [(W[i, j], R[u, j] - means[j]) for j in range(items) if R[u, j] > 0 and W[i, j] != 0]
                add = means[i]
            else:
                terms = [(W[u, v], R[v, i] - means[v]) for v in range(users) if R[v, i] > 0 and W[u, v] != 0]
                add = means[u]
            if len(terms) >= min_k and sum(w for w, _ in terms) > 0:
                s = sum(w * r for w, r in terms)
                s = min(max(s / sum(w for w, _ in terms) + add, lo), hi) if divide else s
                scored.append((-s, rank[i], i))
            else:
                rest.append((rank[i], i))
        scored.sort()
        rest.sort()
        want = ([i for *_, i in scored] + [i for _, i in rest] + [-1] * n)[:n]
        # same products summed in the same order as the loop: exact, ties included
        assert cols[u].tolist() == want
        assert vals[u][:min(n, len(scored))].tolist() == [-s for s, *_ in scored][:n]
        assert filled[u].tolist() == [k >= len(scored) and w >= 0 for k, w in enumerate(want)]


@given(st.integers(0, 100_000), st.sampled_from(["item", "user"]), st.sampled_from([1.0, 1e-200]))
@settings(max_examples=40, deadline=None)
def test_the_sum_rankings_loop_for_positive_products_equals_the_general_loop(seed, based, scale):
    # every product positive: one 8-byte sum a column, touched where it is not 0 (its own
    # loop); values from small sets (ties), some rows rating nothing, a partial candidate
    # order; scale 1e-200 (both sides): products underflow to 0, so the general loop is used
    from dcf.kernels import topn

    rng = np.random.default_rng(seed)
    users, items = 60, 150
    R = np.where(rng.random((users, items)) < 0.08, rng.choice([1.0, 2.0, 5.0], (users, items)), 0.0) * scale
    R[rng.random(users) < 0.1] = 0.0
    ent = items if based == "item" else users
    W = np.where(rng.random((ent, ent)) < 0.05, rng.choice([0.25, 0.5, 1.0], (ent, ent)), 0.0) * scale
    A, B = (sp.csr_matrix(R), sp.csr_matrix(W.T)) if based == "item" else (sp.csr_matrix(W), sp.csr_matrix(R))
    order = rng.permutation(items)[:int(items * 0.8)]
    calls = []
    real = topn._recommend_sums

    def counted(*args):
        calls.append(1)
        return real(*args)

    args = (A, B, sp.csr_matrix(R), 7, order)
    kw = dict(sim_left=based == "user", divide=False)
    with mock.patch.object(topn, "_recommend_sums", counted):
        got = kernels.recommend_rows(*args, **kw)
    assert bool(calls) == (scale == 1.0)
    with mock.patch.object(topn, "_positive_products", lambda a, b: False):
        want = kernels.recommend_rows(*args, **kw)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_llr_similarity_of_hand_counted_tables():
    from dcf.kernels.general import llr_similarity, xlogx_table

    xlogx = xlogx_table(20)
    # 10 of 20 users rated both, nobody one alone: every entropy is 20 ln 2 or 0 apart
    # from the table's, LLR = 2 (20 ln 2 + 20 ln 2 - 20 ln 2) = 40 ln 2
    assert llr_similarity(10.0, 10.0, 10.0, 20.0, xlogx) == pytest.approx(1 - 1 / (1 + 40 * np.log(2)), rel=1e-14)
    # independent: 5 of 20 rated x, 4 rated y, 1 both (= 5 * 4 / 20): no evidence, 0
    assert llr_similarity(1.0, 5.0, 4.0, 20.0, xlogx) == pytest.approx(0.0, abs=1e-12)
    # as Mahout: a pair seen together less often than chance scores too (LLR has no sign)
    assert llr_similarity(1.0, 10.0, 10.0, 20.0, xlogx) > 0.5



@given(st.one_of(st.floats(0.0, 1e13, allow_nan=False), st.just(1.548054349973857)), st.floats(0.0, 1.0))
@settings(max_examples=300, deadline=None)
def test_a_ratio_cut_keeps_every_ratio_of_an_equal_or_higher_llr_similarity(x, lift):
    # the fast path ranks llr's columns by their ratio L and lists 1 - 1 / (1 + L): a cut
    # under the k-th ratio must keep every ratio whose similarity rounds to the k-th's
    # (ties broken by id), however wide that run of ratios (wider as L grows)
    from dcf.kernels.direct import cut_under, ratio_under
    from dcf.kernels.general import llr_of_ratio

    kth = x + lift * x  # an L, and the lowest L of its similarity found by bisection
    lo, hi = 0.0, kth
    while np.nextafter(lo, np.inf) < hi:
        mid = lo + (hi - lo) / 2
        lo, hi = (lo, mid) if llr_of_ratio(mid) >= llr_of_ratio(kth) else (mid, hi)
    lowest = hi if llr_of_ratio(lo) < llr_of_ratio(kth) else lo
    assert lowest > cut_under(kth, True) or kth == 0.0
    # a dense row's cut raised from its full list's k-th similarity: under that run too
    # (s / (1 - s) alone lands a unit in the last place above it, e.g. at L = 1.548054349973857)
    assert lowest > ratio_under(llr_of_ratio(kth)) or kth == 0.0
    assert ratio_under(1.0) == -np.inf
    assert cut_under(kth, True) <= kth * (1.0 - 1e-9)
    # every other measure's cut: the same double as before (x less 1e-9 of it)
    assert cut_under(kth, False) == kth * (1.0 - 1e-9)

@pytest.mark.parametrize("values", [[1.0, 2.0, 3.5, 5.0], [1.0, 2.1, 3.3]])
def test_compact_stack_is_exact_and_equals_compact_of_vstack(values):
    rng = np.random.default_rng(0)
    blocks = [sp.csr_matrix(np.where(rng.random((r, 30)) < 0.2, rng.choice(values, (r, 30)), 0.0))
              for r in (5, 0, 12)]
    got = kernels.compact_stack(blocks)
    want = kernels.compact_csr(sp.vstack(blocks, format="csr"))
    for a, b in zip(got[:3], want[:3]):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    # float32 only when every value survives the round trip (2.1 does not)
    assert got.data.dtype == (np.float32 if values[1] == 2.0 else np.float64)
    assert got.indices.dtype == np.uint16 and got.shape == (17, 30)
    np.testing.assert_array_equal(got.data.astype(np.float64), sp.vstack(blocks).tocsr().data)


def test_compact_stack_packs_exactly_where_it_can():
    rng = np.random.default_rng(1)
    blocks = [sp.csr_matrix(np.where(rng.random((r, 40)) < 0.3, rng.choice([1.0, 2.1, 3.5, -0.25], (r, 40)), 0.0))
              for r in (6, 0, 9)]
    blocks.append(sp.csr_matrix(np.where(rng.random((4, 40)) < 0.5, 7.0, 0.0)))  # a value only this block has
    plain = kernels.compact_stack(blocks)
    packed = kernels.compact_stack(blocks, pack=True)
    assert packed.indices is None and packed.data is None and packed.packed.dtype == np.uint32
    np.testing.assert_array_equal(packed.table, [-0.25, 1.0, 2.1, 3.5, 7.0])
    back = kernels.unpacked(packed)
    for a, b in zip(back[:3], plain[:3]):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    assert packed.nbytes < plain.nbytes
    # past 65,536 columns the column takes the bits it needs (17 here) and the values the
    # rest (32,768 here); more distinct values than that, or past 2^28 columns: the plain form
    rows, cols = np.arange(40_000) % 7, (np.arange(40_000) * 37) % 70_001
    wide = sp.csr_matrix((np.arange(40_000) % 32_768 + 0.5, (rows, cols)), shape=(7, 70_001))
    packed_wide = kernels.compact_stack([wide[:3], wide[3:]], pack=True)
    assert packed_wide.packed is not None and packed_wide.bits == 17 and len(packed_wide.table) == 32_768
    back = kernels.unpacked(packed_wide)
    plain_wide = kernels.compact_stack([wide[:3], wide[3:]])
    assert back.indices.dtype == plain_wide.indices.dtype == np.int32
    for a, b in zip(back[:3], plain_wide[:3]):
        np.testing.assert_array_equal(a, b)
    assert kernels.column_totals(packed_wide, "jaccard").tolist() == kernels.column_totals(plain_wide, "jaccard").tolist()
    too_many = sp.csr_matrix((np.arange(40_000) + 0.5, (rows, cols)), shape=(7, 70_001))
    assert kernels.compact_stack([too_many], pack=True).packed is None
    huge = [sp.csr_matrix(([1.0, 2.0], ([0, 0], [3, 2**28])), shape=(1, 2**28 + 1))]
    assert kernels.compact_stack(huge, pack=True).packed is None
    many = [sp.csr_matrix((np.arange(1.0, 70_002.0), (np.arange(70_001), np.arange(70_001) % 50)),
                          shape=(70_001, 50))]
    assert kernels.compact_stack(many, pack=True).packed is None
    # parts that each fit but whose union does not: the plain form, the same values
    halves = [sp.csr_matrix((np.arange(1.0, 40_001.0) + off, (np.arange(40_000), np.arange(40_000) % 50)),
                            shape=(40_000, 50)) for off in (0.0, 0.5)]
    joined = kernels.compact_stack(halves, pack=True)
    assert joined.packed is None
    for a, b in zip(joined[:3], kernels.compact_stack(halves)[:3]):
        np.testing.assert_array_equal(a, b)


def _random_others(seed, few):
    """``(Q, rated, values)``: a random others x entities CSR (empty rows and columns
    possible) of a few rating values or of centred ones, some exactly 0 (still stored)."""
    rng = np.random.default_rng(seed)
    m, n = int(rng.integers(1, 60)), int(rng.integers(1, 30))
    rated = rng.random((m, n)) < rng.uniform(0.0, 0.9)
    values = rng.choice([1.0, 2.5, 4.0], (m, n)) if few else rng.normal(0.0, 2.0, (m, n))
    values[rng.random((m, n)) < 0.1] = 0.0
    return sp.csr_matrix((values[rated], np.nonzero(rated)), shape=(m, n)), rated, values


@given(st.integers(0, 100_000), st.sampled_from(["full-cosine", "centred-cosine", "jaccard", "cosine", "lift",
                                                 "cooccurrence", "llr"]),
       st.booleans())
@settings(max_examples=80, deadline=None)
def test_column_totals_of_the_shared_matrix_are_the_entity_totals_bit_for_bit(seed, measure, few):
    # the fit takes the norms from the shared matrix (others x entities) instead of the
    # entity chunks: the same bits are needed, or its lists would differ from a refresh's
    Q, rated, values = _random_others(seed, few)
    m = Q.shape[0]
    blocks = [Q[a:a + 7] for a in range(0, m, 7)]
    P = Q.T.tocsr()
    want = kernels.entity_totals(P, measure)
    for pack in (False, True):
        got = kernels.column_totals(kernels.compact_stack(blocks, pack), measure)
        if want is None:
            assert got is None
        else:
            assert got.dtype == np.float64 and np.array_equal(got, want)
    if measure == "full-cosine":  # and the norms themselves: each row's squares in column order
        want_rows = [np.sqrt(sum(v * v for v in row)) for row in np.where(rated.T, values.T, np.nan)
                     .tolist() for row in [[v for v in row if v == v]]]
        np.testing.assert_allclose(want, want_rows, rtol=1e-12)


@given(st.integers(0, 100_000), st.booleans(), st.data())
@settings(max_examples=80, deadline=None)
def test_entity_rows_of_the_shared_matrix_are_the_transposes_rows(seed, few, data):
    # a rows task cuts its entities' ratings from the shared matrix instead of
    # gathering P's chunks: the same CSR, explicit zeros and empty rows included
    Q = _random_others(seed, few)[0]
    m, n = Q.shape
    P = Q.T.tocsr()
    lo = data.draw(st.integers(0, n))
    hi = data.draw(st.integers(lo, n))
    for pack in (False, True):
        got = kernels.entity_rows(kernels.compact_stack([Q[a:a + 9] for a in range(0, m, 9)], pack), lo, hi)
        want = P[lo:hi]
        assert got.shape == want.shape and got.data.dtype == np.float64
        np.testing.assert_array_equal(got.indptr, want.indptr)
        np.testing.assert_array_equal(got.indices, want.indices)
        np.testing.assert_array_equal(got.data, want.data)


@given(st.lists(st.one_of(st.integers(-4, 140).map(lambda h: h / 2), st.sampled_from([0.0, -0.0, 63.75, 1e-300]),
                          st.floats(-100, 100, allow_nan=False)), max_size=300),
       st.integers(1, 70))
@settings(max_examples=150, deadline=None)
def test_few_values_lists_the_distinct_values_in_first_seen_order(values, room):
    # half-step values from 0 to 63.5 take the direct table, the rest (negative, past the
    # grid, off it) the search; both give each entry its value's first-seen position,
    # 0.0 and -0.0 being one value (the first seen is kept)
    data = np.array(values, np.float64)
    seen, codes = np.empty(room), np.empty(len(data), np.uint32)
    got = few_values(data, seen, codes)
    first = []
    for x in values:
        if not any(x == y for y in first):
            first.append(x)
    if len(first) > room:
        assert got == -1
        return
    assert got == len(first)
    np.testing.assert_array_equal(np.signbit(seen[:got]), np.signbit(first))
    assert seen[:got].tolist() == first
    assert codes.tolist() == [next(i for i, y in enumerate(first) if x == y) for x in values]


@given(st.integers(0, 100_000), st.integers(1, 70))
@settings(max_examples=60, deadline=None)
def test_a_part_packs_the_same_whether_its_values_are_scanned_or_sorted(seed, distinct):
    # up to FEW_VALUES distinct values are found by one scan, more by hashing: the same part as
    # a sorted table and each value's place in it
    rng = np.random.default_rng(seed)
    pool = np.concatenate([np.round(rng.normal(0, 3, 200), 2), np.arange(0.5, 70, 0.5)])  # half-steps too
    scale = rng.choice(pool, distinct, replace=False)
    dense = np.where(rng.random((30, 20)) < 0.5, rng.choice(scale, (30, 20)), 0.0)
    b = sp.csr_matrix(dense)
    lengths, _, _, packed, table = kernels.compact_part(b, pack=True)
    want_table = np.unique(b.data)
    want = (np.searchsorted(want_table, b.data).astype(np.uint32) << np.uint32(16)) | b.indices.astype(np.uint32)
    np.testing.assert_array_equal(table, want_table)
    np.testing.assert_array_equal(packed, want)
    np.testing.assert_array_equal(lengths, np.diff(b.indptr))


def test_fast_topk_is_taken_only_where_its_lists_are_the_general_ones():
    assert kernels.fast_topk("full-cosine", k=5) and kernels.fast_topk("centred-cosine", k=5)
    assert not kernels.fast_topk("full-cosine")  # no lists asked for
    assert not kernels.fast_topk("full-cosine", k=5, dense=True)
    assert not kernels.fast_topk("full-cosine", min_support=2, k=5)
    assert not kernels.fast_topk("full-cosine", shrinkage=1.0, k=5)
    assert not kernels.fast_topk("full-cosine", significance=5.0, k=5)
    for measure in ("cosine", "pearson", "pearson-baseline", "adjusted-cosine"):
        assert not kernels.fast_topk(measure, k=5)
    for measure in ("jaccard", "llr", "lift", "cooccurrence", "bm25", "tfidf", "conditional"):  # of the co-count
        assert kernels.fast_topk(measure, k=5) and not kernels.fast_topk(measure, k=5, min_support=2)


@given(st.integers(0, 100_000), st.integers(1, 8), st.sampled_from([0.0, 0.2]), st.booleans(),
       st.sampled_from([1, 2, 3, kernel_rows.SELECT_BLOCK]), st.sampled_from([0.0, kernel_rows.TRACK_BELOW, np.inf]),
       st.sampled_from(["norms", "jaccard", "llr", "cooccurrence"]), st.sampled_from([1, 5, kernel_rows.FLOOR_SAMPLE]),
       st.sampled_from([0, 3, kernel_rows.RANKED_MAX]), st.booleans())
@settings(max_examples=200, deadline=None)
def test_fast_topk_equals_the_general_kernel_with_ties_and_signs(seed, k, min_similarity, centred, block, track,
                                                                 kind, sample, ranked, include_self):
    # few distinct values: many tied similarities, ties broken by the lower id; centred
    # values of both signs (negative and zero similarities never listed; products that sum
    # to exactly 0 and are touched again); empty entities.  Blocks of 1-3 columns give
    # more blocks than k, so the scan's cut starts from the blocks' peaks (at the default
    # width only past k x 32 entities).  ``track``: every row scanned dense (0), the
    # default choice per row, or every row's touched columns tracked (inf).  ``kind``: a
    # norm-divided measure, jaccard or llr (scored directly from the co-count), or
    # cooccurrence (integer sums: many tied at the cut, cut to k by best_k).  A tracked
    # row's floor from a sample of 1 (at least k), 5 or 512 estimates; its candidates ranked
    # up to 0 (always the heap), 3 or 256 of them; each entity a candidate in its own list or not
    rng = np.random.default_rng(seed)
    n, m = int(rng.integers(2, 60)), int(rng.integers(1, 40))
    rated = rng.random((n, m)) < rng.uniform(0.05, 0.6)
    rated[rng.random(n) < 0.2] = False
    vals = rng.choice([-1.0, -0.5, 0.5, 1.0, 2.0] if centred else [1.0, 2.0, 3.0], size=(n, m))
    r, c = np.nonzero(rated)
    X = sp.csr_matrix((vals[r, c], (r, c)), shape=(n, m))
    measure = ("centred-cosine" if centred else "full-cosine") if kind == "norms" else kind
    totals = kernels.entity_totals(X, measure)
    Q = sp.csr_matrix(X.T)
    chosen = kernels.SimilaritySettings(measure, min_similarity=min_similarity, include_self=include_self)
    _, want_idx, want_sim = kernels.similarity_rows(X, Q, 0, chosen, k=k, norms_a=totals, norms=totals, dense=True)
    rest = 0 if seed % 3 == 0 else direct.REST_BITS_MAX  # llr's counts read from their array, or in the sums
    for shared in (Q, kernels.compact_stack([Q]), kernels.compact_stack([Q], pack=True)):
        with mock.patch.object(kernel_rows, "SELECT_BLOCK", block), mock.patch.object(kernel_rows, "TRACK_BELOW", track), \
                mock.patch.object(kernel_rows, "FLOOR_SAMPLE", sample), \
                mock.patch.object(kernel_rows, "RANKED_MAX", ranked), mock.patch.object(direct, "REST_BITS_MAX", rest):
            _, idx, sim = kernels.similarity_rows(X, shared, 0, chosen, k=k, norms_a=totals, norms=totals)
        np.testing.assert_array_equal(idx, want_idx)
        np.testing.assert_array_equal(sim, want_sim)
    assert (want_sim[want_idx < 0] == 0).all() and (want_sim[want_idx >= 0] > 0).all()


@pytest.mark.parametrize("others", [7, 8, 9, 16, 17, 1000])
def test_llr_counts_carried_in_the_sums_hold_a_co_count_of_nearly_every_other(others):
    # the fast path keeps each column's number of raters in its accumulator (b << bits,
    # 2^bits over the number of others) and adds 1 a product: co-counts as large as the
    # number of others must not spill into the count, on tracked and on dense rows
    rated = np.zeros((6, others), bool)
    rated[0] = True
    rated[1, 1:] = True
    rated[2, :others // 2 + 1] = True
    rated[3, ::3] = True
    rated[4, 1] = rated[5, -1] = True
    X = sp.csr_matrix(rated.astype(np.float64))
    totals = kernels.entity_totals(X, "llr")
    Q = sp.csr_matrix(X.T)
    chosen = kernels.SimilaritySettings("llr")
    _, want_idx, want_sim = kernels.similarity_rows(X, Q, 0, chosen, k=4, norms_a=totals, norms=totals, dense=True)
    assert (want_idx[1:, 0] >= 0).all()  # (one rated by every other tells nothing: llr 0)
    for track in (0.0, np.inf):
        with mock.patch.object(kernel_rows, "TRACK_BELOW", track):
            _, idx, sim = kernels.similarity_rows(X, Q, 0, chosen, k=4, norms_a=totals, norms=totals)
        np.testing.assert_array_equal(idx, want_idx)
        np.testing.assert_array_equal(sim, want_sim)


@given(st.integers(0, 100_000), st.integers(1, 12), st.integers(1, 60), st.integers(1, 6))
@settings(max_examples=200, deadline=None)
def test_best_k_keeps_the_k_first_of_a_list_whatever_the_ties(seed, k, extra, distinct):
    # few distinct similarities: many tied at the k-th; ids distinct, in any order
    from dcf.kernels.select import best_k
    rng = np.random.default_rng(seed)
    m = k + extra
    s = rng.choice(np.arange(1, distinct + 1) / 7.0, m)
    j = rng.permutation(10 * m)[:m].astype(np.int64)
    want = sorted(zip(-s, j))[:k]
    got_s, got_j = s.copy(), j.copy()
    kept = best_k(got_s, got_j, m, k, np.empty(m), np.empty(m, np.int64))
    assert kept == k
    assert sorted(zip(-got_s[:k], got_j[:k])) == want


@given(st.integers(0, 10_000), st.integers(0, 3), st.sampled_from([0.0, 2.5, 100.0]), st.integers(0, 9),
       st.integers(1, 5))
@settings(max_examples=60, deadline=None)
def test_pearson_baseline_tiles_and_rows_equal_the_reference(seed, min_support, shrinkage, cut, k):
    # residuals of any sign, some exactly 0 (still rated: explicit zeros stay stored)
    rng = np.random.default_rng(seed)
    n, m = rng.integers(1, 10), rng.integers(1, 14)
    rated = rng.random((n, m)) < 0.5
    resid = np.where(rated, rng.choice([-1.5, -0.25, 0.0, 0.5, 2.0], size=(n, m)), 0.0)
    r, c = np.nonzero(rated)
    P = sp.csr_matrix((resid[r, c], (r, c)), shape=(n, m))
    assert P.nnz == rated.sum()
    want = ref.pearson_baseline(rated, resid, min_support, shrinkage)
    got = kernels.similarity_tile(P, P, "pearson-baseline", min_support, shrinkage, diagonal=True)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    Q = sp.csr_matrix(P.T)
    cut = min(cut, n)
    for lo, hi in ((0, cut), (cut, n)):
        rows, idx, sim = kernels.similarity_rows(
            sp.csr_matrix(P[lo:hi]), Q, lo, kernels.SimilaritySettings("pearson-baseline", min_support, shrinkage),
            k, dense=True)
        np.testing.assert_array_equal(rows, got[lo:hi])
        want_idx, want_sim = kernels.topk_rows(got[lo:hi], k, 0, lo)
        np.testing.assert_array_equal(idx, want_idx)
        np.testing.assert_array_equal(sim, want_sim)


def kernel_input(P, measure):
    """What the kernels take for a measure: the raw ratings, or the ratings centred on the
    other side's means (adjusted-cosine) or on the entity's own mean (centred-cosine), or
    weighted as implicit weighs them (bm25, tfidf); a centred value of 0 stays stored."""
    rated = P > 0
    r, c = np.nonzero(rated)
    vals = P[r, c]
    if measure == "adjusted-cosine":
        vals = vals - (P.sum(axis=0) / np.maximum(rated.sum(axis=0), 1))[c]
    elif measure == "centred-cosine":
        vals = vals - (P.sum(axis=1) / np.maximum(rated.sum(axis=1), 1))[r]
    elif measure in ("bm25", "tfidf"):
        vals = ref.implicit_weights(P, measure)[r, c]
    return sp.csr_matrix((vals, (r, c)), shape=P.shape)


@given(rating_matrices(), st.sampled_from(["pearson", "adjusted-cosine", "centred-cosine", "jaccard",
                                           "cosine", "full-cosine", "cooccurrence", "lift", "llr", "bm25",
                                           "tfidf", "conditional"]),
       st.integers(0, 3), st.sampled_from([0.0, 2.5]), st.sampled_from([0.0, 1.0, 3.0]),
       st.sampled_from([0.0, 0.3]), st.integers(0, 12), st.integers(1, 6))
@settings(max_examples=150, deadline=None)
def test_every_measure_equals_its_formula_in_tiles_and_rows(P, measure, min_support, shrinkage, significance,
                                                            min_similarity, cut, k):
    want = ref.measure(P, measure, min_support, shrinkage, significance, min_similarity)
    X = kernel_input(P, measure)
    opts = dict(significance=significance, min_similarity=min_similarity)
    got = kernels.similarity_tile(X, X, measure, min_support, shrinkage, diagonal=True, **opts)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    if measure in ("jaccard", "lift", "llr", "conditional"):
        assert (got >= 0).all() and (got <= 1).all()
    if measure == "cooccurrence" and shrinkage == significance == 0:  # whole counts, 1 on the diagonal
        assert (got == np.round(got)).all()
    Q = sp.csr_matrix(X.T)
    totals = kernels.entity_totals(X, measure)
    cut = min(cut, P.shape[0])
    chosen = kernels.SimilaritySettings(measure, min_support, shrinkage, **opts)
    for lo, hi in ((0, cut), (cut, P.shape[0])):
        rows, idx, sim = kernels.similarity_rows(
            X[lo:hi], Q, lo, chosen, k, None if totals is None else totals[lo:hi], totals, dense=True)
        np.testing.assert_array_equal(rows, got[lo:hi])  # same doubles, summed in the same order
        want_idx, want_sim = kernels.topk_rows(got[lo:hi], k, 0, lo)
        np.testing.assert_array_equal(idx, want_idx)
        np.testing.assert_array_equal(sim, want_sim)
        # the whole rows as CSR: the same doubles, the non-zero ones and the diagonal only
        rows_csr, idx, sim = kernels.similarity_rows(
            X[lo:hi], Q, lo, chosen, k, None if totals is None else totals[lo:hi], totals, dense=True, csr=True)
        assert_same_rows_as_csr(rows_csr, rows)
        np.testing.assert_array_equal(idx, want_idx)
        np.testing.assert_array_equal(sim, want_sim)
        # top-k lists alone (the fast path where the measure allows it), on the plain and
        # the packed shared matrix: the same lists, bit for bit
        for shared in (Q, kernels.compact_stack([Q], pack=True)):
            none, idx, sim = kernels.similarity_rows(
                X[lo:hi], shared, lo, chosen, k, None if totals is None else totals[lo:hi], totals)
            assert none is None
            np.testing.assert_array_equal(idx, want_idx)
            np.testing.assert_array_equal(sim, want_sim)


def test_measures_on_a_hand_made_case():
    # items x users; item 0 = (5, 3, -), item 1 = (4, 1, 2)
    P = np.array([[5.0, 3.0, 0.0], [4.0, 1.0, 2.0]])
    got = {m: kernels.similarity_tile(kernel_input(P, m), kernel_input(P, m), m)[0, 1]
           for m in ("pearson", "jaccard", "adjusted-cosine", "centred-cosine")}
    # pearson over the co-raters (users 0, 1): (5, 3) against (4, 1), both centred: (1, -1), (1.5, -1.5)
    assert got["pearson"] == pytest.approx(1.0)
    assert got["jaccard"] == pytest.approx(2 / 3)
    # user means 4.5, 2 (user 2 rated only item 1): (0.5, 1) . (-0.5, -1) / (|.| |.|) = -1
    assert got["adjusted-cosine"] == pytest.approx(-1.0)
    # own means 4 and 7/3: (1, -1, -) . (5/3, -4/3, -1/3) / (sqrt 2 * sqrt(42/9))
    assert got["centred-cosine"] == pytest.approx(3 / (np.sqrt(2) * np.sqrt(42 / 9)))
    # significance 4: two co-raters -> half; minimum similarity drops what is below it
    half = kernels.similarity_tile(sp.csr_matrix(P), sp.csr_matrix(P), "jaccard", significance=4)[0, 1]
    assert half == pytest.approx(1 / 3)
    assert kernels.similarity_tile(sp.csr_matrix(P), sp.csr_matrix(P), "jaccard", min_similarity=0.7)[0, 1] == 0


@given(rating_matrices())
@settings(max_examples=40, deadline=None)
def test_one_pass_pearson_equals_the_textbook_correlation(P):
    # surprise's (and our) n * sum(xy) - sum(x) sum(y) form against the centred form
    got = ref.measure(P, "pearson")
    for x in range(P.shape[0]):
        for y in range(P.shape[0]):
            common = (P[x] > 0) & (P[y] > 0)
            a, b = P[x, common] - P[x, common].mean(), P[y, common] - P[y, common].mean()
            den = np.sqrt(np.sum(a * a) * np.sum(b * b))
            want = 1.0 if x == y else (np.sum(a * b) / den if common.any() and den > 1e-12 else 0.0)
            assert got[x, y] == pytest.approx(want, abs=1e-12)


@given(st.lists(st.sampled_from([0.0, 0.5, 1.0, 1.0, 2.0, 3.0, -1.0, 7.25]), min_size=1, max_size=300),
       st.integers(1, 300))
@settings(max_examples=200, deadline=None)
def test_kth_largest_is_the_sorted_value(values, k):
    # many ties (few distinct values): the quickselect's partition around equal pivots
    a = np.array(values)
    k = min(k, len(a))
    work = np.concatenate([a, [np.nan] * 3])  # past t: never read
    assert select.kth_largest(work, len(a), k) == np.sort(a)[::-1][k - 1]
    np.testing.assert_array_equal(np.sort(work[:len(a)]), np.sort(a))  # reordered, nothing lost


@given(st.integers(0, 10_000), st.integers(1, 12), st.integers(0, 80), st.sampled_from([0.0, 0.3]))
@settings(max_examples=200, deadline=None)
def test_heap_selection_is_the_plain_sorted_list(seed, k, m, min_similarity):
    # offers in any order, tied similarities, non-positive ones: the k best by similarity
    # descending then id ascending, as a plain sort gives them; the row's padding kept
    rng = np.random.default_rng(seed)
    ids = rng.permutation(1000)[:m]
    sims = rng.choice([-0.5, 0.0, 0.25, 0.3, 0.5, 0.5, 0.9], size=m)
    hs, hj = np.empty(k), np.empty(k, np.int64)
    have = 0
    for j, s in zip(ids, sims):
        have = select.keep(hs, hj, have, j, s, min_similarity)
    top_i, top_s = np.full((2, k), -1, np.int64), np.zeros((2, k))
    select.emit(hs, hj, have, top_i, top_s, 1)
    ok = (sims > 0) & (sims >= min_similarity)
    order = np.lexsort((ids[ok], -sims[ok]))[:k]
    want_i = np.full(k, -1, np.int64)
    want_s = np.zeros(k)
    want_i[:len(order)], want_s[:len(order)] = ids[ok][order], sims[ok][order]
    np.testing.assert_array_equal(top_i[1], want_i)
    np.testing.assert_array_equal(top_s[1], want_s)
    assert (top_i[0] == -1).all() and (top_s[0] == 0).all()


@given(st.integers(0, 10_000), st.integers(1, 12), st.integers(0, 40))
@settings(max_examples=200, deadline=None)
def test_ranked_selection_is_the_plain_sorted_list(seed, k, m):
    # entries in any order, tied similarities, more or fewer than k: each written at its
    # rank (similarity descending, then id ascending), the rest of the row and the other
    # rows untouched
    rng = np.random.default_rng(seed)
    ids = rng.permutation(1000)[:m].astype(np.int64)
    sims = rng.choice([0.25, 0.3, 0.5, 0.5, 0.9, 1.0], size=m)
    top_i, top_s = np.full((3, k), -1, np.int64), np.zeros((3, k))
    select.ranked(sims, ids, m, top_i, top_s, 1)
    order = np.lexsort((ids, -sims))[:k]
    want_i, want_s = np.full(k, -1, np.int64), np.zeros(k)
    want_i[:len(order)], want_s[:len(order)] = ids[order], sims[order]
    np.testing.assert_array_equal(top_i[1], want_i)
    np.testing.assert_array_equal(top_s[1], want_s)
    assert (top_i[[0, 2]] == -1).all() and (top_s[[0, 2]] == 0).all()


@pytest.mark.parametrize("track", [0.0, np.inf])
def test_a_packed_matrix_past_65536_entities_gives_the_plain_lists(track):
    # 17 column bits: the rows loops, the totals and the entities' rows read the wider
    # column field; the same lists, norms and rows as the plain form
    rng = np.random.default_rng(5)
    m, n, nnz = 400, 70_001, 6_000
    popular = rng.integers(0, n, 60)  # some entities rated often, so that lists fill
    cols = np.where(rng.random(nnz) < 0.7, rng.choice(popular, nnz), rng.integers(0, n, nnz))
    X = sp.csr_matrix((rng.choice([1.0, 2.0, 4.5], nnz), (rng.integers(0, m, nnz), cols)), shape=(m, n))
    X.sum_duplicates()
    X.data[:] = rng.choice([1.0, 2.0, 4.5], X.nnz)
    plain, packed = kernels.compact_stack([X[:150], X[150:]]), kernels.compact_stack([X[:150], X[150:]], pack=True)
    assert packed.packed is not None and packed.bits == 17
    norms = kernels.column_totals(packed, "full-cosine")
    np.testing.assert_array_equal(norms, kernels.column_totals(plain, "full-cosine"))
    lo, hi = int(np.sort(popular)[10]), int(np.sort(popular)[10]) + 2_000
    P = kernels.entity_rows(packed, lo, hi)
    want_rows = X.T.tocsr()[lo:hi]
    np.testing.assert_array_equal(P.indptr, want_rows.indptr)
    np.testing.assert_array_equal(P.indices, want_rows.indices)
    settings_ = kernels.SimilaritySettings("full-cosine")
    with mock.patch.object(kernel_rows, "TRACK_BELOW", track):
        _, idx, sim = kernels.similarity_rows(P, packed, lo, settings_, 5, norms_a=norms[lo:hi], norms=norms)
        _, want_idx, want_sim = kernels.similarity_rows(P, plain, lo, settings_, 5, norms_a=norms[lo:hi], norms=norms)
    few = np.sort(np.argsort(-np.diff(P.indptr), kind="stable")[:40])  # and the general kernel's dense rows
    _, dense_idx, dense_sim = kernels.similarity_rows(P[few], X, lo + few, settings_, 5, norms_a=norms[lo + few],
                                                      norms=norms, dense=True)  # of the 40 most rated
    np.testing.assert_array_equal(idx[few], dense_idx)
    np.testing.assert_array_equal(sim[few], dense_sim)
    assert (idx >= 0).sum() > 50 and (dense_idx >= 0).sum() > 10
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_array_equal(sim, want_sim)


@given(st.lists(st.sampled_from([0.1, 0.25, 0.5, 0.5000000000000001, 1.0, 2.0]), max_size=90))
@settings(max_examples=150, deadline=None)
def test_candidates_by_similarity_are_a_stable_sort(values):
    # the order a pair's candidates are added in (ties to the lower position, as surprise
    # adds them): the in-place insertion sort and the merge sort past _FEW agree with NumPy
    from dcf.kernels.scoring import _by_similarity

    cs = np.array(values + [9.0] * 3)  # room past m, never read
    m = len(values)
    got = _by_similarity(cs, m, np.full(m + 3, -7, np.int64))[:m]
    assert got.tolist() == np.argsort(-cs[:m], kind="mergesort").tolist()


@given(st.integers(0, 10_000), st.integers(0, 12), st.integers(1, 6), st.integers(1, 30))
@settings(max_examples=100, deadline=None)
def test_neighbour_matrix_is_the_table_as_csr(seed, r, k, n):
    # lists of any length (-1 padding), ids in any order: the dense table, sorted indices,
    # int32 indices as the COO route gave them
    rng = np.random.default_rng(seed)
    idx, sim = np.full((r, k), -1, np.int64), np.zeros((r, k))
    want = np.zeros((r, n))
    for row in range(r):
        ids = rng.permutation(n)[:int(rng.integers(0, min(k, n) + 1))]
        idx[row, :len(ids)] = ids
        sim[row, :len(ids)] = np.sort(rng.random(len(ids)))[::-1]
        want[row, ids] = sim[row, :len(ids)]
    m = kernels.neighbour_matrix(idx, sim, n)
    np.testing.assert_array_equal(m.toarray(), want)
    assert m.shape == (r, n) and m.has_sorted_indices and m.nnz == (idx >= 0).sum()
    assert m.indices.dtype == np.int32 and m.indptr.dtype == np.int32


def test_neighbour_matrix_sums_a_repeated_id_and_refuses_one_past_its_columns():
    # what scipy's COO route did: a row listing an id twice holds it once, summed; an id
    # past the columns is an error, not an invalid matrix
    m = kernels.neighbour_matrix(np.array([[3, 1, 3], [-1, -1, -1]]), np.array([[0.5, 0.25, 0.125], [0, 0, 0]]), 4)
    assert m.has_canonical_format and m.nnz == 2
    np.testing.assert_array_equal(m.toarray(), [[0, 0.25, 0, 0.625], [0, 0, 0, 0]])
    with pytest.raises(ValueError, match="past the 4 columns"):
        kernels.neighbour_matrix(np.array([[4, -1]]), np.array([[0.5, 0.0]]), 4)
