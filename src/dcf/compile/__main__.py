"""``python -m dcf.compile``: compile every kernel now, into numba's on-disk cache, and
record that this installation's kernels are compiled (:mod:`dcf.compile`).  Exit status
0 done (or already done), 1 failed; with ``--check`` 0 compiled, 1 not.

A compile also removes the kernels' folders of earlier sources that no process has used
for 30 days (:func:`dcf.kernels.cache.prune`); ``--clean`` removes every one but this
installation's, now."""

from __future__ import annotations

import argparse
import sys
import time

from . import mark_ready, ready, stamp_dir

UNUSED_DAYS = 30  # dcf.kernels.cache.UNUSED_DAYS, without importing numba (tests check they agree)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m dcf.compile", description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="only say whether the kernels are compiled")
    p.add_argument("--force", action="store_true", help="run the compile even where it is recorded as done")
    p.add_argument("--quiet", action="store_true", help="print nothing unless it fails")
    p.add_argument("--clean", action="store_true",
                   help="also remove the compiled kernels of every earlier version now (by default, those "
                        "unused for 30 days are removed after a compile)")
    args = p.parse_args(argv)
    say = (lambda *_: None) if args.quiet else print
    done = ready()
    if args.check or (done and not args.force):
        say("dcf: the kernels are compiled for this installation" if done else
            "dcf: the kernels are not compiled for this installation yet")
        if args.clean and not args.check:
            _pruned(say, None)
        return 0 if done else 1
    from .exercise import compiled_into, exercise  # noqa: PLC0415 - the estimator and numba: only to compile

    t = time.perf_counter()
    n = exercise()
    try:
        stamp = mark_ready(compiled_into())
    except OSError as exc:
        print(f"dcf: compiled {n} kernel signatures, but cannot record it in {stamp_dir()} ({exc}); "
              "set DCF_CACHE to a writable folder", file=sys.stderr)
        return 1
    say(f"dcf: compiled {n} kernel signatures in {time.perf_counter() - t:.1f} s into numba's cache "
        f"(recorded in {stamp})")
    _pruned(say, None if args.clean else UNUSED_DAYS)
    return 0


def _pruned(say, days) -> None:
    """The kernels' folders of earlier sources removed (:func:`~dcf.kernels.cache.prune`), said."""
    from ..kernels.cache import prune  # noqa: PLC0415 - numba: not for --check

    removed = prune(days)
    if removed:
        unused = "" if days is None else f", unused for {days:g} days"
        say(f"dcf: removed {len(removed)} folder(s) of earlier kernels{unused} "
            f"({sum(size for _, size in removed) / 2**20:.0f} MB) from {removed[0][0].parent}")


if __name__ == "__main__":
    sys.exit(main())
