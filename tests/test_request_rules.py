"""Request-time rules of ``recommend`` and ``recommend_for_history`` (issue 23): an allow-list
of items, rated items kept (a re-purchase), one user id given alone, users the model does not
know (the popularity list, flagged, or an error with ``strict``), each against the dense
reference of ``tests/reference.py``."""

import dask
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reference as ref
from conftest import random_ratings
from dcf import ItemKNN
from dcf.errors import ConfigError
from dcf.model import KNN


def _check(got, expected, users, items, item_means):
    """Every user's list in ``got`` is the reference's: its scores, and its items up to the
    order of scores equal within rounding (the reference sums in another order, so a
    last-bit tie can fall either way); the fill-ins exactly, in popularity order."""
    for u, exp in enumerate(expected):
        mine = got[got["user"] == users[u]].sort_values("rank")
        assert (mine["fallback"] == "popular").tolist() == [s is None for _, s in exp], users[u]
        want = [item_means[i] if s is None else s for i, s in exp]
        np.testing.assert_allclose(mine["score"], want, atol=1e-12)
        level = np.round(np.asarray(want, np.float64), 9)
        for value in np.unique(level):
            at = level == value
            assert set(mine["item"].to_numpy()[at]) == {items[i] for (i, _), here in zip(exp, at) if here}
        filled = [items[i] for i, s in exp if s is None]
        assert mine.loc[mine["fallback"] == "popular", "item"].tolist() == filled


@pytest.mark.parametrize("based", ["item", "user"])
@pytest.mark.parametrize("keep_rated", [False, True])
@pytest.mark.parametrize("allow_share", [None, 0.4])
def test_allow_list_and_kept_rated_items_match_the_reference(based, keep_rated, allow_share):
    train = random_ratings(11, n_users=18, n_items=14, density=0.4)
    R, users, items = ref.dense(train)
    S = ref.similarity(R.T if based == "item" else R)
    table = ref.topk(S, 4)
    allow = None
    if allow_share is not None:  # a few items, in no particular order, and one the model never saw
        allow = sorted(np.random.default_rng(3).choice(len(items), int(allow_share * len(items)), replace=False))
    expected, item_means = ref.recommend(R, table, 7, based=based, allow=None if allow is None else set(allow),
                                         keep_rated=keep_rated)
    with dask.config.set(scheduler="sync"):
        model = KNN(based=based, k=4, neighbourhood="global", block_size=5).fit(train)
        asked = None if allow is None else [items[i] for i in allow][::-1] + [987654]
        got = model.recommend(n=7, items=asked, filter_rated=not keep_rated).compute()
    _check(got, expected, users, items, item_means)
    if allow is not None:
        assert set(got["item"]) <= {items[i] for i in allow}
        assert (got.groupby("user").size() == min(7, len(allow))).all() or not keep_rated
    if keep_rated:  # a rated item is listed where it scores among the best
        rated = set(zip(train["user"], train["item"]))
        assert any((u, i) in rated for u, i in zip(got["user"], got["item"]))


def test_one_user_id_alone_is_a_list_of_one(small_requests):
    train = random_ratings(2, n_users=12, n_items=10, density=0.4)
    with dask.config.set(scheduler="sync"):
        model = ItemKNN(k=3).fit(train)
        one = model.recommend(int(train["user"].iloc[0]), n=4).compute()
        listed = model.recommend([int(train["user"].iloc[0])], n=4).compute()
    pd.testing.assert_frame_equal(one.reset_index(drop=True), listed.reset_index(drop=True))
    unrated = train["item"].nunique() - int((train["user"] == train["user"].iloc[0]).sum())
    assert len(one) == min(4, unrated) > 0 and (one["fallback"] != "unknown_user").all()


