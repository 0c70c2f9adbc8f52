"""dcf.fitted called directly: means, biases, centred ratings and input parts, against dense NumPy."""

import dask
import dask.array as da
import numpy as np
import pandas as pd
import pytest
from dask.delayed import Delayed

import reference as ref
from conftest import random_ratings
from dcf import io as dio
from dcf.errors import ConfigError
from dcf.fitted import FittedState, as_parts, baseline_biases, centred_ratings, fitted_state, means, single
from dcf.matrix import build_matrix
from dcf.model import KNN

CHUNKINGS = [(1, 1), (4, 3), (None, None)]


def _matrix(df, row_block, col_block):
    parts, report, source = as_parts(df)
    return build_matrix(parts, source=source, report=report, row_block=row_block, col_block=col_block)


def _dense_means(X):
    """Mean of the stored (non-zero) entries of every row, 0 for an empty row."""
    return np.array([r[r > 0].mean() if (r > 0).any() else 0.0 for r in X])


@pytest.mark.parametrize("chunks", [1, 3, 10])
def test_means_divide_sums_by_counts_and_empty_rows_get_zero(chunks):
    s = np.array([4.0, 0.0, 9.0, 7.5, 0.0, 3.0, 1.0, 10.0, 6.0, 2.0])
    c = np.array([2, 0, 3, 3, 0, 1, 1, 4, 2, 1])
    with dask.config.set(scheduler="sync"):
        got = means(da.from_array(s, chunks=chunks), da.from_array(c, chunks=chunks)).compute()
    np.testing.assert_array_equal(got, [2.0, 0.0, 3.0, 2.5, 0.0, 3.0, 1.0, 2.5, 3.0, 2.0])
    assert got.dtype == np.float64


@pytest.mark.parametrize("chunks", [1, 4, 9])
def test_single_is_one_delayed_holding_the_whole_array(chunks):
    x = da.arange(9, chunks=chunks)
    one = single(x)
    assert isinstance(one, Delayed)
    with dask.config.set(scheduler="sync"):
        np.testing.assert_array_equal(one.compute(), np.arange(9))


@pytest.mark.parametrize("row_block,col_block", CHUNKINGS)
@pytest.mark.parametrize("based", ["item", "user"])
def test_fitted_state_sets_means_counts_mean_range_and_token(based, row_block, col_block):
    df = random_ratings(21, n_users=13, n_items=9)
    R, _, _ = ref.dense(df)
    model = KNN(based=based, k=3)
    with dask.config.set(scheduler="sync"):
        m = _matrix(df, row_block, col_block)
        state = fitted_state(model, m, None, None, "rows", np.float64(3.25), (np.int64(1), 5), "graph-token")
        assert isinstance(state, FittedState) and model.set_state(state) is model
        ent, item_means, item_count = dask.compute(model.entity_means_, model.item_means_, model.item_count_)
    np.testing.assert_allclose(ent, _dense_means(R.T if based == "item" else R), rtol=1e-13)
    np.testing.assert_allclose(item_means, _dense_means(R.T), rtol=1e-13)
    np.testing.assert_array_equal(item_count, (R > 0).sum(axis=0))
    assert type(model.global_mean_) is float and model.global_mean_ == 3.25
    assert model.rating_range_ == (1.0, 5.0) and all(type(v) is float for v in model.rating_range_)
    assert model.token_ == dask.base.tokenize("graph-token", model.get_params())


def test_fitted_state_token_follows_graph_and_parameters():
    df = random_ratings(22, n_users=8, n_items=6)
    tokens = []
    with dask.config.set(scheduler="sync"):
        m = _matrix(df, None, None)
        for token, k in [("a", 3), ("a", 3), ("b", 3), ("a", 4)]:
            model = KNN(k=k)
            model.set_state(fitted_state(model, m, None, None, "rows", 3.0, (1, 5), token))
            tokens.append(model.token_)
    assert tokens[0] == tokens[1]
    assert len(set(tokens[1:])) == 3


