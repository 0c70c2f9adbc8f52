"""Stopping the job: the SIGINT/SIGTERM handler and its flag :data:`STOP`, the stall
watchdog's verdict (:func:`on_stall`), and quieting distributed's loggers."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
import warnings


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
            _deliver(signum)  # deliver again
            return
        f = f.f_back
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _deliver(signum, after: float = 0.05) -> None:
    """Send ``signum`` to the main thread ``after`` seconds from now, from a timer thread.
    To the main thread itself: a signal sent to the process may go to any thread, and
    then a main thread blocked in a call (a sleep, a wait) does not wake up for it."""
    main = threading.main_thread().ident
    threading.Timer(after, signal.pthread_kill, (main, signum)).start()


def check_stop() -> None:
    if "signal" in STOP:
        raise Terminated() if STOP["signal"] == signal.SIGTERM else KeyboardInterrupt()


def on_stall(message: str) -> None:
    """The watchdog's verdict (from its thread): stop the job as Ctrl-C would, and say why."""
    STOP["stalled"] = message
    if signal.getsignal(signal.SIGINT) is on_signal:
        _deliver(signal.SIGINT, 0.0)


def _dropped(hook):
    """A ``sys.unraisablehook`` for the job: the handler's exception raised inside a
    finaliser, a weakref callback or a collector callback (distributed registers one) is
    one Python drops, printing "Exception ignored in ..." with a traceback; it is
    delivered again instead, quietly.  Anything else goes to ``hook``."""
    def unraisable(args):
        if isinstance(args.exc_value, KeyboardInterrupt) and "signal" in STOP:
            _deliver(STOP["signal"])
            return
        hook(args)
    return unraisable


@contextlib.contextmanager
def handled():
    """:func:`on_signal` handles SIGINT and SIGTERM (from the main thread only; elsewhere
    Python cannot install handlers) with :data:`STOP` cleared; the previous handlers after.
    An exception of the handler that Python drops is delivered again (:func:`_dropped`)."""
    previous = {}
    STOP.clear()
    hook = sys.unraisablehook
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, on_signal)
        sys.unraisablehook = _dropped(hook)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sys.unraisablehook = hook


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
        with warnings.catch_warnings():
            # a busy dashboard port: distributed's four lines of UserWarning; the job prints the
            # dashboard's address it got (--dashboard-address names one to use)
            warnings.filterwarnings("ignore", message=r"Port \d+ is already in use", category=UserWarning)
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
