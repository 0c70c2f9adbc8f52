"""Event times (kept by every reader, through splits and saved models) and time decay
(``half_life``): each event's weight times 0.5 ** ((t_ref - t) / half-life), in the
scores always, in the similarity of value-reading measures when asked.  SAR's own
formulas with decay are in test_sar.py."""

import datetime
import json

import dask
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import random_ratings
from dcf import ConfigError, DataError, ItemKNN, UserKNN, load, read_ratings, split
from dcf.io.times import parse_time, seconds_of_text

DAY = 86400.0


def _events(seed=0, n_users=30, n_items=20, repeat=0.5):
    rng = np.random.default_rng(seed)
    frame = random_ratings(seed, n_users=n_users, n_items=n_items, density=0.3)
    frame = pd.concat([frame, frame.sample(frac=repeat, random_state=seed)], ignore_index=True)
    frame["time"] = rng.integers(1_400_000_000, 1_400_000_000 + 400 * 86400, len(frame)).astype(np.float64)
    return frame


def _decayed(frame, half_life, reference=None):
    """The decayed frame, one event at a time (weights on the rows)."""
    ref = frame["time"].max() if reference is None else reference
    return frame.assign(rating=[r * 0.5 ** ((ref - t) / (half_life * DAY)) for r, t in zip(frame["rating"], frame["time"])])


def _compute(*xs):
    with dask.config.set(scheduler="sync"):
        return dask.compute(*xs)


def _read(path, **kw):
    r = read_ratings(path, **kw)
    return _compute(r.frame, r.report)


# ------------------------------------------------------------------ reading times


def test_every_reader_keeps_the_time_column(tmp_path):
    (tmp_path / "u.data").write_text("1\t10\t4\t881250949\n2\t10\t3\t881250950\n")
    (tmp_path / "r.dat").write_text("1::10::4::978300760\n")
    (tmp_path / "h.csv").write_text("userId,movieId,rating,timestamp\n1,10,4.5,1260759144\n")
    (tmp_path / "n.csv").write_text("1,10,4,1260759144\n")
    (tmp_path / "iso.csv").write_text("user,item,weight,date\n1,10,2,2015-06-01\n2,10,1,2015-06-01T12:00:00+02:00\n")
    (tmp_path / "pairs.csv").write_text("customer_id,product_id,event_time\na,x,1.5e9\n")
    want = {"u.data": [881250949, 881250950], "r.dat": [978300760], "h.csv": [1260759144], "n.csv": [1260759144],
            "iso.csv": [1433116800, 1433152800], "pairs.csv": [1.5e9]}
    for name, times in want.items():
        feedback = "implicit" if name in ("iso.csv", "pairs.csv") else "explicit"
        frame, report = _read(tmp_path / name, feedback=feedback)
        assert frame["time"].tolist() == times, name
        assert frame["time"].dtype == np.float64 and report["untimed"] == 0
    frame, _ = _read(tmp_path / "u.data", times=False)
    assert "time" not in frame.columns
    (tmp_path / "three.tsv").write_text("1\t10\t4\n")
    frame, report = _read(tmp_path / "three.tsv")
    assert "time" not in frame.columns and "untimed" not in report


def test_parquet_times_of_every_type(tmp_path):
    stamps = pd.to_datetime(["2020-01-01T00:00:00", "2020-01-02T06:00:00"])
    cases = {"ts": stamps, "time": stamps.tz_localize("Europe/Paris"), "date": stamps.date,
             "timestamp": [1577836800, 1577944800]}
    for name, values in cases.items():
        path = tmp_path / f"{name}.parquet"
        pd.DataFrame({"user": [1, 2], "item": [3, 4], "rating": [1.0, 2.0], name: values}).to_parquet(path)
        frame, _ = _read(path)
        first = 1577833200 if name == "time" else 1577836800  # Paris midnight is 23:00 UTC
        assert frame["time"].iloc[0] == first, name
    pd.DataFrame({"user": [1], "item": [3], "rating": [1.0]}).to_parquet(tmp_path / "none.parquet")
    assert "time" not in _read(tmp_path / "none.parquet")[0].columns


def test_a_bad_time_is_counted_not_fatal_and_the_row_kept(tmp_path):
    path = tmp_path / "r.tsv"
    path.write_text("1\t10\t4\t100\n2\t10\t3\tsoon\n3\t10\t3\t\n4\t11\t2\tnan\n5\t12\t1\tinf\n")
    frame, report = _read(path)
    assert frame["user"].tolist() == [1, 2, 3, 4, 5] and report["untimed"] == 4
    assert frame["time"].iloc[0] == 100 and frame["time"].iloc[1:].isna().all()


