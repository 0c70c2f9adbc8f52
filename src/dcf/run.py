"""``python -m dcf.run``: the batch job (config -> cluster -> pipeline -> outputs).

Stages: load (read, validate, id maps), matrix (CSR blocks persisted),
neighbours (similarity tiles + top-k, persisted), prediction (every test
pair), top-N (every user), output.  Outputs go to ``--out`` (default
``./dcf-output``): ``metrics.json``, ``predictions.parquet`` and
``recommendations.parquet``, written to a staging folder and moved into place
only when complete.  Exit status: 0 done, 2 bad input or settings (one line on
stderr, no traceback), 1 any other failure, 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import platform
import signal
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import dask
import numpy as np
import pandas as pd

from . import cluster, evaluate, split
from . import io as dio
from .config import CHOICES, RunConfig, load_config
from .datasets import open_source
from .errors import ClusterError, ConfigError, DataError
from .ids import gather_frame
from .matrix import build_matrix
from .model import KNN, default_blocks
from .version import __version__
from .folders import RUN_OUTPUT, atomic_file, atomic_folder, check_file, check_folder, local_path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dcf.run", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d = RunConfig()
    p.add_argument("--config", help="TOML file with run settings (flags override it)")
    g = p.add_argument_group("data")
    g.add_argument("--data", help=f"ratings: a path/URL, 'synthetic[:users=..,items=..,ratings=..,"
                   f"seed=..]' or 'movielens:ml-100k[/u1.base]' (default {d.data})")
    g.add_argument("--test", help="explicit test set (same forms as --data); else a random split")
    g.add_argument("--test-fraction", type=float, help=f"test share of a random split ({d.test_fraction})")
    g.add_argument("--seed", type=int, help=f"split seed ({d.seed})")
    g.add_argument("--skip-bad-lines", action="store_true", default=None,
                   help="drop bad lines (counted in metrics.json) instead of failing")
    g.add_argument("--rating-scale", type=float, nargs=2, metavar=("LOW", "HIGH"),
                   help="declared rating scale: ratings outside it are bad lines (default: any > 0)")
    g = p.add_argument_group("model")
    for name in ("based", "similarity", "neighbourhood", "prediction", "ranking"):
        g.add_argument(f"--{name}", choices=CHOICES[name], help=f"(default {getattr(d, name)})")
    g.add_argument("--k", type=int, help=f"neighbours ({d.k})")
    g.add_argument("--top-n", type=int, help=f"recommendations per user ({d.top_n})")
    g.add_argument("--min-support", type=int, help=f"minimum co-raters ({d.min_support})")
    g.add_argument("--shrinkage", type=float, help=f"similarity shrinkage ({d.shrinkage})")
    g.add_argument("--significance", type=float,
                   help=f"significance weighting: scale by min(co-raters, this) / this; 0 = off ({d.significance})")
    g.add_argument("--min-similarity", type=float,
                   help=f"similarities below this are no neighbours ({d.min_similarity})")
    g.add_argument("--amplification", type=float,
                   help=f"case amplification: each neighbour weighs similarity**this; 1 = off ({d.amplification})")
    g.add_argument("--min-k", type=int, help=f"minimum neighbours before falling back ({d.min_k})")
    g.add_argument("--baseline-epochs", type=int,
                   help=f"ALS epochs of the baseline biases ({d.baseline_epochs})")
    g.add_argument("--reg-user", type=float, help=f"user-bias regularisation ({d.reg_user:g})")
    g.add_argument("--reg-item", type=float, help=f"item-bias regularisation ({d.reg_item:g})")
    g.add_argument("--relevance", type=float, help=f"relevant = test rating >= this ({d.relevance})")
    g.add_argument("--block-size", type=int, help="entities per similarity block (default: from data)")
    g = p.add_argument_group("cluster")
    g.add_argument("--scheduler", help="address of a running scheduler (else a local cluster)")
    g.add_argument("--workers", type=int, help=f"local workers ({d.cluster.workers})")
    g.add_argument("--wait-for-workers", type=int, metavar="N",
                   help="with --scheduler: wait (up to 120 s) until N workers have registered")
    g.add_argument("--threads-per-worker", type=int, help=f"({d.cluster.threads_per_worker})")
    g.add_argument("--memory-limit", help=f"per local worker ({d.cluster.memory_limit})")
    g.add_argument("--dashboard-address", help=f"({d.cluster.dashboard_address})")
    g.add_argument("--stall-timeout", type=float, metavar="S",
                   help="fail when work is waiting and no worker has run a task for this many "
                        f"seconds, e.g. every worker paused at its memory limit ({d.cluster.stall_timeout:g})")
    g.add_argument("--tls-ca-file", help="CA certificate (PEM) for a tls:// scheduler")
    g.add_argument("--tls-cert", help="client certificate (PEM) for a tls:// scheduler")
    g.add_argument("--tls-key", help="client private key (PEM) for a tls:// scheduler")
    g = p.add_argument_group("output")
    g.add_argument("--out", help=f"output folder ({d.out})")
    g.add_argument("--performance-report", help="write Dask's HTML performance report here")
    g.add_argument("--no-progress", dest="progress", action="store_false", default=None)
    g.add_argument("--write-neighbours", action="store_true", default=None,
                   help="also write neighbours.parquet: every item's (user's) k most similar, ranked")
    g.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def resolve(args) -> RunConfig:
    base = load_config(args.config) if args.config else RunConfig()
    kw = {k: v for k, v in vars(args).items() if k not in ("config", "debug")}
    cfg = base.with_overrides(**kw)
    cfg.cluster.check_combination()
    return cfg


def preflight(cfg: RunConfig, config_path=None) -> tuple:
    """What can be checked before the cluster starts: where the outputs go (dcf replaces
    only what it wrote, :mod:`dcf.folders`), and a test set that is not the training set.
    Returns the run's inputs (to keep outputs away from them)."""
    inputs = tuple(s for s in (cfg.data, cfg.test, config_path) if s)
    out = check_folder(cfg.out, RUN_OUTPUT, inputs=inputs)
    if cfg.performance_report:
        report = check_file(cfg.performance_report, inputs=inputs)
        outs, reports = {out, Path(os.path.realpath(out))}, {report, Path(os.path.realpath(report))}
        if outs & reports or any(o in r.parents for o in outs for r in reports):
            raise ConfigError(f"--performance-report {report}: is inside --out {out}, which the "
                              "job replaces whole; write the report elsewhere")
    if cfg.test:
        a, b = local_path(cfg.data), local_path(cfg.test)
        same = cfg.test == cfg.data or (a is not None and b is not None and a.exists() and b.exists()
                                        and os.path.samefile(a, b))
        if same:
            raise ConfigError(f"--test {cfg.test}: is the training data itself, so every test "
                              "rating would also be a training rating; give a held-out file, or "
                              "drop --test for a random split")
    return inputs


