"""Saved models: round trip (same process, new process), and every way a file can be bad."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import pytest
from numpy.lib import format as npformat
from conftest import random_ratings

import dcf
from dcf import KNN, DataError, ItemKNN, UserKNN

SYNC = {"scheduler": "sync"}


def _data():
    df = random_ratings(4, 50, 30, 0.3)
    df["user"] = "u" + df["user"].astype(str) + "é"  # text ids survive too
    return df


@pytest.mark.parametrize("cls,neighbourhood,extra", [
    (ItemKNN, "rated", {}), (ItemKNN, "global", {}), (UserKNN, "rated", {}), (UserKNN, "global", {}),
    (ItemKNN, "rated", dict(prediction="baseline", similarity="pearson-baseline", shrinkage=10.0)),
    (UserKNN, "global", dict(prediction="baseline", reg_user=3.0)),
    (ItemKNN, "global", dict(similarity="centred-cosine", significance=5.0, min_similarity=0.05)),
    (ItemKNN, "rated", dict(prediction="baseline", similarity="centred-cosine", amplification=2.0)),
    (UserKNN, "global", dict(similarity="bm25", bm25_k1=2.0, bm25_b=0.5, include_self=True))])
def test_round_trip_serves_the_same_answers(cls, neighbourhood, extra, tmp_path):
    df = _data()
    pairs = df.sample(40, random_state=1)[["user", "item"]]
    pairs = pd.concat([pairs, pd.DataFrame({"user": ["new"], "item": [df["item"].iloc[0]]})])
    with dask.config.set(SYNC):
        model = cls(k=6, neighbourhood=neighbourhood, block_size=7,
                    **{"prediction": "mean-centred", **extra}).fit(df)
        model.save(tmp_path / "m")
        back = dcf.load(tmp_path / "m")
        assert type(back) is cls and back.get_params() == model.get_params()
        # rows of the prediction grid may come in another order (its cells follow the
        # similarity blocks: even-cost ranges at fit time, the saved chunks after loading)
        a, b = (m.predict(pairs).compute().sort_values(["user", "item"]).reset_index(drop=True)
                for m in (model, back))
        pd.testing.assert_frame_equal(a, b)
        pd.testing.assert_frame_equal(model.recommend(n=4).compute().reset_index(drop=True),
                                      back.recommend(n=4).compute().reset_index(drop=True))
        pd.testing.assert_frame_equal(model.neighbours(), back.neighbours())
        small = back.derive(k=3)  # a loaded model is a fitted model
        assert small.neighbours(n=3)["rank"].max() <= 3


def test_a_new_process_serves_the_saved_model(tmp_path):
    df = _data()
    with dask.config.set(SYNC):
        model = ItemKNN(k=5).fit(df)
        model.save(tmp_path / "m")
        want = model.recommend(users=[df["user"].iloc[0]], n=3).compute()
    code = ("import dask, dcf, sys\n"
            "dask.config.set(scheduler='sync')\n"
            f"m = dcf.load({str(tmp_path / 'm')!r})\n"
            f"m.recommend(users=[{df['user'].iloc[0]!r}], n=3).compute()"
            ".to_json(sys.stdout, orient='records', force_ascii=False)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         check=True).stdout
    got = pd.DataFrame(json.loads(out))
    assert got["item"].tolist() == want["item"].tolist()
    np.testing.assert_allclose(got["score"], want["score"], rtol=0, atol=1e-12)


@pytest.fixture()
def saved(tmp_path):
    with dask.config.set(SYNC):
        ItemKNN(k=5).fit(_data()).save(tmp_path / "m")
    return tmp_path / "m"


def _meta(folder):
    return json.loads((folder / "dcf-model.json").read_text())


def _rewrite_meta(folder, **changes):
    meta = _meta(folder)
    meta.update(changes)
    (folder / "dcf-model.json").write_text(json.dumps(meta))


def test_a_model_saved_before_the_later_parameters_loads_with_their_defaults(saved):
    from dcf.store.meta import LATER_PARAMS

    with dask.config.set(SYNC):
        want = dcf.load(saved).recommend(n=4).compute()
        params = _meta(saved)["params"]
        for name in LATER_PARAMS:
            del params[name]
        _rewrite_meta(saved, params=params)
        back = dcf.load(saved)
        assert back.get_params() == {**ItemKNN().get_params(), **params}
        assert (back.bm25_k1, back.bm25_b, back.include_self) == (1.2, 0.75, False)
        pd.testing.assert_frame_equal(back.recommend(n=4).compute(), want)


def test_truncated_file(saved):
    f = saved / "neighbours.npz"
    f.write_bytes(f.read_bytes()[:-50])
    with pytest.raises(DataError, match=r"neighbours.npz: truncated or altered: \d+ bytes"):
        dcf.load(saved)


def test_corrupt_file(saved):
    f = saved / "ratings.npz"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(DataError, match="ratings.npz: corrupt: its SHA-256 differs"):
        dcf.load(saved)


def test_missing_file_and_missing_metadata(saved):
    (saved / "users.parquet").unlink()
    with pytest.raises(DataError, match="users.parquet: missing from the saved model"):
        dcf.load(saved)
    (saved / "dcf-model.json").unlink()
    with pytest.raises(DataError, match="not a dcf model: dcf-model.json is missing"):
        dcf.load(saved)
    with pytest.raises(DataError, match="no such model folder"):
        dcf.load(saved.parent / "absent")


def test_newer_format_version_is_refused(saved):
    _rewrite_meta(saved, format_version=99, dcf_version="9.0")
    with pytest.raises(DataError, match=r"model format version 99 written by dcf 9.0; this dcf reads "
                                        r"versions 1..1"):
        dcf.load(saved)


def test_foreign_or_garbled_metadata(saved):
    (saved / "dcf-model.json").write_text("{not json")
    with pytest.raises(DataError, match="corrupt metadata"):
        dcf.load(saved)
    (saved / "dcf-model.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(DataError, match="not a dcf model"):
        dcf.load(saved)


def test_pickled_arrays_are_never_loaded(saved, tmp_path):
    """An object array (which needs pickle, i.e. could run code) is refused, even with a
    matching checksum."""
    f = saved / "neighbours.npz"
    with np.load(f) as z:
        idx = z["idx"]
    np.savez(f, idx=idx, sim=np.array([object()] * idx.size, dtype=object).reshape(idx.shape))
    files = _meta(saved)["files"]
    from dcf.store import sha256 as _sha256

    files["neighbours.npz"] = {"bytes": f.stat().st_size, "sha256": _sha256(f)}
    _rewrite_meta(saved, files=files)
    with pytest.raises(DataError, match="cannot be read without pickle"):
        dcf.load(saved)


def test_save_replaces_atomically(saved):
    before = _meta(saved)["files"]
    with dask.config.set(SYNC):
        ItemKNN(k=3).fit(_data()).save(saved)
    assert _meta(saved)["params"]["k"] == 3 and _meta(saved)["files"] != before
    assert sorted(p.name for p in saved.parent.iterdir()) == ["m"]


# ------------------------------------------------------------------ a loaded model is the model saved

SIDE_BY_SIDE = [  # one small ratings set, models that differ only in what they were fitted as
    (ItemKNN, dict(similarity="cosine", neighbourhood="rated")),
    (ItemKNN, dict(similarity="full-cosine", neighbourhood="rated")),
    (ItemKNN, dict(similarity="jaccard", neighbourhood="global")),
    (ItemKNN, dict(similarity="pearson-baseline", neighbourhood="global", prediction="baseline")),
    (UserKNN, dict(similarity="cosine", neighbourhood="global")),
    (UserKNN, dict(similarity="pearson-baseline", neighbourhood="rated", prediction="baseline")),
    (KNN, dict(based="user", similarity="jaccard", neighbourhood="rated")),
]


def _answers(model, pairs):
    return (model.neighbours(),
            model.predict(pairs).compute().sort_values(["user", "item"]).reset_index(drop=True),
            model.recommend(n=3).compute().reset_index(drop=True))


@pytest.mark.parametrize("where", ["local", "distributed"])
def test_models_of_the_same_ratings_load_side_by_side(where, request, tmp_path):
    """Models fitted on the same ratings (other measures, orientations, neighbourhoods),
    all loaded into one client, each serve their own answers: their graph keys differ."""
    if where == "distributed":
        request.getfixturevalue("dist_client")
    df = random_ratings(7, 40, 25, 0.3)
    pairs = df.sample(30, random_state=2)[["user", "item"]]
    with dask.config.set(SYNC) if where == "local" else contextlib.nullcontext():
        fitted = [cls(k=4, block_size=6, **params).fit(df) for cls, params in SIDE_BY_SIDE]
        want = [_answers(m, pairs) for m in fitted]
        for j, m in enumerate(fitted):
            m.save(tmp_path / f"m{j}")
        loaded = [dcf.load(tmp_path / f"m{j}") for j in range(len(fitted))]  # all at once
        for j, back in enumerate(loaded):
            assert type(back) is type(fitted[j]) and back.get_params() == fitted[j].get_params()
            for a, b in zip(want[j], _answers(back, pairs)):
                pd.testing.assert_frame_equal(a, b, obj=f"model {j} {SIDE_BY_SIDE[j]}")


# ------------------------------------------------------------------ tampered models, checksums re-recorded

@pytest.fixture(scope="module")
def saved_once(tmp_path_factory):
    folder = tmp_path_factory.mktemp("saved") / "m"
    with dask.config.set(SYNC):
        ItemKNN(k=5).fit(_data()).save(folder)  # 50 users x 30 items, rated (similarity.npz)
    return folder


def _rerecord(folder, meta):
    """Record the size and SHA-256 of every listed regular file, as a careful forger would."""
    from dcf.store import sha256 as _sha256

    for name, entry in meta["files"].items():
        p = folder / name
        if os.path.lexists(p) and stat.S_ISREG(os.lstat(p).st_mode) and isinstance(entry, dict):
            entry.update(bytes=p.stat().st_size, sha256=_sha256(p))


def _set(*keys, value):
    """An edit setting ``meta[keys...] = value``."""
    def edit(folder, meta):
        target = meta
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value(target[keys[-1]]) if callable(value) else value
    return edit


def _npz_members(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _replace_npz(name, change):
    """An edit rewriting ``name`` with ``np.savez`` after ``change(arrays)``."""
    def edit(folder, meta):
        arrays = _npz_members(folder / name)
        change(arrays)
        np.savez(folder / name, **arrays)
    return edit


def _npy_header(shape, descr="<f8"):
    buf = io.BytesIO()
    npformat.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _write_zip(path, members):
    """A zip of ``name -> (bytes or callable writing to the member, compression)``."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, (content, compression) in members.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = compression
            with zf.open(info, "w", force_zip64=True) as f:
                content(f) if callable(content) else f.write(content)


