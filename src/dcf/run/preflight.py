"""What the job checks before the cluster starts."""

from __future__ import annotations

import os
from pathlib import Path

from ..config import RunConfig
from ..errors import ConfigError, DataError
from ..folders import RUN_OUTPUT, check_file, check_folder, local_path


def preflight(cfg: RunConfig, config_path=None) -> tuple:
    """What can be checked before the cluster starts: that local input files exist, where
    the outputs go (dcf replaces only what it wrote, :mod:`dcf.folders`), and a test set
    that is not the training set.
    Returns the run's inputs (to keep outputs away from them)."""
    inputs = tuple(s for s in (cfg.data, cfg.test, config_path, cfg.items) if s)
    if cfg.items and not os.path.isfile(cfg.items):
        raise DataError(str(cfg.items), ("is not a regular file" if os.path.exists(cfg.items) else "no such file")
                        + " (--items: a text file, one item id a line)")
    if cfg.items:
        item_lines(cfg.items)  # unreadable, or not UTF-8: said now, naming the line
    for source in (cfg.data, cfg.test):
        path = local_path(source)
        # a local file that is not there fails now, with the reader's words, not after the
        # cluster has started (a pattern is left to the reader, which expands it)
        if path is not None and not any(c in str(source) for c in "*?[") and not path.exists():
            raise DataError(str(source), "no such file or folder")
    out = check_folder(cfg.out, RUN_OUTPUT, inputs=inputs)
    if cfg.performance_report:
        report = check_file(cfg.performance_report, inputs=inputs)
        outs, reports = {out, Path(os.path.realpath(out))}, {report, Path(os.path.realpath(report))}
        if outs & reports or any(o in r.parents for o in outs for r in reports):
            raise ConfigError(f"--performance-report {report}: is inside --out {out}, which the "
                              "job replaces whole; write the report elsewhere")
    if cfg.test:
        if same_source(cfg.data, cfg.test):
            raise ConfigError(f"--test {cfg.test}: is the training data itself, so every test "
                              "rating would also be a training rating; give a held-out file, or "
                              "drop --test for a random split")
    return inputs


def same_source(train, test) -> bool:
    """Whether two data sources are one: the same text, or local files that are the same
    file (another spelling of its path, a hard link)."""
    a, b = local_path(train), local_path(test)
    return train == test or (a is not None and b is not None and a.exists() and b.exists()
                             and os.path.samefile(a, b))


def item_lines(path: str) -> list:
    """``[(line number, text), ...]`` of an ``--items`` file: each line stripped, blank ones
    skipped; a line that is not UTF-8 is a DataError naming it (a byte-order mark at the
    start is none of the first id), and so is a file without any id."""
    out = []
    try:
        with open(path, "rb") as f:
            for n, raw in enumerate(f, 1):
                try:
                    text = raw.decode("utf-8-sig" if n == 1 else "utf-8").strip()
                except UnicodeDecodeError as exc:
                    raise DataError(path, f"is not UTF-8 text ({exc.reason})", n) from None
                if text:
                    out.append((n, text))
    except OSError as exc:
        raise DataError(path, f"cannot be read ({exc.strerror or exc})") from None
    if not out:  # every list would be empty, and the job would say it succeeded
        raise DataError(path, "holds no item id (an --items file lists one id a line)")
    return out
