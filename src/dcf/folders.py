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
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError
from .version import __version__

__all__ = ["MARKER", "FolderKind", "RUN_OUTPUT", "MODEL", "SYNTHETIC", "EVALUATION", "TUNING", "check_folder", "check_file",
           "atomic_folder", "atomic_file", "local_path"]

MARKER = ".dcf-owned"
_REPORT_SIGNATURE = "Dask Performance Report"


def _old_run_output(meta: dict, entries: set) -> bool:
    """metrics.json as every batch job has written it."""
    return isinstance(meta.get("dcf_version"), str) and all(k in meta for k in ("config", "counts", "mae"))


def _old_model(meta: dict, entries: set) -> bool:
    """dcf-model.json of format dcf-knn that lists every other file of the folder."""
    files = meta.get("files")
    return (meta.get("format") == "dcf-knn" and isinstance(files, dict)
            and entries - {"dcf-model.json"} <= set(files))


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
        The JSON file that identifies such a folder written by a dcf that did not yet
        write :data:`MARKER`; empty for none.
    signed : callable, optional
        ``signed(signature_json, entries) -> bool``: whether that file (a dict) and the
        folder's entries are dcf's.
    """

    name: str
    names: frozenset
    pattern: str = ""
    signature: str = ""
    signed: object = None

    def writes(self, entry: str) -> bool:
        """Whether ``entry`` is a name dcf writes into such a folder."""
        return (entry in self.names or entry == MARKER
                or bool(self.pattern and re.fullmatch(self.pattern, entry)))


RUN_OUTPUT = FolderKind("batch-job output",
                        frozenset({"metrics.json", "predictions.parquet", "recommendations.parquet",
                                   "neighbours.parquet"}),
                        signature="metrics.json", signed=_old_run_output)
MODEL = FolderKind("saved model",
                   frozenset({"dcf-model.json", "users.parquet", "items.parquet", "ratings.npz",
                              "neighbours.npz", "similarity.npz"}),
                   signature="dcf-model.json", signed=_old_model)
SYNTHETIC = FolderKind("synthetic data", frozenset(), pattern=r"part\.\d{5}\.parquet")
EVALUATION = FolderKind("cross-validation output", frozenset({"folds.csv", "summary.json", "users.parquet"}))
TUNING = FolderKind("tuning output", frozenset({"candidates.csv", "folds.csv", "summary.json"}))


def local_path(source) -> Path | None:
    """The local file a data source names, or None (``synthetic``, ``movielens:``, URLs)."""
    if source is None:
        return None
    text = os.fsdecode(source)
    text = text.removeprefix("file://")
    if not text or text.startswith(("synthetic", "movielens:")) or re.match(r"^[a-z][a-z0-9+.-]*://", text):
        return None
    return Path(os.path.abspath(os.path.expanduser(text)))


def _absolute(path, what: str) -> Path:
    try:
        text = os.fsdecode(path) if path is not None else ""
    except TypeError:
        raise ConfigError(f"{what} must be a path, not {type(path).__name__}") from None
    if not text.strip():
        raise ConfigError(f"{what} is empty: give the folder to write (an unset variable?)")
    return Path(os.path.abspath(os.path.expanduser(text)))


def _refuse_special(p: Path, what: str, inputs) -> None:
    """Places that are never dcf's to replace, whatever they hold.  Compared both as
    written and with symbolic links resolved (``link/empty`` may be the current folder)."""
    here = [p, Path(os.path.realpath(p))]
    cwd = Path(os.path.realpath(os.getcwd()))
    home = Path(os.path.realpath(os.path.expanduser("~")))
    for q in here:
        if q == Path(q.anchor):
            raise ConfigError(f"{what} {p}: is the filesystem root")
        if q == cwd or q in cwd.parents:
            raise ConfigError(f"{what} {p}: is the current directory or holds it; give a folder "
                              "of its own, e.g. ./dcf-output")
        if q == home or q in home.parents:
            raise ConfigError(f"{what} {p}: is the home folder or holds it")
    for source in inputs:
        src = local_path(source)
        if src is None:
            continue
        for s_ in {src, Path(os.path.realpath(src))}:
            for q in here:
                if s_ == q or q in s_.parents:
                    raise ConfigError(f"{what} {p}: holds the input {src}; write the outputs elsewhere")
                if s_.is_dir() and s_ in q.parents:
                    raise ConfigError(f"{what} {p}: is inside the input folder {src}, which would "
                                      "then hold more than the data; write the outputs elsewhere")


def _regular(path: Path) -> bool:
    """A regular file, not a symbolic link (nor a folder, FIFO or device)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _json_object(path: Path) -> dict | None:
    if not _regular(path) or os.lstat(path).st_size > (64 << 20):
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _is_dcfs(p: Path, kind: FolderKind) -> bool:
    """Whether ``p`` carries dcf's marker of this kind (a regular file), or, for folders
    written before the marker, the kind's full signature file."""
    if os.path.lexists(p / MARKER):
        marker = _json_object(p / MARKER)
        return marker is not None and marker.get("kind") == kind.name
    if not kind.signature:
        return False
    sig = _json_object(p / kind.signature)
    return sig is not None and kind.signed(sig, set(os.listdir(p)))


