"""Where dcf may write: the folders (and files) it owns, replaced atomically.

dcf deletes or overwrites only what it wrote itself.  The rule, for the batch
job's ``--out``, ``model.save(path)``, ``--performance-report`` and the
synthetic data writer alike:

* a destination that does not exist is created (with its parents);
* an existing folder is replaced only when it is **empty** or **dcf's own**: it
  carries dcf's marker file (:data:`MARKER`, written into every folder dcf
  fills) or, for folders written before the marker existed, dcf's signature
  file (``metrics.json`` with ``dcf_version``, ``dcf-model.json`` of format
  ``dcf-knn``), *and* it holds nothing but the files dcf writes there;
* refused before any work, with :class:`~dcf.errors.ConfigError` (exit 2): an
  empty path, a symbolic link, a file where a folder belongs, the current
  directory or one above it, the home folder or one above it, the filesystem
  root, a folder holding one of the run's inputs, a folder holding other files,
  and a place that cannot be written;
* writing goes to a hidden staging folder next to the destination
  (``.NAME.partial-PID``, marked as dcf's at once), renamed into place when
  complete; the previous folder is moved aside (``.NAME.old-PID``) and only its
  dcf files are removed.  If other files appeared in the destination while the
  job ran, the new output is not swapped in (the error says so).  A killed
  run's staging folder is removed by the next run, and an output moved aside is
  put back, only when they are dcf's.

A single file (the performance report) may replace only an earlier report:
a file whose first bytes say it is a Dask performance report.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

__all__ = ["MARKER", "FolderKind", "RUN_OUTPUT", "MODEL", "SYNTHETIC", "check_folder", "check_file",
           "atomic_folder", "atomic_file", "local_path"]

MARKER = ".dcf-owned"
_REPORT_SIGNATURE = "Dask Performance Report"


@dataclass(frozen=True)
class FolderKind:
    """A kind of folder dcf writes: the names it puts there and its signature file.

    Attributes
    ----------
    name : str
        In words, for messages ("batch-job output").
    names : frozenset of str
        Plain file names dcf writes into such a folder.
    pattern : str
        A regular expression for further names (``part.00001.parquet``); empty for none.
    signature : str
        A file that, with the key ``signature_key`` in its JSON, identifies a folder
        written by a dcf that did not yet write :data:`MARKER`; empty for none.
    """

    name: str
    names: frozenset
    pattern: str = ""
    signature: str = ""
    signature_key: str = ""
    signature_value: object = None

    def writes(self, entry: str) -> bool:
        """Whether ``entry`` is a name dcf writes into such a folder."""
        return (entry in self.names or entry == MARKER
                or bool(self.pattern and re.fullmatch(self.pattern, entry)))


RUN_OUTPUT = FolderKind("batch-job output",
                        frozenset({"metrics.json", "predictions.parquet", "recommendations.parquet",
                                   "neighbours.parquet"}),
                        signature="metrics.json", signature_key="dcf_version")
MODEL = FolderKind("saved model",
                   frozenset({"dcf-model.json", "users.parquet", "items.parquet", "ratings.npz",
                              "neighbours.npz", "similarity.npz"}),
                   signature="dcf-model.json", signature_key="format", signature_value="dcf-knn")
SYNTHETIC = FolderKind("synthetic data", frozenset(), pattern=r"part\.\d{5}\.parquet")


def local_path(source) -> Path | None:
    """The local file a data source names, or None (``synthetic``, ``movielens:``, URLs)."""
    if source is None:
        return None
    text = os.fspath(source)
    if not text or text.startswith(("synthetic", "movielens:")) or re.match(r"^[a-z][a-z0-9+.-]*://", text):
        return None
    if text.startswith("file://"):
        text = text[len("file://"):]
    return Path(os.path.abspath(os.path.expanduser(text)))


def _absolute(path, what: str) -> Path:
    text = os.fspath(path) if path is not None else ""
    if not str(text).strip():
        raise ConfigError(f"{what} is empty: give the folder to write (an unset variable?)")
    return Path(os.path.abspath(os.path.expanduser(text)))


def _refuse_special(p: Path, what: str, inputs) -> None:
    """Places that are never dcf's to replace, whatever they hold."""
    cwd = Path(os.getcwd())
    if p == Path(p.anchor):
        raise ConfigError(f"{what} {p}: is the filesystem root")
    if p == cwd or p in cwd.parents:
        raise ConfigError(f"{what} {p}: is the current directory or holds it; give a folder "
                          "of its own, e.g. ./dcf-output")
    home = Path(os.path.expanduser("~"))
    if p == home or p in home.parents:
        raise ConfigError(f"{what} {p}: is the home folder or holds it")
    for source in inputs:
        src = local_path(source)
        if src is not None and (src == p or p in src.parents):
            raise ConfigError(f"{what} {p}: holds the input {src}; write the outputs elsewhere")