def test_the_typed_and_exact_passes_read_the_same_times(tmp_path):
    rng = np.random.default_rng(3)
    rows = [f"{u}\t{i}\t{r}\t{t}" for u, i, r, t in zip(rng.integers(1, 50, 300), rng.integers(1, 80, 300),
                                                        rng.integers(1, 6, 300), rng.integers(0, 2**40, 300))]
    (tmp_path / "typed.tsv").write_text("\n".join(rows) + "\n")
    (tmp_path / "exact.tsv").write_text("\n".join(rows[:-1] + [rows[-1].replace("\t", "\t ", 1)]) + "\n")
    a, _ = _read(tmp_path / "typed.tsv")
    b, _ = _read(tmp_path / "exact.tsv")
    np.testing.assert_array_equal(a["time"].to_numpy(), b["time"].to_numpy())


@settings(max_examples=50, deadline=None)
@given(st.integers(-2**53, 2**53),
       st.datetimes(timezones=st.just(None)))
def test_times_as_numbers_or_iso_dates(seconds, when):
    """Any date from year 1 to 9999."""
    assert seconds_of_text([str(seconds)])[0] == seconds
    want = (when - datetime.datetime(1970, 1, 1)).total_seconds()
    np.testing.assert_allclose([seconds_of_text([when.isoformat()])[0], parse_time(when.isoformat())], want,
                               rtol=2.3e-16, atol=0)  # within rounding: a double holds ~16 digits


def test_splits_keep_the_times(ml100k):
    data = read_ratings(ml100k / "u.data")
    train, test = split.random_split(data, 0.2, seed=1)
    whole, tr, te = _compute(data.frame, train.frame, test.frame)
    both = pd.concat([tr, te]).sort_values("line")
    np.testing.assert_array_equal(both["time"].to_numpy(), whole.sort_values("line")["time"].to_numpy())
    tr2, te2 = split.user_holdout(data, 0.2, seed=1)
    assert "time" in _compute(tr2.frame)[0].columns


# ------------------------------------------------------------------ decay


@pytest.mark.parametrize("based", ["item", "user"])
def test_the_matrix_holds_each_pairs_sum_of_decayed_weights(based):
    frame = _events(1)
    model = (ItemKNN if based == "item" else UserKNN)(similarity="cosine", feedback="implicit", half_life=45).fit(frame)
    got = _compute(model.matrix_.by_user)[0].toarray()
    want = _decayed(frame, 45).pivot_table(index="user", columns="item", values="rating", aggfunc="sum", fill_value=0)
    np.testing.assert_allclose(got, want.to_numpy(), rtol=1e-13, atol=0)
    assert model.reference_time_ == frame["time"].max()


def _lists(model):
    return _compute(model.idx_, model.sim_)


@pytest.mark.parametrize("measure", ["cosine", "bm25", "tfidf", "full-cosine"])
def test_value_measures_compare_undecayed_values_unless_asked(measure):
    frame = _events(2)
    common = dict(similarity=measure, feedback="implicit", neighbourhood="global", k=8)
    plain = ItemKNN(**common).fit(frame)
    decayed = ItemKNN(half_life=20, **common).fit(frame)
    for a, b in zip(_lists(plain), _lists(decayed)):
        np.testing.assert_array_equal(a, b)
    both = ItemKNN(half_life=20, decay_similarity=True, **common).fit(frame)
    pre = ItemKNN(**common).fit(_decayed(frame, 20).drop(columns="time"))
    for a, b in zip(_lists(pre), _lists(both)):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    assert not np.array_equal(_lists(plain)[1], _lists(both)[1])  # the decay does change them
    # the scores read the decayed matrix: sum over the user's items of weight x similarity
    recs = _compute(decayed.recommend(n=5, ranking="sum"))[0]
    W = _compute(decayed.neighbours_.W)[0].toarray()
    A = _compute(decayed.matrix_.by_user)[0].toarray()
    S = A @ W
    users = np.unique(frame["user"])
    items = np.unique(frame["item"])
    hit = recs[recs["fallback"] == "none"]
    np.testing.assert_allclose(hit["score"], S[np.searchsorted(users, hit["user"]), np.searchsorted(items, hit["item"])],
                               rtol=1e-12)


