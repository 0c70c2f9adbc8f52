"""The only module that imports ``distributed``: make or attach a cluster.

The default local cluster mirrors the paper's: a scheduler and 2 workers with
2 threads and a 3 GB memory limit each, listening on 127.0.0.1 only.  The
paper's ``spark.storage.memoryFraction = 0.4`` maps onto Dask's memory
*target*: a worker starts spilling persisted data to disk at 40 % of its
limit; it still pauses at 80 % and is restarted at 95 % (Dask's defaults).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import threading
import time

import dask
from distributed import Client, performance_report, wait
from distributed.security import Security

from .config import ClusterConfig
from .errors import ConfigError

__all__ = ["connect", "client", "security", "describe", "parallelism", "default_blocks", "wait_for", "report_to",
           "memory_budget", "trimmed_memory", "explain_failure", "worker_addresses", "watchdog", "progress_state",
           "pending_tasks"]

# a task whose workers died this many times plus one fails the job (Dask's default is 3)
ALLOWED_FAILURES = 2


def security(cfg: ClusterConfig):
    """The client's TLS settings (``None`` for plain tcp)."""
    if not cfg.tls_ca_file:
        return None
    return Security(tls_ca_file=cfg.tls_ca_file, tls_client_cert=cfg.tls_cert,
                    tls_client_key=cfg.tls_key, require_encryption=True)


# Dask starts workers with MALLOC_TRIM_THRESHOLD_ set, which also turns off glibc's sliding
# mmap threshold: every array over 128 KiB is then a fresh mapping, zeroed page by page
# by the kernel, and freed back at once.  Numpy-heavy tasks ran 2-4x slower in a worker
# than in a plain process (the fit's per-block setup 14 ms a block against 5 ms; the 80 MB
# join of the shared matrix 0.14 s against 0.03 s).  Arrays up to 32 MiB (glibc's own
# ceiling for the sliding threshold) now reuse freed heap memory; Dask's trimming stays.
MMAP_THRESHOLD = 32 << 20


def _local_settings(cfg: ClusterConfig) -> dict:
    return {"distributed.worker.memory.target": cfg.memory_target,
            "distributed.worker.memory.spill": max(cfg.memory_target, 0.7),
            "distributed.scheduler.no-workers-timeout": cfg.no_workers_timeout,
            "distributed.scheduler.allowed-failures": ALLOWED_FAILURES,
            # a worker holds as many queued tasks as it has threads, not one more: with
            # Dask's 1.1, each worker kept a spare task, and at the end of a stage one
            # worker still ran its spare while the other sat idle (a whole task, 0.5-1 s
            # of a 20M fit)
            "distributed.scheduler.worker-saturation": 1.0,
            "distributed.nanny.pre-spawn-environ.MALLOC_MMAP_THRESHOLD_": MMAP_THRESHOLD,
            "distributed.admin.system-monitor.gil.enabled": False}


def client(cfg: ClusterConfig | None = None) -> Client:
    """A client of the configured cluster, for notebooks and scripts.

    Attaches to ``cfg.scheduler`` if given, else starts a local cluster shaped
    like the paper's, owned by the client (``client.close()`` stops it).
    """
    cfg = cfg or ClusterConfig()
    cfg.check_combination()
    if cfg.scheduler:
        return _attach(cfg)
    with dask.config.set(_local_settings(cfg)):
        return Client(n_workers=cfg.workers, threads_per_worker=cfg.threads_per_worker,
                      memory_limit=cfg.memory_limit, host=cfg.host,
                      dashboard_address=cfg.dashboard_address, processes=True,
                      silence_logs=logging.CRITICAL)


def _attach(cfg: ClusterConfig, timeout: float = 120) -> Client:
    try:
        c = Client(cfg.scheduler, timeout="10s", security=security(cfg))
    except (OSError, TimeoutError) as exc:
        raise ConfigError(f"cannot reach the scheduler at {cfg.scheduler}: {exc}") from None
    if cfg.wait_for_workers:
        try:
            c.wait_for_workers(cfg.wait_for_workers, timeout=timeout)
        except TimeoutError:
            have = len(c.scheduler_info()["workers"])
            c.close()
            raise ConfigError(f"{cfg.scheduler} has {have} worker(s); waited {timeout:.0f} s for "
                              f"{cfg.wait_for_workers}") from None
    return c


@contextlib.contextmanager
def connect(cfg: ClusterConfig):
    """Yield a :class:`distributed.Client`; close what this call started
    (a local cluster created here is owned by its client and closes with it)."""
    with client(cfg) as c:
        yield c


def describe(client) -> dict:
    """Workers, threads and memory limits of the connected cluster."""
    info = client.scheduler_info()
    workers = info.get("workers", {})
    return {"scheduler": client.scheduler.address, "dashboard": client.dashboard_link,
            "workers": len(workers),
            "threads": sorted({w["nthreads"] for w in workers.values()}),
            "memory_limit_bytes": sorted({int(w.get("memory_limit") or 0) for w in workers.values()})}


