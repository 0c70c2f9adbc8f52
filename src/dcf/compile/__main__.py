"""``python -m dcf.compile``: compile every kernel now, into numba's on-disk cache, and
record that this installation's kernels are compiled (:mod:`dcf.compile`).  Exit status
0 done (or already done), 1 failed; with ``--check`` 0 compiled, 1 not."""

from __future__ import annotations

import argparse
import sys
import time

from . import mark_ready, ready, stamp_dir


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m dcf.compile", description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="only say whether the kernels are compiled")
    p.add_argument("--force", action="store_true", help="run the compile even where it is recorded as done")
    p.add_argument("--quiet", action="store_true", help="print nothing unless it fails")
    args = p.parse_args(argv)
    say = (lambda *_: None) if args.quiet else print
    done = ready()
    if args.check or (done and not args.force):
        say("dcf: the kernels are compiled for this installation" if done else
            "dcf: the kernels are not compiled for this installation yet")
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
