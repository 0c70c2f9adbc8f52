"""Stopping the job: the SIGINT/SIGTERM handler and its flag :data:`STOP`, the stall
watchdog's verdict (:func:`on_stall`), and quieting distributed's loggers."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: stop the cluster this job started, keep old outputs."""


# set by a SIGINT/SIGTERM handler; the exception the handler raises can be swallowed when
# it lands inside a finaliser (Python prints "Exception ignored"), so every stage boundary
# and the output step check this flag as well
STOP: dict = {}


def on_signal(signum, frame):
    STOP["signal"] = signum
    f = frame
    while f is not None:
        if f.f_code.co_name == "__del__":  # raised here, it would be printed and dropped:
            threading.Timer(0.05, os.kill, (os.getpid(), signum)).start()  # deliver again
            return
        f = f.f_back
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def check_stop() -> None:
    if "signal" in STOP:
        raise Terminated() if STOP["signal"] == signal.SIGTERM else KeyboardInterrupt()


def on_stall(message: str) -> None:
    """The watchdog's verdict (from its thread): stop the job as Ctrl-C would, and say why."""
    STOP["stalled"] = message
    if signal.getsignal(signal.SIGINT) is on_signal:
        os.kill(os.getpid(), signal.SIGINT)


@contextlib.contextmanager
def handled():
    """:func:`on_signal` handles SIGINT and SIGTERM (from the main thread only; elsewhere
    Python cannot install handlers) with :data:`STOP` cleared; the previous handlers after."""
    previous = {}
    STOP.clear()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def quiet_distributed(debug: bool):
    """distributed's own loggers print tracebacks when the scheduler or a worker goes
    away; the job says what happened in one line instead (``--debug`` shows them)."""
    if debug:
        yield
        return
    names = [n for n in list(logging.root.manager.loggerDict) if n.split(".")[0] in ("distributed", "tornado")]
    loggers = [logging.getLogger(n) for n in {"distributed", "tornado", "asyncio", *names}]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
