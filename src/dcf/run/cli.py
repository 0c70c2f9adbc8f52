"""``python -m dcf.run``'s command line: the parser, the settings it resolves to, and
:func:`main` (exit status 0 done, 2 bad input or settings, 1 any other failure, 130
interrupted)."""

from __future__ import annotations

import argparse
import gc
import os
import signal
import sys
from pathlib import Path

from .. import cluster, compile  # noqa: A004 - dcf.compile, not the builtin
from ..config import CHOICES, RunConfig, load_config
from ..errors import ClusterError, ConfigError, DataError
from ..presets import PRESETS, with_preset
from ..version import __version__
from .preflight import preflight
from .signals import STOP, Terminated, handled, quiet_distributed

DESCRIPTION = "``python -m dcf.run``: the batch job (config -> cluster -> pipeline -> outputs)."


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dcf.run", description=DESCRIPTION,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d = RunConfig()
    p.add_argument("--config", help="TOML file with run settings (flags override it)")
    g = p.add_argument_group("data")
    g.add_argument("--data", help=f"ratings: a path/URL, 'synthetic[:users=..,items=..,ratings=..,"
                   f"seed=..]' or 'movielens:ml-100k[/u1.base]' (default {d.data})")
    g.add_argument("--test", help="explicit test set (same forms as --data); else a random split")
    g.add_argument("--test-fraction", type=float, help=f"test share of a random split ({d.test_fraction})")
    g.add_argument("--seed", type=int, help=f"split seed ({d.seed})")
    g.add_argument("--split", choices=CHOICES["split"],
                   help="without --test: random (--test-fraction of the pairs, by a seeded hash), time (the latest "
                        "--test-fraction of the ratings by time) or last (each user's --holdout latest ratings) "
                        f"(default {d.split})")
    g.add_argument("--holdout", type=int, metavar="N", help=f"--split last: ratings held out per user ({d.holdout})")
    g.add_argument("--feedback", choices=CHOICES["feedback"],
                   help="explicit: ratings (a pair rated twice differently is a conflict); implicit: events "
                        "(clicks, purchases) whose optional third column is a positive weight, a file of "
                        "user, item pairs weighing 1 each; repeated pairs are summed (default explicit)")
    g.add_argument("--skip-bad-lines", action="store_true", default=None,
                   help="drop bad lines (counted in metrics.json) instead of failing")
    g.add_argument("--rating-scale", type=float, nargs=2, metavar=("LOW", "HIGH"),
                   help="declared rating scale: ratings outside it are bad lines (default: any > 0)")
    g = p.add_argument_group("model")
    g.add_argument("--preset", choices=list(PRESETS),
                   help="named settings, each the measured best of its kind (other flags override them): "
                        + "; ".join(f"{p.name}: {p.measured}" for p in PRESETS.values()) + f" (default {d.preset})")
    for name in ("based", "similarity", "neighbourhood", "prediction"):
        g.add_argument(f"--{name}", choices=CHOICES[name], help=f"(default {getattr(d, name)})")
    g.add_argument("--ranking", choices=CHOICES["ranking"],
                   help="Top-N order (default: prediction for ratings, sum for --feedback implicit)")
    g.add_argument("--k", type=int, help=f"neighbours ({d.k})")
    g.add_argument("--top-n", type=int, help=f"recommendations per user ({d.top_n})")
    g.add_argument("--items", metavar="FILE", help="recommend only these items: a text file, one item id a line")
    g.add_argument("--keep-rated", action="store_true", default=None,
                   help="rated items stay candidates (a re-purchase; default: never recommended)")
    g.add_argument("--explain", action="store_true", default=None,
                   help="recommendations.parquet gets 'because': each item's rated items that weigh most, with shares")
    g.add_argument("--min-support", type=int, help=f"minimum co-raters ({d.min_support})")
    g.add_argument("--shrinkage", type=float, help=f"similarity shrinkage ({d.shrinkage})")
    g.add_argument("--significance", type=float,
                   help=f"significance weighting: scale by min(co-raters, this) / this; 0 = off ({d.significance})")
    g.add_argument("--min-similarity", type=float,
                   help=f"similarities below this are no neighbours ({d.min_similarity})")
    g.add_argument("--amplification", type=float,
                   help=f"case amplification: each neighbour weighs similarity**this; 1 = off ({d.amplification})")
    g.add_argument("--bm25-k1", type=float, help=f"bm25's term saturation K1 ({d.bm25_k1})")
    g.add_argument("--bm25-b", type=float, help=f"bm25's length normalisation B, 0 .. 1 ({d.bm25_b})")
    g.add_argument("--alpha", type=float, help=f"conditional's popularity discount: co-raters / "
                   f"(raters of x * raters of y ** alpha) ({d.alpha})")
    g.add_argument("--include-self", action="store_true", default=None,
                   help="each item (user) is a candidate in its own neighbour list, as in implicit's "
                        "(k - 1 others)")
    g.add_argument("--half-life", type=float, metavar="DAYS",
                   help="time decay (--feedback implicit): each event weighs weight * 0.5 ** (age / DAYS), its "
                        "age from the latest event (or --reference-time), in the scores (SAR's); off by default")
    g.add_argument("--reference-time", metavar="TIME",
                   help="the decay's reference: seconds since the epoch or an ISO 8601 date (default: the latest event)")
    g.add_argument("--decay-similarity", action="store_true", default=None,
                   help="a measure that reads the values compares the decayed ones too")
    g.add_argument("--min-k", type=int, help=f"minimum neighbours before falling back ({d.min_k})")
    g.add_argument("--baseline-epochs", type=int,
                   help=f"ALS epochs of the baseline biases ({d.baseline_epochs})")
    g.add_argument("--reg-user", type=float, help=f"user-bias regularisation ({d.reg_user:g})")
    g.add_argument("--reg-item", type=float, help=f"item-bias regularisation ({d.reg_item:g})")
    g.add_argument("--relevance", type=float,
                   help="relevant = test rating >= this (default: 4 for ratings, every test event for "
                        "--feedback implicit)")
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
    g.add_argument("--no-baselines", dest="baselines", action="store_false", default=None,
                   help="do not score the baselines (popularity, item and user means, the baseline predictor) "
                        "on the same split")
    g.add_argument("--write-neighbours", action="store_true", default=None,
                   help="also write neighbours.parquet: every item's (user's) k most similar, ranked")
    g.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def resolve(args) -> RunConfig:
    """The run's settings: the defaults, the preset's over them, the config file's over
    those, the flags over everything."""
    base = load_config(args.config) if args.config else RunConfig()
    base = with_preset(base, args.preset or base.preset)
    kw = {k: v for k, v in vars(args).items() if k not in ("config", "debug", "preset")}
    cfg = base.with_overrides(**kw)
    cfg.cluster.check_combination()
    return cfg


