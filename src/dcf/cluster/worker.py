"""What a dcf worker does as it starts: the module Dask preloads in every worker
(``distributed.worker.preload``, set by :mod:`~dcf.cluster.launch` and
``cluster/dask.yaml``).

The worker joins the cluster at once; a background thread then imports the modules
whose functions the job's tasks run (:data:`TASK_MODULES`, about 1.3 s on a 2-core
machine) and loads the compiled kernels' runtime (numba's first call in a process,
about 0.5 s even from its on-disk cache).  Both used to happen before the worker
joined (the client waited for them) or inside the first tasks.  A task that needs a
module before the thread has imported it waits on Python's import lock, never on a
half-imported module.
"""

from __future__ import annotations

import importlib
import logging
import threading

__all__ = ["TASK_MODULES", "dask_setup", "warm_up"]

TASK_MODULES = ["dcf.io", "dcf.split", "dcf.fitting", "dcf.predict"]

log = logging.getLogger(__name__)


def warm_up() -> None:
    """Import :data:`TASK_MODULES`, then load the compiled kernels' runtime."""
    try:
        for name in TASK_MODULES:
            importlib.import_module(name)
        importlib.import_module("dcf.kernels").warm_up()
    except Exception:  # noqa: BLE001 - a task importing the same module raises it where it is seen
        log.exception("dcf: warming up the worker failed; its first tasks will import and compile")


def dask_setup(worker) -> None:  # noqa: ARG001 - Dask's preload hook
    """Dask's preload hook: start :func:`warm_up` in the background."""
    threading.Thread(target=warm_up, name="dcf-warm-up", daemon=True).start()
