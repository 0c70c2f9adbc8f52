"""Incremental refresh (:mod:`dcf.refresh`) equals a full refit on the merged ratings."""

import dask
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import random_ratings
from dcf.errors import DataError
from dcf.model import KNN

MEASURES = ["cosine", "full-cosine", "pearson", "adjusted-cosine", "centred-cosine", "jaccard", "cooccurrence",
            "lift", "llr", "bm25", "tfidf", "conditional"]


def merged(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """The old ratings with the new ones merged in: a pair rated again takes the new value."""
    both = pd.concat([old, new], ignore_index=True)
    return both.drop_duplicates(["user", "item"], keep="last").reset_index(drop=True)


def by_raw_ids(model):
    """Everything a fitted model serves from, keyed by raw ids (codes differ between vocabularies)."""
    vocab = model.matrix_.items if model.based == "item" else model.matrix_.users
    ids = vocab.to_raw(np.arange(len(vocab)))
    lists = model.neighbours().sort_values(["entity", "rank"]).reset_index(drop=True)
    rows = None
    if model.similarity_rows_ is not None:
        S = model.similarity_rows_.compute()
        S = S.toarray() if hasattr(S, "toarray") else np.asarray(S)
        rows = pd.DataFrame(S, index=ids, columns=ids)
    return lists, rows


def assert_same_model(got, want, test_pairs):
    assert (got.matrix_.users.to_raw(np.arange(len(got.matrix_.users))).tolist()
            == want.matrix_.users.to_raw(np.arange(len(want.matrix_.users))).tolist())
    assert (got.matrix_.by_user.compute() != want.matrix_.by_user.compute()).nnz == 0
    (gl, gr), (wl, wr) = by_raw_ids(got), by_raw_ids(want)
    pd.testing.assert_frame_equal(gl, wl)  # the same neighbours and the same doubles
    if wr is not None:
        pd.testing.assert_frame_equal(gr, wr)
    a, b = (m.predict(test_pairs).compute().sort_values(["user", "item"]).reset_index(drop=True)
            for m in (got, want))
    pd.testing.assert_frame_equal(a, b)
    ranking = "prediction" if got.neighbourhood == "global" else "sum"
    if got.neighbourhood == "global":
        a, b = (m.recommend(n=5, ranking=ranking).compute().sort_values(["user", "rank"])
                .reset_index(drop=True) for m in (got, want))
        pd.testing.assert_frame_equal(a, b)


def batch_of(df, rng, n_new_users=2, n_new_items=2, n_changes=6, n_adds=8, n_repeats=3):
    """New ratings of every kind: new users, new items, new values of rated pairs, new
    pairs of known users and items, and repeats of rated pairs with the same value."""
    users, items = df["user"].unique(), df["item"].unique()
    rows = []
    for j in range(n_new_users):
        for it in rng.choice(items, 4, replace=False):
            rows.append((9000 + j, it, float(rng.integers(1, 6))))
    for j in range(n_new_items):
        for u in rng.choice(users, 4, replace=False):
            rows.append((u, 8000 + j, float(rng.integers(1, 6))))
    picked = df.sample(n_changes + n_repeats, random_state=int(rng.integers(1 << 30)))
    for _, r in picked.iloc[:n_changes].iterrows():
        rows.append((r["user"], r["item"], float(1 + (r["rating"] % 5))))  # a different value
    have = set(zip(df["user"], df["item"]))
    while n_adds:
        u, it = rng.choice(users), rng.choice(items)
        if (u, it) not in have:
            have.add((u, it))
            rows.append((u, it, float(rng.integers(1, 6))))
            n_adds -= 1
    for _, r in picked.iloc[n_changes:].iterrows():
        rows.append((r["user"], r["item"], r["rating"]))
    return pd.DataFrame(rows, columns=["user", "item", "rating"]).astype({"user": np.int64, "item": np.int64})


# every measure with both neighbourhoods, and each orientation with both neighbourhoods
# (every pairing of the three would double the suite's slowest file for no new path)
MEASURE_CASES = [(m, nb, based) for j, m in enumerate(MEASURES)
                 for nb, based in ((("rated", "item"), ("global", "user")) if j % 2 == 0
                                   else (("rated", "user"), ("global", "item")))]


@pytest.mark.parametrize("measure,neighbourhood,based", MEASURE_CASES)
def test_refresh_equals_a_refit_on_the_merged_ratings(based, neighbourhood, measure):
    from dcf.datasets import synthetic

    # two communities that share no user or item: the new ratings reach only the first, so
    # every measure copies the second's rows (the first's own rows may all be recomputed)
    one = synthetic(users=300, items=70, ratings=2200, seed=11).frame.compute()
    two = synthetic(users=100, items=30, ratings=600, seed=12).frame.compute()
    one, two = (x.astype({"user": np.int64, "item": np.int64}) for x in (one, two))
    two[["user", "item"]] += 100_000
    df = pd.concat([one, two], ignore_index=True)
    new = batch_of(one, np.random.default_rng(3))
    params = dict(based=based, k=6, neighbourhood=neighbourhood, similarity=measure, min_support=2,
                  shrinkage=1.5, block_size=17, significance=0.0 if measure == "cosine" else 4.0,
                  min_similarity=0.0 if measure == "cosine" else 0.02)
    old = KNN(**params).fit(df)
    before = by_raw_ids(old)
    got = old.refresh(new)
    want = KNN(**params).fit(merged(df, new))
    rep = got.refresh_report_
    assert rep["ratings"] == len(new) and rep["changed"] == len(new) - 3  # the repeats change nothing
    assert (rep["new_users"], rep["new_items"]) == (2, 2)
    if measure == "llr":  # it reads the number of others, which the new ones changed for every pair
        assert rep["full_refit"] and "reads the number of" in rep["why"]
    elif measure in ("bm25", "tfidf"):  # every weight reads totals over all entities
        assert rep["full_refit"] and "weighs every rating by totals over all" in rep["why"]
    elif measure == "conditional":  # not symmetric: the patched columns would be its rows
        assert rep["full_refit"] and "is not symmetric" in rep["why"]
    else:
        assert not rep["full_refit"] and rep["why"] is None
        assert 0 < rep["recomputed"] < rep["entities"] == len(want.neighbours_.idx)
    assert_same_model(got, want, merged(df, new).iloc[::7])
    # the old model is left as it was
    after = by_raw_ids(old)
    pd.testing.assert_frame_equal(after[0], before[0])
    if before[1] is not None:
        pd.testing.assert_frame_equal(after[1], before[1])


@pytest.mark.parametrize("based", ["item", "user"])
@pytest.mark.parametrize("neighbourhood", ["rated", "global"])
@pytest.mark.parametrize("measure", ["full-cosine", "centred-cosine", "jaccard", "lift", "llr"])
def test_norm_measures_patch_the_touched_columns_of_co_rated_rows(based, neighbourhood, measure):
    # one changed and one added rating: the rows they reach through a rater are recomputed;
    # rows co-rated with a touched entity only get that entity's column (its norm moved),
    # and a patched list that loses a neighbour to an unknown successor is recomputed
    from dcf.datasets import synthetic

    df = synthetic(users=300, items=70, ratings=2200, seed=11).frame.compute()
    new = batch_of(df, np.random.default_rng(3), n_new_users=0, n_new_items=0, n_changes=1, n_adds=1,
                   n_repeats=0)
    params = dict(based=based, similarity=measure, k=6, neighbourhood=neighbourhood)
    got = KNN(**params).fit(df).refresh(new)
    rep = got.refresh_report_
    assert rep["patched"] > 0 and rep["recomputed"] < rep["entities"]
    assert_same_model(got, KNN(**params).fit(merged(df, new)), merged(df, new).iloc[::5])


def test_recomputed_rows_are_those_the_changes_reach():
    # items 0..5; user 1 rates items 0, 1; user 2 rates 1, 2; user 3 rates 3, 4; item 5 by user 4
    df = pd.DataFrame({"user": [1, 1, 2, 2, 3, 3, 4], "item": [0, 1, 1, 2, 3, 4, 5],
                       "rating": [4.0, 3, 5, 2, 1, 4, 3]})
    new = pd.DataFrame({"user": [1], "item": [0], "rating": [2.0]})  # user 1 re-rates item 0
    # co-rated cosine: only the items user 1 rated (0, 1) see the change
    got = KNN(similarity="cosine", k=3).fit(df).refresh(new)
    assert got.refresh_report_["recomputed"] == 2
    # full cosine: item 0's norm moved too, but only user 1 rated item 0: the same rows
    got = KNN(similarity="full-cosine", k=3).fit(df).refresh(new)
    assert (got.refresh_report_["recomputed"], got.refresh_report_["patched"]) == (2, 0)
    # a new rating of user 2 on item 0 reaches item 2 too (user 2's other item)
    new = pd.DataFrame({"user": [2], "item": [0], "rating": [2.0]})
    got = KNN(similarity="cosine", k=3).fit(df).refresh(new)
    assert got.refresh_report_["recomputed"] == 3
    # user 1 re-rates item 1: items 0 and 1 (user 1's) are recomputed; item 2 shares only
    # user 2 with item 1, so it keeps its row but gets a new column 1 (item 1's norm moved)
    new = pd.DataFrame({"user": [1], "item": [1], "rating": [1.0]})
    got = KNN(similarity="full-cosine", k=3).fit(df).refresh(new)
    assert (got.refresh_report_["recomputed"], got.refresh_report_["patched"]) == (2, 1)
    # nothing new: nothing recomputed, the same model
    old = KNN(similarity="full-cosine", k=3).fit(df)
    same = old.refresh(df.iloc[:2])
    assert same.refresh_report_["changed"] == 0 and same.refresh_report_["recomputed"] == 0
    assert_same_model(same, old, df)


@pytest.mark.parametrize("params", [dict(similarity="pearson-baseline", shrinkage=100, prediction="baseline"),
                                    dict(similarity="cosine", method="tiles"),
                                    dict(similarity="llr"),  # a new user moves every pair's table
                                    dict(similarity="llr", based="user")])  # a new item, the same
def test_refresh_refits_where_it_must(params):
    from dcf.datasets import synthetic

    df = synthetic(users=200, items=60, ratings=1500, seed=2).frame.compute()
    new = batch_of(df, np.random.default_rng(1), n_new_users=1, n_new_items=1)
    got = KNN(k=5, **params).fit(df).refresh(new)
    assert got.refresh_report_["full_refit"] and got.refresh_report_["why"]
    assert_same_model(got, KNN(k=5, **params).fit(merged(df, new)), merged(df, new).iloc[::5])


def test_baseline_prediction_refits_the_biases():
    from dcf.datasets import synthetic

    df = synthetic(users=200, items=60, ratings=1500, seed=2).frame.compute()
    new = batch_of(df, np.random.default_rng(5))
    params = dict(similarity="centred-cosine", prediction="baseline", k=8, reg_item=2.0, reg_user=5.0)
    got = KNN(**params).fit(df).refresh(new)
    want = KNN(**params).fit(merged(df, new))
    assert not got.refresh_report_["full_refit"]
    np.testing.assert_array_equal(*dask.compute(got.item_bias_, want.item_bias_))
    assert_same_model(got, want, merged(df, new).iloc[::5])


def test_refresh_twice_and_after_load(tmp_path):
    import dcf
    from dcf.datasets import synthetic

    df = synthetic(users=300, items=80, ratings=2500, seed=9).frame.compute()
    rng = np.random.default_rng(0)
    first, second = batch_of(df, rng), batch_of(df, rng, n_new_users=1, n_new_items=1)
    second["user"] += 1  # other new ids than the first batch's
    params = dict(similarity="centred-cosine", k=5, neighbourhood="rated")
    KNN(**params).fit(df).save(tmp_path / "m")
    got = dcf.load(tmp_path / "m").refresh(first).refresh(second)
    assert_same_model(got, KNN(**params).fit(merged(merged(df, first), second)), df.iloc[::9])


def test_bad_new_ratings_name_the_row():
    df = pd.DataFrame({"user": [1, 1, 2], "item": [0, 1, 1], "rating": [4.0, 3, 5]})
    model = KNN(k=2).fit(df)
    with pytest.raises(DataError, match=r"DataFrame:2"):
        model.refresh(pd.DataFrame({"user": [3, 3], "item": [0, 1], "rating": [4.0, "x"]}))
    with pytest.raises(DataError, match="conflicting ratings"):
        model.refresh(pd.DataFrame({"user": [3, 3], "item": [0, 0], "rating": [4.0, 2.0]}))
    skip = KNN(k=2, on_bad_lines="skip").fit(df).refresh(
        pd.DataFrame({"user": [3, 3], "item": [0, 0], "rating": [4.0, 2.0]}))
    assert skip.matrix_.by_user.compute().nnz == 4  # the first of the conflicting pair kept


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), measure=st.sampled_from(MEASURES), based=st.sampled_from(["item", "user"]),
       n_new=st.integers(1, 12))
