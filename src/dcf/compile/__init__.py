"""The compiled kernels, once per installation.

numba compiles a kernel on its first call in a process and keeps the machine code in its
on-disk cache (``cache=True``; in a folder per version of the kernels' sources,
:mod:`dcf.kernels.cache`).  Left to itself, a fresh
installation's first job compiled inside its stages, in every worker at once (two
workers on 2 cores: about 25 s of a 33 s paper-shape job, with nothing printed for the
first 10 s).  Now one process compiles every kernel the library's settings reach
(:mod:`dcf.compile.exercise`), once:

- ``python -m dcf.compile`` ahead of time (after ``pip install``, in an image build, on
  each host of a cluster started with ``cluster/start-all.sh``);
- else the batch job's local cluster: :class:`Compiling` runs that command in a child
  process while the cluster starts, and the job waits for it (at most :data:`TIMEOUT`
  seconds) before its first stage; its workers then load the code from the cache.

:func:`ready` says whether this installation's kernels are compiled: a stamp named by
:func:`fingerprint` (the kernels' sources as numba's cache checks them, numba's and
Python's versions, the machine and numba's settings), written when the compile ends.
It reads no numba: the job asks before it imports anything heavy.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

__all__ = ["KERNELS", "TIMEOUT", "CACHE_LINE", "fingerprint", "stamp_dir", "ready", "mark_ready", "Compiling"]

KERNELS = Path(__file__).resolve().parent.parent / "kernels"
# a compile still running after this many seconds is stopped; the workers then compile
# what they need themselves, as before (about 30 s on a 2-core machine)
TIMEOUT = 600.0
# numba's settings that change the code it compiles or where it keeps it
NUMBA_SETTINGS = ("NUMBA_CACHE_DIR", "NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES", "NUMBA_OPT", "NUMBA_FASTMATH",
                  "NUMBA_BOUNDSCHECK", "NUMBA_DISABLE_JIT")


def fingerprint() -> str:
    """What the compiled code depends on, hashed: every kernel source's size and
    modification time (what numba's cache index checks), numba's, llvmlite's and Python's
    versions, the machine and host, and numba's settings from the environment."""
    h = hashlib.sha256()
    for f in sorted(KERNELS.glob("*.py")):
        st = f.stat()
        h.update(f"{f.name} {st.st_size} {st.st_mtime_ns}\n".encode())
    for dist in ("numba", "llvmlite"):
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:  # a build without its metadata: never "ready"
            version = str(time.time_ns())
        h.update(f"{dist} {version}\n".encode())
    h.update(f"{sys.version} {platform.machine()} {platform.node()}\n".encode())
    for name in NUMBA_SETTINGS:
        h.update(f"{name}={os.environ.get(name, '')}\n".encode())
    return h.hexdigest()[:24]


def stamp_dir() -> Path:
    """``$DCF_CACHE/compiled``, else ``compiled`` in the user's cache folder for dcf."""
    env = os.environ.get("DCF_CACHE")
    if env:
        return Path(env) / "compiled"
    import platformdirs  # noqa: PLC0415 - only where no DCF_CACHE is set

    return Path(platformdirs.user_cache_dir("dcf")) / "compiled"


def ready() -> bool:
    """Whether this installation's kernels are compiled (:func:`mark_ready` ran here) and
    their code is still where the stamp says numba put it (a cache folder deleted since,
    or emptied, is not ready)."""
    stamp = stamp_dir() / fingerprint()
    try:
        lines = stamp.read_text().splitlines()
    except OSError:
        return False
    folders = [Path(line[len(CACHE_LINE):]) for line in lines if line.startswith(CACHE_LINE)]
    return all(folder.is_dir() and any(folder.rglob("*.nbi")) for folder in folders)  # numba nests them


CACHE_LINE = "cache "  # a stamp's line naming the folder numba compiled the kernels into


def mark_ready(cache: Path | None = None) -> Path:
    """Record that the kernels are compiled (into numba's cache folder ``cache``, where
    known: :func:`ready` then checks it still holds them); returns the stamp.  Written
    whole or not at all (a temporary file renamed into place); raises ``OSError`` where
    it cannot be."""
    folder = stamp_dir()
    folder.mkdir(parents=True, exist_ok=True)
    stamp = folder / fingerprint()
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".stamp-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(f"compiled {time.strftime('%Y-%m-%dT%H:%M:%S')} by {sys.executable}\n")
            if cache is not None:
                f.write(f"{CACHE_LINE}{Path(cache).resolve()}\n")
        os.replace(tmp, stamp)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return stamp


class Compiling:
    """``python -m dcf.compile`` in a child process, started now.

    :meth:`wait` waits for it, at most ``timeout`` seconds, and returns the line to print;
    :meth:`close` stops a child still running (an interrupted job, a wait that ran out).
    A compile that fails or runs out of time costs nothing but time: the workers compile
    what they need, as they did before.
    """

    def __init__(self, timeout: float = TIMEOUT):
        self.timeout = timeout
        self._log = tempfile.TemporaryFile()
        self._start = time.perf_counter()
        self._proc = subprocess.Popen([sys.executable, "-m", "dcf.compile", "--quiet"],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._log)

    def wait(self) -> str:
        try:
            status = self._proc.wait(max(0.0, self.timeout - (time.perf_counter() - self._start)))
        except subprocess.TimeoutExpired:
            self.close()
            return (f"dcf: warning: compiling the kernels took more than {self.timeout:.0f} s; stopped it, "
                    "the workers compile what they need")
        seconds = time.perf_counter() - self._start
        if status == 0:
            return f"dcf: kernels compiled in {seconds:.1f} s (once for this installation)"
        self._log.seek(0)
        lines = self._log.read().decode(errors="replace").strip().splitlines()
        why = lines[-1] if lines else f"exit status {status}"
        return f"dcf: warning: compiling the kernels failed ({why}); the workers compile what they need"

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(10)
        self._log.close()
