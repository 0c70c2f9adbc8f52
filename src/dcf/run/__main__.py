"""``python -m dcf.run``: :func:`dcf.run.cli.entry` (:func:`~dcf.run.cli.main` and its exit status).

Until the job installs its own handlers (:func:`dcf.run.signals.handled`), a Ctrl-C or
SIGTERM during the command's imports exits at once with status 130 and one line, not an
import's KeyboardInterrupt traceback: nothing has started and nothing is written yet."""

import os
import signal
import sys


def _before_the_job(signum, frame):
    sys.stdout.flush()
    sys.stderr.write(f"dcf: {'terminated' if signum == signal.SIGTERM else 'interrupted'} while starting; "
                     "nothing was written\n")
    sys.stderr.flush()
    os._exit(130)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, _before_the_job)
    signal.signal(signal.SIGTERM, _before_the_job)

from .cli import entry  # noqa: E402 - after the handlers: the imports take a second

if __name__ == "__main__":
    entry()