@pytest.mark.parametrize("row_block", [1, 5, None])
@pytest.mark.parametrize("epochs,reg_user,reg_item", [(10, 15.0, 10.0), (3, 2.0, 4.0), (0, 15.0, 10.0)])
def test_baseline_biases_equal_surprise_als(row_block, epochs, reg_user, reg_item):
    df = random_ratings(23, n_users=14, n_items=10, density=0.35)
    R, _, _ = ref.dense(df)
    mu = R[R > 0].mean()
    model = KNN(baseline_epochs=epochs, reg_user=reg_user, reg_item=reg_item)
    with dask.config.set(scheduler="sync"):
        m = _matrix(df, row_block, 3)
        bu, bi = dask.compute(*baseline_biases(model, m, mu))
    _, exp_bu, exp_bi = ref.biases(R, epochs, reg_user, reg_item)
    np.testing.assert_allclose(bu, exp_bu, rtol=0, atol=1e-12)
    np.testing.assert_allclose(bi, exp_bi, rtol=0, atol=1e-12)
    if epochs:
        assert np.abs(bu).max() > 0.01 and np.abs(bi).max() > 0.01  # not trivially zero


@pytest.mark.parametrize("measure", ["cosine", "full-cosine", "pearson", "jaccard", "pearson-baseline"])
def test_centred_ratings_none_for_measures_of_raw_values(measure):
    with dask.config.set(scheduler="sync"):
        assert centred_ratings(_matrix(random_ratings(1, n_users=5, n_items=4), None, None), "item",
                               measure) is None