class Stages:
    """Times stages and prints one progress line each."""

    def __init__(self, show: bool):
        self.seconds: dict[str, float] = {}
        self.show = show

    @contextlib.contextmanager
    def __call__(self, name):
        _check_stop()
        if self.show:
            print(f"  {name:<12} ...", end="", flush=True, file=sys.stderr)
        t = time.perf_counter()
        try:
            yield
        except BaseException:
            if self.show:
                print(" failed", file=sys.stderr)
            raise
        finally:
            self.seconds[name] = round(time.perf_counter() - t, 3)
        if self.show:
            print(f" {self.seconds[name]:8.2f} s", file=sys.stderr)


def _persisted(data: dio.Ratings) -> dio.Ratings:
    *parts, report = dask.persist(*data.parts, data.report)
    return dio.Ratings(data.source, list(parts), report)


def execute(cfg: RunConfig, stage: Stages) -> dict:
    """The pipeline's stages on the current client; returns their results.

    Returns a dict with ``model``, ``matrix``, ``predictions`` and
    ``recommendations`` (pandas) and ``reports`` (computed cleaning counts).
    """
    read_kw = {"on_bad_lines": "skip" if cfg.skip_bad_lines else "error",
               "rating_scale": cfg.rating_scale}
    with stage("load"):
        # read (or generate) once: the id pass, the matrix, the split and the report all
        # reuse the parts held on the workers instead of each reading them again
        data = _persisted(open_source(cfg.data, **read_kw))
        if cfg.test:
            test_src = _persisted(open_source(cfg.test, **read_kw))
            train_parts, test_parts, reports = data.parts, test_src.parts, [data.report, test_src.report]
        else:
            train_parts, test_parts = split.random_split(data.parts, cfg.test_fraction, cfg.seed)
            train_parts, test_parts = dask.persist(train_parts, test_parts)
            reports = [data.report]
        model = KNN(based=cfg.based, similarity=cfg.similarity, k=cfg.k,
                    neighbourhood=cfg.neighbourhood, prediction=cfg.prediction,
                    min_support=cfg.min_support, shrinkage=cfg.shrinkage, min_k=cfg.min_k,
                    block_size=cfg.block_size, on_bad_lines=read_kw["on_bad_lines"],
                    baseline_epochs=cfg.baseline_epochs, reg_user=cfg.reg_user, reg_item=cfg.reg_item,
                    significance=cfg.significance, min_similarity=cfg.min_similarity,
                    amplification=cfg.amplification)
        model._check_params()
        block = cfg.block_size
        matrix = build_matrix(train_parts, source=data.source.path,
                              on_bad_lines=read_kw["on_bad_lines"], report=reports[0],
                              col_block=block if cfg.based == "item" else None,
                              row_block=block if cfg.based == "user" else None,
                              min_blocks=default_blocks(), based=cfg.based,
                              entity_block_limit=model._block_limit())
    with stage("matrix"):
        matrix.persist()
        cluster.wait_for(matrix.by_user, matrix.by_item)
        # the matrix holds the training ratings now: let the workers drop the frames
        source, train_parts, data = data.source, None, None
    with stage("neighbours"):
        model.fit(matrix)
        cluster.wait_for(model.neighbours_.W, model.similarity_rows_)
    with stage("prediction"):
        preds = gather_frame(model.predict(dio.Ratings(source, test_parts, None)))
    with stage("top-n"):
        recs = gather_frame(model.recommend(n=cfg.top_n, ranking=cfg.ranking))
    counts = dask.compute(matrix.report, *reports[1:])
    return {"model": model, "matrix": matrix, "predictions": preds, "recommendations": recs,
            "reports": counts}