def _foreign(p: Path, kind: FolderKind) -> list[str]:
    """Entries of ``p`` that dcf does not write there (or that are not plain files)."""
    out = []
    for entry in sorted(os.listdir(p)):
        full = p / entry
        if not kind.writes(entry) or not _regular(full):
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
        entries = sorted(os.listdir(p))
        foreign = _foreign(p, kind)
        if entries and (foreign or not _is_dcfs(p, kind)):
            named = foreign or entries  # no marker: even dcf's own names are not known to be dcf's
            shown = ", ".join(named[:3]) + (" ..." if len(named) > 3 else "")
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
            head = f.read(1 << 10).decode("utf-8", "replace")
        if not (head.lstrip().lower().startswith("<!doctype html>")
                and f"<title>{_REPORT_SIGNATURE}</title>" in head):
            raise ConfigError(f"{what} {p}: exists and is not a Dask performance report; dcf "
                              "replaces only a report it wrote")
    _check_writable(p, what)
    return p


def _check_writable(p: Path, what: str) -> None:
    """Create and remove a probe folder named as the staging folder will be, where it
    will be (so a name too long for the filesystem fails here, not after the job)."""
    parent = p.parent
    while not os.path.lexists(parent):
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{what} {p}: {parent} is a file, not a folder")
    probe = parent / (p.name if parent == p.parent else "x")
    probe = probe.with_name(f".{probe.name}.partial-{os.getpid()}")
    try:
        probe.mkdir()
    except FileExistsError:
        return
    except OSError as exc:
        raise ConfigError(f"{what} {p}: cannot write in {parent}: {exc.strerror}") from None
    os.rmdir(probe)


def _mark(folder: Path, kind: FolderKind) -> None:
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
        try:
            check_folder(out, kind, what=what, inputs=inputs)  # nothing foreign appeared meanwhile
        except ConfigError as exc:
            raise ConfigError(f"{exc}; it changed while the job ran, so the new outputs were "
                              "discarded and it was left as it is") from None
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        if out.exists():
            _same_access(out, staging)
            os.replace(out, old)
        os.replace(staging, out)
        if old.exists():
            _remove_owned(old, kind)
    except BaseException:
        _remove_owned(staging, kind)
        raise


def _same_access(old: Path, new: Path) -> None:
    """Give the replacement the folder's mode and, where allowed, its owner."""
    st = os.stat(old)
    with contextlib.suppress(OSError):
        os.chown(new, st.st_uid, st.st_gid)
    os.chmod(new, stat.S_IMODE(st.st_mode))


def _remove_owned(folder: Path, kind: FolderKind) -> None:
    """Delete dcf's files in ``folder``, then the folder if nothing else is left."""
    try:
        entries = os.listdir(folder)
    except OSError:
        return
    for entry in entries:
        full = folder / entry
        if kind.writes(entry) and _regular(full):
            with contextlib.suppress(OSError):
                full.unlink()
    try:
        os.rmdir(folder)
    except OSError:
        print(f"dcf: warning: left {folder}: it holds files dcf did not write", file=sys.stderr)


def _remove_stale(out: Path, kind: FolderKind) -> None:
    """Clean up after a killed run: its staging folder, or the output it moved aside.
    Only folders named exactly so, marked as dcf's of this kind and holding nothing but
    dcf's files; anything else is left where it is."""
    pattern = re.compile(rf"\.{re.escape(out.name)}\.(partial|old)-(\d+)")
    for entry in sorted(os.listdir(out.parent)):
        m = pattern.fullmatch(entry)
        if m is None:
            continue
        p = out.parent / entry
        if (_alive(int(m.group(2))) or p.is_symlink() or not p.is_dir()
                or not _is_dcfs(p, kind) or _foreign(p, kind)):
            continue
        if m.group(1) == "old" and not os.path.lexists(out):
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
    is still worth reading).  Where ``path`` changed meanwhile, the staging file is
    dropped with a warning."""
    out = check_file(path, what=what, inputs=inputs)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.report-partial-{os.getpid()}{out.suffix}")
    try:
        yield staging
    finally:
        if _regular(staging):
            try:
                check_file(out, what=what, inputs=inputs)
                os.replace(staging, out)
            except ConfigError as exc:
                print(f"dcf: warning: {what} not written: {exc}", file=sys.stderr)
        with contextlib.suppress(OSError):
            staging.unlink()
