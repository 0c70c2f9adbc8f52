"""Reading every supported format, and bad input failing with file, line and problem."""

import gzip

import dask
import numpy as np
import pandas as pd
import pytest

from dcf import DataError, read_ratings
from dcf.io import sniff


def _read(path, **kw):
    r = read_ratings(path, **kw)
    with dask.config.set(scheduler="sync"):
        frame = pd.concat(dask.compute(*r.parts), ignore_index=True)
        return frame, dask.compute(r.report)[0]


EXPECTED = [("1", "10", 5.0), ("1", "20", 3.5), ("2", "10", 1.0)]


@pytest.mark.parametrize("name,text,fmt", [
    ("u.data", "1\t10\t5\t881250949\n1\t20\t3.5\t1\n2\t10\t1\t2\n", "tab"),
    ("ratings.dat", "1::10::5::978300760\n1::20::3.5::1\n2::10::1::2\n", "dat"),
    ("r.csv", "userId,movieId,rating,timestamp\n1,10,5,1\n1,20,3.5,1\n2,10,1,1\n", "csv"),
    ("r2.csv", "user,item,rating\n1,10,5\n1,20,3.5\n2,10,1\n", "csv"),
    ("r3.csv", "item,rating,user\n10,5,1\n20,3.5,1\n10,1,2\n", "csv"),
    ("bom.csv", "\ufeffuser,item,rating\n1,10,5\n1,20,3.5\n2,10,1\n\n\n", "csv"),
])
def test_text_formats(tmp_path, name, text, fmt):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    frame, report = _read(path)
    assert sniff(path).format == fmt
    got = [(str(u), str(i), r) for u, i, r in frame[["user", "item", "rating"]].itertuples(index=False)]
    assert got == EXPECTED
    assert report["rows"] == 3 and report["lines"] == 3


def test_parquet_and_gzip(tmp_path):
    df = pd.DataFrame({"userId": [1, 1, 2], "movieId": [10, 20, 10], "rating": [5.0, 3.5, 1.0]})
    df.to_parquet(tmp_path / "r.parquet")
    frame, _ = _read(tmp_path / "r.parquet")
    assert frame["rating"].tolist() == [5.0, 3.5, 1.0] and frame["line"].tolist() == [1, 2, 3]
    with gzip.open(tmp_path / "u.data.gz", "wt") as f:
        f.write("1\t10\t5\n1\t20\t3.5\n2\t10\t1\n")
    frame, _ = _read(tmp_path / "u.data.gz")
    assert len(frame) == 3


def test_many_blocks_keep_true_line_numbers(tmp_path):
    lines = [f"{u}\t{i}\t{1 + (u + i) % 5}" for u in range(50) for i in range(40)]
    lines[1234] = "7\t8\tbad"
    path = tmp_path / "u.data"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as err:
        _read(path, blocksize=2000)
    assert err.value.line == 1235 and err.value.path == str(path)
    frame, report = _read(path, blocksize=2000, on_bad_lines="skip")
    assert len(frame) == len(lines) - 1 and report["skipped"] == 1
    assert frame["line"].is_unique and set(frame["line"]) == set(range(1, 2001)) - {1235}


@pytest.mark.parametrize("text,line,problem", [
    ("1\t2\t3\n1\t3\tabc\n", 2, "not a number"),
    ("1\t2\t3\n\n1\t3\tnan\n", 3, "NaN"),
    ("1\t2\tinf\n", 1, "infinite"),
    ("1\t2\t0\n", 1, "positive"),
    ("1\t2\t-4\n", 1, "positive"),
    ("1\t2\t3\t4\n1\t2\t3\t4\t5\n", 2, "expected 4 fields, saw 5"),
])
def test_bad_lines_name_file_line_and_problem(tmp_path, text, line, problem):
    path = tmp_path / "u.data"
    path.write_text(text)
    with pytest.raises(DataError, match=problem) as err:
        _read(path)
    assert err.value.line == line
    assert str(err.value).startswith(f"{path}:{line}: ")