def run(cfg: RunConfig, config_path=None) -> dict:
    """Run the whole job under a client it opens; returns the metrics dict."""
    inputs = preflight(cfg, config_path)
    stage = Stages(cfg.progress)
    with ExitStack() as stack:
        report = (stack.enter_context(atomic_file(cfg.performance_report, inputs=inputs))
                  if cfg.performance_report else None)
        client = stack.enter_context(cluster.connect(cfg.cluster))
        shape = cluster.describe(client)
        print(f"dcf {__version__}: dashboard {shape['dashboard']}  ({shape['workers']} workers)",
              file=sys.stderr)
        stack.enter_context(cluster.report_to(report))
        stack.enter_context(cluster.watchdog(client, cfg.cluster.stall_timeout, _on_stall))
        at_start = cluster.worker_addresses(client)
        try:
            res = execute(cfg, stage)
        except (DataError, ConfigError):
            raise
        except Exception as exc:
            reason = cluster.explain_failure(exc, len(at_start - cluster.worker_addresses(client)),
                                             client)
            if reason:
                raise ClusterError(reason) from exc
            raise
        with stage("output"):
            metrics = _metrics(cfg, res["model"], res["predictions"], res["recommendations"],
                               res["reports"], shape)
            neighbours = res["model"].neighbours() if cfg.write_neighbours else None
            _write_outputs(Path(cfg.out), res["predictions"], res["recommendations"], metrics, stage,
                           neighbours, inputs)
        metrics["seconds"] = stage.seconds
    return metrics


