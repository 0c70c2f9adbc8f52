"""A (user, item) pair rated again where the training matrix cannot see it (dcf.repeats):
the batch job's test side, and every rating before a split by time."""

import json

import dask
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dcf.errors import DataError
from dcf.repeats import checked_pairs
from dcf.run.cli import main
from dcf.split import pair_uniform


def _reference(frame: pd.DataFrame):
    """The rule written out: per pair (ids as text), the copy of the earliest line is kept;
    a later copy with the same rating is a duplicate, another rating a conflict."""
    f = frame.assign(u=frame["user"].astype(str), i=frame["item"].astype(str)).sort_values("line", kind="stable")
    first = f.groupby(["u", "i"], sort=False)["rating"].transform("first")
    later = f.duplicated(["u", "i"], keep="first")
    return (set(f.loc[~later, "line"]), int((later & (f["rating"] == first)).sum()),
            int((later & (f["rating"] != first)).sum()))


@given(st.integers(0, 10_000), st.integers(1, 60), st.integers(1, 4), st.booleans())
@settings(max_examples=60, deadline=None)
def test_the_repeated_pairs_are_found_across_parts_and_id_types(seed, n, n_parts, text_ids):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"user": rng.integers(0, 4, n), "item": rng.integers(0, 3, n),
                          "rating": rng.integers(1, 3, n).astype(float), "line": rng.permutation(n) + 1})
    cuts = np.sort(rng.integers(0, n + 1, n_parts - 1))
    parts = np.split(np.arange(n), cuts)
    frames = [frame.iloc[p].reset_index(drop=True) for p in parts]
    if text_ids and len(frames) > 1:  # one part's ids as text: "7" is the pair of 7
        frames[-1] = frames[-1].astype({"user": str, "item": str})
    kept_lines, dups, conflicts = _reference(frame)
    with dask.config.set(scheduler="sync"):
        kept, counts = checked_pairs([dask.delayed(f) for f in frames], "skip", "r.tsv")
        out = pd.concat(dask.compute(*kept), ignore_index=True)
        assert set(out["line"]) == kept_lines and len(out) == len(kept_lines)
        assert counts == {"duplicates": dups, "conflicts": conflicts}
        if conflicts:
            with pytest.raises(DataError, match=r"^r.tsv:\d+: conflicting ratings for user .* \(line \d+\) and"):
                checked_pairs([dask.delayed(f) for f in frames], "error", "r.tsv")
        else:
            assert checked_pairs([dask.delayed(f) for f in frames], "error", "r.tsv")[1] == counts


def test_a_conflict_names_the_kept_line_and_the_earliest_other():
    a = pd.DataFrame({"user": [1, 2, 2], "item": [10, 20, 20], "rating": [5.0, 4.0, 3.0], "line": [1, 2, 9]})
    b = pd.DataFrame({"user": ["2"], "item": ["20"], "rating": [1.0], "line": [5]})
    with dask.config.set(scheduler="sync"), pytest.raises(DataError) as err:
        checked_pairs([dask.delayed(a), dask.delayed(b)], "error", "t.tsv")
    assert str(err.value).startswith("t.tsv:5: conflicting ratings for user '2' item '20': 4 (line 2) and 1 (line 5)")


@pytest.fixture(scope="module")
def scheduler():
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as lc:
        yield lc.scheduler_address


def _ratings(n_users=40, n_items=12):
    rows = [(u, i, 1 + (u * 7 + i * 3) % 5, 1_000_000 + 97 * u + i) for u in range(1, n_users + 1)
            for i in range(1, n_items + 1) if (u + 2 * i) % 3]
    return pd.DataFrame(rows, columns=["user", "item", "rating", "time"])


def _write(frame, path):
    frame.to_csv(path, sep="\t", header=False, index=False)
    return path


def _run(scheduler, tmp_path, capsys, *flags):
    out = tmp_path / "out"
    rc = main(["--scheduler", scheduler, "--out", str(out), "--no-progress", "--no-baselines", "--k", "3",
               "--top-n", "3", *map(str, flags)])
    printed = capsys.readouterr()
    metrics = json.loads((out / "metrics.json").read_text()) if rc == 0 else None
    _run.printed = printed.out
    return rc, printed.err, metrics, out