def _huge_header(folder, meta):
    """ratings.npz whose ``data`` header claims (10**11,) float64 (745 GiB), no data."""
    arrays = _npz_members(folder / "ratings.npz")
    members = {f"{k}.npy": (_npy_bytes(v), zipfile.ZIP_STORED) for k, v in arrays.items()}
    members["data.npy"] = (_npy_header((10**11,)), zipfile.ZIP_STORED)
    _write_zip(folder / "ratings.npz", members)


def _zip_bomb(folder, meta):
    """ratings.npz whose ``data`` member is the real array followed by 256 MiB of zeros,
    deflated to a few hundred KiB: the member's declared size exceeds its header's."""
    arrays = _npz_members(folder / "ratings.npz")
    members = {f"{k}.npy": (_npy_bytes(v), zipfile.ZIP_STORED) for k, v in arrays.items()}

    def bomb(f):
        f.write(_npy_bytes(arrays["data"]))
        zeros = bytes(1 << 20)
        for _ in range(256):
            f.write(zeros)
    members["data.npy"] = (bomb, zipfile.ZIP_DEFLATED)
    _write_zip(folder / "ratings.npz", members)


def _npy_bytes(a):
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def _outside(kind):
    """``files`` lists a path outside the folder, recorded with its true size and SHA-256."""
    def edit(folder, meta):
        from dcf.store import sha256 as _sha256

        target = folder.parent / "x" if kind == "../x" else Path(kind)
        if kind == "../x":
            target.write_bytes(b"outside")
        meta["files"][kind] = {"bytes": target.stat().st_size, "sha256": _sha256(target)}
    return edit


