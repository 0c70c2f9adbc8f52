"""``python -m dcf.tune``: choose settings by nested validation from the shell.

It takes ``python -m dcf.run``'s options (the data, the settings not searched, the cluster,
``--out``), ``--grid NAME=V1,V2 ...`` (estimator settings or ``ranking``; every combination
is a candidate), ``--metric mae|precision`` (at ``--top-n``), ``--folds K`` (hash folds of
``--data``, default 3) or ``--fold-files`` (as ``python -m dcf.evaluate``), ``--inner``
(the share of each fold's training ratings held out to choose, 0.2) and ``--sequential``
(the candidates' fits one after the other instead of side by side).  It prints each fold's
choice and its test score, and writes ``candidates.csv``, ``folds.csv`` and
``summary.json`` into ``--out`` (default ``dcf-tuning``; replaced only when dcf wrote it).
"""

from __future__ import annotations

import json
import sys
from dataclasses import fields
from pathlib import Path

import dask

from .. import cluster
from .. import io as dio
from ..config import RunConfig
from ..datasets import open_source
from ..errors import ConfigError
from ..evaluate.__main__ import checked_folds, fold_files
from ..folders import TUNING, atomic_folder, check_folder
from ..run.cli import build_parser as run_parser
from ..run.cli import guarded, resolve
from ..run.metrics import strict_json
from ..run.pipeline import estimator_of, read_options
from ..version import __version__
from .search import METRICS, tune

TYPES = {f.name: f.type for f in fields(RunConfig)}  # how a grid value is read


def build_parser():
    p = run_parser()
    p.prog = "python -m dcf.tune"
    p.description = __doc__.split("\n\n")[0]
    g = p.add_argument_group("tuning")
    g.add_argument("--grid", nargs="+", metavar="NAME=V1,V2", required=True,
                   help="the settings searched, each with its values (k=20,40 similarity=cosine,bm25)")
    g.add_argument("--metric", choices=list(METRICS), default="mae", help="what ranks the candidates (mae)")
    g.add_argument("--folds", type=int, metavar="K", help="outer hash folds of --data (default 3)")
    g.add_argument("--fold-files", nargs="+", metavar="FILE", help="outer folds: TRAIN TEST pairs, or movielens:ml-100k")
    g.add_argument("--inner", type=float, default=0.2, help="share of each fold's training ratings held out to choose")
    g.add_argument("--sequential", action="store_true", help="fit the candidates one after the other")
    return p


def parse_grid(items) -> dict:
    """``["k=20,40", "similarity=cosine"]`` -> ``{"k": [20, 40], "similarity": ["cosine"]}``, each
    value read as the setting's type."""
    grid = {}
    for item in items:
        name, _, values = item.partition("=")
        name = name.strip().replace("-", "_")
        if not values or name not in TYPES:
            raise ConfigError(f"--grid {item!r}: give NAME=V1,V2 with NAME a setting of the run "
                              "(k, similarity, amplification, ranking, ...)")
        if name in grid:
            raise ConfigError(f"--grid names {name} twice: give its values once ({name}=V1,V2)")
        kind = TYPES[name]
        read = int if kind.startswith("int") else float if kind.startswith("float") else str
        texts = [v.strip() for v in values.split(",")]
        if not all(texts):
            raise ConfigError(f"--grid {item!r}: an empty value")
        try:
            grid[name] = list(dict.fromkeys(read(v) for v in texts))  # each value once
        except ValueError:
            raise ConfigError(f"--grid {item!r}: {name} takes {read.__name__} values") from None
        for v in grid[name]:  # each value as the run's settings check it (k at most 10,000, ...)
            RunConfig().with_overrides(**{name: v})
    return grid


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def job():
        folds, files = checked_folds(args, "tuning's", 3)
        grid, metric, inner, parallel = parse_grid(args.grid), args.metric, args.inner, not args.sequential
        for name in ("grid", "metric", "inner", "sequential"):
            delattr(args, name)
        args.out = args.out or "dcf-tuning"
        cfg = resolve(args)
        inputs = tuple(s for s in ([cfg.data] if not files else files) + [args.config] if s)
        check_folder(cfg.out, TUNING, inputs=inputs)
        estimator = estimator_of(cfg)
        with cluster.connect(cfg.cluster):
            if files:
                sources = dict(folds=fold_files(files, read_options(cfg)))
            else:
                data = open_source(cfg.data, **read_options(cfg))
                sources = dict(data=dio.Ratings(data.source, list(dask.persist(*data.parts)), data.report),
                               folds=folds)
            result = tune(estimator, grid, **sources, metric=metric, n=cfg.top_n, threshold=cfg.relevance_threshold,
                          inner=inner, seed=cfg.seed, parallel=parallel)
        doc = {"dcf_version": __version__, "metric": metric, "grid": grid, "best": result.best,
               "protocol": result.protocol, "seconds": result.seconds, "settings": cfg.to_dict(),
               "folds": result.folds.to_dict("records")}
        with atomic_folder(cfg.out, TUNING, inputs=inputs) as staging:
            result.candidates.to_csv(staging / "candidates.csv", index=False)
            result.folds.to_csv(staging / "folds.csv", index=False)
            (staging / "summary.json").write_text(json.dumps(strict_json(doc), indent=2) + "\n")
        print(result.folds.to_string(index=False))
        print(f"best (mean validation {metric} over the folds): "
              + " ".join(f"{k}={v}" for k, v in result.best.items()))
        print(f"protocol: {result.protocol}; {result.seconds:.1f} s")
        print(f"outputs in {Path(cfg.out).resolve()}")
    return guarded(job, args.debug)


if __name__ == "__main__":
    sys.exit(main())
