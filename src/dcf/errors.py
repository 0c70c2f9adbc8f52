"""Exceptions that dcf raises for problems in the user's data or settings.

They are plain ``ValueError`` subclasses carrying *where* the problem is, so
that the batch job can print one line (``file:line: problem``) instead of a
traceback from inside Dask.  A worker raising one hands the same exception
back to the client.
"""

from __future__ import annotations

import bisect

__all__ = ["DataError", "ConfigError", "ClusterError", "NotFittedError", "FolderRows", "conflicting_ratings",
           "line_of", "lines_of"]


class FolderRows(str):
    """The name of a folder of files read as one source, whose rows are numbered one file
    after another (``files``: ``(first line, file)`` in line order), so that one number
    names one row of one file however the rows are later regrouped.  A :class:`DataError`
    given such a name and a line names the file and the row's number in it.  Otherwise
    the folder's path, as a ``str``."""

    files: tuple

    def __new__(cls, path: str, files=()):
        self = super().__new__(cls, path)
        self.files = tuple((int(first), str(file)) for first, file in files)
        return self

    def __reduce__(self):
        return (type(self), (str(self), self.files))

    def locate(self, line: int) -> tuple:
        """``(file, its row number)`` of the folder's ``line``."""
        k = bisect.bisect_right([first for first, _ in self.files], int(line)) - 1
        if k < 0:
            return str(self), int(line)
        first, file = self.files[k]
        return file, int(line) - first + 1


def lines_of(source: str, first: int, last: int) -> str:
    """``"lines A to B"`` of ``source`` (a :class:`FolderRows`: each named as :func:`line_of`
    names it, beside the last)."""
    if not isinstance(source, FolderRows):
        return f"lines {int(first)} to {int(last)}"
    return f"{line_of(source, first, last)} to {line_of(source, last, last)}"


def line_of(source: str, line: int, beside: int | None = None) -> str:
    """``"line N"`` of ``source``; for a :class:`FolderRows`, N counted in its file, and the
    file named unless it is also the file of line ``beside`` (the one the message is about)."""
    if not isinstance(source, FolderRows):
        return f"line {int(line)}"
    file, at = source.locate(line)
    same = beside is not None and source.locate(beside)[0] == file
    return f"line {at}" if same else f"line {at} of {file}"


class DataError(ValueError):
    """Bad input data: names the source, the line (or row) and the problem.

    Parameters
    ----------
    path : str
        The file (or data source) the problem is in.
    problem : str
        What is wrong, in words.
    line : int, optional
        1-based line number in the file (row number for Parquet).
    """

    def __init__(self, path: str, problem: str, line: int | None = None):
        if line is not None and isinstance(path, FolderRows):  # the file of the folder's row
            path, line = path.locate(line)
        self.path, self.problem, self.line = str(path), problem, line
        super().__init__(self.path, problem, line)

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.problem}"

    def __reduce__(self):
        return (type(self), (self.path, self.problem, self.line))


def conflicting_ratings(path: str, user, item, kept: float, first: int, value: float, line: int) -> DataError:
    """The DataError of a (user, item) rated ``kept`` on line ``first`` and ``value`` on line
    ``line``: what the training matrix (:func:`dcf.matrix.build_block`) and the repeated
    pairs' check (:mod:`dcf.repeats`) raise alike.  Ids as plain Python values in the text
    (``1``, not ``np.int64(1)``)."""
    user, item = (v.item() if hasattr(v, "item") else v for v in (user, item))  # a NumPy scalar
    return DataError(path, f"conflicting ratings for user {user!r} item {item!r}: {kept:g} "
                     f"({line_of(path, first, line)}) and {value:g} ({line_of(path, line, line)}) (pass "
                     "on_bad_lines='skip' / --skip-bad-lines to keep the first and count the rest)", int(line))


class ConfigError(ValueError):
    """An invalid setting (unknown option value, out-of-range number, ...)."""


class ClusterError(RuntimeError):
    """The cluster failed under the job (workers died or vanished); says what to change."""


class NotFittedError(RuntimeError, ValueError, AttributeError):
    """A fitted attribute or a request of an estimator that has not been fitted.  Like
    scikit-learn's ``NotFittedError`` (not imported: importing dcf stays free of
    scikit-learn), a ``ValueError`` and an ``AttributeError``: ``hasattr(model, "idx_")``
    is False before ``fit``, as scikit-learn's and dask-ml's model selection expect."""
