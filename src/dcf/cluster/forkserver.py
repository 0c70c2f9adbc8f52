"""Imported by the local cluster's fork server, and only there: the task modules and the
compiled kernels' runtime are loaded once, in the process every local worker is forked
from (:func:`dcf.cluster.launch.client`), instead of once in each worker.

On 2 cores a paper-shape job's cold start spent about 2 s of CPU importing the same
modules in two spawned workers, while the client imported its own (:mod:`~dcf.cluster.worker`
has the numbers).  Importing this module has that one effect; nothing else imports it.
"""

from __future__ import annotations

from .worker import warm_up

__all__: list[str] = []

warm_up()
