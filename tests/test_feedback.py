"""Implicit feedback (``feedback="implicit"``): events instead of ratings.  A pair's events
are summed (in line order: the same double however the input is cut), never a conflict;
``user, item`` files and frames without a rating column weigh each event 1; bad weights
are still errors naming the file and line; refresh adds new events to a pair's total."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dcf import ItemKNN, KNN, DataError, kernels, read_ratings

pytestmark = pytest.mark.usefixtures("sync")


def _events(seed, n=300, users=12, items=9):
    """A click log: repeated (user, item) pairs, weights 1 to 3 (some fractional)."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"user": rng.integers(0, users, n) + 100, "item": rng.integers(0, items, n) + 500,
                         "rating": rng.choice([1.0, 1.0, 2.0, 0.3, 3.0], n)})


def _summed(frame):
    """Each pair's weights added one by one in row order: the reference."""
    total = {}
    for u, i, w in frame[["user", "item", "rating"]].itertuples(index=False):
        total[(u, i)] = total.get((u, i), 0.0) + w
    return pd.DataFrame([(u, i, w) for (u, i), w in total.items()], columns=["user", "item", "rating"])


@given(seed=st.integers(0, 10**6), n=st.integers(0, 60), shuffle=st.booleans())
@settings(max_examples=60, deadline=None)
def test_events_sum_in_line_order_whatever_order_they_come_in(seed, n, shuffle):
    rng = np.random.default_rng(seed)
    rows, cols = rng.integers(0, 4, n), rng.integers(0, 5, n)
    vals = rng.choice([0.1, 0.2, 0.7, 1.0, 3.3], n)
    lines = rng.permutation(n) + 1
    want = np.zeros((4, 5))
    for p in np.argsort(lines):  # the earliest line first, one addition at a time
        want[rows[p], cols[p]] += vals[p]
    order = rng.permutation(n) if shuffle else np.arange(n)
    csr, events = kernels.csr_from_events(rows[order], cols[order], vals[order], (4, 5), lines[order])
    assert events == n and csr.has_sorted_indices
    np.testing.assert_array_equal(csr.toarray(), want)  # bit for bit
    assert csr.nnz == np.count_nonzero(want)


def test_a_fit_on_events_is_the_fit_on_their_sums():
    frame = _events(3)
    model = ItemKNN(feedback="implicit", k=4, similarity="cosine").fit(frame)
    want = ItemKNN(k=4, similarity="cosine").fit(_summed(frame))
    got_m = model.matrix_.by_user.compute()
    np.testing.assert_array_equal(got_m.toarray(), want.matrix_.by_user.compute().toarray())
    report = model.matrix_.report.compute()
    assert report["events"] == len(frame) and report["pairs"] == len(_summed(frame)) == got_m.nnz
    pd.testing.assert_frame_equal(model.neighbours(), want.neighbours())
    pd.testing.assert_frame_equal(model.recommend(n=3, ranking="sum").compute(),
                                  want.recommend(n=3, ranking="sum").compute())
    # explicit feedback: the same events are conflicting ratings
    with pytest.raises(DataError, match="conflicting ratings"):
        ItemKNN(k=4).fit(frame)


def test_a_frame_without_ratings_is_events_of_weight_one():
    frame = _events(4)[["user", "item"]]
    model = KNN(feedback="implicit", k=3).fit(frame)
    counts = frame.value_counts(["user", "item"])
    M = model.matrix_.by_user.compute().tocoo()
    users, items = model.matrix_.users.to_raw(M.row), model.matrix_.items.to_raw(M.col)
    np.testing.assert_array_equal(M.data, counts.loc[list(zip(users, items))].to_numpy(np.float64))
    with pytest.raises(Exception, match="rating"):
        KNN(k=3).fit(frame)  # explicit feedback needs the ratings


def test_bad_weights_are_named_by_line(tmp_path):
    path = tmp_path / "clicks.tsv"
    path.write_text("1\t10\t1\n1\t10\t2\n2\t11\t-1\n")
    with pytest.raises(DataError, match=r"clicks.tsv:3: rating must be positive"):
        ItemKNN(feedback="implicit", k=2).fit(read_ratings(path, feedback="implicit"))