def test_a_reference_time_as_a_date():
    frame = _events(3)
    ref = "2015-01-01T00:00:00Z"
    model = ItemKNN(similarity="jaccard", feedback="implicit", half_life=10, reference_time=ref).fit(frame)
    assert model.reference_time_ == pd.Timestamp(ref).value / 1e9
    got = _compute(model.matrix_.by_user)[0].toarray()
    want = _decayed(frame, 10, model.reference_time_).pivot_table(index="user", columns="item", values="rating",
                                                                 aggfunc="sum", fill_value=0)
    np.testing.assert_allclose(got, want.to_numpy(), rtol=1e-13)


@pytest.mark.parametrize("params, words", [
    (dict(half_life=30), "feedback='implicit'"),
    (dict(feedback="implicit", half_life=0), "positive number of days"),
    (dict(feedback="implicit", half_life=float("nan")), "positive number of days"),
    (dict(feedback="implicit", half_life=True), "positive number of days"),
    (dict(feedback="implicit", reference_time=5), "give half_life"),
    (dict(feedback="implicit", decay_similarity=True), "give half_life"),
    (dict(feedback="implicit", half_life=1, reference_time="next tuesday"), "ISO 8601"),
    (dict(feedback="implicit", half_life=1, decay_similarity="yes"), "True or False"),
])
def test_bad_decay_settings_are_config_errors(params, words):
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
        ItemKNN(**params).check_params()


def test_decay_without_times_names_the_source_and_line(tmp_path):
    frame = _events(4)
    with pytest.raises(DataError, match="no event times"):
        ItemKNN(feedback="implicit", half_life=5).fit(frame.drop(columns="time"))
    path = tmp_path / "e.tsv"
    path.write_text("1\t10\t1\t100\n2\t10\t1\t200\n2\t11\t1\tlater\n")
    with pytest.raises(DataError, match=r"e.tsv:3: has no valid event time"):
        ItemKNN(feedback="implicit", half_life=5).fit(read_ratings(path, feedback="implicit"))
    with pytest.raises(DataError, match="no event times"):
        ItemKNN(feedback="implicit", half_life=5).fit(read_ratings(path, feedback="implicit", times=False))
    path.write_text("1\t10\t1\t100\n2\t10\t1\t1e18\n")  # 1e18 s after the reference: 0.5 ** -huge
    with pytest.raises(DataError, match=r"e.tsv:2: .*decayed weight overflows"):
        ItemKNN(feedback="implicit", half_life=0.001, reference_time=100).fit(read_ratings(path, feedback="implicit"))


def test_a_decayed_model_saves_loads_and_scores_a_history(tmp_path):
    frame = _events(5)
    model = ItemKNN(similarity="cosine", feedback="implicit", half_life=15, neighbourhood="global", k=10).fit(frame)
    model.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "dcf-model.json").read_text())
    assert meta["reference_time"] == model.reference_time_ and meta["params"]["half_life"] == 15
    back = load(tmp_path / "m")
    assert back.reference_time_ == model.reference_time_
    a, b = _compute(model.recommend(n=5), back.recommend(n=5))
    pd.testing.assert_frame_equal(a, b)
    # a fitted user's events as a history: the same list (decayed to the fitted reference)
    user = frame["user"].iloc[0]
    history = frame[frame["user"] == user]
    got = back.recommend_for_history(history, n=5)
    pd.testing.assert_frame_equal(got.reset_index(drop=True), a[a["user"] == user].reset_index(drop=True),
                                  check_dtype=False)
    with pytest.raises(DataError, match="no event times"):
        back.recommend_for_history(history.drop(columns="time"), n=5)
    with pytest.raises(ConfigError, match="refitted, not refreshed"):
        back.refresh(history)


def test_a_saved_decayed_model_with_a_bad_reference_is_refused(tmp_path):
    model = ItemKNN(similarity="jaccard", feedback="implicit", half_life=3).fit(_events(6))
    model.save(tmp_path / "m")
    path = tmp_path / "m" / "dcf-model.json"
    meta = json.loads(path.read_text())
    del meta["reference_time"]
    path.write_text(json.dumps(meta))
    with pytest.raises(DataError, match="reference_time"):
        load(tmp_path / "m")


def test_pairs_decayed_below_the_smallest_double_are_counted_and_stay_seen():
    frame = _events(7)
    model = ItemKNN(similarity="jaccard", feedback="implicit", half_life=1e-6, neighbourhood="global", k=5).fit(frame)
    by_user, report = _compute(model.matrix_.by_user, model.matrix_.report)
    zero = int((by_user.data == 0).sum())
    assert zero > 0 and report["pairs_decayed_to_zero"] == zero
    recs = _compute(model.recommend(n=5))[0]
    assert np.isfinite(recs["score"]).all()
    seen = set(zip(frame["user"], frame["item"]))
    assert not any((u, i) in seen for u, i in zip(recs["user"], recs["item"]))