def _symlink(name, outside):
    def edit(folder, meta):
        target = (folder.parent / f"elsewhere-{name}") if outside else (folder / f"copy-{name}")
        os.replace(folder / name, target)
        os.symlink(target, folder / name)
    return edit


def _fifo(name):
    def edit(folder, meta):
        (folder / name).unlink()
        os.mkfifo(folder / name)
    return edit


def _char_device(folder, meta):
    (folder / "ratings.npz").unlink()
    try:
        os.mknod(folder / "ratings.npz", 0o600 | stat.S_IFCHR, os.makedev(1, 5))  # /dev/zero
    except (PermissionError, OSError) as exc:
        pytest.skip(f"cannot create a character device here: {exc}")


def _oversized_meta(folder, meta):
    """dcf-model.json grown (sparsely) past 64 MiB."""
    with open(folder / "dcf-model.json", "r+b") as f:
        f.truncate((64 << 20) + 1)


def _ids(name, change):
    def edit(folder, meta):
        frame = pd.read_parquet(folder / name)
        change(frame).to_parquet(folder / name, index=False)
    return edit


def _set_idx(arrays):
    arrays["idx"][0, 0] = 10**6


def _nan_sim(arrays):
    arrays["sim"][0, 0] = np.nan


def _late(edit):
    """An edit of the recorded sizes or checksums themselves: applied after re-recording."""
    edit.late = True
    return edit


