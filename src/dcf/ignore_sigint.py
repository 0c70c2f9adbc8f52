"""Imported first by the local cluster's fork server, and only there: SIGINT ignored from
its first import on.

A Ctrl-C reaches every process of the terminal's process group.  The fork server ignores
SIGINT once its preloads are imported (``multiprocessing.forkserver``), but not while they
are: a Ctrl-C in a job's first seconds printed the server's KeyboardInterrupt traceback
from inside pandas or distributed; and the workers it forks take its disposition then
(they printed a traceback each when interrupted later).  The job stops its cluster itself
(:mod:`dcf.run.signals`), so neither needs the signal.  A disposition only: it imports nothing.
"""

import signal

signal.signal(signal.SIGINT, signal.SIG_IGN)