@pytest.mark.parametrize("blocksize", [None, 64])
def test_a_file_of_pairs_reads_as_events_of_weight_one(tmp_path, blocksize):
    frame = _events(5, n=200)
    path = tmp_path / "clicks.tsv"
    frame[["user", "item"]].to_csv(path, sep="\t", header=False, index=False)
    with pytest.raises(DataError, match=r"expected at least 3 fields .* saw 2 \(or --feedback implicit"):
        read_ratings(path)
    kw = {} if blocksize is None else {"blocksize": blocksize}
    data = read_ratings(path, feedback="implicit", **kw)
    got = data.frame.compute()
    assert (got["rating"] == 1.0).all() and len(got) == len(frame)
    assert got["line"].tolist() == list(range(1, len(frame) + 1))
    model = ItemKNN(feedback="implicit", k=3).fit(data)
    want = ItemKNN(feedback="implicit", k=3).fit(frame[["user", "item"]])
    np.testing.assert_array_equal(model.matrix_.by_user.compute().toarray(), want.matrix_.by_user.compute().toarray())


def test_weights_summed_from_any_cut_of_the_file_are_the_same_double(tmp_path):
    frame = _events(6, n=400)
    path = tmp_path / "clicks.csv"
    frame.to_csv(path, index=False)
    mats = [ItemKNN(feedback="implicit", k=3).fit(read_ratings(path, feedback="implicit", blocksize=b))
            .matrix_.by_user.compute() for b in (None, 200, 700)]
    for m in mats[1:]:
        np.testing.assert_array_equal(m.toarray(), mats[0].toarray())
    np.testing.assert_array_equal(np.sort(mats[0].data), np.sort(_summed(frame)["rating"].to_numpy()))


def test_csv_header_and_parquet_without_a_rating_column(tmp_path):
    frame = _events(7, n=120)[["user", "item"]].rename(columns={"user": "userId", "item": "itemId"})
    csv, pq = tmp_path / "clicks.csv", tmp_path / "clicks.parquet"
    frame.to_csv(csv, index=False)
    frame.to_parquet(pq, index=False)
    for path in (csv, pq):
        with pytest.raises(DataError, match="no rating column"):
            read_ratings(path).frame.compute()
        got = read_ratings(path, feedback="implicit").frame.compute()
        assert (got["rating"] == 1.0).all() and len(got) == len(frame)
        assert got["user"].tolist() == frame["userId"].tolist()


@pytest.mark.parametrize("similarity,neighbourhood", [("cosine", "rated"), ("bm25", "global"),
                                                      ("jaccard", "global")])
def test_refresh_adds_new_events_to_each_pairs_total(similarity, neighbourhood):
    old = _events(8, n=400, users=30, items=15)
    new = pd.concat([_events(9, n=60, users=30, items=15), pd.DataFrame(
        {"user": [1000, 1000], "item": [500, 500], "rating": [1.0, 2.0]})], ignore_index=True)
    params = dict(feedback="implicit", k=4, similarity=similarity, neighbourhood=neighbourhood)
    got = ItemKNN(**params).fit(old).refresh(new)
    want = ItemKNN(**params).fit(pd.concat([old, new], ignore_index=True))
    np.testing.assert_array_equal(got.matrix_.by_user.compute().toarray(), want.matrix_.by_user.compute().toarray())
    pd.testing.assert_frame_equal(got.neighbours(), want.neighbours())
    assert got.refresh_report_["ratings"] == len(new)
    pd.testing.assert_frame_equal(got.recommend(n=3, ranking="sum").compute(),
                                  want.recommend(n=3, ranking="sum").compute())


def test_a_history_of_events_is_summed_like_the_fit():
    frame = _events(10, n=300)
    model = ItemKNN(feedback="implicit", k=4, neighbourhood="global").fit(frame)
    some = frame[frame["user"].isin([100, 101])]
    got = model.recommend_for_history(some, n=3, ranking="sum")
    want = model.recommend(users=[100, 101], n=3, ranking="sum").compute()
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True), check_dtype=False)
    plain = ItemKNN(k=4, neighbourhood="global").fit(_summed(frame))
    with pytest.raises(DataError, match="twice with different values"):
        plain.recommend_for_history(some, n=3)