def _job(cfg: RunConfig, config_path) -> tuple:
    """Preflight, then the cluster starts in the background while this thread imports the
    job (its stages, Dask's collections, the estimator: about 2 s) and runs it.  A local
    cluster's first job on an installation also compiles the kernels, once, in a child
    process while the cluster starts (:mod:`dcf.compile`)."""
    inputs = preflight(cfg, config_path)
    c = cfg.cluster
    compiling = None
    if not c.scheduler and not compile.ready():
        print(f"dcf {__version__}: compiling the kernels, once for this installation (about 30 s on 2 cores; "
              "`python -m dcf.compile` does it ahead) ...", file=sys.stderr, flush=True)
        compiling = compile.Compiling()
    print(f"dcf {__version__}: " + (f"connecting to {c.scheduler}" if c.scheduler else
                                    f"starting {c.workers} workers x {c.threads_per_worker} threads "
                                    f"({c.memory_limit} each)") + " ...", file=sys.stderr, flush=True)
    try:
        with cluster.starting(cfg.cluster) as pending:
            # imported here, not at the top, so that the import overlaps the workers' start
            # (tests/test_layout.py allows this one import inside a function)
            from .job import run
            from .metrics import summary
            metrics = run(cfg, inputs, pending, compiling)
    finally:
        if compiling is not None:
            compiling.close()
    return metrics, summary(metrics, cfg.top_n)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def job():
        cfg = resolve(args)
        metrics, summary = _job(cfg, args.config)
        print(summary)
        print(f"outputs in {Path(cfg.out).resolve()}")
    return guarded(job, args.debug)


def guarded(work, debug: bool = False) -> int:
    """Run ``work()`` as a command does: SIGINT and SIGTERM stop it cleanly, distributed's
    own tracebacks are silenced, and a failure is one line on stderr (the traceback with
    ``debug``).  Returns the exit status: 0 done, 2 bad input or settings, 1 any other
    failure, 130 interrupted (``python -m dcf.run`` and ``python -m dcf.evaluate``).

    A signal that lands while the handlers are put back (a second Ctrl-C, or one sent to
    the whole process group as the job ends) is no traceback either: status 130 where the
    work had not finished, its own status where it had."""
    status = None
    try:
        with handled():
            status = _guarded(work, debug)
    except KeyboardInterrupt as exc:
        if status is not None:
            return status
        _say_interrupted(exc)
        return 130
    return status


def _guarded(work, debug: bool) -> int:
    try:
        with quiet_distributed(debug):
            work()
    except (DataError, ConfigError) as exc:
        if debug:
            raise
        print(f"dcf: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        if "stalled" in STOP:
            print(f"dcf: failed: {STOP['stalled']}", file=sys.stderr)
            return 1
        _say_interrupted(exc)
        return 130
    except Exception as exc:  # noqa: BLE001 - one line unless --debug
        if debug:
            raise
        if isinstance(exc, ClusterError):
            print(f"dcf: failed: {exc}", file=sys.stderr)
        else:
            print(f"dcf: failed: {type(exc).__name__}: {exc} (rerun with --debug for the "
                  "traceback)", file=sys.stderr)
        return 1
    return 0


def _say_interrupted(exc: KeyboardInterrupt) -> None:
    what = "terminated" if isinstance(exc, Terminated) else "interrupted"
    print(f"dcf: {what}; outputs left as they were", file=sys.stderr)


def entry() -> None:
    """The command (``python -m dcf.run``, ``dcf-run``): :func:`main`, then exit with its status.

    Before the interpreter's own shutdown, the objects the collector tracks are frozen
    (:func:`gc.freeze`): its final collections then skip the millions of objects the
    ~1,200 loaded modules hold (the end of a cold job on 2 cores: 0.7 s -> 0.1 s).
    Nothing is skipped: exit handlers, flushing and closing run as usual. An interrupted
    job (status 130) has closed its cluster already and exits at once, not waiting for
    Dask's busy helper threads.
    """
    # python -m dcf.run's handlers for its imports (run/__main__.py) say "nothing was
    # written": from here on the job's own handlers decide, and put these defaults back
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    status = main()

    def finished(signum, frame):  # the job is over: a late signal ends the exit, not its status
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, finished)
    if status == 130:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    gc.freeze()
    sys.exit(status)