def _is_dcfs(p: Path, kind: FolderKind) -> bool:
    marker = p / MARKER
    if marker.is_file() and not marker.is_symlink():
        try:
            return json.loads(marker.read_text(encoding="utf-8")).get("kind") == kind.name
        except (OSError, ValueError, AttributeError):
            return False
    if not kind.signature:
        return False
    sig = p / kind.signature
    if not sig.is_file() or sig.is_symlink() or sig.stat().st_size > (64 << 20):
        return False
    try:
        value = json.loads(sig.read_text(encoding="utf-8")).get(kind.signature_key)
    except (OSError, ValueError, AttributeError):
        return False
    return value is not None and (kind.signature_value is None or value == kind.signature_value)


def _foreign(p: Path, kind: FolderKind) -> list[str]:
    """Entries of ``p`` that dcf does not write there (or that are not plain files)."""
    out = []
    for entry in sorted(os.listdir(p)):
        full = p / entry
        if not kind.writes(entry) or full.is_symlink() or not full.is_file():
            out.append(entry)
    return out


def check_folder(path, kind: FolderKind, *, what: str = "--out", inputs=()) -> Path:
    """Refuse a destination folder dcf may not replace; return its absolute path.

    Parameters
    ----------
    path : str or os.PathLike
        The destination.
    kind : FolderKind
        What dcf will write there.
    what : str
        How the user named it, for messages (``--out``, ``save``).
    inputs : iterable of str
        Data sources of the run: a destination holding one is refused.

    Raises
    ------
    ConfigError
        Naming the path and the rule it breaks.
    """
    p = _absolute(path, what)
    if p.is_symlink():
        raise ConfigError(f"{what} {p}: is a symbolic link; dcf replaces only real folders it "
                          "wrote, so give the folder's own path")
    _refuse_special(p, what, inputs)
    if p.exists():
        if not p.is_dir():
            raise ConfigError(f"{what} {p}: is a file, not a folder; dcf never replaces it")
        entries = os.listdir(p)
        if entries:
            foreign = _foreign(p, kind)
            if foreign or not _is_dcfs(p, kind):
                shown = ", ".join(foreign[:3]) + (" ..." if len(foreign) > 3 else "") if foreign else \
                    ", ".join(sorted(entries)[:3])
                raise ConfigError(f"{what} {p}: holds files dcf did not write ({shown}); give a new "
                                  f"or empty folder, or a {kind.name} folder that dcf wrote")
    _check_writable(p, what)
    return p


def check_file(path, *, what: str = "--performance-report", inputs=()) -> Path:
    """Refuse a destination file dcf may not replace: anything but an earlier Dask report."""
    p = _absolute(path, what)
    if p.is_symlink():
        raise ConfigError(f"{what} {p}: is a symbolic link; give the file's own path")
    _refuse_special(p, what, inputs)
    if p.exists():
        if not p.is_file():
            raise ConfigError(f"{what} {p}: exists and is not a file")
        with open(p, "rb") as f:
            head = f.read(1 << 16).decode("utf-8", "replace")
        if _REPORT_SIGNATURE not in head:
            raise ConfigError(f"{what} {p}: exists and is not a Dask performance report; dcf "
                              "replaces only a report it wrote")
    _check_writable(p, what)
    return p