def test_skip_mode_counts_every_dropped_row(tmp_path):
    path = tmp_path / "u.data"
    path.write_text("1\t2\t3\n1\t3\tabc\n\n2\t2\t\n3\t3\t-1\n4\t4\t4\t4\n5\t5\t5\n")
    frame, rep = _read(path, on_bad_lines="skip")
    assert frame["line"].tolist() == [1, 7]
    assert rep["missing"] == 1 and rep["skipped"] == 3 and rep["blank"] == 1
    assert rep["rows"] + rep["missing"] + rep["skipped"] == rep["lines"]
    assert any("line 2" in e for e in rep["examples"])


def test_declared_scale(tmp_path):
    path = tmp_path / "u.data"
    path.write_text("1\t2\t3\n1\t3\t7\n")
    with pytest.raises(DataError, match=r"outside the declared scale \[1, 5\]"):
        _read(path, rating_scale=(1, 5))


@pytest.mark.parametrize("content,problem", [
    (b"", "empty"),
    (b"user,item,rating\n", "header but no ratings"),
    (b"1;2;3\n", "cannot tell the format"),
    (b"\x00\x01\x02binary", "binary"),
    (b"1\t2\t3\n\xff\xfe\t1\t2\n", "UTF-8"),
    (b"user,thing,rating\n1,2,3\n", "no item column"),
])
def test_unusable_files(tmp_path, content, problem):
    path = tmp_path / "data.txt"
    path.write_bytes(content)
    with pytest.raises(DataError, match=problem):
        _read(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_ratings(tmp_path / "absent.csv")
    with pytest.raises(DataError, match="folder"):
        read_ratings(tmp_path)


def test_conflicting_duplicates_name_both_lines(tmp_path):
    from dcf import ItemKNN

    path = tmp_path / "u.data"
    path.write_text("1\t2\t3\n1\t3\t4\n1\t2\t3\n2\t2\t5\n1\t3\t2\n")
    with pytest.raises(DataError, match=r"conflicting ratings .* 4 \(line 2\) and 2 \(line 5\)") as e:
        with dask.config.set(scheduler="sync"):
            ItemKNN(k=2).fit(read_ratings(path))
    assert e.value.line == 5
    with dask.config.set(scheduler="sync"):
        model = ItemKNN(k=2, on_bad_lines="skip").fit(read_ratings(path, on_bad_lines="skip"))
        rep = dask.compute(model.matrix_.report)[0]
    assert rep["duplicates"] == 1 and rep["conflicts"] == 1 and rep["stored"] == 3


def test_fsspec_url(tmp_path):
    path = tmp_path / "u.data"
    path.write_text("1\t10\t5\n1\t20\t3.5\n2\t10\t1\n")
    frame, report = _read(f"file://{path}")
    assert frame["rating"].tolist() == [5.0, 3.5, 1.0] and report["rows"] == 3


def test_a_large_parquet_file_is_read_in_row_group_parts(tmp_path, monkeypatch):
    # one Parquet file of many row groups becomes several tasks (a 20M-row file in one task
    # took a 3 GB worker down); the parts keep the file's row numbers as line numbers
    from dcf import io as dio

    n = 95
    df = pd.DataFrame({"user": np.arange(n) % 7, "item": np.arange(n), "rating": 1.0 + np.arange(n) % 5})
    df.loc[61, "rating"] = -2.0
    df.to_parquet(tmp_path / "r.parquet", row_group_size=10)
    monkeypatch.setattr(dio, "PARQUET_PART_ROWS", 25)
    src = dio.sniff(tmp_path / "r.parquet", on_bad_lines="skip")
    parts, _ = dio._read_parquet(src)
    assert len(parts) == 5  # groups of 10 rows, at most 25 rows a part: 20+20+20+20+15
    frame, report = _read(tmp_path / "r.parquet", on_bad_lines="skip")
    assert frame["line"].tolist() == [i + 1 for i in range(n) if i != 61]
    assert report["skipped"] == 1 and report["lines"] == n
    with pytest.raises(DataError) as err:
        _read(tmp_path / "r.parquet")
    assert err.value.line == 62 and "positive" in str(err.value)