def test_a_pair_repeated_on_the_test_side_of_a_random_split(scheduler, tmp_path, capsys):
    # both copies of a pair go to the same side; on the test side they were predicted and
    # scored twice, a conflict included
    data = _ratings()
    test = data[pair_uniform(data, 0) < 0.1]
    assert len(test) > 3
    pick = test.iloc[0]
    again = pick.to_frame().T.astype(data.dtypes.to_dict())
    conflict = again.assign(rating=pick["rating"] % 5 + 1)
    n = len(data)
    rc, err, _, _ = _run(scheduler, tmp_path, capsys, "--data", _write(pd.concat([data, conflict]), tmp_path / "c.tsv"))
    assert rc == 2
    line = int(np.flatnonzero((data["user"] == pick["user"]) & (data["item"] == pick["item"]))[0]) + 1
    assert f"c.tsv:{n + 1}: conflicting ratings for user {pick['user']} item {pick['item']}" in err
    assert f"(line {line}) and" in err
    rc, err, metrics, out = _run(scheduler, tmp_path, capsys, "--skip-bad-lines",
                                 "--data", _write(pd.concat([data, conflict, again]), tmp_path / "s.tsv"))
    assert rc == 0, err
    assert metrics["counts"]["repeated_pairs"] == {"duplicates": 1, "conflicts": 1, "checked": "the test side"}
    assert "1 exact duplicates dropped, 1 conflicting ratings dropped" in _run.printed  # said, not only counted
    preds = pd.read_parquet(out / "predictions.parquet")
    assert len(preds) == len(test) and not preds.duplicated(["user", "item"]).any()
    assert preds.loc[(preds["user"] == pick["user"]) & (preds["item"] == pick["item"]), "rating"].tolist() == \
        [pick["rating"]]


@pytest.mark.parametrize("split", ["time", "last"])
def test_a_pair_on_both_sides_of_a_split_by_time_and_in_a_test_file(split, scheduler, tmp_path, capsys):
    data = _ratings()
    first = data.iloc[0]
    late = first.to_frame().T.astype(data.dtypes.to_dict()).assign(time=9_000_000)  # after every other rating
    path = _write(pd.concat([data, late.assign(rating=first["rating"] % 5 + 1)]), tmp_path / "t.tsv")
    rc, err, _, _ = _run(scheduler, tmp_path, capsys, "--data", path, "--split", split)
    assert rc == 2 and f"t.tsv:{len(data) + 1}: conflicting ratings" in err and "(line 1) and" in err
    rc, err, metrics, out = _run(scheduler, tmp_path, capsys, "--data", _write(pd.concat([data, late]), path),
                                 "--split", split)
    assert rc == 0, err
    assert metrics["counts"]["repeated_pairs"]["duplicates"] == 1
    preds = pd.read_parquet(out / "predictions.parquet")
    assert not ((preds["user"] == first["user"]) & (preds["item"] == first["item"])).any()  # not in test too
    # a test file that repeats a pair of its own
    held = _ratings(n_users=8, n_items=3).assign(user=lambda f: f["user"] + 100)
    test = _write(pd.concat([held, held.iloc[[2]].assign(rating=held["rating"].iloc[2] % 5 + 1)]), tmp_path / "h.tsv")
    rc, err, _, _ = _run(scheduler, tmp_path, capsys, "--data", _write(data, tmp_path / "d.tsv"), "--test", test)
    assert rc == 2 and f"h.tsv:{len(held) + 1}: conflicting ratings" in err and "(line 3) and" in err


def test_a_test_folder_and_a_split_folder_name_each_file(scheduler, tmp_path, capsys):
    # a folder of Parquet parts: the copies of a pair in two files are named by file and row
    data = _ratings()
    held = _ratings(n_users=8, n_items=3).assign(user=lambda f: f["user"] + 100)
    folder = tmp_path / "test"
    folder.mkdir()
    held.iloc[:5].to_parquet(folder / "a.parquet")
    clash = held.iloc[[2]].assign(rating=held["rating"].iloc[2] % 5 + 1)
    pd.concat([held.iloc[5:], clash]).to_parquet(folder / "b.parquet")
    rc, err, _, _ = _run(scheduler, tmp_path, capsys, "--data", _write(data, tmp_path / "d.tsv"), "--test", folder)
    assert rc == 2, err
    assert f"{folder / 'b.parquet'}:{len(held) - 5 + 1}: conflicting ratings" in err
    assert f"(line 3 of {folder / 'a.parquet'}) and" in err
    # the same files as the data, split by time: every rating checked before the split
    rc, err, _, _ = _run(scheduler, tmp_path, capsys, "--data", folder, "--split", "time")
    assert rc == 2 and f"{folder / 'b.parquet'}:{len(held) - 5 + 1}: conflicting" in err, err
