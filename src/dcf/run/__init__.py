"""``python -m dcf.run``: the batch job (config -> cluster -> pipeline -> outputs).

Stages: load (read, validate, id maps), matrix (CSR blocks persisted),
neighbours (similarity tiles + top-k, persisted), prediction (every test
pair), top-N (every user), output.  Outputs go to ``--out`` (default
``./dcf-output``): ``metrics.json``, ``predictions.parquet`` and
``recommendations.parquet``, written to a staging folder and moved into place
only when complete.  Exit status: 0 done, 2 bad input or settings (one line on
stderr, no traceback), 1 any other failure, 130 interrupted.

The modules, in the order a run meets them:

- :mod:`~dcf.run.cli` -- the parser, :func:`resolve` (flags over a TOML file), :func:`main`, and
  ``entry`` (the command: ``main``, then a quick exit);
- :mod:`~dcf.run.preflight` -- checks before the cluster starts (output folder, test set);
- :mod:`~dcf.run.job` -- :func:`run`: the client, performance report, stall watchdog, failures;
- :mod:`~dcf.run.pipeline` -- :class:`Stages` (timed progress lines) and :func:`execute`;
- :mod:`~dcf.run.metrics` -- the metrics dict, :func:`strict_json`, :func:`summary`;
- :mod:`~dcf.run.outputs` -- :func:`uniform_ids` and the output files, written atomically;
- :mod:`~dcf.run.signals` -- SIGINT/SIGTERM, the stall verdict, quiet distributed loggers;
- ``__main__`` -- what ``python -m dcf.run`` runs.
"""

from __future__ import annotations

from importlib import import_module

__all__ = ["build_parser", "main", "resolve", "run", "strict_json", "summary", "uniform_ids", "Stages",
           "execute", "preflight"]

# public name -> the module that defines it; loaded when first used (PEP 562), so that
# ``python -m dcf.run`` starts the cluster before it imports the stages
_HOMES = {"build_parser": "cli", "main": "cli", "resolve": "cli", "run": "job", "strict_json": "metrics",
          "summary": "metrics", "uniform_ids": "outputs", "Stages": "pipeline", "execute": "pipeline",
          "preflight": "preflight"}


def __getattr__(name):
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'dcf.run' has no attribute {name!r}")
    value = getattr(import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