@pytest.mark.parametrize("row_block,col_block", CHUNKINGS)
@pytest.mark.parametrize("based", ["item", "user"])
@pytest.mark.parametrize("measure", ["adjusted-cosine", "centred-cosine"])
def test_centred_ratings_subtract_the_right_means(measure, based, row_block, col_block):
    df = random_ratings(24, n_users=12, n_items=9, density=0.35)
    # an entity whose ratings all equal its mean: residuals of exactly 0 stay stored
    df.loc[df["item"] == 500, "rating"] = 4.0
    df.loc[df["user"] == 100, "rating"] = 3.0
    R, _, _ = ref.dense(df)
    E = R.T if based == "item" else R  # entities x others
    rated = E > 0
    if measure == "adjusted-cosine":
        expected = np.where(rated, E - _dense_means(E.T)[None, :], 0.0)
    else:
        expected = np.where(rated, E - _dense_means(E)[:, None], 0.0)
    with dask.config.set(scheduler="sync"):
        m = _matrix(df, row_block, col_block)
        P0, Q0 = m.oriented(based)[:2]
        P, Q = centred_ratings(m, based, measure)
        assert P.chunks == P0.chunks and Q.chunks == Q0.chunks
        p, q = dask.compute(P, Q)
    np.testing.assert_allclose(p.toarray(), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(q.toarray(), expected.T, rtol=0, atol=1e-12)
    # same structure: every rating is still stored, even where its residual is 0
    np.testing.assert_array_equal(p.toarray() != 0, rated & ~np.isclose(expected, 0.0, atol=1e-12))
    assert p.nnz == rated.sum() and q.nnz == rated.sum()
    assert (np.abs(p.data) < 1e-12).any()


def test_as_parts_of_a_frame_validates_and_numbers_rows():
    df = random_ratings(25, n_users=6, n_items=5)
    with dask.config.set(scheduler="sync"):
        parts, report, source = as_parts(df)
        frames, rep = dask.compute(parts, report)
    assert source == "DataFrame"
    got = pd.concat(frames, ignore_index=True)
    assert list(got.columns) == ["user", "item", "rating", "line"]
    assert got["user"].tolist() == df["user"].tolist() and got["item"].tolist() == df["item"].tolist()
    np.testing.assert_array_equal(got["rating"], df["rating"])
    np.testing.assert_array_equal(got["line"], np.arange(1, len(df) + 1))
    assert rep["rows"] == len(df) and rep["skipped"] == 0


def test_as_parts_skips_bad_rows_when_asked_and_allows_pairs_without_ratings():
    df = random_ratings(26, n_users=6, n_items=5)
    bad = df.assign(rating=df["rating"].where(df.index != 2, -1.0))
    with dask.config.set(scheduler="sync"):
        parts, report, _ = as_parts(bad, on_bad_lines="skip")
        frames, rep = dask.compute(parts, report)
        got = pd.concat(frames, ignore_index=True)
        assert len(got) == len(df) - 1 and 3 not in got["line"].tolist()
        assert rep["skipped"] == 1
        pairs, _, _ = as_parts(df[["user", "item"]], need_rating=False)
        assert "rating" not in pd.concat(dask.compute(pairs)[0]).columns


def test_as_parts_refuses_missing_columns_and_other_types(tmp_path):
    with pytest.raises(ConfigError, match="rating"):
        as_parts(pd.DataFrame({"user": [1], "item": [2]}))
    with pytest.raises(ConfigError, match="item"):
        as_parts(pd.DataFrame({"user": [1], "rating": [2.0]}), need_rating=False)
    with pytest.raises(TypeError, match="list"):
        as_parts([(1, 2, 3.0)])
    path = tmp_path / "r.csv"
    path.write_text("1,10,4\n2,10,3\n")
    ratings = dio.read_ratings(str(path))
    parts, report, source = as_parts(ratings)
    assert parts is ratings.parts and report is ratings.report and source == ratings.source.path


def test_fitted_state_and_biases_from_a_persisted_matrix_on_a_cluster(dist_client):
    df = random_ratings(27, n_users=15, n_items=11)
    R, _, _ = ref.dense(df)
    model = KNN(based="user", k=3, baseline_epochs=4)
    with dask.config.set(scheduler=dist_client):
        m = _matrix(df, 4, 3).persist()
        model.set_state(fitted_state(model, m, None, None, "rows", 3.0, (1, 5), "t",
                                     baseline_biases(model, m, R[R > 0].mean())))
        del m  # the model's persisted results keep what they need
        ent, count, bu, bi = dask.compute(model.entity_means_, model.item_count_, model.user_bias_,
                                          model.item_bias_)
    np.testing.assert_allclose(ent, _dense_means(R), rtol=1e-13)
    np.testing.assert_array_equal(count, (R > 0).sum(axis=0))
    _, exp_bu, exp_bi = ref.biases(R, 4)
    np.testing.assert_allclose(bu, exp_bu, atol=1e-12)
    np.testing.assert_allclose(bi, exp_bi, atol=1e-12)


@pytest.mark.parametrize("params", [dict(), dict(prediction="baseline"), dict(similarity="pearson-baseline")])
def test_fit_refresh_and_load_build_the_same_state(params, tmp_path):
    """The three ways to a fitted model end in one constructor: the same fields, set."""
    import dcf

    df = random_ratings(28, n_users=20, n_items=12)
    with dask.config.set(scheduler="sync"):
        fitted = KNN(k=3, **params).fit(df.iloc[:-10])
        refreshed = fitted.refresh(df.iloc[-10:])
        fitted.save(tmp_path / "m")
        loaded = dcf.load(tmp_path / "m")
    fields = [f"{name}_" for name in ("matrix", "neighbours", "similarity_rows", "method", "global_mean",
                                      "rating_range", "entity_means", "item_means", "item_count",
                                      "user_bias", "item_bias")]
    for model in (fitted, refreshed, loaded):
        assert all(hasattr(model, f) for f in fields), [f for f in fields if not hasattr(model, f)]
        assert (model.user_bias_ is not None) == (params != {})
    assert fitted.method_ == "rows" and loaded.method_ is None
