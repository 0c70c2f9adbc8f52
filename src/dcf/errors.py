"""Exceptions that dcf raises for problems in the user's data or settings.

They are plain ``ValueError`` subclasses carrying *where* the problem is, so
that the batch job can print one line (``file:line: problem``) instead of a
traceback from inside Dask.  A worker raising one hands the same exception
back to the client.
"""

from __future__ import annotations

__all__ = ["DataError", "ConfigError", "ClusterError", "NotFittedError", "conflicting_ratings"]


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
    return DataError(path, f"conflicting ratings for user {user!r} item {item!r}: {kept:g} (line {int(first)}) and "
                     f"{value:g} (line {int(line)}) (pass on_bad_lines='skip' / --skip-bad-lines to keep the first "
                     "and count the rest)", int(line))


class ConfigError(ValueError):
    """An invalid setting (unknown option value, out-of-range number, ...)."""


class ClusterError(RuntimeError):
    """The cluster failed under the job (workers died or vanished); says what to change."""


class NotFittedError(RuntimeError, ValueError, AttributeError):
    """A fitted attribute or a request of an estimator that has not been fitted.  Like
    scikit-learn's ``NotFittedError`` (not imported: importing dcf stays free of
    scikit-learn), a ``ValueError`` and an ``AttributeError``: ``hasattr(model, "idx_")``
    is False before ``fit``, as scikit-learn's and dask-ml's model selection expect."""