def _metrics(cfg, model, preds, recs, counts, shape) -> dict:
    test = preds[["user", "item", "rating"]]
    ranking = evaluate.ranking_metrics(recs, test, cfg.top_n, cfg.relevance)
    n_users, n_items = model.matrix_.shape
    train_report = counts[0]
    test_report = counts[1] if len(counts) > 1 else None
    return {
        "dcf_version": __version__,
        "mae": evaluate.mae(preds["rating"], preds["prediction"]),
        "rmse": evaluate.rmse(preds["rating"], preds["prediction"]),
        f"precision@{cfg.top_n}": ranking["precision"], f"recall@{cfg.top_n}": ranking["recall"],
        f"ndcg@{cfg.top_n}": ranking["ndcg"],
        "ranking_users": ranking["users"], "relevance_threshold": cfg.relevance,
        "evaluation": _evaluation(cfg),
        "coverage": evaluate.catalogue_coverage(recs, n_items),
        "counts": {"train_ratings": int(train_report.get("stored", 0)), "test_pairs": int(len(preds)),
                   "users": n_users, "items": n_items, "recommendations": int(len(recs)),
                   "read": train_report, "test_read": test_report},
        "fallbacks": {str(k): int(v) for k, v in preds["fallback"].value_counts().items()},
        "recommendation_fallbacks": int(recs["fallback"].sum()),
        "global_mean": model.global_mean_, "rating_range": list(model.rating_range_),
        "similarity_block": int(max(model.matrix_.oriented(model.based)[0].chunks[0])),
        "cluster": shape,
        "config": cfg.to_dict(),
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count()},
    }


def _write_outputs(out: Path, preds, recs, metrics, stage, neighbours=None, inputs=()) -> None:
    """Write into a sibling staging folder, then swap it into place."""
    _check_stop()
    with atomic_folder(out, RUN_OUTPUT, inputs=inputs) as staging:
        preds, recs, neighbours = uniform_ids(preds, recs, neighbours, metrics["config"]["based"])
        preds.to_parquet(staging / "predictions.parquet", index=False)
        recs.to_parquet(staging / "recommendations.parquet", index=False)
        if neighbours is not None:  # every item's (user's) most similar ones, ranked
            neighbours.to_parquet(staging / "neighbours.parquet", index=False)
        metrics["seconds"] = stage.seconds
        with open(staging / "metrics.json", "w") as f:
            json.dump(strict_json(metrics), f, indent=2, allow_nan=False)
        _check_stop()  # a signal swallowed while writing: discard the staging folder


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
    for role, cols in columns.items():
        text = not all(_all_int64(out[id(f)][c]) for f, c in cols)
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
    return out[id(preds)], out[id(recs)], None if neighbours is None else out[id(neighbours)]


def _all_int64(values: pd.Series) -> bool:
    if values.dtype.kind in "iu":
        return values.dtype.kind == "i" or len(values) == 0 or int(values.max()) < 2**63
    if pd.api.types.infer_dtype(values, skipna=False) != "integer":
        return False
    return all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
               and -2**63 <= int(v) < 2**63 for v in values.to_numpy(dtype=object))


def strict_json(obj, path: str = "", why: dict | None = None):
    """``obj`` with every NaN or infinite number replaced by ``None`` (strict JSON), the
    reasons collected under the top level's ``"undefined"`` key (``{"rmse": "..."}``)."""
    top = why is None
    why = {} if top else why
    if isinstance(obj, dict):
        out = {str(k): strict_json(v, f"{path}.{k}" if path else str(k), why) for k, v in obj.items()}
    elif isinstance(obj, (list, tuple, np.ndarray)):
        out = [strict_json(v, f"{path}[{i}]", why) for i, v in enumerate(list(obj))]
    elif isinstance(obj, (bool, np.bool_)):
        out = bool(obj)
    elif isinstance(obj, (int, np.integer)):
        out = int(obj)
    elif isinstance(obj, (float, np.floating)):
        out = float(obj)
        if not math.isfinite(out):
            why[path] = ("not a number: " if math.isnan(out) else "infinite: ") + _REASONS.get(
                path.split(".")[0].split("@")[0], "undefined for this data")
            out = None
    elif obj is None or isinstance(obj, str):
        out = obj
    else:
        raise TypeError(f"{path}: not JSON serialisable: {type(obj).__name__}")
    if top and why:
        out["undefined"] = why
    return out


_REASONS = {
    "mae": "no test pair, or ratings so large that the error overflows",
    "rmse": "no test pair, or ratings so large that their squared error overflows",
    "precision": "no test user has a relevant rating (see relevance_threshold)",
    "recall": "no test user has a relevant rating (see relevance_threshold)",
    "ndcg": "no test user has a relevant rating (see relevance_threshold)",
    "coverage": "no item in the catalogue",
    "global_mean": "the training ratings are too large to average",
    "rating_range": "the training ratings are too large",
}


