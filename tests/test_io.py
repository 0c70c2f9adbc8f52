"""Reading every supported format, and bad input failing with file, line and problem."""

import csv
import gzip
import io
import os

import dask
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
    assert report["examples"] == ["line 1235: rating is not a number: 'bad'"]


def test_a_block_is_parsed_without_waiting_for_the_blocks_before_it(tmp_path):
    # its lines are numbered from the file's once parsed: a parse task reads its own bytes
    # only (numbering as it parsed waited for every earlier block's line count, a chain a
    # worker of one thread ran only after the parse it had started)
    path = tmp_path / "u.data"
    path.write_text("".join(f"{u}\t{i}\t3\n" for u in range(50) for i in range(40)))
    r = read_ratings(path, blocksize=2000)
    graph = dict(r.parts[-1].__dask_graph__())
    parses = [k for k in graph if str(k).startswith("read-block-") and not str(k).startswith("read-block-report")]
    assert len(parses) > 5
    for key in parses:
        needs = dask.core.get_dependencies(graph, key)
        assert len(needs) == 1 and all(str(d).startswith("read-bytes-") for d in needs), needs


@pytest.mark.parametrize("mode", ["error", "skip"])
def test_a_line_that_is_not_one_record_is_named_in_any_block(tmp_path, mode):
    # a quoted field left open (or a quoted line break) and a lone carriage return: the
    # parser takes them for more or fewer lines; the line itself is named, not its block
    rows = [f"{u},{i},3" for u in range(1, 60) for i in range(1, 30)]
    for at, bad in ((1500, '1,"two\nlines",3'), (1200, '1,"open,3'), (7, '1,"open,3')):
        lines = list(rows)
        lines[at] = bad
        path = tmp_path / "r.csv"
        path.write_text("user,item,rating\n" + "\n".join(lines) + "\n")
        with pytest.raises(DataError, match="a quoted field is not closed on its line") as err:
            _read(path, blocksize=4000, on_bad_lines=mode)
        assert err.value.line == at + 2  # the header is line 1
    tab = [f"{u}\t{i}\t3" for u in range(1, 60) for i in range(1, 30)]
    tab[1300] = "1\t2\r\t3"
    path = tmp_path / "u.data"
    path.write_bytes(("\r\n".join(tab) + "\r\n").encode())  # CRLF endings are fine, a lone CR is not
    with pytest.raises(DataError, match=r"a carriage return \(\\r\) inside the line") as err:
        _read(path, blocksize=4000, on_bad_lines=mode)
    assert err.value.line == 1301


