"""The pipeline's stages on the current client, each timed by :class:`Stages`:
load (read, validate, id maps), matrix (CSR blocks persisted), neighbours
(similarity tiles + top-k, persisted), prediction (every test pair), top-N (every user).
"""

from __future__ import annotations

import contextlib
import re
import sys
import threading
import time

import dask
import numpy as np
import pandas as pd

from .. import cluster, split
from .. import io as dio
from ..config import RunConfig
from ..datasets import open_source
from ..errors import DataError
from ..evaluate.baselines import baseline_figures
from ..fitting import matrix_from_parts
from ..model import KNN
from ..repeats import checked_pairs, find_repeats, without_repeats
from .preflight import item_lines
from .signals import check_stop


class Stages:
    """Times stages and prints one progress line each; a stage still running after
    :attr:`TICK` seconds adds, every :attr:`TICK` seconds, how long it has run and how
    many tasks the scheduler has still to run (``  neighbours   ... 5 s: 1,234 tasks
    to go ... 10 s: 310 tasks to go ...   11.80 s``)."""

    TICK = 5.0

    def __init__(self, show: bool):
        self.seconds: dict[str, float] = {}
        self.show = show

    @contextlib.contextmanager
    def __call__(self, name):
        check_stop()
        done, ticker = threading.Event(), None
        if self.show:
            print(f"  {name:<12} ...", end="", flush=True, file=sys.stderr)
            ticker = threading.Thread(target=self._tick, args=(done,), name="dcf-stage-progress", daemon=True)
            ticker.start()
        t = time.perf_counter()
        try:
            yield
        except BaseException:
            if self.show:
                print(" failed", file=sys.stderr)
            raise
        finally:
            done.set()
            self.seconds[name] = round(time.perf_counter() - t, 3)
            if ticker is not None:
                ticker.join(timeout=1.0)  # its last mark before the stage's time (a mark is quick)
        if self.show:
            print(f" {self.seconds[name]:8.2f} s", file=sys.stderr)

    def _tick(self, done: threading.Event) -> None:
        t = time.perf_counter()
        while not done.wait(self.TICK):
            pending = cluster.pending_tasks()
            if done.is_set():
                return
            to_go = "" if pending is None else f": {pending:,} tasks to go"
            print(f" {time.perf_counter() - t:.0f} s{to_go} ...", end="", flush=True, file=sys.stderr)


def _persisted(data: dio.Ratings) -> dio.Ratings:
    *parts, report = dask.persist(*data.parts, data.report)
    return dio.Ratings(data.source, list(parts), report)


def _summed_pairs(parts) -> pd.DataFrame:
    """The test events as one row a (user, item) pair, its weight their sum (a random split
    keeps a pair's events on one side; a test file may repeat a pair too)."""
    frame = pd.concat(dask.compute(*parts), ignore_index=True)
    return frame.groupby(["user", "item"], sort=False, as_index=False)["rating"].sum()


INTEGER = re.compile(r"[+-]?[0-9]+")  # an --items line that is an integer id (ASCII digits only)


def read_options(cfg: RunConfig) -> dict:
    """How the job reads its ratings: :func:`dcf.datasets.open_source`'s keywords."""
    return {"on_bad_lines": "skip" if cfg.skip_bad_lines else "error", "rating_scale": cfg.rating_scale,
            "feedback": cfg.feedback,  # event times only where the decay or the split reads them
            "times": cfg.half_life is not None or (cfg.split != "random" and not cfg.test)}


def split_of(cfg: RunConfig, parts) -> tuple:
    """``(train parts, test parts)`` of the ratings, by the run's ``--split``."""
    if cfg.split == "time":
        return split.time_split(parts, test_fraction=cfg.test_fraction)
    if cfg.split == "last":
        return split.leave_last_out(parts, cfg.holdout, cfg.seed)
    return split.random_split(parts, cfg.test_fraction, cfg.seed)


def estimator_of(cfg: RunConfig) -> KNN:
    """The estimator a run's settings describe, its parameters checked."""
    model = KNN(based=cfg.based, similarity=cfg.similarity, k=cfg.k,
                neighbourhood=cfg.neighbourhood, prediction=cfg.prediction,
                min_support=cfg.min_support, shrinkage=cfg.shrinkage, min_k=cfg.min_k,
                block_size=cfg.block_size, on_bad_lines=read_options(cfg)["on_bad_lines"],
                baseline_epochs=cfg.baseline_epochs, reg_user=cfg.reg_user, reg_item=cfg.reg_item,
                significance=cfg.significance, min_similarity=cfg.min_similarity,
                amplification=cfg.amplification, bm25_k1=cfg.bm25_k1, bm25_b=cfg.bm25_b,
                include_self=cfg.include_self, feedback=cfg.feedback, alpha=cfg.alpha,
                half_life=cfg.half_life, reference_time=cfg.reference_time,
                decay_similarity=cfg.decay_similarity)
    model.check_params()
    return model