@pytest.mark.parametrize("ranking", ["prediction", "sum"])
def test_unknown_users_get_the_most_popular_candidates_flagged(ranking, small_requests):
    train = random_ratings(4, n_users=15, n_items=12, density=0.35)
    R, users, items = ref.dense(train)
    pop = (R > 0).sum(0)
    popularity = sorted(range(len(items)), key=lambda i: (-pop[i], i))
    item_means = np.array([c[c > 0].mean() for c in R.T])
    with dask.config.set(scheduler="sync"):
        model = ItemKNN(k=3).fit(train)
        known = users[0]
        got = model.recommend([known, "nobody", 10 ** 12], n=5, ranking=ranking, exclude=[items[popularity[0]]]).compute()
        with pytest.raises(ConfigError, match=r"does not know user\(s\) 'nobody'"):
            model.recommend(["nobody", known], strict=True)
        alone = model.recommend("nobody", n=3).compute()
    want = [i for i in popularity if i != popularity[0]][:5]  # exclusions hold for them too
    for who in ("nobody", 10 ** 12):
        mine = got[got["user"] == who].sort_values("rank")
        assert mine["item"].tolist() == [items[i] for i in want]
        assert (mine["fallback"] == "unknown_user").all() and mine["rank"].tolist() == [1, 2, 3, 4, 5]
        np.testing.assert_allclose(mine["score"], 0.0 if ranking == "sum" else item_means[want], atol=1e-12)
    assert (got.loc[got["user"] == known, "fallback"] != "unknown_user").all()
    assert alone["item"].tolist() == [items[i] for i in popularity[:3]]
    assert list(got.dtypes.index) == ["user", "rank", "item", "score", "fallback"]


def test_history_recommendations_take_the_same_rules(small_requests):
    data = random_ratings(5, n_users=25, n_items=20, density=0.3)
    with dask.config.set(scheduler="sync"):
        model = ItemKNN(k=4, neighbourhood="global").fit(data)
        some = [101, 112]
        allow = sorted(set(data["item"]))[::2]
        want = model.recommend(users=some, n=5, items=allow, filter_rated=False).compute()
        got = model.recommend_for_history(data[data["user"].isin(some)], n=5, items=allow, filter_rated=False)
    key = ["user", "rank"]
    pd.testing.assert_frame_equal(got.sort_values(key).reset_index(drop=True),
                                  want.sort_values(key).reset_index(drop=True), check_dtype=False)
    assert set(got["item"]) <= set(allow)


def test_bad_rules_are_refused():
    train = random_ratings(6, n_users=10, n_items=8, density=0.4)
    with dask.config.set(scheduler="sync"):
        model = ItemKNN(k=3).fit(train)
        with pytest.raises(ConfigError, match="filter_rated must be True or False"):
            model.recommend(n=3, filter_rated="no")
        with pytest.raises(ConfigError, match="items must be an id or a list of ids"):
            model.recommend(n=3, items=np.ones((2, 2)))
        empty = model.recommend(n=3, items=["no-such-item"]).compute()
    assert empty.empty  # an allow-list of nothing the model knows lists nothing


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 9), share=st.floats(0.0, 1.0), keep=st.booleans())
def test_lists_hold_only_candidates_and_are_full_where_candidates_remain(seed, n, share, keep):
    train = random_ratings(seed % 50, n_users=12, n_items=10, density=0.35)
    R, users, items = ref.dense(train)
    rng = np.random.default_rng(seed)
    allow = [items[i] for i in range(len(items)) if rng.random() < share]
    banned = [items[i] for i in range(len(items)) if rng.random() < 0.2]
    with dask.config.set(scheduler="sync"):
        got = ItemKNN(k=3, neighbourhood="global").fit(train).recommend(
            n=n, items=allow, exclude=banned, filter_rated=not keep, ranking="sum").compute()
    ok = set(allow) - set(banned)
    assert set(got["item"]) <= ok
    for u, user in enumerate(users):
        mine = got[got["user"] == user]
        rated = {items[i] for i in np.flatnonzero(R[u] > 0)}
        room = ok if keep else ok - rated
        assert len(mine) == min(n, len(room)) and mine["item"].is_unique
        assert keep or not (set(mine["item"]) & rated)


