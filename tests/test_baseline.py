"""dcf.baseline called directly: the biases' ALS, residuals and folded-in users, against dense NumPy."""

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
from dcf.baseline import fit_biases, fold_in_user_biases, residuals


def _by_user(R, bounds):
    """Users x items dask array of CSR chunks, rows ``bounds[j]:bounds[j + 1]``."""
    return da.from_array(sp.csr_matrix(R), chunks=(tuple(np.diff(bounds).tolist()), (R.shape[1],)),
                         asarray=False)


def _even(n, size):
    return np.unique(np.append(np.arange(0, n, size), n))


@pytest.mark.parametrize("size", [1, 4, 13])
@pytest.mark.parametrize("epochs,reg_user,reg_item", [(10, 15.0, 10.0), (2, 1.0, 3.0), (1, 0.5, 0.5)])
def test_fit_biases_equal_surprise_als(size, epochs, reg_user, reg_item):
    R, _, _ = ref.dense(random_ratings(31, n_users=13, n_items=10, density=0.35))
    mu = R[R > 0].mean()
    with dask.config.set(scheduler="sync"):
        bu, bi = dask.compute(*fit_biases(_by_user(R, _even(13, size)), (R > 0).sum(axis=0), mu, epochs,
                                          reg_user, reg_item))
    _, exp_bu, exp_bi = ref.biases(R, epochs, reg_user, reg_item)
    assert bu.shape == (13,) and bi.shape == (10,)
    np.testing.assert_allclose(bu, exp_bu, rtol=0, atol=1e-12)
    np.testing.assert_allclose(bi, exp_bi, rtol=0, atol=1e-12)


@given(arrays(np.float64, st.tuples(st.integers(1, 9), st.integers(1, 7)),
              elements=st.sampled_from([0.0, 0.0, 1.0, 2.0, 3.5, 5.0])),
       st.integers(1, 9), st.integers(0, 4), st.sampled_from([0.5, 2.0, 15.0]), st.sampled_from([0.5, 10.0]))
@settings(max_examples=40, deadline=None)
def test_fit_biases_property_any_blocks_any_epochs(R, size, epochs, reg_user, reg_item):
    R[0, 0] = 4.0  # at least one rating, so the global mean exists
    mu = R[R > 0].mean()
    with dask.config.set(scheduler="sync"):
        bu, bi = dask.compute(*fit_biases(_by_user(R, _even(R.shape[0], size)),
                                          dask.delayed((R > 0).sum(axis=0)), dask.delayed(mu), epochs,
                                          reg_user, reg_item))
    _, exp_bu, exp_bi = ref.biases(R, epochs, reg_user, reg_item)
    np.testing.assert_allclose(bu, exp_bu, rtol=0, atol=1e-12)
    np.testing.assert_allclose(bi, exp_bi, rtol=0, atol=1e-12)


def test_fit_biases_with_no_epoch_are_zero():
    R, _, _ = ref.dense(random_ratings(32, n_users=6, n_items=5))
    with dask.config.set(scheduler="sync"):
        bu, bi = dask.compute(*fit_biases(_by_user(R, [0, 2, 6]), (R > 0).sum(axis=0), 3.0, 0))
    np.testing.assert_array_equal(bu, np.zeros(6))
    np.testing.assert_array_equal(bi, np.zeros(5))


def test_fit_biases_graph_depends_on_its_inputs_only():
    R, _, _ = ref.dense(random_ratings(33, n_users=6, n_items=5))
    X = _by_user(R, [0, 3, 6])
    count = (R > 0).sum(axis=0)
    a, b = fit_biases(X, count, 3.0, 2), fit_biases(X, count, 3.0, 2)
    c = fit_biases(X, count, 3.0, 3)
    assert a[0].key == b[0].key and a[1].key == b[1].key
    assert a[0].key != c[0].key


def test_two_fits_computed_together_keep_their_own_biases():
    R1, _, _ = ref.dense(random_ratings(37, n_users=9, n_items=7))
    R2 = R1.copy()
    R2[R2 > 0] = 6.0 - R2[R2 > 0]  # other ratings, same users and items
    fits = [fit_biases(_by_user(R, [0, 4, 9]), (R > 0).sum(axis=0), R[R > 0].mean(), 3) for R in (R1, R2)]
    with dask.config.set(scheduler="sync"):
        (bu1, bi1), (bu2, bi2) = dask.compute(*fits)
    for R, bu, bi in ((R1, bu1, bi1), (R2, bu2, bi2)):
        _, exp_bu, exp_bi = ref.biases(R, 3)
        np.testing.assert_allclose(bi, exp_bi, atol=1e-12)
        np.testing.assert_allclose(bu, exp_bu, atol=1e-12)