def _evaluation(cfg) -> str:
    """How the figures were measured, in words (printed and in metrics.json)."""
    split = (f"test file {cfg.test}" if cfg.test else
             f"random {cfg.test_fraction:.0%} of the ratings as test, seed {cfg.seed} (hash of user, item)")
    return (f"{split}; relevant = test rating >= {cfg.relevance:g}, rated items excluded, ranking "
            "metrics averaged over users with a relevant test item")


def summary(metrics: dict, top_n: int) -> str:
    num = lambda v: f"{v:.4f}" if v is not None and math.isfinite(v) else "undefined (metrics.json says why)"
    rows = [("MAE", num(metrics['mae'])), ("RMSE", num(metrics['rmse'])),
            (f"precision@{top_n}", num(metrics[f'precision@{top_n}'])),
            (f"recall@{top_n}", num(metrics[f'recall@{top_n}'])),
            (f"NDCG@{top_n}", num(metrics[f'ndcg@{top_n}'])),
            ("coverage", num(metrics['coverage'])),
            ("evaluation", metrics["evaluation"]),
            ("test pairs", f"{metrics['counts']['test_pairs']:,}"),
            ("fallbacks", ", ".join(f"{k} {v:,}" for k, v in metrics["fallbacks"].items() if v)),
            ("seconds", ", ".join(f"{k} {v:.2f}" for k, v in metrics["seconds"].items()))]
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: stop the cluster this job started, keep old outputs."""


# set by a SIGINT/SIGTERM handler; the exception the handler raises can be swallowed when
# it lands inside a finaliser (Python prints "Exception ignored"), so every stage boundary
# and the output step check this flag as well
_STOP: dict = {}


def _on_signal(signum, frame):
    _STOP["signal"] = signum
    f = frame
    while f is not None:
        if f.f_code.co_name == "__del__":  # raised here, it would be printed and dropped:
            threading.Timer(0.05, os.kill, (os.getpid(), signum)).start()  # deliver again
            return
        f = f.f_back
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _check_stop() -> None:
    if "signal" in _STOP:
        raise Terminated() if _STOP["signal"] == signal.SIGTERM else KeyboardInterrupt()


def _on_stall(message: str) -> None:
    """The watchdog's verdict (from its thread): stop the job as Ctrl-C would, and say why."""
    _STOP["stalled"] = message
    if signal.getsignal(signal.SIGINT) is _on_signal:
        os.kill(os.getpid(), signal.SIGINT)


@contextlib.contextmanager
def _quiet_distributed(debug: bool):
    """distributed's own loggers print tracebacks when the scheduler or a worker goes
    away; the job says what happened in one line instead (``--debug`` shows them)."""
    if debug:
        yield
        return
    names = [n for n in list(logging.root.manager.loggerDict) if n.split(".")[0] in ("distributed", "tornado")]
    loggers = [logging.getLogger(n) for n in {"distributed", "tornado", "asyncio", *names}]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    previous = {}
    _STOP.clear()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, _on_signal)
    try:
        cfg = resolve(args)
        with _quiet_distributed(args.debug):
            metrics = run(cfg, args.config)
    except (DataError, ConfigError) as exc:
        if args.debug:
            raise
        print(f"dcf: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        if "stalled" in _STOP:
            print(f"dcf: failed: {_STOP['stalled']}", file=sys.stderr)
            return 1
        what = "terminated" if isinstance(exc, Terminated) else "interrupted"
        print(f"dcf: {what}; outputs left as they were", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one line unless --debug
        if args.debug:
            raise
        if isinstance(exc, ClusterError):
            print(f"dcf: failed: {exc}", file=sys.stderr)
        else:
            print(f"dcf: failed: {type(exc).__name__}: {exc} (rerun with --debug for the "
                  "traceback)", file=sys.stderr)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(summary(metrics, cfg.top_n))
    print(f"outputs in {Path(cfg.out).resolve()}")
    return 0


if __name__ == "__main__":
    status = main()
    if status == 130:  # the cluster is closed; do not wait for Dask's busy helper threads
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)