def test_feedback_is_checked():
    with pytest.raises(Exception, match="feedback"):
        ItemKNN(feedback="clicks").check_params()
    with pytest.raises(ValueError, match="feedback"):
        read_ratings("whatever.tsv", feedback="clicks")


def test_weights_that_add_up_past_the_largest_double_are_an_error(tmp_path):
    path = tmp_path / "clicks.tsv"
    path.write_text("1\t10\t1\n2\t10\t1e308\n2\t10\t1e308\n")
    with pytest.raises(DataError, match=r"clicks.tsv:3: the weights of user 2 item 10 \(lines 2 to 3, 2 events\) "
                                        r"add up past the largest number"):
        ItemKNN(feedback="implicit", k=2).fit(read_ratings(path, feedback="implicit"))


def test_a_refresh_whose_events_add_up_past_the_largest_double_is_an_error():
    old = pd.DataFrame({"user": [1, 2], "item": [10, 10], "rating": [1e308, 1.0]})
    model = ItemKNN(feedback="implicit", k=2).fit(old)
    with pytest.raises(DataError, match=r"DataFrame:1: the weights of user 1 item 10 \(old total and new events\) add up"):
        model.refresh(pd.DataFrame({"user": [1], "item": [10], "rating": [1e308]}))


def test_a_frames_weight_column_is_its_weight():
    frame = pd.DataFrame({"user": [1, 1, 2, 2], "item": [5, 5, 6, 5], "count": [2.0, 3.0, 9.0, 1.0]})
    M = ItemKNN(feedback="implicit", k=2).fit(frame).matrix_.by_user.compute()
    assert sorted(M.data.tolist()) == [1.0, 5.0, 9.0]


def test_a_header_of_pairs_is_a_header_and_text_pairs_are_pairs(tmp_path):
    tab, csv = tmp_path / "clicks.tsv", tmp_path / "clicks.csv"
    tab.write_text("user\titem\n1\t2\n3\t4\n")
    csv.write_text("alice,apple\nbob,pear\n")
    got = read_ratings(tab, feedback="implicit").frame.compute()
    assert got["user"].tolist() == [1, 3] and got["line"].tolist() == [2, 3]
    got = read_ratings(csv, feedback="implicit").frame.compute()
    assert got["user"].tolist() == ["alice", "bob"] and (got["rating"] == 1.0).all()


def test_errors_name_the_implicit_flag_and_the_missing_column(tmp_path):
    csv = tmp_path / "clicks.csv"
    csv.write_text("user,item\n1,2\n")
    with pytest.raises(DataError, match="has no rating column .*--feedback implicit"):
        read_ratings(csv).frame.compute()
    model = ItemKNN(feedback="implicit", k=2).fit(_events(11))
    with pytest.raises(Exception, match="history lacks column.*item"):
        model.recommend_for_history(pd.DataFrame({"user": [100]}))
    with pytest.raises(Exception, match="read as events.*feedback='implicit'"):
        ItemKNN(k=2).fit(read_ratings(csv, feedback="implicit"))


def test_an_implicit_model_ranks_by_the_sum_by_default():
    model = ItemKNN(feedback="implicit", k=3, neighbourhood="global").fit(_events(12))
    pd.testing.assert_frame_equal(model.recommend(n=3).compute(), model.recommend(n=3, ranking="sum").compute())
    some = _events(12)
    some = some[some["user"] == 100]
    pd.testing.assert_frame_equal(model.recommend_for_history(some, n=3),
                                  model.recommend_for_history(some, n=3, ranking="sum"))


def test_weights_or_discounts_that_overflow_are_refused():
    with pytest.raises(Exception, match="bm25 weights overflow"):
        ItemKNN(feedback="implicit", similarity="bm25", bm25_k1=1e308, k=2).fit(_events(13))
    with pytest.raises(Exception, match="alpha must be between 0 and 10"):
        ItemKNN(similarity="conditional", alpha=400).check_params()
