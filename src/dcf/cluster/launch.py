"""Starting or attaching to a cluster: the local cluster's settings, the client, a
start in the background (:class:`Starting`), and what the cluster looks like."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.forkserver
import os
import threading
from urllib.parse import urlsplit

import dask
from distributed import Client
from distributed.client import _del_global_client, _get_global_client
from distributed.security import Security
from distributed.utils import get_mp_context

from ..config import ClusterConfig
from ..errors import ClusterError, ConfigError

__all__ = ["ALLOWED_FAILURES", "CONNECT_TIMEOUT", "MMAP_THRESHOLD", "WORKER_MODULES", "START_TIMEOUT", "security", "client",
           "connect", "Starting", "starting", "describe", "dashboard_note"]

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


# what a worker preloads: dcf.cluster.worker joins the cluster at once and imports the
# job's task modules and loads the compiled runtime in the background, in parallel with
# the client's own imports, not inside the first stages (nor before the worker joins)
WORKER_MODULES = ["dcf.cluster.worker"]
# a local cluster not up after this many seconds fails the job (distributed's own start
# timeouts come first; this bounds the wait for them)
START_TIMEOUT = 300.0
# seconds a scheduler named by --scheduler has to answer (distributed's connect timeout, and
# this module's bound on a server that never answers)
CONNECT_TIMEOUT = 10.0


# where the platform has it, a local cluster's workers are forked from one server process
# that imported dcf's task modules and loaded the compiled runtime once (forkserver.py):
# with issue 21 step 5's other changes, a cold paper-shape job about 10.5 s -> 7 s on 2 cores
# (benchmarks/RESULTS.md)
START_METHOD = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
FORKSERVER_PRELOAD = ["dcf.ignore_sigint", "distributed", "dcf.cluster.forkserver"]  # SIGINT ignored first


def _local_settings(cfg: ClusterConfig) -> dict:
    return {"distributed.worker.preload": WORKER_MODULES,
            "distributed.worker.multiprocessing-method": START_METHOD,
            "distributed.worker.memory.target": cfg.memory_target,
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


def _start_forkserver() -> None:
    """Start this process's fork server now, importing :data:`FORKSERVER_PRELOAD`, while
    the scheduler and its dashboard start: not when the first worker is spawned, about
    a second later.  Its workers inherit its environment from now, so distributed's
    pre-spawn settings (which the nanny would set just before its first spawn) are set
    first; they are the same for every dcf cluster.  No effect once the server runs: its
    workers keep its modules and environment."""
    # distributed names its own preloads once, on its first call; ours replace them
    get_mp_context().set_forkserver_preload(FORKSERVER_PRELOAD)
    os.environ.update({k: str(v) for k, v in dask.config.get("distributed.nanny.pre-spawn-environ").items()})
    multiprocessing.forkserver.ensure_running()


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
        if START_METHOD == "forkserver":
            _start_forkserver()
        return Client(n_workers=cfg.workers, threads_per_worker=cfg.threads_per_worker,
                      memory_limit=cfg.memory_limit, host=cfg.host,
                      dashboard_address=cfg.dashboard_address, processes=True,
                      silence_logs=logging.CRITICAL)


def _attach(cfg: ClusterConfig, timeout: float = 120) -> Client:
    c = _connected(cfg)
    if cfg.wait_for_workers:
        try:
            c.wait_for_workers(cfg.wait_for_workers, timeout=timeout)
        except TimeoutError:
            have = len(c.scheduler_info()["workers"])
            c.close()
            raise ConfigError(f"{cfg.scheduler} has {have} worker(s); waited {timeout:.0f} s for "
                              f"{cfg.wait_for_workers}") from None
    return c


def _connected(cfg: ClusterConfig) -> Client:
    """A client of ``cfg.scheduler``, or a ConfigError within :data:`CONNECT_TIMEOUT`
    seconds (and a few more).  distributed's own timeout does not bound a server that
    accepts the connection and never answers (a plain socket, a web server: its
    ``Client`` waited for ever), and one that answers with something else raised what
    its bytes decoded to (``MemoryError: Unable to allocate 3.07 EiB``); the client is
    made in a thread of its own, and a client that comes up after the wait gave up is
    closed, not leaked."""
    box: dict = {}
    gave_up = threading.Event()
    before = dask.config.get("scheduler", None), _get_global_client()  # what a Client changes as it starts

    def make():
        try:
            c = Client(cfg.scheduler, timeout=f"{CONNECT_TIMEOUT}s", security=security(cfg))
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
            box["error"] = exc
            return
        box["client"] = c
        if gave_up.is_set():
            c.close()

    def give_up():  # a client that came up just now is closed, one that comes up later closes itself
        gave_up.set()
        if "client" in box:
            box.pop("client").close()
        else:
            _forget_stuck(*before)

    maker = threading.Thread(target=make, name="dcf-connect", daemon=True)
    maker.start()
    try:
        maker.join(CONNECT_TIMEOUT + 5.0)
    except BaseException:  # interrupted while waiting
        give_up()
        raise
    if maker.is_alive():
        give_up()
        raise ConfigError(f"cannot reach the scheduler at {cfg.scheduler}: nothing answered as a Dask "
                          f"scheduler within {CONNECT_TIMEOUT:.0f} s")
    exc = box.get("error")
    if exc is not None:  # a client that failed to start may have left the same behind
        _forget_stuck(*before)
    if isinstance(exc, (OSError, TimeoutError)):
        raise ConfigError(f"cannot reach the scheduler at {cfg.scheduler}: {exc}") from None
    if isinstance(exc, Exception):
        raise ConfigError(f"cannot reach the scheduler at {cfg.scheduler}: it did not answer as a Dask "
                          f"scheduler ({type(exc).__name__}: {str(exc)[:120]})") from None
    if exc is not None:  # KeyboardInterrupt and the like
        raise exc
    return box["client"]


def _forget_stuck(scheduler, default) -> None:
    """Undo what a client that never connected (stuck, or failed) did as it started: it
    made itself the process's default client and set Dask's ``scheduler`` to
    ``dask.distributed`` (only its ``close`` undoes them), so every later ``compute()`` of
    the process, a notebook's too, waited on it for ever or failed ("Requested
    dask.distributed scheduler but no Client active").  ``scheduler`` and ``default`` are the two as they were before it.
    (A client that connects later is closed, and its close restores the same.)  Dask has
    no public call for this: distributed's own ``_get_global_client`` and
    ``_del_global_client``, which its ``Client`` uses."""
    stuck = _get_global_client()
    if stuck is not None and stuck is not default:
        _del_global_client(stuck)
    if dask.config.get("scheduler", None) == scheduler:
        return
    if scheduler is None:
        dask.config.config.pop("scheduler", None)
    else:
        dask.config.set(scheduler=scheduler)


@contextlib.contextmanager
def connect(cfg: ClusterConfig):
    """Yield a :class:`distributed.Client`; close what this call started
    (a local cluster created here is owned by its client and closes with it)."""
    with client(cfg) as c:
        yield c


class Starting:
    """:func:`client` running in a background thread: the caller's own work (the batch job
    imports its stages, about 2 s) overlaps the start of the scheduler and the workers.

    :meth:`client` waits for it (at most ``timeout`` seconds, interruptible) and raises
    what the start raised; :meth:`close` closes the client, also one that comes up after
    the caller gave up on it.
    """

    def __init__(self, cfg: ClusterConfig, timeout: float = START_TIMEOUT):
        self._cfg, self._timeout = cfg, timeout
        self._done, self._lock = threading.Event(), threading.Lock()
        self._client = self._error = None
        self._closed = False
        threading.Thread(target=self._start, name="dcf-cluster-start", daemon=True).start()

    def _start(self) -> None:
        try:
            c = client(self._cfg)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
            self._error = exc
        else:
            with self._lock:
                late = self._closed
                self._client = None if late else c
            if late:
                c.close()
        finally:
            self._done.set()

    def client(self) -> Client:
        if not self._done.wait(self._timeout):
            what = self._cfg.scheduler or "the local cluster"
            raise ClusterError(f"{what} did not start within {self._timeout:.0f} s")
        if self._error is not None:
            raise self._error
        return self._client

    def close(self) -> None:
        with self._lock:
            self._closed = True
            c, self._client = self._client, None
        if c is not None:
            c.close()


@contextlib.contextmanager
def starting(cfg: ClusterConfig):
    """Start (or attach to) the configured cluster in the background; yield the
    :class:`Starting`; close what it started on the way out."""
    pending = Starting(cfg)
    try:
        yield pending
    finally:
        pending.close()


def describe(client) -> dict:
    """Workers, threads and memory limits of the connected cluster."""
    info = client.scheduler_info()
    workers = info.get("workers", {})
    return {"scheduler": client.scheduler.address, "dashboard": client.dashboard_link,
            "workers": len(workers),
            "threads": sorted({w["nthreads"] for w in workers.values()}),
            "memory_limit_bytes": sorted({int(w.get("memory_limit") or 0) for w in workers.values()})}


def dashboard_note(asked: str | None, link: str | None) -> str:
    """``" (port P was in use)"`` where a local cluster's dashboard was asked for a fixed
    port P and Dask, finding it taken (a notebook's cluster on 8787, say), served it on
    another one: its warning is among the logs the job silences, and P may show another
    cluster's dashboard.  Empty otherwise (no dashboard, port 0, the port given)."""
    if not asked or not link:
        return ""
    port = asked.rpartition(":")[2]
    try:
        got = urlsplit(link).port
    except ValueError:
        return ""
    return f" (port {port} was in use)" if port.isdigit() and int(port) and got and got != int(port) else ""