META_FILE = "dcf-model.json"
TAMPERED = {  # case -> (edit of folder and metadata, file the error names)
    "user_bounds not increasing": (_set("user_bounds", value=[0, 30, 20, 50]), META_FILE),
    "item_bounds not ending at shape": (_set("item_bounds", value=lambda b: b[:-1] + [b[-1] - 1]), META_FILE),
    "item_bounds not starting at 0": (_set("item_bounds", value=lambda b: [1] + b[1:]), META_FILE),
    "shape negative": (_set("shape", value=[-50, 30]), META_FILE),
    "shape huge": (_set("shape", value=[10**12, 30]), META_FILE),
    "fitted_k 0": (_set("fitted_k", value=0), META_FILE),
    "fitted_k above n": (_set("fitted_k", value=31), META_FILE),
    "k as string": (_set("params", "k", value="5"), META_FILE),
    "params not a dict": (_set("params", value=["cosine"]), META_FILE),
    "shrinkage a list": (_set("params", "shrinkage", value=[1.0]), META_FILE),
    "parameter missing": (lambda f, m: m["params"].pop("min_k"), META_FILE),
    "include_self as 1": (_set("params", "include_self", value=1), META_FILE),
    "based contradicts class": (_set("based", value="user"), META_FILE),
    "global_mean NaN": (_set("global_mean", value=float("nan")), META_FILE),
    "global_mean inf": (_set("global_mean", value=float("inf")), META_FILE),
    "global_mean not the ratings'": (_set("global_mean", value=lambda g: g + 0.5), META_FILE),
    "rating_range reversed": (_set("rating_range", value=lambda r: r[::-1]), META_FILE),
    "rating_range not the ratings'": (_set("rating_range", value=[0.0, 10.0]), META_FILE),
    "report not an object": (_set("report", value=[1, 2]), META_FILE),
    "report nested 500 deep": (_set("report", value=json.loads("[" * 500 + "]" * 500)), META_FILE),
    "files not an object": (_late(_set("files", value=["ratings.npz"])), META_FILE),
    "idx of float dtype": (_replace_npz("neighbours.npz", lambda a: a.update(idx=a["idx"].astype(float))),
                           r"neighbours.npz: array 'idx' has dtype float64"),
    "source a number": (_set("source", value=7), META_FILE),
    "format_version true": (_set("format_version", value=True), META_FILE),
    "bytes negative": (_late(_set("files", "users.parquet", "bytes", value=-1)), META_FILE),
    "sha256 not hex": (_late(_set("files", "users.parquet", "sha256", value="Z" * 64)), META_FILE),
    "files entry ../x": (_outside("../x"), r"dcf-model.json: .*'\.\./x'"),
    "files entry /etc/passwd": (_outside("/etc/passwd"), r"dcf-model.json: .*'/etc/passwd'"),
    "symlink to a file outside": (_symlink("ratings.npz", outside=True), r"ratings.npz: a symbolic link"),
    "symlink inside the folder": (_symlink("users.parquet", outside=False),
                                  r"users.parquet: a symbolic link"),
    "FIFO for ratings.npz": (_fifo("ratings.npz"), r"ratings.npz: not a regular file"),
    "char device for ratings.npz": (_char_device, r"ratings.npz: not a regular file"),
    "FIFO for dcf-model.json": (_fifo(META_FILE), r"dcf-model.json: not a regular file"),
    "dcf-model.json over 64 MiB": (_oversized_meta, r"dcf-model.json: \d+ bytes, more than"),
    "npz header claims (10**11,)": (_huge_header, r"ratings.npz: member 'data.npy' declares"),
    "npz member a zip bomb": (_zip_bomb, r"ratings.npz: member 'data.npy' declares \d+ bytes"),
    "npz member compressed": (lambda f, m: np.savez_compressed(f / "ratings.npz", **_npz_members(
        f / "ratings.npz")), r"ratings.npz: member .* is compressed"),
    "npz extra member": (_replace_npz("ratings.npz", lambda a: a.update(extra=np.zeros(3))),
                         r"ratings.npz: holds members"),
    "npz idx of wrong shape": (_replace_npz("neighbours.npz", lambda a: a.update(idx=a["idx"][:, :4])),
                               r"neighbours.npz: array 'idx' has shape"),
    "neighbour id out of range": (_replace_npz("neighbours.npz", _set_idx), r"neighbours.npz: neighbour ids"),
    "NaN similarity": (_replace_npz("neighbours.npz", _nan_sim), r"neighbours.npz: .*not finite"),
    "ids not in code order": (_ids("users.parquet", lambda d: d.iloc[::-1]), r"users.parquet: ids must be"),
    "ids repeated": (_ids("items.parquet", lambda d: d.assign(id=d["id"].iloc[0])), r"items.parquet"),
}