def _check_writable(p: Path, what: str) -> None:
    """Create and remove a probe folder where the destination will be staged."""
    parent = p.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{what} {p}: {parent} is a file, not a folder")
    try:
        probe = tempfile.mkdtemp(prefix=".dcf-probe-", dir=parent)
        os.rmdir(probe)
    except OSError as exc:
        raise ConfigError(f"{what} {p}: cannot write in {parent}: {exc.strerror}") from None


def _mark(folder: Path, kind: FolderKind) -> None:
    from . import __version__

    with open(folder / MARKER, "w", encoding="utf-8") as f:
        json.dump({"kind": kind.name, "dcf_version": __version__,
                   "note": "written by dcf; dcf replaces this folder only while it holds "
                           "nothing but dcf's files"}, f)


@contextlib.contextmanager
def atomic_folder(path, kind: FolderKind = RUN_OUTPUT, *, what: str = "--out", inputs=()):
    """Yield a staging folder next to ``path``; on success it replaces ``path``.

    ``path`` is checked by :func:`check_folder` first and again just before the
    swap.  On any exception (KeyboardInterrupt included) the staging folder is
    removed and ``path`` is left as it was.

    Examples
    --------
    >>> with atomic_folder("out") as staging:                  # doctest: +SKIP
    ...     (staging / "metrics.json").write_text("{}")
    """
    out = check_folder(path, kind, what=what, inputs=inputs)
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(out, kind)
    staging = out.with_name(f".{out.name}.partial-{os.getpid()}")
    if staging.exists():
        _remove_owned(staging, kind)
    staging.mkdir()
    try:
        _mark(staging, kind)
        yield staging
        check_folder(out, kind, what=what, inputs=inputs)  # nothing foreign appeared meanwhile
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        if out.exists():
            os.replace(out, old)
        os.replace(staging, out)
        if old.exists():
            _remove_owned(old, kind)
    except BaseException:
        _remove_owned(staging, kind)
        raise


def _remove_owned(folder: Path, kind: FolderKind) -> None:
    """Delete dcf's files in ``folder``, then the folder if nothing else is left."""
    try:
        entries = os.listdir(folder)
    except OSError:
        return
    for entry in entries:
        full = folder / entry
        if kind.writes(entry) and full.is_file() and not full.is_symlink():
            with contextlib.suppress(OSError):
                full.unlink()
    try:
        os.rmdir(folder)
    except OSError:
        print(f"dcf: warning: left {folder}: it holds files dcf did not write", file=sys.stderr)


def _remove_stale(out: Path, kind: FolderKind) -> None:
    """Clean up after a killed run: its staging folder, or the output it moved aside."""
    for state in ("partial", "old"):
        for p in out.parent.glob(f".{out.name}.{state}-*"):
            pid = p.name.rsplit("-", 1)[-1]
            if not pid.isdigit() or _alive(int(pid)) or not p.is_dir() or p.is_symlink():
                continue
            if not (p / MARKER).exists() and not _is_dcfs(p, kind):
                continue  # not a folder of ours: leave it
            if state == "old" and not out.exists():
                os.replace(p, out)  # killed between the two renames: restore
            else:
                _remove_owned(p, kind)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


@contextlib.contextmanager
def atomic_file(path, *, what: str = "--performance-report", inputs=()):
    """Yield a staging file name next to ``path``; it replaces ``path`` when the block
    ends, even on failure when the staging file was written (a report of a failed run
    is still worth reading)."""
    out = check_file(path, what=what, inputs=inputs)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.partial-{os.getpid()}{out.suffix}")
    try:
        yield staging
    finally:
        if staging.is_file() and not staging.is_symlink():
            with contextlib.suppress(ConfigError):
                check_file(out, what=what, inputs=inputs)
                os.replace(staging, out)
        with contextlib.suppress(OSError):
            staging.unlink()