def parallelism() -> int:
    """Threads that will run tasks: the current client's workers, else this machine's cores."""
    import os

    from distributed import default_client

    try:
        workers = default_client().scheduler_info(n_workers=-1)["workers"].values()
        return max(1, sum(w["nthreads"] for w in workers))
    except ValueError:  # no client: the local threaded scheduler
        return os.cpu_count() or 1


def default_blocks() -> int:
    """User blocks when none is given: one per thread that will run the tasks (at least 4)."""
    return max(4, parallelism())


def _client():
    """The Client whose ``get`` dask uses now; None under a local scheduler (also a
    forced one)."""
    from dask.base import get_scheduler

    client = getattr(get_scheduler(), "__self__", None)
    return client if isinstance(client, Client) else None


def placement(collection):
    """For each chunk of a persisted collection (in ``to_delayed().ravel()`` order), the
    ``(address, threads)`` of a worker that holds it, once the chunks are computed; None
    without a client or where a chunk is not in a worker's memory (not persisted)."""
    from dask.core import flatten

    client = _client()
    if client is None:
        return None
    futures = _futures(collection)
    wait_for(collection)
    holders = client.who_has(futures) if futures else {}
    workers = client.scheduler_info(n_workers=-1)["workers"]
    out = []
    for key in flatten(collection.__dask_keys__()):
        where = [w for w in holders.get(key, ()) if w in workers]
        if not where:
            return None
        out.append((where[0], int(workers[where[0]]["nthreads"])))
    return out


def connected() -> bool:
    """Whether dask computes on a cluster now (a client, no local scheduler forced)."""
    return _client() is not None


def start(obj):
    """Begin computing a Delayed on the cluster and return at once (its persisted
    form); ``obj`` unchanged without a client or with a local scheduler forced."""
    client = _client()
    return obj if client is None else client.persist(obj)


def everywhere(obj):
    """Compute a Delayed once and copy it to every worker (the paper's broadcast).

    Tasks that share a large input are then free to run on any worker: left on
    the one worker that built it, Dask's locality rule sends them all there and
    work stealing moves them back only slowly (measured: one of two workers idle
    a third of the time at 20M ratings).  Without a client (or with a local scheduler forced): ``obj`` unchanged.
    """
    client = _client()
    if client is None:
        return obj
    persisted = client.persist(obj)
    futures = _futures(persisted)
    wait_for(persisted)
    client.replicate(futures)
    return persisted


def wait_for(*collections) -> None:
    """Block until persisted collections are in memory (no-op without a client)."""
    futures = [f for c in collections for f in _futures(c)]
    if futures:
        wait(futures)
        for f in futures:  # fail here, naming the cause, not later inside another stage
            if f.status == "error":
                exc = f.exception()
                if exc is None:
                    raise RuntimeError(f"task {f.key!r} failed and its error was lost")
                raise exc


def _futures(collection):
    from distributed import futures_of

    try:
        return futures_of(collection)
    except Exception:  # noqa: BLE001 - not a collection
        return []


BUDGET_TIMEOUT = 30  # seconds the workers have to report their memory


def memory_budget():
    """``(limit, threads, total, idle)`` of the current client's workers: the smallest
    memory limit in bytes, that worker's threads, the sum of limits and the largest
    memory a worker uses now; ``None`` without a client or without memory limits.

    "Now" is measured on the workers after each has handed its freed heap back to the
    operating system (:func:`trimmed_memory`): a worker that read 20M ratings of text
    kept 1.7 GB of freed frames in its process size, and a budget read from that (the
    heartbeat's figure) sent the fit to the tiles method, ten times slower than rows.
    The heartbeat's figure stands in when the workers cannot be asked."""
    from distributed import default_client

    try:
        client = default_client()
        workers = client.scheduler_info(n_workers=-1)["workers"]
    except ValueError:
        return None
    limits = [(int(w.get("memory_limit") or 0), int(w["nthreads"])) for w in workers.values()]
    if not limits or any(lim == 0 for lim, _ in limits):
        return None
    smallest = min(limits)
    try:  # Client.run, bounded (it has no timeout of its own)
        used = client.sync(client._run, trimmed_memory, workers=list(workers), callback_timeout=BUDGET_TIMEOUT)
        idle = max(int(v) for v in used.values())
    except Exception:  # noqa: BLE001 - a worker leaving, or one that cannot run it: the heartbeat's figure
        idle = max(int(w.get("metrics", {}).get("memory", 0)) for w in workers.values())
    return smallest[0], max(1, smallest[1]), sum(lim for lim, _ in limits), idle


def trimmed_memory(dask_worker) -> int:
    """This worker's process memory after glibc's ``malloc_trim`` hands its freed heap
    back to the operating system (what Dask's documentation advises for unmanaged
    memory); the size as it is where there is no glibc."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    return int(dask_worker.monitor.get_process_memory())


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
    from distributed.scheduler import KilledWorker, NoWorkerError

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
    from distributed import default_client

    try:
        return int(default_client().run_on_scheduler(progress_state)["waiting"])
    except Exception:  # noqa: BLE001 - no client, or one going away: nothing to report
        return None


def progress_state(dask_scheduler) -> dict:
    """What the watchdog reads on the scheduler: tasks done so far (a transition count),
    tasks waiting, and how many workers could run them now."""
    from distributed.core import Status

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
