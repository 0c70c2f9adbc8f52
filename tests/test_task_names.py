"""Every task a user sees on the dashboard carries its stage's name, and the README's list
of task names is the real one (both directions: nothing unlisted runs, nothing listed is
missing from the code)."""

from __future__ import annotations

import re
from pathlib import Path
from unittest.mock import patch

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
# Dask's own, documented in the README beside the list: a frame computed whole by the caller
DASKS_OWN = {"repartitiontofewer", "finalize-hlgfinalizecompute"}


def _documented() -> set:
    text = (ROOT / "README.md").read_text()
    section = text.split("### Task names", 1)[1].split("\nTwo kinds of name", 1)[0]
    return {name for row in section.splitlines() if row.startswith("| ") and "`" in row
            for name in re.findall(r"`([a-z][a-z-]*)`", row)}



def _segments(name: str, names: set) -> bool:
    parts = name.split("-")
    reach = {0}
    for i in range(len(parts) + 1):
        if i in reach:
            reach |= {j for j in range(i + 1, len(parts) + 1) if "-".join(parts[i:j]) in names}
    return len(parts) in reach


@pytest.fixture(scope="module")
def seen(tmp_path_factory):
    """Task prefixes of the batch job (text, Parquet, synthetic; item and user; rated and
    global; a weighted measure), a refresh, save and load, a history and the tiles method, on one cluster."""
    from distributed import Client, LocalCluster

    import dcf
    import dcf.serving
    from dcf.run import main

    tmp = tmp_path_factory.mktemp("names")
    rng = np.random.default_rng(0)
    rows = pd.DataFrame({"user": rng.integers(0, 300, 4000), "item": rng.integers(0, 80, 4000),
                         "rating": rng.integers(1, 6, 4000).astype(float)}).drop_duplicates(["user", "item"])
    rows.to_csv(tmp / "r.tsv", sep="\t", header=False, index=False)
    rows.to_parquet(tmp / "r.parquet", index=False)
    common = ["--no-progress", "--k", "8"]
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as lc, \
            Client(lc):
        a = lc.scheduler_address
        assert main(["--scheduler", a, "--data", "synthetic:users=2000,items=300,ratings=20000,seed=1",
                     "--out", str(tmp / "o1"), "--write-neighbours", *common]) == 0
        assert main(["--scheduler", a, "--data", str(tmp / "r.tsv"), "--out", str(tmp / "o2"), "--based", "user",
                     "--neighbourhood", "global", "--ranking", "sum", "--similarity", "pearson-baseline",
                     "--prediction", "baseline", *common]) == 0
        assert main(["--scheduler", a, "--data", str(tmp / "r.parquet"), "--out", str(tmp / "o3"),
                     "--similarity", "centred-cosine", "--ranking", "normalised-sum", *common]) == 0
        assert main(["--scheduler", a, "--data", str(tmp / "r.tsv"), "--out", str(tmp / "o4"), "--similarity", "bm25",
                     "--neighbourhood", "global", "--ranking", "sum", "--no-baselines", *common]) == 0
        model = dcf.ItemKNN(k=5, similarity="full-cosine").fit(rows.iloc[:3000])
        model = model.refresh(rows.iloc[3000:])
        model.recommend(n=5).compute()
        model.save(tmp / "m")
        back = dcf.load(tmp / "m")
        back.derive(k=3).recommend(n=3).compute()
        history = pd.DataFrame({"user": ["new"] * 3, "item": rows["item"].iloc[:3].tolist(),
                                "rating": [5.0, 3.0, 4.0]})
        for limit in (dcf.serving.HELD_BYTES, 0):  # a few pairs and users: held in the client, then as graphs
            with patch.object(dcf.serving, "HELD_BYTES", limit):
                back.predict(rows.iloc[:50]).compute()
                back.recommend([int(rows["user"].iloc[0]), "stranger"], n=4).compute()
                back.recommend_for_history(history, n=5)
        dcf.ItemKNN(k=5, method="tiles").fit(rows).recommend(n=5).compute()
        return set(lc.scheduler.task_prefixes)


@pytest.mark.slow
def test_every_task_carries_a_documented_stage_name(seen):
    names = _documented()
    assert len(names) > 50, "the README's task-name table was not found"
    unnamed = {p for p in seen - DASKS_OWN if p not in names and not _segments(p, names)}
    assert not unnamed, f"tasks without a documented stage name: {sorted(unnamed)}"
    for generic in ("getitem", "lambda", "fromdelayed", "delayed-container", "concatenate", "from-value",
                    "rechunk-merge", "frompandas"):
        assert generic not in seen


def test_every_documented_name_is_in_the_code():
    code = "\n".join(p.read_text() for p in (ROOT / "src" / "dcf").rglob("*.py"))
    missing = {n for n in _documented() if f'"{n}' not in code and f"'{n}" not in code}
    assert not missing, f"the README lists task names the code never makes: {sorted(missing)}"


def test_fused_names_are_recognised():
    names = {"similarity-tile", "neighbour-topk", "matrix-user-rows"}
    assert _segments("similarity-tile-neighbour-topk", names)
    assert not _segments("similarity-tile-getitem", names)
    assert not _segments("getitem", names)