def test_refresh_equals_refit_on_random_batches(seed, measure, based, n_new):
    rng = np.random.default_rng(seed)
    n_users, n_items = int(rng.integers(3, 25)), int(rng.integers(3, 25))
    cells = rng.random((n_users + 3, n_items + 3)) < 0.3
    u, i = np.nonzero(cells)
    ratings = pd.DataFrame({"user": u, "item": i, "rating": rng.integers(1, 6, len(u)).astype(float)})
    old = ratings[(ratings.user < n_users) & (ratings.item < n_items)].reset_index(drop=True)
    if old.empty:
        return
    new = ratings.sample(min(n_new, len(ratings)), random_state=seed).reset_index(drop=True)
    new["rating"] = rng.integers(1, 6, len(new)).astype(float)  # some pairs get a new value
    params = dict(based=based, k=3, neighbourhood="rated", similarity=measure,
                  block_size=int(rng.integers(1, 8)))
    with dask.config.set(scheduler="sync"):
        got = KNN(**params).fit(old).refresh(new)
        want = KNN(**params).fit(merged(old, new))
        assert_same_model(got, want, merged(old, new))


def test_refresh_on_a_distributed_cluster(dist_client):
    from dcf.datasets import synthetic

    df = synthetic(users=300, items=80, ratings=2500, seed=21).frame.compute()
    new = batch_of(df, np.random.default_rng(8))
    params = dict(similarity="full-cosine", k=5, neighbourhood="global", block_size=11)
    got = KNN(**params).fit(df).refresh(new)
    assert not got.refresh_report_["full_refit"]
    assert_same_model(got, KNN(**params).fit(merged(df, new)), df.iloc[::9])


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 10**6), k=st.integers(1, 6), n=st.integers(2, 30), n_cols=st.integers(1, 5))
def test_patched_lists_are_the_top_k_of_the_patched_rows_or_flagged(seed, k, n, n_cols):
    from dcf import kernels
    from dcf.refresh.rows import patch_lists as _patch_lists

    rng = np.random.default_rng(seed)
    old = rng.choice([0.0, -0.2, 0.1, 0.3, 0.5, 0.9], size=(8, n))  # ties and non-positives
    columns = np.sort(rng.choice(n, min(n_cols, n), replace=False))
    new = old.copy()
    new[:, columns] = rng.choice([0.0, -0.1, 0.1, 0.3, 0.7, 1.0], size=(8, len(columns)))
    idx, sim = kernels.topk_rows(old, k)
    want_i, want_s = kernels.topk_rows(new, k)
    got_i, got_s, ok = _patch_lists(idx, sim, columns, new[:, columns], k)
    np.testing.assert_array_equal(got_i[ok], want_i[ok])
    np.testing.assert_array_equal(got_s[ok], want_s[ok])
    # a row is flagged only when a neighbour left a full list and nothing known replaces it
    for r in np.flatnonzero(~ok):
        assert idx[r, k - 1] >= 0 and np.isin(idx[r], columns).any()