@pytest.mark.parametrize("ranking", ["sum", "prediction"])
@pytest.mark.parametrize("keep_rated", [False, True])
def test_explanations_are_the_largest_terms_of_each_score(ranking, keep_rated, small_requests):
    train = random_ratings(13, n_users=16, n_items=14, density=0.4)
    R, users, items = ref.dense(train)
    idx, sim = ref.topk(ref.similarity(R.T), 4)
    W = np.zeros((len(items), len(items)))  # W[j, i]: i in j's list
    for j in range(len(items)):
        for t in range(idx.shape[1]):
            if idx[j, t] >= 0:
                W[j, idx[j, t]] = sim[j, t]
    code = {item: i for i, item in enumerate(items)}
    with dask.config.set(scheduler="sync"):
        model = ItemKNN(k=4, neighbourhood="global", block_size=5).fit(train)
        lazy = model.recommend(n=5, ranking=ranking, explain=True, filter_rated=not keep_rated)
        got = lazy.compute()
        stranger = model.recommend(["nobody"], n=2, ranking=ranking, explain=True).compute()
        few = model.recommend(list(users[:4]), n=5, ranking=ranking, explain=True,
                              filter_rated=not keep_rated).compute()
    pd.testing.assert_frame_equal(few.reset_index(drop=True), got[got["user"].isin(users[:4])].reset_index(drop=True))
    assert stranger["because"].map(len).eq(0).all()
    # one Arrow column, no Python object per entry; the stranger's lists typed as the known ones'
    assert isinstance(got["because"].dtype, pd.ArrowDtype) and stranger["because"].dtype == got["because"].dtype
    assert lazy._meta["because"].dtype == got["because"].dtype  # the lazy frame says what it holds
    assert (got.loc[got["fallback"] == "popular", "because"].map(len) == 0).all()
    scored = got[got["fallback"] == "none"]
    assert len(scored) > 20
    for row in scored.itertuples():
        u, i = list(users).index(row.user), code[row.item]
        # the sum's terms r(u, j) s(j, i) over j whose list holds i; the prediction's r(u, j) s(i, j)
        terms = R[u] * (W[:, i] if ranking == "sum" else W[i, :])
        order = sorted((j for j in range(len(items)) if terms[j] != 0), key=lambda j: (-terms[j], j))[:3]
        assert [b["item"] for b in row.because] == [items[j] for j in order]
        np.testing.assert_allclose([b["share"] for b in row.because], terms[order] / terms.sum(), rtol=1e-12)
        if ranking == "sum":  # a share times the score is the rated item's term
            np.testing.assert_allclose([b["share"] * row.score for b in row.because], terms[order], rtol=1e-12)


def test_explain_where_there_are_no_shares_is_refused():
    train = random_ratings(14, n_users=12, n_items=10, density=0.4)
    with dask.config.set(scheduler="sync"):
        with pytest.raises(ConfigError, match="item-based CF only"):
            KNN(based="user", k=3).fit(train).recommend(n=3, explain=True)
        with pytest.raises(ConfigError, match="mean-centred prediction's terms are centred ratings"):
            ItemKNN(k=3, prediction="mean-centred").fit(train).recommend(n=3, explain=True)
        with pytest.raises(ConfigError, match="explain must be True or False"):
            ItemKNN(k=3).fit(train).recommend(n=3, explain="yes")


def test_ids_come_as_any_iterable_and_odd_ones_are_unknown_not_errors(small_requests):
    train = random_ratings(15, n_users=12, n_items=10, density=0.4)
    with dask.config.set(scheduler="sync"):
        model = ItemKNN(k=3, neighbourhood="global").fit(train)
        base = model.recommend(users=100, n=3).compute()["item"].tolist()
        for banned in (set(base), frozenset(base), dict.fromkeys(base).keys(), (b for b in base), np.array(base)):
            got = model.recommend(users=100, n=3, exclude=banned).compute()["item"].tolist()
            assert not set(got) & set(base), type(banned)
        two = model.recommend(users={100, 101}, n=2).compute()
        assert set(two["user"]) == {100, 101} and (two["fallback"] != "unknown_user").all()
        huge = model.recommend(users=[2 ** 70, 100], n=2, items=[2 ** 70, *base], exclude=[2 ** 64]).compute()
        assert (huge.loc[huge["user"] == 2 ** 70, "fallback"] == "unknown_user").all()
        assert set(huge["item"]) <= set(base)
        unsigned = model.recommend(users=np.array([2 ** 63 + 5, 100], np.uint64), n=2).compute()
        assert (unsigned["fallback"] == "unknown_user").sum() == 2
        whole = model.recommend(users=100, n=10 ** 12).compute()  # n past the catalogue: every candidate
        assert len(whole) == train["item"].nunique() - int((train["user"] == 100).sum())
        for bad in (None, 2.7, "3", True):
            with pytest.raises(ConfigError, match="n must be a whole number"):
                model.recommend(users=100, n=bad)
        with pytest.raises(ConfigError, match="strict must be True or False"):
            model.recommend(users=100, strict="yes")