def test_hostile_times_and_settings(tmp_path):
    """What a hostile run found: dates past 2262 or before 1677 wrapped around, pandas'
    'now' read as the wall clock, a Parquet integer past 2**53 failed the read, booleans
    read as 0 and 1, only a frame column named 'time' counted, huge integers overflowed."""
    path = tmp_path / "t.tsv"
    path.write_text("1\t1\t1\t100\n1\t2\t1\t1600-01-01\n2\t1\t1\t2300-01-01\n2\t2\t1\tnow\n3\t1\t1\ttoday\n")
    frame, report = _read(path)
    np.testing.assert_array_equal(frame["time"].to_numpy()[:3], [100.0, -11676096000.0, 10413792000.0])
    assert frame["time"].iloc[3:].isna().all() and report["untimed"] == 2
    with pytest.raises(ConfigError, match="neither seconds"):
        ItemKNN(feedback="implicit", half_life=1, reference_time="now").check_params()
    assert ItemKNN(feedback="implicit", half_life=1, reference_time="2300-01-01").decay().reference == 10413792000.0
    for bad in (dict(reference_time=10**400), dict(half_life=10**400)):
        with pytest.raises(ConfigError):
            ItemKNN(feedback="implicit", **{"half_life": 1, **bad}).check_params()
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.table({"user": [1, 1, 2], "item": [1, 2, 1], "timestamp": pa.array([2**62, 2**62 + 1, 5], pa.int64()),
                             "ok": [True, False, True]}), tmp_path / "ns.parquet")
    frame, _ = _read(tmp_path / "ns.parquet", feedback="implicit")
    assert frame["time"].tolist() == [float(2**62), float(2**62 + 1), 5.0]
    pq.write_table(pa.table({"user": [1], "item": [1], "rating": [1.0], "time": [True]}), tmp_path / "b.parquet")
    frame, report = _read(tmp_path / "b.parquet")
    assert frame["time"].isna().all() and report["untimed"] == 1
    # a frame's time column by any of the header names; a folder timed by any of its files
    pairs = _events(8).rename(columns={"time": "timestamp"})
    model = ItemKNN(feedback="implicit", half_life=5, similarity="jaccard").fit(pairs)
    assert model.reference_time_ == pairs["timestamp"].max()
    (tmp_path / "pf").mkdir()
    pd.DataFrame({"user": [1], "item": [1]}).to_parquet(tmp_path / "pf" / "part-0.parquet")
    pd.DataFrame({"user": [2], "item": [1], "timestamp": [50.0]}).to_parquet(tmp_path / "pf" / "part-1.parquet")
    frame, report = _read(tmp_path / "pf", feedback="implicit")
    assert frame["time"].isna().tolist() == [True, False] and report["untimed"] == 1


def test_a_decayed_matrix_fits_only_a_model_of_its_decay():
    frame = _events(9)
    m30 = ItemKNN(feedback="implicit", half_life=30, similarity="jaccard").fit(frame)
    for other in (dict(half_life=1), dict(half_life=30, reference_time=0), dict()):
        with pytest.raises(ConfigError, match="values are decayed"):
            ItemKNN(feedback="implicit", similarity="jaccard", **other).fit(m30.matrix_)
    same = ItemKNN(feedback="implicit", half_life=30, similarity="jaccard",
                   reference_time=m30.reference_time_).fit(m30.matrix_)
    assert same.reference_time_ == m30.reference_time_


def test_decay_errors_in_a_parquet_folder_name_the_file(tmp_path):
    folder = tmp_path / "pf"
    folder.mkdir()
    pd.DataFrame({"user": [1, 2], "item": [1, 1], "timestamp": [10.0, 20.0]}).to_parquet(folder / "part-0.parquet")
    pd.DataFrame({"user": [3, 4], "item": [1, 2], "timestamp": [30.0, np.nan]}).to_parquet(folder / "part-1.parquet")
    with pytest.raises(DataError, match=r"part-1\.parquet:2: has no valid event time"):
        ItemKNN(feedback="implicit", half_life=1).fit(read_ratings(folder, feedback="implicit"))
    pd.DataFrame({"user": [3, 4], "item": [1, 2], "timestamp": [30.0, 1e15]}).to_parquet(folder / "part-1.parquet")
    with pytest.raises(DataError, match=r"part-1\.parquet:2: the event's decayed weight overflows"):
        ItemKNN(feedback="implicit", half_life=0.001, reference_time=0).fit(read_ratings(folder, feedback="implicit"))
