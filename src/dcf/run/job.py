"""The whole job on a cluster being started: Dask's performance report, the stall
watchdog, the pipeline, a cluster failure explained, the outputs."""

from __future__ import annotations

import sys
from contextlib import ExitStack
from pathlib import Path

from .. import cluster
from ..compile import Compiling
from ..config import RunConfig
from ..errors import ClusterError, ConfigError, DataError
from ..folders import atomic_file
from ..version import __version__
from .metrics import collect_metrics
from .outputs import write_outputs
from .pipeline import Stages, execute
from .signals import on_stall


def run(cfg: RunConfig, inputs: tuple, pending: cluster.Starting, compiling: Compiling | None = None) -> dict:
    """Run the whole job on the cluster ``pending`` starts (:func:`dcf.cluster.starting`,
    which also closes it); ``inputs``: the files :func:`~dcf.run.preflight.preflight`
    found; ``compiling``: the kernels' compile, waited for before the first stage (the
    workers then load its code instead of each compiling it). Returns the metrics dict."""
    stage = Stages(cfg.progress)
    with ExitStack() as stack:
        report = (stack.enter_context(atomic_file(cfg.performance_report, inputs=inputs))
                  if cfg.performance_report else None)
        client = pending.client()
        shape = cluster.describe(client)
        moved = "" if cfg.cluster.scheduler else cluster.dashboard_note(cfg.cluster.dashboard_address,
                                                                        shape["dashboard"])
        print(f"dcf {__version__}: dashboard {shape['dashboard']}{moved}  ({shape['workers']} workers)",
              file=sys.stderr)
        stack.enter_context(cluster.report_to(report))
        stack.enter_context(cluster.watchdog(client, cfg.cluster.stall_timeout, on_stall))
        at_start = cluster.worker_addresses(client)
        if compiling is not None:
            print(compiling.wait(), file=sys.stderr, flush=True)
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
            neighbours = res["model"].neighbours() if cfg.write_neighbours else None
            metrics = write_outputs(  # the metrics computed while the files are written
                Path(cfg.out), res["predictions"], res["recommendations"],
                lambda: collect_metrics(cfg, res["model"], res["predictions"], res["recommendations"],
                                        res["reports"], shape, res["candidates"], res["baselines"],
                                        res["repeated"]),
                stage, neighbours, inputs, cfg.based)
        metrics["seconds"] = stage.seconds
    return metrics
