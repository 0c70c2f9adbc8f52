"""``python -m dcf.run``: the batch job (config -> cluster -> pipeline -> outputs).

Stages: load (read, validate, id maps), matrix (CSR blocks persisted),
neighbours (similarity tiles + top-k, persisted), prediction (every test
pair), top-N (every user), output.  Outputs go to ``--out`` (default
``./dcf-output``): ``metrics.json``, ``predictions.parquet`` and
``recommendations.parquet``, written to a staging folder and moved into place
only when complete.  Exit status: 0 done, 2 bad input or settings (one line on
stderr, no traceback), 1 any other failure, 130 interrupted.

The modules, in the order a run meets them:

- :mod:`~dcf.run.cli` -- the parser, :func:`resolve` (flags over a TOML file), :func:`main`;
- :mod:`~dcf.run.preflight` -- checks before the cluster starts (output folder, test set);
- :mod:`~dcf.run.job` -- :func:`run`: the client, performance report, stall watchdog, failures;
- :mod:`~dcf.run.pipeline` -- :class:`Stages` (timed progress lines) and :func:`execute`;
- :mod:`~dcf.run.metrics` -- the metrics dict, :func:`strict_json`, :func:`summary`;
- :mod:`~dcf.run.outputs` -- :func:`uniform_ids` and the output files, written atomically;
- :mod:`~dcf.run.signals` -- SIGINT/SIGTERM, the stall verdict, quiet distributed loggers;
- ``__main__`` -- what ``python -m dcf.run`` runs.
"""

from __future__ import annotations

from .cli import build_parser, main, resolve
from .job import run
from .metrics import strict_json, summary
from .outputs import uniform_ids
from .pipeline import Stages, execute
from .preflight import preflight
from .signals import Terminated

__all__ = ["main", "build_parser", "resolve", "preflight", "run", "execute", "Stages", "summary",
           "strict_json", "uniform_ids", "Terminated"]