@pytest.mark.parametrize("ids", ["int", "text", "int-as-text"])
def test_refresh_merges_the_matrix_like_a_refit_builds_it(ids, monkeypatch):
    # integer ids merge the old CSR blocks by codes; other ids go through frames of raw ids;
    # both give the refit's matrix, cut into the same blocks
    import dcf.refresh.core as refresh
    from dcf.datasets import synthetic

    df = synthetic(users=250, items=60, ratings=1800, seed=4).frame.compute()
    new = batch_of(df.astype({"user": np.int64, "item": np.int64}), np.random.default_rng(6))
    if ids != "int":
        fmt = (lambda x: f"u{x}") if ids == "text" else str
        df, new = ({c: x[c].map(fmt) if c != "rating" else x[c] for c in x} for x in (df, new))
        df, new = pd.DataFrame(df), pd.DataFrame(new)
    paths = []
    real = refresh.merged_matrix
    monkeypatch.setattr(refresh, "merged_matrix", lambda *a: paths.append(real(*a)) or paths[-1])
    params = dict(similarity="cosine", k=5, neighbourhood="global", block_size=13)
    got = KNN(**params).fit(df).refresh(new)
    want = KNN(**params).fit(merged(df, new))
    assert (paths[0] is None) == (ids == "text")  # "7" spells an integer id: the fast path
    assert got.matrix_.by_user.chunks == want.matrix_.by_user.chunks
    assert got.matrix_.by_item.chunks == want.matrix_.by_item.chunks
    assert_same_model(got, want, merged(df, new).iloc[::7])


@pytest.mark.parametrize("measure,neighbourhood", [("full-cosine", "global"), ("cosine", "rated"),
                                                   ("lift", "global")])
def test_refresh_of_lists_that_include_the_entity_itself(measure, neighbourhood):
    df = random_ratings(21, n_users=40, n_items=25, density=0.25)
    new = batch_of(df, np.random.default_rng(5))
    params = dict(k=5, similarity=measure, neighbourhood=neighbourhood, include_self=True, block_size=6)
    got = KNN(**params).fit(df).refresh(new)
    want = KNN(**params).fit(merged(df, new))
    assert not got.refresh_report_["full_refit"]
    assert_same_model(got, want, merged(df, new).iloc[::5])
    lists = got.neighbours()
    assert (lists["entity"] == lists["neighbour"]).any()  # the entities are in their own lists