def execute(cfg: RunConfig, stage: Stages) -> dict:
    """The pipeline's stages on the current client; returns their results.

    Returns a dict with ``model``, ``matrix``, ``predictions`` and
    ``recommendations`` (pandas) and ``reports`` (computed cleaning counts).
    """
    read_kw = read_options(cfg)
    explicit, repeated, pending = cfg.feedback == "explicit", None, []
    with stage("load"):
        # read (or generate) once: the id pass, the matrix, the split and the report all
        # reuse the parts held on the workers instead of each reading them again
        data = _persisted(open_source(cfg.data, **read_kw))
        if cfg.test:
            test_src = _persisted(open_source(cfg.test, **read_kw))
            train_parts, test_parts, reports = data.parts, test_src.parts, [data.report, test_src.report]
        else:
            parts = data.parts
            if explicit and cfg.split in ("time", "last"):  # a pair's copies on both sides: every rating first
                parts, found = checked_pairs(parts, read_kw["on_bad_lines"], data.source.path)
                repeated = {**found, "checked": "every rating, before the split by time"}
            train_parts, test_parts = split_of(cfg, parts)
            train_parts, test_parts = dask.persist(train_parts, test_parts)
            reports = [data.report]
        if explicit and repeated is None:  # the test side's repeated pairs, found while the model fits
            check = find_repeats(test_parts)  # (None: no test parts, nothing to check)
            pending = cluster.start([check]) if check is not None else []
        model = estimator_of(cfg)
        matrix = matrix_from_parts(model, train_parts, reports[0], data.source.path)
        # the --items file checked against the ids' type now, not after the fit
        allow = item_list(cfg.items, matrix.items) if cfg.items else None
        if allow is not None and not (matrix.items.to_codes(allow) >= 0).any():  # every list would be empty
            some = ", ".join(str(v) for v in matrix.items.to_raw(np.arange(min(3, len(matrix.items)))))
            raise DataError(cfg.items, f"none of its {len(allow):,} ids is an item of the ratings (its first: "
                                       f"{allow[0]!r}; the ratings' items are such as {some})")
    with stage("matrix"):
        matrix.persist()
        cluster.wait_for(matrix.by_user, matrix.by_item)
        # the matrix holds the training ratings now: let the workers drop the frames
        source, train_parts, data = data.source, None, None
    with stage("neighbours"):
        model.fit(matrix)
        cluster.wait_for(model.neighbours_.W, model.similarity_rows_)
        matrix.undecayed = None  # the similarities are on the workers: the undecayed twin can go
    with stage("prediction"):
        if pending:
            test_parts, found = without_repeats(test_parts, dask.compute(pending[0])[0], read_kw["on_bad_lines"],
                                                test_src.source.path if cfg.test else source.path)
            repeated = {**found, "checked": "the test side"}
        test = dio.Ratings(source, test_parts, None)
        if cfg.feedback == "implicit":  # one row a held-out pair, its events summed as training sums them
            test = _summed_pairs(test_parts)
        preds = cluster.gather_frame(model.predict(test))
        if not len(preds):  # every figure would be a zero that measured nothing
            raise DataError(cfg.test or cfg.data, "the test side is empty: " + (
                "the test file has no ratings" if cfg.test else f"split {cfg.split!r} held out no rating"))
    with stage("top-n"):
        recs = cluster.gather_frame(model.recommend(n=cfg.top_n, ranking=cfg.ranking_rule, items=allow,
                                            filter_rated=not cfg.keep_rated, explain=cfg.explain))
    figures = None
    if cfg.baselines:
        with stage("baselines"):  # on the same split: what the model's figures are to be read against
            figures = baseline_figures(model, preds[["user", "item", "rating"]], cfg.top_n, cfg.relevance_threshold)
    counts = dask.compute(matrix.report, *reports[1:])
    candidates = None if allow is None else {
        "file": cfg.items, "ids": len(allow), "known": int((model.matrix_.items.to_codes(allow) >= 0).sum())}
    return {"model": model, "matrix": matrix, "predictions": preds, "recommendations": recs,
            "reports": counts, "candidates": candidates, "baselines": figures, "repeated": repeated}


def item_list(path: str, items) -> np.ndarray:
    """The item ids of an ``--items`` file (:func:`~dcf.run.preflight.item_lines`), typed as
    the model's ``items`` (:class:`~dcf.ids.IdMap`) are: integers where they are integers
    (``[+-]digits``, ASCII; any other line is a DataError naming it), else each line's text."""
    lines = item_lines(path)
    if not items.numeric:
        return np.array([text for _, text in lines], dtype=object)
    out = np.empty(len(lines), dtype=object)
    for at, (n, text) in enumerate(lines):
        if not INTEGER.fullmatch(text):
            raise DataError(path, f"item id {text!r} is not an integer, as the ratings' item ids are", n)
        out[at] = int(text)
    return out