@pytest.fixture()
def fifo_watchdog(tmp_path):
    """Unblocks a reader stuck on a FIFO after 10 s (a writer opens and closes it), so a
    regression fails the test instead of hanging the suite."""
    stop, fifos = threading.Event(), []

    def watch():
        if not stop.wait(10):
            for p in fifos:
                with contextlib.suppress(OSError):
                    os.close(os.open(p, os.O_WRONLY | os.O_NONBLOCK))
    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    yield fifos
    stop.set()
    thread.join()


@pytest.mark.parametrize("case", list(TAMPERED))
def test_tampered_model_is_refused(case, saved_once, tmp_path, fifo_watchdog):
    """Every structural check stands alone: the files' sizes and SHA-256 are re-recorded
    after each edit, and each load fails fast with a DataError naming the file."""
    edit, match = TAMPERED[case]
    folder = tmp_path / "m"
    shutil.copytree(saved_once, folder, symlinks=True)
    meta = _meta(folder)
    if getattr(edit, "late", False):
        _rerecord(folder, meta)
    edit(folder, meta)
    if not getattr(edit, "late", False):
        _rerecord(folder, meta)
    if stat.S_ISREG(os.lstat(folder / META_FILE).st_mode) and case != "dcf-model.json over 64 MiB":
        (folder / META_FILE).write_text(json.dumps(meta))  # NaN and Infinity as JSON writes them
    fifo_watchdog.extend(p for p in folder.iterdir() if stat.S_ISFIFO(os.lstat(p).st_mode))
    start = time.monotonic()
    with pytest.raises(DataError, match=match):
        dcf.load(folder)
    assert time.monotonic() - start < 10


def test_untampered_copy_loads(saved_once, tmp_path):
    """The table's starting point is a valid model (each case alone makes it invalid)."""
    folder = tmp_path / "m"
    shutil.copytree(saved_once, folder, symlinks=True)
    meta = _meta(folder)
    _rerecord(folder, meta)
    (folder / META_FILE).write_text(json.dumps(meta))
    with dask.config.set(SYNC):
        assert dcf.load(folder).neighbours()["rank"].max() == 5
