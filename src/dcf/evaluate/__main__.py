"""``python -m dcf.evaluate``: cross-validation of the batch job's model.

It takes ``python -m dcf.run``'s options (the data, the model, the cluster, ``--out``), and
either ``--folds K`` (hash folds of ``--data``, default 5, ``--seed``) or ``--fold-files TRAIN
TEST [TRAIN TEST ...]`` (predefined folds; ``--fold-files movielens:ml-100k`` is MovieLens
100K's u1-u5).  It prints each fold's figures with their mean +/- std and writes, into
``--out`` (default ``dcf-evaluation``; replaced only when dcf wrote it), ``folds.csv`` (one
row per fold), ``users.parquet`` (one row per fold and user) and ``summary.json`` (the
settings, the versions, the folds and their mean and std).  Exit status: 0 done, 2 bad input
or settings, 1 any other failure, 130 interrupted.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import dask

from .. import cluster
from .. import io as dio
from ..datasets import open_source
from ..errors import ConfigError
from ..folders import EVALUATION, atomic_folder, check_folder
from ..run.cli import build_parser as run_parser
from ..run.cli import guarded, resolve
from ..run.metrics import strict_json
from ..run.pipeline import estimator_of, read_options
from ..run.preflight import same_source
from ..version import __version__
from .cross import cross_validate
from .metrics import integer_ids

# dcf.run's options that say what the batch job writes or tests on: no meaning here
NOT_HERE = {"test": "--test", "test_fraction": "--test-fraction", "items": "--items", "keep_rated": "--keep-rated",
            "explain": "--explain", "write_neighbours": "--write-neighbours",
            "performance_report": "--performance-report", "split": "--split", "holdout": "--holdout"}
MOVIELENS_FOLDS = "movielens:ml-100k"


def build_parser():
    p = run_parser()
    p.prog = "python -m dcf.evaluate"
    p.description = __doc__.split("\n\n")[0]
    g = p.add_argument_group("cross-validation")
    g.add_argument("--folds", type=int, metavar="K", help="hash folds of --data (default 5)")
    g.add_argument("--fold-files", nargs="+", metavar="FILE",
                   help=f"predefined folds: TRAIN TEST pairs (paths or dcf sources), or {MOVIELENS_FOLDS} for "
                        "MovieLens 100K's u1-u5")
    return p


def fold_files(files, read_kw) -> list:
    """The ``(train, test)`` Ratings of ``--fold-files``."""
    if files == [MOVIELENS_FOLDS]:
        files = [f"{MOVIELENS_FOLDS}/u{f}.{part}" for f in range(1, 6) for part in ("base", "test")]
    if len(files) % 2:
        raise ConfigError(f"--fold-files takes TRAIN TEST pairs (or {MOVIELENS_FOLDS}); {len(files)} files given")
    read = [open_source(f, **read_kw) for f in files]
    return list(zip(read[::2], read[1::2]))


def checked_folds(args, whose: str, default: int) -> tuple:
    """``(folds, fold files)`` of a command's arguments (taken off ``args``, which then hold
    ``dcf.run``'s settings only), refused before any work where they cannot be: the batch
    job's test options (no meaning here: ``whose`` says why), ``--folds`` with
    ``--fold-files``, an odd number of fold files, fewer than 2 folds."""
    given = [flag for name, flag in NOT_HERE.items() if getattr(args, name) not in (None, False)]
    if given:
        raise ConfigError(f"{', '.join(given)}: the batch job's, not {whose}")
    if args.folds is not None and args.fold_files:
        raise ConfigError("give --folds K (hash folds of --data) or --fold-files, not both")
    folds, files = (default if args.folds is None else args.folds), args.fold_files
    del args.folds, args.fold_files
    if files and files != [MOVIELENS_FOLDS] and len(files) % 2:
        raise ConfigError(f"--fold-files takes TRAIN TEST pairs (or {MOVIELENS_FOLDS}); {len(files)} files given")
    for f, (train, test) in enumerate(zip(files[::2], files[1::2]) if files and files != [MOVIELENS_FOLDS] else (),
                                      start=1):
        if same_source(train, test):
            raise ConfigError(f"--fold-files: fold {f}'s test file {test} is its training file {train}, so every "
                              "test rating would also be a training rating")
    if folds < 2:
        raise ConfigError(f"--folds must be at least 2, not {folds}")
    return folds, files


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def job():
        folds, files = checked_folds(args, "cross-validation's (each fold is tested on its own held-out ratings)", 5)
        args.out = args.out or "dcf-evaluation"
        cfg = resolve(args)
        inputs = tuple(s for s in ([cfg.data] if not files else files) + [args.config] if s)
        check_folder(cfg.out, EVALUATION, inputs=inputs)  # before any work
        estimator = estimator_of(cfg)
        print(f"dcf {__version__}: " + (f"connecting to {cfg.cluster.scheduler}" if cfg.cluster.scheduler else
                                        f"starting {cfg.cluster.workers} workers") + " ...", file=sys.stderr,
              flush=True)
        with cluster.connect(cfg.cluster):
            if files:
                result = cross_validate(estimator, folds=fold_files(files, read_options(cfg)), n=cfg.top_n,
                                        threshold=cfg.relevance, baselines=cfg.baselines)
            else:  # read once, held on the workers: every fold splits the same parts
                data = open_source(cfg.data, **read_options(cfg))
                data = dio.Ratings(data.source, list(dask.persist(*data.parts)), data.report)
                result = cross_validate(estimator, data, folds=folds, n=cfg.top_n, threshold=cfg.relevance,
                                        seed=cfg.seed, baselines=cfg.baselines)
        write(result, cfg, inputs, "folds " + (" ".join(files) if files else f"{folds} hash folds, seed {cfg.seed}"))
        print(result.table())
        print(f"outputs in {Path(cfg.out).resolve()}")
    return guarded(job, args.debug)


def write(result, cfg, inputs, folds: str) -> None:
    """``folds.csv``, ``users.parquet`` and ``summary.json`` into ``cfg.out``, replaced whole."""
    summary = result.summary()
    doc = {"dcf_version": __version__, "folds": folds, "settings": cfg.to_dict(), "n": result.n,
           "relevance_threshold": result.threshold, "per_fold": result.folds.to_dict("records"),
           "mean": summary["mean"].to_dict(), "std": summary["std"].to_dict()}
    with atomic_folder(cfg.out, EVALUATION, inputs=inputs) as staging:
        result.folds.to_csv(staging / "folds.csv", index=False)
        ints = integer_ids(result.users["user"])  # ids as integers where they all are, else as text
        users = result.users.assign(user=ints if ints is not None else result.users["user"].astype(str))
        users.pipe(without_nan).to_parquet(staging / "users.parquet", index=False)
        (staging / "summary.json").write_text(json.dumps(strict_json(doc), indent=2) + "\n")


def without_nan(users):
    """The per-user table with a missing value (Parquet null) wherever a measure does not
    apply, never NaN: a user with no relevant test item has no precision (and none in the
    means), a fold of implicit events no error; its counts of relevant items and hits are 0."""
    users = users.copy()
    for col in ("relevant", "hits"):
        if col in users:
            users[col] = users[col].fillna(0).astype("int64")
    for col in users.columns:
        if users[col].dtype.kind == "f":
            users[col] = users[col].astype("Float64").mask(users[col].isna())  # NaN -> <NA>
    return users


if __name__ == "__main__":
    sys.exit(main())