@given(st.lists(st.text(st.sampled_from('ab1 ,"'), min_size=1, max_size=6).filter(lambda t: t.strip(' ') == t
                                                                                   and t.strip()),
                min_size=1, max_size=30),
       st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_csv_written_by_pythons_writer_reads_back_field_for_field(tmp_path, items, quoting):
    # what Python's CSV writer writes (separators and doubled quotes inside quoted fields,
    # every field quoted or only those that need it) reads back field for field
    buf = io.StringIO()
    writer = csv.writer(buf, quoting=quoting, lineterminator="\n")
    writer.writerow(["user", "item", "rating"])
    writer.writerows([f"u{n}", item, 3] for n, item in enumerate(items))
    path = tmp_path / "w.csv"
    path.write_text(buf.getvalue())
    got, report = _read(path)
    assert [str(v) for v in got["item"]] == items and report["skipped"] == 0  # ("1": the integer id 1)


def test_a_blocks_refusal_and_examples_are_renumbered_from_its_first_line():
    from dcf.io.text import _placed

    frame = pd.DataFrame({"user": [1, 2], "item": [3, 4], "rating": [5.0, 4.0], "line": [1, 3]})
    report = {"lines": 3, "rows": 2, "skipped": 1, "examples": ["line 2: rating is not a number: 'x'"]}
    got, rep = _placed((frame, report, None), 101)
    assert got["line"].tolist() == [101, 103] and rep["examples"] == ["line 102: rating is not a number: 'x'"]
    assert frame["line"].tolist() == [1, 3]  # the parsed block itself is left as it was
    refusal = DataError("r.txt", "lines 1-40 could not be split into one row per line", 1)
    with pytest.raises(DataError, match="^r.txt:101: lines 101-140 could not be split") as err:
        _placed((None, None, refusal), 101)
    assert err.value.line == 101
    assert _placed((frame, report, None), 1)[0] is frame


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


def test_a_path_is_taken_literally_never_as_a_pattern(tmp_path):
    """A file named with ``*`` or ``[`` is read as itself (fsspec would expand it to every
    match and the read failed with "too many values to unpack"); a pattern that names no
    file is a DataError saying patterns are not expanded."""
    (tmp_path / "r[1].data").write_text("1\t10\t5\n")
    (tmp_path / "r*.data").write_text("1\t10\t5\n1\t20\t3\n2\t10\t1\n")
    frame, report = _read(tmp_path / "r*.data")
    assert frame["rating"].tolist() == [5.0, 3.0, 1.0] and report["rows"] == 3
    with pytest.raises(DataError, match=r"no such file or folder .*a pattern such as '\*.csv' is not expanded"):
        read_ratings(tmp_path / "*.csv")


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
    from dcf.io import parquet

    n = 95
    df = pd.DataFrame({"user": np.arange(n) % 7, "item": np.arange(n), "rating": 1.0 + np.arange(n) % 5})
    df.loc[61, "rating"] = -2.0
    df.to_parquet(tmp_path / "r.parquet", row_group_size=10)
    monkeypatch.setattr(parquet, "PARQUET_PART_ROWS", 25)  # patched where it is read
    src = dio.sniff(tmp_path / "r.parquet", on_bad_lines="skip")
    parts, _, name = dio.parquet_parts(src)
    assert name == src.path  # one file: its plain name
    assert len(parts) == 5  # groups of 10 rows, at most 25 rows a part: 20+20+20+20+15
    frame, report = _read(tmp_path / "r.parquet", on_bad_lines="skip")
    assert frame["line"].tolist() == [i + 1 for i in range(n) if i != 61]
    assert report["skipped"] == 1 and report["lines"] == n
    with pytest.raises(DataError) as err:
        _read(tmp_path / "r.parquet")
    assert err.value.line == 62 and "positive" in str(err.value)


# ---------------------------------------------------------------- issue 19: memory and limits

def _bench():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "read_memory.py"
    spec = importlib.util.spec_from_file_location("read_memory", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("shape,bound", [("ml", 4.0), ("text", None)])
def test_a_read_task_peaks_under_a_small_multiple_of_its_block(tmp_path, shape, bound):
    # one 16 MiB block read and parsed in a fresh process (peak RSS, VmHWM); whole blocks
    # parsed as text peaked at about 31x
    from dcf.io import READ_MEMORY_MULTIPLE

    bench = _bench()
    path = tmp_path / f"{shape}.data"
    bench.write_shape(path, shape, 16)
    m = bench.measure(path, timeout=120)
    assert m["rows"] > 600_000 and m["block"] > 15 * 2**20
    assert m["ratio"] < (bound or READ_MEMORY_MULTIPLE), m
    assert m["id_dtype"] == ("int64" if shape == "ml" else "object")


def test_an_absurd_id_or_line_names_its_line(tmp_path):
    from dcf.io import MAX_ID_CHARS, MAX_LINE_BYTES

    path = tmp_path / "u.data"
    path.write_text("1\t2\t3\n2\t2\t4\n" + "x" * 10_000 + "\t5\t4\n3\t3\t3\n")
    for mode in ("error", "skip"):
        with pytest.raises(DataError, match=f"user id is 10,000 characters long, more than the "
                                            f"limit of {MAX_ID_CHARS:,}") as err:
            _read(path, on_bad_lines=mode)
        assert err.value.line == 3 and str(err.value).startswith(f"{path}:3: ")
    # a line longer than the limit, crossing several small blocks, is named by its number
    good = "".join(f"{u}\t{i}\t3\n" for u in range(1, 300) for i in range(1, 20))
    n_good = good.count("\n")
    path.write_text(good + "7\t" + "9" * (3 * MAX_LINE_BYTES) + "\t4\n" + good)
    for blocksize in (50_000, 10**7):
        with pytest.raises(DataError, match="line is longer than 65,536 bytes") as err:
            _read(path, blocksize=blocksize)
        assert err.value.line == n_good + 1


def test_blocksize_auto_follows_the_worker_memory_limit(tmp_path, monkeypatch):
    from dcf import cluster
    from dcf.io import DEFAULT_BLOCKSIZE, MAX_BLOCKSIZE, MIN_BLOCKSIZE, block_size_for, resolve_blocksize

    assert block_size_for(3 * 2**30, 2) == MAX_BLOCKSIZE  # the default cluster's workers
    assert block_size_for(2**30, 4) == 12 * 2**20
    assert block_size_for(2**30, 4, used=2**29) == 4 * 2**20
    assert block_size_for(100 * 2**20, 8) == MIN_BLOCKSIZE
    assert block_size_for(2**30, 1) > block_size_for(2**30, 2) > block_size_for(2**30, 8)
    assert resolve_blocksize("auto") == DEFAULT_BLOCKSIZE  # no client
    assert resolve_blocksize("2MiB") == 2 * 2**20 and resolve_blocksize(5000) == 5000
    monkeypatch.setattr(cluster, "memory_budget", lambda: (256 * 2**20, 2, 512 * 2**20, 0))
    assert resolve_blocksize("auto") == 6 * 2**20
    monkeypatch.setattr(cluster, "memory_budget", lambda: (64 * 2**20, 2, 128 * 2**20, 0))
    path = tmp_path / "u.data"
    path.write_text("".join(f"{u}\t{i}\t{1 + (u + i) % 5}\t881250949\n"
                            for u in range(1, 400) for i in range(1, 300)))
    r = read_ratings(path)  # blocksize="auto": 1 MiB blocks here
    assert len(r.parts) == -(-path.stat().st_size // MIN_BLOCKSIZE) > 1
    frame, report = _read(path)
    assert report["rows"] == 399 * 299 and frame["line"].tolist() == list(range(1, 399 * 299 + 1))


def test_integer_ids_are_typed_and_other_ids_kept_as_text(tmp_path):
    # a block's id column is int64 where every id spells an integer that fits 64 bits;
    # where one does not, the whole column is the exact text, in every slice of the block
    good = "".join(f"{u}\t{i}\t3\n" for u in range(1, 200) for i in range(1, 100))
    path = tmp_path / "u.data"
    path.write_text(good)
    frame, _ = _read(path)
    assert frame["user"].dtype == np.int64 and frame["item"].dtype == np.int64
    odd = ["007", "+7", "-0", " 7", "9223372036854775808", "José"]
    path.write_text(good + "".join(f"{u}\t1\t4\n" for u in odd))
    frame, report = _read(path)
    assert frame["user"].dtype == object and frame["item"].dtype == np.int64
    assert all(isinstance(u, str) for u in frame["user"])
    assert frame["user"].tolist()[-len(odd):] == odd and frame["user"].iloc[0] == "1"
    assert report["rows"] == good.count("\n") + len(odd)
    assert frame["line"].tolist() == list(range(1, report["rows"] + 1))


@pytest.fixture
def alarm():
    import signal

    def _hung(*_):
        raise TimeoutError("reading hung")

    old = signal.signal(signal.SIGALRM, _hung)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def test_fifos_and_devices_are_refused_without_opening_them(tmp_path, alarm):
    import os

    fifo = tmp_path / "ratings.data"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match="is a FIFO .*not a regular file or folder") as err:
        read_ratings(fifo)
    assert err.value.path == str(fifo) and err.value.line is None
    with pytest.raises(DataError, match="is a FIFO"):
        read_ratings(fifo, format="parquet")
    with pytest.raises(DataError, match="is a character device"):
        read_ratings("/dev/zero")


def test_a_truncated_compressed_file_is_a_data_error(tmp_path):
    import bz2
    import lzma

    small = tmp_path / "small.data.gz"
    packed = gzip.compress("".join(f"{u}\t{u % 7}\t3\n" for u in range(2000)).encode())
    small.write_bytes(packed[:len(packed) // 2])
    with pytest.raises(DataError, match=r"compressed stream ends early \(truncated file\?\)"):
        read_ratings(small)  # found by sniff
    rng = np.random.default_rng(0)
    text = "".join(f"{u}\t{i}\t{r}\n" for u, i, r in zip(rng.integers(1, 10**6, 200_000),
                                                        rng.integers(1, 10**5, 200_000),
                                                        rng.integers(1, 6, 200_000))).encode()
    for ext, compress in (("gz", gzip.compress), ("bz2", bz2.compress), ("xz", lzma.compress)):
        packed = compress(text)
        path = tmp_path / f"cut.data.{ext}"
        path.write_bytes(packed[:len(packed) // 2])
        r = read_ratings(path)  # the first 64 KiB decompress: the read task finds the end
        with pytest.raises(DataError, match="compressed stream ends early") as err:
            r.frame.compute(scheduler="sync")
        assert err.value.path == str(path) and str(err.value).startswith(f"{path}: cannot be read: ")


def test_permission_denied_is_a_data_error(tmp_path):
    import os
    import pwd
    import tempfile

    folder = tempfile.mkdtemp()  # a folder another user may enter
    try:
        os.chmod(folder, 0o755)
        path = os.path.join(folder, "secret.data")
        with open(path, "w") as f:
            f.write("1\t2\t3\n")
        os.chmod(path, 0)
        if os.geteuid() != 0:
            with pytest.raises(DataError, match="permission denied") as err:
                read_ratings(path)
            assert err.value.path == path
            return
        try:
            nobody = pwd.getpwnam("nobody")
        except KeyError:
            pytest.skip("running as root without a 'nobody' user to drop to")
        got = _as_user(nobody, lambda: read_ratings(path))
        assert got == f"DataError: {path}: permission denied", got
    finally:
        os.chmod(os.path.join(folder, "secret.data"), 0o600)
        import shutil

        shutil.rmtree(folder)


def _as_user(user, call) -> str:
    """Run ``call`` in a forked child as ``user``; what it raised, as 'Type: message'."""
    import os

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
            call()
            out = "no error"
        except BaseException as exc:  # noqa: BLE001
            out = f"{type(exc).__name__}: {exc}"
        os.write(write, out.encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as f:
        return f.read()


# ---------------------------------------------------------------- issue 19: Parquet that lies

def _pandas(frame):
    return frame.compute() if hasattr(frame, "compute") else frame


def test_parquet_uint64_ids_at_or_above_2_63_stay_exact(tmp_path):
    from dcf import ItemKNN

    big = [2**64 - 1, 2**63, 2**63 - 1, 1, 5]
    rows = [(u, i, float(1 + (k + i) % 5)) for k, u in enumerate(big) for i in range(1, 7) if (k + i) % 4]
    users = np.array([u for u, _, _ in rows], dtype=np.uint64)
    df = pd.DataFrame({"user": users, "item": [i for _, i, _ in rows], "rating": [r for *_, r in rows]})
    df.to_parquet(tmp_path / "r.parquet")
    (tmp_path / "r.data").write_text("".join(f"{u}\t{i}\t{r:g}\n" for u, i, r in rows))
    frames, fits = [], []
    for name in ("r.parquet", "r.data"):
        frame, _ = _read(tmp_path / name)
        frames.append(frame)
        with dask.config.set(scheduler="sync"):
            model = ItemKNN(k=3).fit(read_ratings(tmp_path / name))
            fits.append((model.matrix_.users.to_raw(np.arange(len(big))).tolist(),
                         _pandas(model.neighbours()), _pandas(model.recommend(n=2))))
    assert sorted(map(str, frames[0]["user"])) == sorted(map(str, frames[1]["user"]))
    assert str(2**64 - 1) in frames[0]["user"].tolist()  # not -1
    assert fits[0][0] == fits[1][0] == sorted(str(u) for u in big)
    pd.testing.assert_frame_equal(fits[0][1], fits[1][1])
    pd.testing.assert_frame_equal(fits[0][2], fits[1][2])


def test_parquet_column_types_that_cannot_hold_ids_or_ratings(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    ok = {"user": pa.array([1, 2]), "item": pa.array([3, 4]), "rating": pa.array([4.0, 5.0])}
    cases = [("rating", pa.array([True, False]), "rating column is boolean, expected numbers"),
             ("user", pa.array([[1], [2]]), r"user id column 'user' has type list<.*int64>: ids must be integers or text"),
             ("item", pa.array([{"a": 1}, {"a": 2}]), r"item id column 'item' has type struct<a: int64>"),
             ("user", pa.array([b"\x01", b"\x02"]), r"user id column 'user' has type binary")]
    for k, (column, values, problem) in enumerate(cases):
        path = tmp_path / f"bad{k}.parquet"
        pq.write_table(pa.table({**ok, column: values}), path)
        with pytest.raises(DataError, match=problem) as err:
            _read(path)
        assert err.value.path == str(path)


def test_a_folder_mixing_parquet_and_other_files_is_refused(tmp_path):
    df = pd.DataFrame({"user": [1, 2], "item": [3, 4], "rating": [4.0, 5.0]})
    folder = tmp_path / "ratings"
    folder.mkdir()
    df.to_parquet(folder / "part.0.parquet")
    for marker in ("_SUCCESS", "_metadata", "_common_metadata", ".part.0.parquet.crc"):
        (folder / marker).write_bytes(b"")
    frame, report = _read(folder)  # markers and hidden files are not data
    assert report["rows"] == 2
    df.to_csv(folder / "part.1.csv", index=False)
    with pytest.raises(DataError, match=r"mixes Parquet parts with other files \('part.1.csv'") as err:
        read_ratings(folder)
    assert err.value.path == str(folder)


def test_a_folders_rows_are_named_by_their_file_wherever_they_meet(tmp_path):
    """A folder's files are numbered one after another, so a pair rated in two files (met
    in the matrix, or by the repeated pairs' check) names each file and its own row."""
    import pickle

    from dcf import ItemKNN
    from dcf.errors import FolderRows
    from dcf.repeats import checked_pairs

    folder = tmp_path / "log"
    (folder / "day=2").mkdir(parents=True)
    pd.DataFrame({"user": [1, 2, 3], "item": [10, 20, 30], "rating": [4.0, 3.0, 5.0]}).to_parquet(folder / "a.parquet")
    pd.DataFrame({"user": [4, 5, 1], "item": [40, 50, 10], "rating": [2.0, 1.0, 2.0]}).to_parquet(folder / "b.parquet")
    pd.DataFrame({"user": [6, 7], "item": [60, 10], "rating": ["2", "x"]}).to_parquet(folder / "day=2" / "c.parquet")
    a, b, c = (str(folder / f) for f in ("a.parquet", "b.parquet", "day=2/c.parquet"))
    frame, report = _read(folder, on_bad_lines="skip")
    assert frame["line"].tolist() == [1, 2, 3, 4, 5, 6, 7]  # c's row 2 skipped, and named in its file
    assert report["examples"] == ["day=2/c.parquet line 2: rating is not a number: 'x'"]
    ratings = read_ratings(folder, on_bad_lines="skip")
    name = ratings.source.path
    assert name == str(folder) and isinstance(name, FolderRows)
    assert [name.locate(n) for n in (1, 3, 4, 6, 7, 8)] == [(a, 1), (a, 3), (b, 1), (b, 3), (c, 1), (c, 2)]
    assert pickle.loads(pickle.dumps(name)).files == name.files
    want = r"conflicting ratings for user 1 item 10: 4 \(line 1 of .*a\.parquet\) and 2 \(line 3\)"
    with dask.config.set(scheduler="sync"):
        with pytest.raises(DataError, match=want) as err:
            ItemKNN(k=2).fit(ratings)
        assert (err.value.path, err.value.line) == (b, 3)
        assert pickle.loads(pickle.dumps(err.value)).args == err.value.args
        with pytest.raises(DataError, match=want) as err:
            checked_pairs(ratings.parts, "error", name)
        assert (err.value.path, err.value.line) == (b, 3)
        kept = ItemKNN(k=2, on_bad_lines="skip").fit(ratings).matrix_  # the earlier file's rating wins
        dense = kept.by_user.compute().toarray()
    assert dense[kept.users.to_codes(np.array([1]))[0], kept.items.to_codes(np.array([10]))[0]] == 4.0
    # one file alone keeps its plain name and its own rows
    assert type(read_ratings(folder / "b.parquet").source.path) is str
    # a file rewritten after the job planned its parts: the rows after it would be misnumbered
    planned = read_ratings(folder, on_bad_lines="skip")
    pd.DataFrame({"user": [4, 5, 1, 8], "item": [40, 50, 10, 80], "rating": [2.0, 1.0, 2.0, 3.0]}).to_parquet(
        folder / "b.parquet")
    with dask.config.set(scheduler="sync"), pytest.raises(DataError, match="changed while it was read: its row "
                                                          "groups held 3 rows when the job started and 4 now") as err:
        dask.compute(*planned.parts)
    assert err.value.path == b
    (folder / "b.parquet").write_bytes(b"PAR1 not parquet PAR1")  # a folder's unreadable file: refused at once
    with pytest.raises(DataError, match="cannot be read as Parquet") as err:
        read_ratings(folder)
    assert err.value.path == b
    (folder / "b.parquet").unlink()
    alone = tmp_path / "one"  # a folder of one file: its rows still named in the file
    alone.mkdir()
    pd.DataFrame({"user": [1, 1], "item": [10, 10], "rating": [4.0, 2.0]}).to_parquet(alone / "x.parquet")
    with dask.config.set(scheduler="sync"), pytest.raises(DataError) as err:
        ItemKNN(k=2).fit(read_ratings(alone))
    assert (err.value.path, err.value.line) == (str(alone / "x.parquet"), 2)
    clicks = tmp_path / "clicks"  # events whose weights, summed across two files, overflow
    clicks.mkdir()
    pd.DataFrame({"user": [1, 2], "item": [10, 10], "weight": [1e308, 1.0]}).to_parquet(clicks / "a.parquet")
    pd.DataFrame({"user": [3, 1], "item": [10, 10], "weight": [1.0, 1e308]}).to_parquet(clicks / "b.parquet")
    with dask.config.set(scheduler="sync"), pytest.raises(DataError) as err:
        ItemKNN(k=2, feedback="implicit").fit(read_ratings(clicks, feedback="implicit"))
    assert (err.value.path, err.value.line) == (str(clicks / "b.parquet"), 2)
    assert f"(line 1 of {clicks / 'a.parquet'} to line 2, 2 events) add up past" in str(err.value)


def test_blocks_of_integer_ids_and_a_block_with_text_ids_agree(tmp_path):
    # the block with "abc" is text; the other blocks' integer ids come as the same text,
    # so 7 and "7" are never two users (the id map refused such duplicates)
    from dcf import ItemKNN

    good = "".join(f"{u}\t{i}\t{1 + (u * 7 + i) % 5}\n" for u in range(1, 31) for i in range(1, 21) if (u + i) % 3)
    path = tmp_path / "u.data"
    path.write_text(good + "abc\t1\t4\nabc\t2\t5\n7\t2\t4\n")
    r = read_ratings(path, blocksize=1000)
    assert len(r.parts) >= 3
    with dask.config.set(scheduler="sync"):
        frame = pd.concat(dask.compute(*r.parts), ignore_index=True)
        model = ItemKNN(k=5).fit(read_ratings(path, blocksize=1000))
        pred = model.predict(pd.DataFrame({"user": ["7", "abc"], "item": ["1", "2"]})).compute()
    assert frame["user"].map(type).eq(str).all() and frame["item"].dtype == np.int64
    assert len(model.matrix_.users) == 31 and pred["user"].tolist() == ["7", "abc"]


ID_TOKENS = ["1", "7", "42", "0", "-5", "-0", "007", "09", "-07", "0x1F", "0X1f", "+7", " 7", "7 ", "\t7", "1e3",
             "9223372036854775807", "-9223372036854775808", "9223372036854775808", "abc", "José", "",
             "٣", "7.0", "1_0", " ", "\u3000", "\u00a0x", "é"]
RATING_TOKENS = ["3", "3.5", "0.5", "05", "0", "-1", "+3", " 3", "3 ", "1e0", ".5", "5.", "nan", "inf",
                 "x", "", "0x1", "1e400"]


def _slice_text(draw, sep, n_fields):
    # clean tokens and at most one odd one, so that each oddity is met alone
    odd = draw(st.sampled_from(ID_TOKENS[4:] + RATING_TOKENS[3:] + [None]))
    ids = ID_TOKENS[:4] + ([odd] if odd in ID_TOKENS else [])
    ratings = RATING_TOKENS[:3] + ([odd] if odd in RATING_TOKENS else [])
    lines = []
    for _ in range(draw(st.integers(1, 12))):
        fields = [draw(st.sampled_from(ids)), draw(st.sampled_from(ids)), draw(st.sampled_from(ratings))]
        if n_fields == 4:
            fields.append(draw(st.sampled_from(["881250949", "0", "01", "x"])))
        if draw(st.integers(0, 19)) == 0:
            fields = fields[:draw(st.integers(0, 2))]
        lines.append(sep.join(fields))
    return "\n".join(lines) + ("\n" if draw(st.booleans()) else "")


def _typed_and_exact(raw: bytes, src):
    """(rows of the block parser, rows of the line-by-line parser), or their errors."""
    from dcf.io.exact import parse_exact
    from dcf.io.text import parse_text_block
    from dcf.io.typed import typed_ids

    def run(parse):
        try:
            frame, report = parse()
        except DataError as exc:
            return str(exc)
        return report, {name: (np.asarray(frame[name]).dtype, np.asarray(frame[name]).tolist())
                        for name in ("user", "item", "rating", "line")}

    def exact():
        frame, report = parse_exact(raw.replace(b"::", b"\x1f") if src.format == "dat" else raw, 3, 0, src)
        return {"user": typed_ids(frame["user"].to_numpy(dtype=object)),
                "item": typed_ids(frame["item"].to_numpy(dtype=object)),
                "rating": frame["rating"].to_numpy(), "line": frame["line"].to_numpy()}, report

    return run(lambda: parse_text_block(raw, 3, False, src)), run(exact)


def test_each_odd_token_alone_reads_as_the_exact_parser_reads_it():
    # every spelling pyarrow's number parsers treat differently from the exact parser, alone
    # in an otherwise clean slice, in each id and rating position and at the slice's start
    from dcf.io.sources import RatingsSource

    for fmt, sep, on_bad in (("tab", "\t", "skip"), ("tab", "\t", "error"), ("csv", ",", "skip"),
                             ("dat", "::", "skip")):
        src = RatingsSource("r.txt", fmt, sep=sep if fmt != "dat" else "\t", on_bad_lines=on_bad)
        for token in ID_TOKENS[4:] + RATING_TOKENS[3:]:
            for row, col in ((0, 0), (1, 0), (1, 1)) if token in ID_TOKENS else ((2, 2),):
                lines = [["1", "7", "3"], ["42", "0", "3.5"], ["7", "1", "0.5"]]
                lines[row][col] = token
                raw = "\n".join(sep.join(line) for line in lines).encode() + b"\n"
                got, want = _typed_and_exact(raw, src)
                assert got == want, (fmt, on_bad, raw)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), st.sampled_from(["tab", "csv", "dat"]), st.sampled_from(["skip", "error"]),
       st.sampled_from([3, 4]))
def test_the_typed_pass_gives_exactly_the_exact_parsers_rows(data, fmt, on_bad, n_fields):
    # the typed pass (pyarrow, integer ids read as int64 where the bytes allow) must give
    # the same rows, lines, counts and errors as the line-by-line parser on any slice
    from dcf.io.sources import RatingsSource

    sep = {"tab": "\t", "csv": ",", "dat": "::"}[fmt]
    src = RatingsSource("r.txt", fmt, sep=sep if fmt != "dat" else "\t", n_fields=n_fields,
                        columns=(0, 1, 2), on_bad_lines=on_bad)
    got, want = _typed_and_exact(_slice_text(data.draw, sep, n_fields).encode(), src)
    assert got == want


def test_the_long_line_check_finds_exactly_the_lines_past_the_limit():
    # the check looks for a line break in each half-limit stretch and measures lines only
    # where one lacks it; every line just under, at and past the limit, anywhere in a slice
    import itertools

    from dcf.io.sources import MAX_LINE_BYTES, RatingsSource
    from dcf.io.text import _check_line_lengths

    src = RatingsSource("r.txt", "tab")
    half = MAX_LINE_BYTES // 2
    sizes = [0, 5, half - 1, half, half + 1, MAX_LINE_BYTES - 1, MAX_LINE_BYTES, MAX_LINE_BYTES + 1,
             MAX_LINE_BYTES + 2, 2 * MAX_LINE_BYTES + 1]
    for lengths in itertools.product(sizes, repeat=3):
        for end in (b"", b"\n"):
            data = b"\n".join(b"x" * n for n in lengths) + end
            long = [i for i, n in enumerate(lengths) if n > MAX_LINE_BYTES]
            if not long:
                _check_line_lengths(data, 10, src)
                continue
            with pytest.raises(DataError) as exc:
                _check_line_lengths(data, 10, src)
            assert exc.value.line == 10 + long[0], lengths


def test_ids_at_the_length_limit_are_measured_in_characters():
    # ids just under, at and past MAX_ID_CHARS, in one- and two-byte characters: a line of
    # many bytes is not an error unless an id has more characters than the limit
    from dcf.io import MAX_ID_CHARS
    from dcf.io.sources import RatingsSource
    from dcf.io.text import parse_text_block

    src = RatingsSource("r.txt", "tab")
    for char in ("u", "é"):
        for n in (MAX_ID_CHARS // 2 - 1, MAX_ID_CHARS // 2, MAX_ID_CHARS - 1, MAX_ID_CHARS, MAX_ID_CHARS + 1):
            raw = f"1\t7\t3\n{char * n}\t7\t3\n2\t7\t4\n".encode()
            if n <= MAX_ID_CHARS:
                frame, _ = parse_text_block(raw, 5, False, src)
                assert frame["user"].tolist() == ["1", char * n, "2"]
            else:
                with pytest.raises(DataError, match="characters long") as exc:
                    parse_text_block(raw, 5, False, src)
                assert exc.value.line == 6


def test_a_slice_without_rows_leaves_integer_ids_integers(monkeypatch):
    # a slice holding only blank lines (the exact parser's empty result is typed as text)
    # used to turn the whole block's integer ids into text
    from dcf.io import text
    from dcf.io.sources import RatingsSource

    monkeypatch.setattr(text, "SLICE_BYTES", 64)
    raw = b"1\t7\t3\n" + b"\n" * 200 + b"2\t8\t4\n"
    frame, report = text.parse_text_block(raw, 1, True, RatingsSource("r.txt", "tab", on_bad_lines="skip"))
    assert frame["user"].dtype == np.int64 and frame["user"].tolist() == [1, 2]
    assert frame["line"].tolist() == [1, 202] and report["blank"] == 200


def test_a_frame_and_its_report_computed_together_come_back_in_order(tmp_path):
    """A read's frame ended in a graph that also held its sibling outputs (the blocks'
    reports); Dask 2026.8 took such a graph's ends for the frame's outputs, so
    ``dask.compute(r.frame, r.report)`` handed back the report for the frame under some
    hash seeds (reproduced with seeds 1 and 2).  Each seed in its own process."""
    import subprocess
    import sys

    path = tmp_path / "r.tsv"
    path.write_text("".join(f"{u}\t{i}\t{1 + (u + i) % 5}\t{900000000 + u}\n" for u in range(1, 40) for i in range(1, 30, 3)))
    code = ("import dask, dcf.io as d, sys\n"
            "for fb in ('explicit', 'implicit'):\n"
            "    r = d.read_ratings(sys.argv[1], feedback=fb)\n"
            "    a, b = dask.compute(r.frame, r.report, scheduler='sync')\n"
            "    c, e = dask.compute(r.report, r.frame, scheduler='sync')\n"
            "    print(type(a).__name__, type(b).__name__, type(c).__name__, type(e).__name__, len(a), b['rows'])\n")
    for seed in range(6):
        done = subprocess.run([sys.executable, "-W", "ignore", "-c", code, str(path)], capture_output=True, text=True,
                              timeout=120, env={**os.environ, "PYTHONHASHSEED": str(seed)})
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["DataFrame", "dict", "dict", "DataFrame", "390", "390"] * 2, (seed, done.stdout)
