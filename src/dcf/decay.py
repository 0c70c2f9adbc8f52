"""Time decay: each event weighs less the older it is, as SAR weighs it.

.. math::

    w'_e = w_e \\cdot 0.5^{(t_{ref} - t_e) / h}

with :math:`h` the half-life (``half_life`` days, ``--half-life``) and
:math:`t_{ref}` the latest event time in the data unless ``reference_time`` says
otherwise (Microsoft Recommenders' ``SARSingleNode`` with ``timedecay_formula=True``:
``time_decay_coefficient`` is the half-life in days, ``time_now`` the reference).  A
(user, item) pair's value is the sum of its events' decayed weights: SAR's affinity.
An event after the reference time weighs more than its weight (as in SAR).

Decay reads event times (:mod:`dcf.io.times`), so it needs implicit feedback
(events whose sum is a pair's value: a decayed rating is no rating: a
:class:`~dcf.errors.ConfigError` otherwise) and a time on every event: a source
without a time column, or a row without a valid time, is a
:class:`~dcf.errors.DataError` naming it.  A pair whose weights all decay below the
smallest double (events many half-lives old) keeps the value 0: still seen (never
recommended to its user), scoring nothing; the matrix report counts such pairs
(``pairs_decayed_to_zero``).

Where the decay applies: always in the user's scores (the matrix a user's
recommendations read), as SAR does.  The similarity of a measure that reads only who
rated (``jaccard``, ``cooccurrence``, ``lift``, ``conditional``, ``llr``) is the same
with or without it; a measure that reads the values (``cosine``, ``bm25``, ...)
compares the undecayed sums unless ``decay_similarity=True`` asks for the decayed ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError, DataError
from .io import TIME_NAMES, parse_time

__all__ = ["DAY", "Decay", "decay_of", "time_span", "merge_spans", "reference_time", "decayed_frame", "decayed_weights"]

DAY = 86400.0  # seconds


@dataclass(frozen=True)
class Decay:
    """A decay setting: ``half_life`` in days, ``reference`` seconds since the epoch
    (None: the latest event's time, found when the data is read)."""

    half_life: float
    reference: float | None = None

    @property
    def seconds(self) -> float:
        return float(self.half_life) * DAY


def decay_of(half_life, reference_time, decay_similarity, feedback) -> Decay | None:
    """The checked :class:`Decay` of an estimator's parameters (None: no decay)."""
    if not isinstance(decay_similarity, (bool, np.bool_)):
        raise ConfigError(f"decay_similarity must be True or False, not {decay_similarity!r}")
    if half_life is None:
        if reference_time is not None or decay_similarity:
            raise ConfigError("reference_time and decay_similarity set the time decay: give half_life too")
        return None
    try:
        days = float(half_life) if isinstance(half_life, (int, float, np.number)) else math.nan
    except OverflowError:  # an integer past a double's range
        days = math.inf
    if isinstance(half_life, (bool, np.bool_)) or not math.isfinite(days) or days <= 0:
        shown = repr(half_life) if len(repr(half_life)) <= 60 else repr(half_life)[:57] + "..."
        raise ConfigError(f"half_life must be a positive number of days, not {shown}")
    if feedback != "implicit":
        raise ConfigError("time decay weighs events (half_life): use feedback='implicit' / --feedback implicit, "
                          "where a pair's value is the sum of its events' weights")
    try:
        reference = None if reference_time is None else parse_time(reference_time)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return Decay(days, reference)


def time_span(frame, source: str):
    """``(latest time, (source, first untimed line) or None)`` of one frame part; a DataError
    if the part has no ``time`` column (its source had none)."""
    if "time" not in frame.columns:
        raise DataError(source, "has no event times, which time decay (half_life) needs: a headerless file's "
                        f"fourth field, or a column named {', '.join(TIME_NAMES)} (read_ratings(times=True), the "
                        "default, keeps them)")
    times = frame["time"].to_numpy(np.float64)
    bad = np.flatnonzero(np.isnan(times))
    first = (source, int(frame["line"].to_numpy()[bad].min())) if len(bad) else None
    latest = float(np.nanmax(times)) if len(times) > len(bad) else -math.inf
    return latest, first


def merge_spans(*spans):
    """The spans of several parts (in the order of their lines) as one: the latest time,
    and the first part's first untimed line."""
    firsts = [f for _, f in spans if f is not None]
    return max((t for t, _ in spans), default=-math.inf), (firsts[0] if firsts else None)


def reference_time(decay: Decay, span, source: str) -> float:
    """The reference time of ``decay`` over data of time ``span`` (:func:`merge_spans`):
    the one it names, else the latest event's; a DataError naming the first line without
    a valid time."""
    latest, untimed = span
    if untimed is not None:
        raise DataError(untimed[0], "has no valid event time (time decay needs one on every event: a number of "
                        "seconds or an ISO 8601 date)", untimed[1])
    return decay.reference if decay.reference is not None else latest


def decayed_frame(frame, decay: Decay, reference: float, source: str):
    """A frame of events (``rating``, ``time``, ``line``) with each weight decayed to
    ``reference`` (a history scored by a fitted model: its reference time)."""
    reference_time(decay, (reference, time_span(frame, source)[1]), source)  # names an untimed line
    return frame.assign(rating=decayed_weights(frame["rating"].to_numpy(np.float64), frame["time"].to_numpy(np.float64),
                                               frame["line"].to_numpy(np.int64), decay, reference, source))


def decayed_weights(weights: np.ndarray, times: np.ndarray, lines: np.ndarray, decay: Decay,
                    reference: float, source: str) -> np.ndarray:
    """Each event's weight times :math:`0.5^{(t_{ref} - t) / h}` (SAR's
    ``exponential_decay``); a DataError naming the line of an event whose decayed
    weight is not a finite number (far past the reference time)."""
    with np.errstate(over="ignore"):
        out = weights * np.power(0.5, (reference - times) / decay.seconds)
    bad = ~np.isfinite(out)
    if bad.any():
        i = int(np.flatnonzero(bad)[np.argmin(lines[bad])])
        raise DataError(source, f"the event's decayed weight overflows: its time {times[i]:.17g} is "
                        f"{(times[i] - reference) / DAY:.6g} days after the reference time {reference:.17g} "
                        f"with a half-life of {decay.half_life:g} days", int(lines[i]))
    return out
