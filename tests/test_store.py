"""Saved models: round trip (same process, new process), and every way a file can be bad."""

from __future__ import annotations

import json
import subprocess
import sys

import dask
import numpy as np
import pandas as pd
import pytest
from conftest import random_ratings

import dcf
from dcf import DataError, ItemKNN, UserKNN

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
    (ItemKNN, "rated", dict(prediction="baseline", similarity="centred-cosine", amplification=2.0))])
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
    from dcf.store import _sha256

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
