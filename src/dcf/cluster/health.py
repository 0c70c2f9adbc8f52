"""The cluster's health during a job: workers present, failures explained in one line,
a live scheduler, tasks still to run, the stall watchdog, Dask's performance report."""

from __future__ import annotations

import contextlib
import threading
import time

from distributed import default_client, performance_report
from distributed.core import Status
from distributed.scheduler import KilledWorker, NoWorkerError

__all__ = ["worker_addresses", "explain_failure", "scheduler_alive", "pending_tasks", "progress_state",
           "watchdog", "report_to"]

def worker_addresses(client) -> set:
    """Addresses of the workers connected now (a restarted worker has a new one)."""
    try:
        return set(client.scheduler_info(n_workers=-1)["workers"])
    except Exception:  # noqa: BLE001 - the scheduler itself may be gone
        return set()


def explain_failure(exc: BaseException, lost: int = 0, client=None) -> str | None:
    """One line for the cluster failures a user can act on, else ``None``.

    ``lost``: workers present when the job started that are gone now; ``client``: the
    job's client, to tell a lost scheduler from lost workers.
    """
    memory = ("the usual cause is running out of memory: raise --memory-limit (or memory "
              "in cluster.conf), add workers, or give a smaller --block-size")
    if client is not None and not scheduler_alive(client):
        return (f"the scheduler at {_address(client)} was lost during the run (stopped or "
                f"killed); start it again and rerun ({type(exc).__name__})")
    if isinstance(exc, KilledWorker):
        task = exc.task[0] if isinstance(exc.task, tuple) else exc.task
        return f"workers died {exc.allowed_failures + 1} times while running task {task!r}; {memory}"
    if isinstance(exc, NoWorkerError):
        return (f"every worker of the cluster was lost and none came back within "
                f"{exc.timeout:.0f} s; check the workers' logs and start them again")
    if lost:
        return (f"workers died during the run ({lost} of those present at the start are gone) "
                f"and a task failed ({type(exc).__name__}); {memory}")
    return None


def _address(client) -> str:
    try:
        return str(client.scheduler.address)
    except Exception:  # noqa: BLE001 - a closed client may have no scheduler object
        return "(unknown)"


def scheduler_alive(client, timeout: float = 5) -> bool:
    """Whether the client's scheduler still answers (within ``timeout`` seconds)."""
    if client.status not in ("running", "connecting"):
        return False
    try:
        client.sync(client.scheduler.identity, callback_timeout=timeout)
    except Exception:  # noqa: BLE001 - any failure to answer is a lost scheduler here
        return False
    return True


def pending_tasks() -> int | None:
    """Tasks the current client's scheduler has waiting or running now; None without a
    client (or when the scheduler cannot be asked)."""
    try:
        return int(default_client().run_on_scheduler(progress_state)["waiting"])
    except Exception:  # noqa: BLE001 - no client, or one going away: nothing to report
        return None


def progress_state(dask_scheduler) -> dict:
    """What the watchdog reads on the scheduler: tasks done so far (a transition count),
    tasks waiting, and how many workers could run them now."""
    workers = list(dask_scheduler.workers.values())
    waiting = (len(dask_scheduler.queued) + len(dask_scheduler.unrunnable)
               + sum(len(ws.processing) for ws in workers))
    paused = sum(ws.status == Status.paused for ws in workers)
    busy = sum(ws.status == Status.running and len(ws.processing) > 0 for ws in workers)
    return {"transitions": int(dask_scheduler.transition_counter), "waiting": int(waiting),
            "workers": len(workers), "paused": int(paused), "busy": int(busy)}


class _Watchdog(threading.Thread):
    def __init__(self, client, limit: float, on_stall, poll: float):
        super().__init__(name="dcf-watchdog", daemon=True)
        self.client, self.limit, self.on_stall, self.poll = client, limit, on_stall, poll
        self.done = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        last, since = None, time.monotonic()
        while not self.done.wait(self.poll):
            try:
                st = self.client.run_on_scheduler(progress_state)
            except Exception:  # noqa: BLE001 - a lost scheduler fails the job's own call
                return
            moving = st["transitions"] != last or not st["waiting"] or st["busy"]
            if moving:
                last, since = st["transitions"], time.monotonic()
            elif time.monotonic() - since >= self.limit:
                with self.lock:
                    if not self.done.is_set():
                        self.on_stall(_stall_message(st, self.limit))
                return


def _stall_message(st: dict, limit: float) -> str:
    why = (f"{st['paused']} of {st['workers']} workers are paused at their memory limit's "
           "pause threshold" if st["paused"] else f"{st['workers']} workers, none running a task")
    return (f"no task started or finished for {limit:g} s while {st['waiting']} waited ({why}); "
            "stopped at the stall limit (--stall-timeout, stall_timeout in the [cluster] table). "
            "Raise --memory-limit, add workers or give a smaller --block-size")


@contextlib.contextmanager
def watchdog(client, limit: float, on_stall, poll: float | None = None):
    """Call ``on_stall(message)`` (from another thread) once, when work has waited
    ``limit`` seconds on the cluster with no task started or finished and no worker
    running one (workers paused near their memory limit, say); a bound for every wait.

    A long task on a running worker is progress, not a stall.  ``on_stall`` must make
    the waiting call return (the batch job interrupts itself)."""
    dog = _Watchdog(client, float(limit), on_stall, poll or min(5.0, max(0.2, limit / 10)))
    dog.start()
    try:
        yield dog
    finally:
        with dog.lock:
            dog.done.set()
        dog.join(timeout=10)


def report_to(path):
    """Dask's HTML performance report of the block (or a no-op context)."""
    return performance_report(filename=str(path)) if path else contextlib.nullcontext()
