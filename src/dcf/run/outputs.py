"""The output files: ``predictions.parquet``, ``recommendations.parquet`` (and
``neighbours.parquet``) with one id type per role, and ``metrics.json``, written to a
staging folder and moved into place only when complete."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..evaluate import integer_ids
from ..folders import RUN_OUTPUT, atomic_folder
from .metrics import strict_json
from .signals import check_stop


def write_outputs(out: Path, preds, recs, metrics, stage, neighbours=None, inputs=(), based: str = "item") -> dict:
    """Write into a sibling staging folder, then swap it into place; returns the metrics.

    ``metrics``: the metrics dict, or a function of no arguments computing it, called
    while a thread writes the Parquet files (pyarrow's writer releases the GIL: the 20M
    shape's 1.4 s of writing and 1.4 s of metrics overlap; benchmarks/RESULTS.md, issue
    21 step 11).  ``based``: the lists' kind (whose ids the neighbours file holds).  The
    folder is left, and discarded, only once the thread has finished."""
    check_stop()
    with atomic_folder(out, RUN_OUTPUT, inputs=inputs) as staging:
        pool = ThreadPoolExecutor(1, thread_name_prefix="dcf-output")
        writing = pool.submit(_write_frames, staging, preds, recs, neighbours, based)
        try:
            metrics = metrics() if callable(metrics) else metrics
        finally:
            _outlive(writing)
            pool.shutdown()
        writing.result()
        metrics["seconds"] = stage.seconds
        with open(staging / "metrics.json", "w") as f:
            json.dump(strict_json(metrics), f, indent=2, allow_nan=False)
        check_stop()  # a signal swallowed while writing: discard the staging folder
    return metrics


def _outlive(writing) -> None:
    """Wait for the writing thread to end, whatever arrives meanwhile (a second Ctrl-C, a
    SIGTERM after a SIGINT): the staging folder is removed only after it.  The wait is the
    writing's own, bounded by the files' size; the first interrupt is raised after it."""
    interrupted = None
    while True:
        try:
            wait([writing])
            break
        except BaseException as exc:  # noqa: BLE001 - re-raised once the thread has ended
            interrupted = interrupted or exc
    if interrupted is not None:
        raise interrupted


def _write_frames(staging: Path, preds, recs, neighbours, based: str) -> None:
    preds, recs, neighbours = uniform_ids(preds, recs, neighbours, based)
    write_parquet(preds, staging / "predictions.parquet")
    write_parquet(recs, staging / "recommendations.parquet")
    if neighbours is not None:  # every item's (user's) most similar ones, ranked
        write_parquet(neighbours, staging / "neighbours.parquet")


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """``frame`` as a Parquet file, dictionary-encoding every column but the floats.

    Scores, ratings and similarities are nearly all distinct, so their dictionary pages
    are built only to be dropped: pyarrow's default (every column) wrote the e-commerce
    shape's 6M recommendations in 0.34-0.37 s and 57.6 MB, this in 0.29 s and 56.2 MB;
    its 600k predictions in 0.11-0.12 s and 7.5 MB, this in 0.07 s and 8.0 MB
    (benchmarks/RESULTS.md, issue 21)."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    encoded = [leaf for field in table.schema for leaf, kind in _leaves(field.name, field.type)
               if not pa.types.is_floating(kind)]
    meta = json.loads(table.schema.metadata[b"pandas"])
    for col in meta["columns"]:  # Arrow-backed lists read back as pandas reads any list column
        if str(col.get("numpy_type", "")).startswith(("list<", "large_list<")):
            col["numpy_type"] = "object"  # (pandas cannot read its own name of that dtype back)
    table = table.replace_schema_metadata({**table.schema.metadata, b"pandas": json.dumps(meta).encode()})
    pq.write_table(table, path, use_dictionary=encoded)


def uniform_ids(preds: pd.DataFrame, recs: pd.DataFrame, neighbours=None, based: str = "item"):
    """Every id column of one role (users, items) of one type across the output files.

    Integer ids stay ``int64`` where every id of the role, in every file, is an integer
    within 64 bits; otherwise the role is written as text in every file (a float id
    ``1.0`` is ``"1.0"`` in predictions and recommendations alike, an unknown test user
    ``"x"`` turns the users of both files to text)."""
    entity = "user" if based == "user" else "item"
    columns = {"user": [(preds, "user"), (recs, "user")], "item": [(preds, "item"), (recs, "item")]}
    if neighbours is not None:
        columns[entity] += [(neighbours, "entity"), (neighbours, "neighbour")]
    out = {id(f): f for f in (preds, recs, neighbours) if f is not None}
    as_text = {}
    for role, cols in columns.items():
        text = as_text[role] = not all(_all_int64(out[id(f)][c]) for f, c in cols)
        for f, c in cols:
            frame = out[id(f)]
            values = frame[c]
            if not text:
                fixed = values.astype(np.int64)
            elif pd.api.types.infer_dtype(values, skipna=False) == "string":
                fixed = values  # already text (a C-speed check; 20M Top-N rows)
            else:
                fixed = values.map(str).astype(object)
            out[id(f)] = frame.assign(**{c: fixed})
    if "because" in recs.columns:  # the explanations' item ids as the item column's
        out[id(recs)] = out[id(recs)].assign(because=_because_ids(recs["because"], as_text["item"]))
    return out[id(preds)], out[id(recs)], None if neighbours is None else out[id(neighbours)]


def _leaves(path: str, kind):
    """``(Parquet column path, Arrow type)`` of each leaf under a field (a list's elements
    are ``path.list.element``, as pyarrow names them)."""
    if pa.types.is_struct(kind):
        return [leaf for child in kind for leaf in _leaves(f"{path}.{child.name}", child.type)]
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return _leaves(f"{path}.list.element", kind.value_type)
    return [(path, kind)]


def _because_ids(because: pd.Series, as_text: bool) -> pd.Series:
    """The explanations' lists with their item ids as text or as int64, cast by Arrow
    where the column is Arrow-backed (:func:`dcf.predict.topn.because_lists`), else
    entry by entry."""
    if isinstance(because.dtype, pd.ArrowDtype):
        lists = pa.chunked_array(because.array.__arrow_array__()).cast(pa.list_(pa.struct(
            [("item", pa.string() if as_text else pa.int64()), ("share", pa.float64())])))
        return pd.Series(pd.arrays.ArrowExtensionArray(lists), index=because.index, copy=False)
    cast = str if as_text else int
    return pd.Series([[{"item": cast(b["item"]), "share": float(b["share"])} for b in why] for why in because],
                     index=because.index, dtype=object)


def _all_int64(values: pd.Series) -> bool:
    return integer_ids(values) is not None
