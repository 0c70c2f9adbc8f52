"""Computing on the current client: how many threads, where persisted chunks live,
starting and broadcasting work, waiting for it, gathering a frame, and the workers'
memory budget."""

from __future__ import annotations

import ctypes
import os

import dask
import pandas as pd
from dask.base import get_scheduler, tokenize
from dask.core import flatten
from dask.utils import key_split
from distributed import Client, as_completed, default_client, futures_of, wait
from distributed.client import FutureCancelledError

from .frames import pack_frame, unpack_frames

__all__ = ["parallelism", "default_blocks", "current_client", "placement", "thread_slots", "connected", "start",
           "everywhere", "wait_for", "futures_in", "gather_frame", "BUDGET_TIMEOUT", "memory_budget", "trimmed_memory"]

def parallelism() -> int:
    """Threads that will run tasks: the current client's workers, else this machine's cores."""
    try:
        workers = default_client().scheduler_info(n_workers=-1)["workers"].values()
        return max(1, sum(w["nthreads"] for w in workers))
    except ValueError:  # no client: the local threaded scheduler
        return os.cpu_count() or 1


def default_blocks() -> int:
    """User blocks when none is given: one per thread that will run the tasks (at least 4)."""
    return max(4, parallelism())


def current_client():
    """The Client whose ``get`` dask uses now; None under a local scheduler (also a
    forced one)."""
    client = getattr(get_scheduler(), "__self__", None)
    return client if isinstance(client, Client) else None


def placement(collection):
    """For each chunk of a persisted collection (in ``to_delayed().ravel()`` order), the
    ``(address, threads)`` of a worker that holds it, once the chunks are computed; None
    without a client or where a chunk is not in a worker's memory (not persisted)."""
    client = current_client()
    if client is None:
        return None
    futures = futures_in(collection)
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


def thread_slots() -> list | None:
    """The current client's workers, one address per thread, dealt in turns (a worker of
    two threads and one of one: ``[w1, w2, w1]``): task ``a`` of an even set pinned to
    slot ``a mod len`` gives every thread its share and every worker its threads' share.
    None without a client (or with a local scheduler forced)."""
    client = current_client()
    if client is None:
        return None
    threads = {a: int(w["nthreads"]) for a, w in client.scheduler_info(n_workers=-1)["workers"].items()}
    slots = [a for turn in range(max(threads.values(), default=0)) for a in sorted(threads) if threads[a] > turn]
    return slots or None


def connected() -> bool:
    """Whether dask computes on a cluster now (a client, no local scheduler forced)."""
    return current_client() is not None


def start(obj):
    """Begin computing a Delayed on the cluster and return at once (its persisted
    form); ``obj`` unchanged without a client or with a local scheduler forced."""
    client = current_client()
    return obj if client is None else client.persist(obj)


REPLICATE_TRIES = 3  # rounds of Dask's best-effort replication a broadcast asks for


def everywhere(obj):
    """Compute a Delayed once and copy it to every worker (the paper's broadcast).

    Tasks that share a large input are then free to run on any worker: left on
    the one worker that built it, Dask's locality rule sends them all there and
    work stealing moves them back only slowly (measured: one of two workers idle
    a third of the time at 20M ratings).  Without a client (or with a local scheduler forced): ``obj`` unchanged.

    Dask's replication is best effort (a copy that fails is not retried, and a worker
    not running at that moment is skipped); it is asked again, at most
    :data:`REPLICATE_TRIES` times in all, while a worker lacks a copy.  A worker still
    without one fetches it when a task needs it.
    """
    client = current_client()
    if client is None:
        return obj
    persisted = client.persist(obj)
    futures = futures_in(persisted)
    wait_for(persisted)
    for _ in range(REPLICATE_TRIES):
        client.replicate(futures)
        workers = len(client.scheduler_info(n_workers=-1)["workers"])
        if all(len(holders) >= workers for holders in client.who_has(futures).values()):
            break
    return persisted


def wait_for(*collections) -> None:
    """Block until persisted collections are in memory (no-op without a client)."""
    futures = [f for c in collections for f in futures_in(c)]
    if futures:
        wait(futures)
        for f in futures:  # fail here, naming the cause, not later inside another stage
            if f.status == "error":
                exc = f.exception()
                if exc is None:
                    raise RuntimeError(f"task {f.key!r} failed and its error was lost")
                raise exc


def gather_frame(frame) -> pd.DataFrame:
    """The partitions of a dask DataFrame, concatenated in this process.

    ``frame.compute()`` concatenates them on one worker first; with 20M recommendations
    that worker died at its 3 GB limit.  On a cluster each partition is fetched as soon
    as its task ends, while the others still run: ``dask.compute`` fetched them all
    after the last one, and the e-commerce shape's 6M recommendations (200 MB) then
    took about a second more after the last task (benchmarks/RESULTS.md, issue 21).  A
    failed part raises its own error at once and every part is let go (a cancelled one
    raises ``FutureCancelledError``).
    """
    parts = frame.to_delayed()
    client = current_client()
    if client is None or not parts:
        parts = dask.compute(*parts)
    else:  # each part packed on its worker: under half the bytes, as arrays (frames.py)
        pack = dask.delayed(pack_frame, pure=True)
        futures = client.compute([pack(part, dask_key_name=f"packed-{key_split(part.key)}-{tokenize(part.key)}")
                                  for part in parts])
        where = {f.key: i for i, f in enumerate(futures)}
        got = [None] * len(futures)
        try:
            for future, part in as_completed(futures, with_results=True):
                if future.status != "finished":  # cancelled elsewhere: say so, as a gather would
                    raise part if isinstance(part, BaseException) else FutureCancelledError(future.key, "cancelled")
                got[where[future.key]] = part
        except BaseException:
            client.cancel(futures)  # every part, the finished ones' results too
            futures.clear()  # the exception's traceback keeps this frame alive: it holds no future
            got.clear()
            raise
        return unpack_frames(got, frame._meta)
    return pd.concat(parts, ignore_index=True) if parts else frame._meta.copy()


def futures_in(collection) -> list:
    """The futures a persisted collection holds (none for anything else)."""
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
