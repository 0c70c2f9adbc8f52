"""The only module that imports ``distributed``: make or attach a cluster.

The default local cluster mirrors the paper's: a scheduler and 2 workers with
2 threads and a 3 GB memory limit each, listening on 127.0.0.1 only.  The
paper's ``spark.storage.memoryFraction = 0.4`` maps onto Dask's memory
*target*: a worker starts spilling persisted data to disk at 40 % of its
limit; it still pauses at 80 % and is restarted at 95 % (Dask's defaults).

The modules:

- :mod:`~dcf.cluster.launch` -- the local cluster's settings, :func:`client`, a start in the
  background (:class:`Starting`), :func:`describe`, :func:`dashboard_note`;
- :mod:`~dcf.cluster.compute` -- threads, placement, thread slots, start/broadcast/wait, gathering a frame, the memory budget;
- :mod:`~dcf.cluster.frames` -- a frame's parts packed on the workers and unpacked in the client;
- :mod:`~dcf.cluster.health` -- failures explained, tasks to go, the stall watchdog, reports.
"""

from __future__ import annotations

from .compute import (BUDGET_TIMEOUT, connected, current_client, default_blocks, everywhere, futures_in,
                      gather_frame, memory_budget, parallelism, placement, start, thread_slots, trimmed_memory,
                      wait_for)
from .health import (explain_failure, pending_tasks, progress_state, report_to, scheduler_alive, watchdog,
                     worker_addresses)
from .launch import (ALLOWED_FAILURES, MMAP_THRESHOLD, START_TIMEOUT, WORKER_MODULES, Starting, client,
                    connect, dashboard_note, describe, security, starting)

__all__ = ["connect", "client", "starting", "Starting", "WORKER_MODULES", "START_TIMEOUT", "security", "describe",
           "dashboard_note",
           "parallelism", "default_blocks", "current_client", "placement", "thread_slots", "connected", "start", "everywhere",
           "wait_for", "futures_in", "gather_frame", "BUDGET_TIMEOUT", "memory_budget", "trimmed_memory", "worker_addresses",
           "explain_failure", "scheduler_alive", "pending_tasks", "progress_state", "watchdog", "report_to",
           "ALLOWED_FAILURES", "MMAP_THRESHOLD"]
