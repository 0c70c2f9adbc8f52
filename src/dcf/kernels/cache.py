"""Where numba keeps the kernels' machine code: a folder per version of their sources.

numba's on-disk cache (``cache=True``) checks only the file that defines a function: a
kernel in :mod:`~dcf.kernels.rows` that calls (and inlines) a helper of
:mod:`~dcf.kernels.select` kept its old machine code after the helper changed, so that a
checkout's tests ran the previous helper and passed (measured: a selection made wrong on
purpose failed the property tests in a fresh cache and passed in the old one).  The
kernels are therefore defined inside :func:`kernel_cache`, which points numba's cache at
a folder named by :func:`sources_stamp`, the size and modification time of every kernel
source: any change to any of them gives every kernel a fresh cache.  Installations with
the same sources share the folder.  Each process that defines the kernels marks its
folder used (its modification time); ``python -m dcf.compile`` removes the folders of
this name no process has used for :data:`UNUSED_DAYS` days (:func:`prune`; ``--clean``:
every one but the current), about 5-20 MB each, which piled up with every upgrade or
edit of the kernels.  Nothing else in the cache folder is touched.

The folder sits under ``NUMBA_CACHE_DIR`` where the user set it, else ``numba`` in
dcf's cache folder (``DCF_CACHE``, else the user's cache folder for dcf).  Where it cannot
be written, numba's own choice stands (``__pycache__`` beside the sources, else its user
folder).  The setting is numba's for the functions defined meanwhile only: other
libraries' numba caches in the same process are left where numba puts them (but for a
function another thread defines while dcf's kernel modules themselves are executed, a few
milliseconds once a process: cached in this folder too, and loaded from it then).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numba

__all__ = ["SOURCES", "UNUSED_DAYS", "sources_stamp", "cache_base", "cache_folder", "kernel_cache", "prune"]

SOURCES = Path(__file__).resolve().parent
UNUSED_DAYS = 30  # a kernels' folder no process used for this long is removed by prune()
FOLDER = re.compile(r"dcf-kernels-[0-9a-f]{16}")  # the folders cache_folder() makes, and only those


def sources_stamp(folder: Path = SOURCES) -> str:
    """The kernels' sources, hashed by the name, size and modification time of each
    ``*.py`` in ``folder`` (what numba's own cache index checks, for every file at once)."""
    h = hashlib.sha256()
    for f in sorted(folder.glob("*.py")):
        st = f.stat()
        h.update(f"{f.name} {st.st_size} {st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def cache_base() -> Path:
    """``NUMBA_CACHE_DIR`` where set, else ``$DCF_CACHE/numba``, else ``numba`` in the
    user's cache folder for dcf."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return Path(os.environ["NUMBA_CACHE_DIR"])
    if os.environ.get("DCF_CACHE"):
        return Path(os.environ["DCF_CACHE"]) / "numba"
    import platformdirs  # noqa: PLC0415 - only where no folder is set

    return Path(platformdirs.user_cache_dir("dcf")) / "numba"


def cache_folder() -> Path | None:
    """``dcf-kernels-<sources_stamp>`` under :func:`cache_base`, made if need be; None
    where it cannot be made or written."""
    folder = cache_base() / f"dcf-kernels-{sources_stamp()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
        os.utime(folder)  # used now (what prune() reads)
    except OSError:
        return None
    return folder


def prune(days: float | None = UNUSED_DAYS, keep: Path | None = None) -> list:
    """Remove the kernels' folders under :func:`cache_base` that no process has used for
    ``days`` days (``None``: every one), never ``keep`` (default: this installation's,
    ``dcf-kernels-<sources_stamp>``) and nothing but real folders named as
    :func:`cache_folder` names them (not a link, not another library's cache).  Returns
    ``[(path, bytes)]`` of those removed; one that cannot be removed whole is left as far
    as it got and not listed (a kernel whose file is gone is compiled again where used)."""
    base = cache_base()
    keep = keep if keep is not None else base / f"dcf-kernels-{sources_stamp()}"
    removed = []
    try:
        entries = list(base.iterdir())
    except OSError:
        return removed
    now = time.time()
    for path in sorted(entries):
        if not FOLDER.fullmatch(path.name) or path == keep or path.is_symlink() or not path.is_dir():
            continue
        try:
            if days is not None and now - path.stat().st_mtime < days * 86400.0:
                continue
            size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())
            shutil.rmtree(path)
        except OSError:
            continue
        removed.append((path, size))
    return removed


@contextmanager
def kernel_cache():
    """numba's cache pointed at :func:`cache_folder` while the kernels are defined (each
    ``cache=True`` function takes its folder when it is decorated); numba's own setting
    again afterwards."""
    folder = cache_folder()
    if folder is None:
        yield None
        return
    before = numba.config.CACHE_DIR
    numba.config.CACHE_DIR = str(folder)
    try:
        yield folder
    finally:
        numba.config.CACHE_DIR = before