@pytest.mark.parametrize("size", [1, 3, 8])
@pytest.mark.parametrize("rows_are_entities", [True, False])
def test_residuals_are_rating_minus_baseline_summed_as_surprise(size, rows_are_entities):
    rng = np.random.default_rng(34)
    R, _, _ = ref.dense(random_ratings(34, n_users=8, n_items=6))
    row_bias, col_bias = rng.normal(0, 0.7, 8), rng.normal(0, 0.7, 6)
    mu = 3.1415926
    X = _by_user(R, _even(8, size))
    with dask.config.set(scheduler="sync"):
        out = residuals(X, mu, dask.delayed(row_bias), col_bias, rows_are_entities)
        assert out.chunks == X.chunks
        got = out.compute()
    rows, cols = np.nonzero(R)
    x, y = (row_bias[rows], col_bias[cols]) if rows_are_entities else (col_bias[cols], row_bias[rows])
    expected = R[rows, cols] - ((mu + y) + x)
    got = got.tocoo()
    order = np.lexsort((got.col, got.row))
    np.testing.assert_array_equal(got.row[order], rows)
    np.testing.assert_array_equal(got.col[order], cols)
    np.testing.assert_array_equal(got.data[order], expected)  # the same bits: same order of additions


def test_residual_of_exactly_zero_stays_stored():
    R = np.array([[3.0, 0.0, 4.0], [0.0, 5.0, 0.0]])
    X = _by_user(R, [0, 1, 2])
    with dask.config.set(scheduler="sync"):
        got = residuals(X, 3.0, np.zeros(2), np.zeros(3), True).compute()
    assert got.nnz == 3
    np.testing.assert_array_equal(got.toarray(), [[0.0, 0.0, 1.0], [0.0, 2.0, 0.0]])


def test_folded_in_biases_of_fitted_users_are_their_fitted_biases():
    R, _, _ = ref.dense(random_ratings(35, n_users=12, n_items=8, density=0.35))
    mu = R[R > 0].mean()
    with dask.config.set(scheduler="sync"):
        bu, bi = dask.compute(*fit_biases(_by_user(R, [0, 5, 12]), (R > 0).sum(axis=0), mu, 6, 7.0, 4.0))
    np.testing.assert_array_equal(fold_in_user_biases(sp.csr_matrix(R), bi, mu, 7.0), bu)
    # a new history: the ALS user step, sum(r - mu - b_i) / (reg + n)
    H = sp.csr_matrix(np.array([[0.0, 5.0, 0.0, 1.0, 0, 0, 0, 0], [0.0] * 8]))
    want = [((5.0 - mu - bi[1]) + (1.0 - mu - bi[3])) / (7.0 + 2), 0.0]
    np.testing.assert_allclose(fold_in_user_biases(H, bi, mu, 7.0), want, rtol=1e-14)


def test_biases_and_residuals_on_a_distributed_cluster(dist_client):
    R, _, _ = ref.dense(random_ratings(36, n_users=16, n_items=11))
    mu = R[R > 0].mean()
    with dask.config.set(scheduler=dist_client):
        X = da.from_array(sp.csr_matrix(R), chunks=(5, 11), asarray=False).persist()
        bu, bi = fit_biases(X, (R > 0).sum(axis=0), mu, 5)
        res = residuals(X, mu, bu, bi, rows_are_entities=False)
        bu, bi, res = dask.compute(bu, bi, res)
    _, exp_bu, exp_bi = ref.biases(R, 5)
    np.testing.assert_allclose(bu, exp_bu, atol=1e-12)
    np.testing.assert_allclose(bi, exp_bi, atol=1e-12)
    rated = R > 0
    expected = np.where(rated, R - ((mu + exp_bu[:, None]) + exp_bi[None, :]), 0.0)
    np.testing.assert_allclose(res.toarray(), expected, atol=1e-12)
