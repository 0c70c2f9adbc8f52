"""``python -m dcf.run``: :func:`dcf.run.cli.main`, and its exit status."""

import os
import sys

from .cli import main

if __name__ == "__main__":
    status = main()
    if status == 130:  # the cluster is closed; do not wait for Dask's busy helper threads
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)
