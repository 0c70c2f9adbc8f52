"""Frozen settings for a run, its model and its cluster; loading and checking.

A run can be configured from a TOML file (``--config run.toml``) whose keys
are the long option names with ``_`` for ``-`` (``top_n = 10``, and a
``[cluster]`` table with ``workers``, ``threads_per_worker``, ``memory_limit``,
``scheduler``); command-line flags override the file.  Nothing in a file is
ever executed.
"""

from __future__ import annotations

import datetime
import math
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace

from .errors import ConfigError

__all__ = ["ClusterConfig", "RunConfig", "load_config", "MAX_K", "MAX_TOP_N"]

# upper bounds that keep a typo from ending in a MemoryError after the data is read: the
# neighbour table is n x k (16 bytes an entry), Top-N is users x n
MAX_K = 10_000
MAX_TOP_N = 10_000

CHOICES = {
    "based": ("item", "user"),
    "similarity": ("cosine", "full-cosine", "pearson-baseline", "pearson", "adjusted-cosine", "centred-cosine",
                   "jaccard", "cooccurrence", "lift", "llr", "bm25", "tfidf", "conditional"),  # = MEASURES (tested)
    "neighbourhood": ("rated", "global"),
    "prediction": ("weighted", "mean-centred", "baseline"),
    "ranking": ("prediction", "sum", "normalised-sum"),
    "feedback": ("explicit", "implicit"),
    "split": ("random", "time", "last"),
    "preset": ("paper", "rating", "ranking", "implicit"),  # = dcf.presets.PRESETS (tested)
}


@dataclass(frozen=True)
class ClusterConfig:
    """Where the work runs: an existing scheduler, or a local cluster mirroring
    the paper's (2 workers, 2 threads and a 3 GB memory limit each)."""

    scheduler: str | None = None
    workers: int = 2
    threads_per_worker: int = 2
    memory_limit: str = "3GB"
    host: str = "127.0.0.1"
    dashboard_address: str | None = "127.0.0.1:8787"  # None: no dashboard
    memory_target: float = 0.4  # the paper's spark.storage.memoryFraction
    wait_for_workers: int = 0
    no_workers_timeout: str = "60s"
    stall_timeout: float = 180.0  # seconds with work waiting, nothing running, nothing done
    tls_ca_file: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None

    def __post_init__(self):
        _check_types(self, _CLUSTER_TYPES)
        for name in ("workers", "threads_per_worker"):
            if not 1 <= getattr(self, name) <= 4096:
                raise ConfigError(f"{name} must be an integer between 1 and 4,096, not "
                                  f"{getattr(self, name)!r}")
        if self.scheduler is not None and not self.scheduler.strip():
            raise ConfigError("scheduler is empty (an unset variable?): give its address, or "
                              "leave it out for a local cluster")
        if self.wait_for_workers < 0:
            raise ConfigError(f"wait_for_workers must be >= 0, not {self.wait_for_workers!r}")
        if not 0 < self.memory_target <= 1:
            raise ConfigError(f"memory_target must be in (0, 1], not {self.memory_target!r}")
        self._check_addresses_and_sizes()
        if not 0 < self.stall_timeout <= 86400:
            raise ConfigError(f"stall_timeout must be seconds in (0, 86400], not {self.stall_timeout!r}")
        tls = [self.tls_ca_file, self.tls_cert, self.tls_key]
        if any(tls) and not all(tls):
            raise ConfigError("TLS needs all of tls_ca_file, tls_cert and tls_key")
        if self.scheduler and self.scheduler.startswith("tls://") and not all(tls):
            raise ConfigError(f"the scheduler {self.scheduler} uses TLS: give --tls-ca-file, "
                              "--tls-cert and --tls-key")

    def _check_addresses_and_sizes(self) -> None:
        """Memory limit, timeout and dashboard address as Dask will read them; a dashboard
        address without a host (``:PORT``) listens on ``host``, not on every interface."""
        from dask.utils import parse_bytes, parse_timedelta

        if self.memory_limit != "auto":
            try:
                if parse_bytes(self.memory_limit) <= 0:
                    raise ValueError
            except (ValueError, TypeError, OverflowError):
                raise ConfigError(f"memory_limit {self.memory_limit!r} is not a size such as 3GB, "
                                  "1500MiB or auto") from None
        try:
            if parse_timedelta(self.no_workers_timeout) <= 0:
                raise ValueError
        except (ValueError, TypeError, KeyError, OverflowError):
            raise ConfigError(f"no_workers_timeout {self.no_workers_timeout!r} is not a duration "
                              "such as 60s") from None
        if self.dashboard_address is None:  # no dashboard (scripts, tests)
            return
        host, sep, port = self.dashboard_address.rpartition(":")
        if not sep or not port.isdigit() or int(port) > 65535:
            raise ConfigError(f"dashboard_address {self.dashboard_address!r} is not HOST:PORT "
                              "(PORT 0 picks a free one)")
        if not host:  # ":8787" would listen on every interface
            object.__setattr__(self, "dashboard_address", f"{self.host}:{port}")

    def check_combination(self) -> None:
        """Settings of the local cluster are errors with ``scheduler`` (they would be
        ignored), and waiting for workers is an error without it.  Checked once the
        file and the flags are merged (a file's ``[cluster]`` table may be meant for a
        local cluster that a ``--scheduler`` flag then replaces)."""
        defaults = ClusterConfig.__dataclass_fields__
        if self.scheduler:
            given = [name for name in _LOCAL_ONLY if getattr(self, name) != defaults[name].default]
            if given:
                flags = ", ".join("--" + n.replace("_", "-") for n in given)
                raise ConfigError(f"{flags} set the local cluster dcf starts; with --scheduler "
                                  f"{self.scheduler} they would be ignored: drop them (size the "
                                  "running cluster where it is started)")
        elif self.wait_for_workers:
            raise ConfigError("--wait-for-workers needs --scheduler (the local cluster starts "
                              "its own workers)")


@dataclass(frozen=True)
class RunConfig:
    """Everything ``python -m dcf.run`` does, resolved (written to metrics.json)."""

    data: str = "synthetic"
    test: str | None = None
    test_fraction: float = 0.1
    seed: int = 0
    preset: str = "paper"  # dcf.presets: its settings where nothing else sets them
    split: str = "random"  # random (pair hash), time (the latest test_fraction), last (each user's last `holdout`)
    holdout: int = 1
    based: str = "item"
    similarity: str = "cosine"
    k: int = 50
    neighbourhood: str = "rated"
    prediction: str = "weighted"
    top_n: int = 20
    items: str | None = None  # a file of the only item ids to recommend, one a line
    keep_rated: bool = False  # rated items stay candidates (a re-purchase)
    explain: bool = False  # each recommendation's rated items that weigh most (the because column)
    ranking: str | None = None  # "prediction" for ratings, "sum" for implicit feedback (ranking_rule)
    min_support: int = 1
    shrinkage: float = 0.0
    significance: float = 0.0
    min_similarity: float = 0.0
    amplification: float = 1.0
    bm25_k1: float = 1.2
    bm25_b: float = 0.75
    include_self: bool = False
    alpha: float = 0.5
    half_life: float | None = None  # days: time decay of each event's weight (implicit feedback)
    reference_time: str | float | None = None  # the decay's reference: seconds or an ISO date (default the latest event)
    decay_similarity: bool = False
    min_k: int = 1
    baseline_epochs: int = 10
    reg_user: float = 15.0
    reg_item: float = 10.0
    relevance: float | None = None  # 4.0 for ratings; any test event for implicit feedback (relevance_threshold)
    feedback: str = "explicit"
    skip_bad_lines: bool = False
    rating_scale: tuple[float, float] | None = None
    block_size: int | None = None
    out: str = "dcf-output"
    performance_report: str | None = None
    progress: bool = True
    write_neighbours: bool = False
    baselines: bool = True  # popularity, item and user means, the baseline predictor on the same split
    cluster: ClusterConfig = field(default_factory=ClusterConfig)

    def __post_init__(self):
        _check_types(self, _RUN_TYPES)
        for name, allowed in CHOICES.items():
            if name == "ranking" and self.ranking is None:  # by the feedback (ranking_rule)
                continue
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} {getattr(self, name)!r} is not one of {', '.join(allowed)}")
        for name, low, high in (("k", 1, MAX_K), ("top_n", 1, MAX_TOP_N), ("min_support", 0, None),
                                ("holdout", 1, None),
                                ("min_k", 0, MAX_K), ("baseline_epochs", 0, 10_000), ("seed", 0, 2**63 - 1),
                                ("block_size", 1, None)):
            v = getattr(self, name)
            if v is not None and (v < low or (high is not None and v > high)):
                bound = f"between {low:,} and {high:,}" if high is not None else f">= {low}"
                raise ConfigError(f"{name} must be an integer {bound}, not {v!r}")
        if self.amplification <= 0:
            raise ConfigError(f"amplification must be a number > 0, not {self.amplification!r}")
        if self.holdout != 1 and self.split != "last":
            raise ConfigError(f"holdout {self.holdout} applies to split 'last' only (this run's split: {self.split})")
        if self.test and self.split != "random":
            raise ConfigError(f"split {self.split!r} splits --data, but a test file ({self.test}) is given: drop one")
        if not 0 < self.test_fraction < 1:
            raise ConfigError(f"test_fraction must be between 0 and 1, not {self.test_fraction!r}")
        for name in ("shrinkage", "significance", "min_similarity", "reg_user", "reg_item"):
            v = getattr(self, name)
            if v is not None and v < 0:
                raise ConfigError(f"{name} must be a number >= 0, not {v!r}")
        if not 0 <= self.bm25_b <= 1:
            raise ConfigError(f"bm25_b must be between 0 and 1, not {self.bm25_b!r}")
        if self.bm25_k1 < 0:
            raise ConfigError(f"bm25_k1 must be a number >= 0, not {self.bm25_k1!r}")
        if not 0 <= self.alpha <= 10:  # = dcf.kernels.MAX_ALPHA
            raise ConfigError(f"alpha must be between 0 and 10, not {self.alpha!r}")
        if self.half_life is not None and self.half_life <= 0:
            raise ConfigError(f"half_life must be a positive number of days, not {self.half_life!r}")
        if self.half_life is not None and self.feedback != "implicit":
            raise ConfigError("--half-life decays events: use it with --feedback implicit")
        if (self.reference_time is not None or self.decay_similarity) and self.half_life is None:
            raise ConfigError("--reference-time and --decay-similarity set the time decay: give --half-life too")
        if self.reference_time is not None:
            object.__setattr__(self, "reference_time", _checked_time(self.reference_time))
        if self.explain and (self.based != "item" or not (self.ranking_rule != "prediction"
                                                          or self.prediction == "weighted")):
            raise ConfigError("--explain names the rated items behind a score: item-based, with --ranking sum or "
                              "normalised-sum or the weighted prediction")
        if self.rating_scale is not None:
            scale = tuple(self.rating_scale)
            if (len(scale) != 2 or not all(_is_number(v) for v in scale)
                    or not 0 < scale[0] <= scale[1]):
                raise ConfigError(f"rating_scale must be two finite numbers 0 < low <= high, not "
                                  f"{self.rating_scale!r}")
            object.__setattr__(self, "rating_scale", (float(scale[0]), float(scale[1])))
        for name in ("data", "out", "test", "performance_report", "items"):
            if getattr(self, name) is not None and not getattr(self, name).strip():
                raise ConfigError(f"{name} is empty (an unset variable?)")

    @property
    def ranking_rule(self) -> str:
        """The Top-N ranking: as given, else by the predicted rating for ratings and by the
        sum of similarity x weight (implicit's, SAR's) for implicit feedback."""
        if self.ranking is not None:
            return self.ranking
        return "sum" if self.feedback == "implicit" else "prediction"

    @property
    def relevance_threshold(self) -> float:
        """A test pair is relevant when its rating is at least this: as given, else 4 for
        ratings and any positive weight (0) for implicit feedback, where every held-out
        event is relevant."""
        if self.relevance is not None:
            return self.relevance
        return 0.0 if self.feedback == "implicit" else 4.0

    def to_dict(self) -> dict:
        return asdict(self)

    def with_overrides(self, **kw) -> "RunConfig":
        cluster = {k: kw.pop(k) for k in list(kw) if k in _CLUSTER_KEYS}
        kw = {k: v for k, v in kw.items() if v is not None}
        cluster = {k: v for k, v in cluster.items() if v is not None}
        return replace(self, **kw, cluster=replace(self.cluster, **cluster))


_CLUSTER_KEYS = {f.name for f in fields(ClusterConfig)}
_LOCAL_ONLY = ("workers", "threads_per_worker", "memory_limit", "host", "dashboard_address",
               "memory_target", "no_workers_timeout")

# what each setting must be: a TOML string where a boolean belongs ("no") is an error, not
# a truthy value; floats must be finite; int fields take no bool and no float
_STR, _OPT_STR, _INT, _OPT_INT, _FLOAT, _OPT_FLOAT, _BOOL = "text", "text or nothing", "an integer", \
    "an integer or nothing", "a finite number", "a finite number or nothing", "true or false"
_TIME = "seconds since the epoch, an ISO 8601 date or nothing"
_CLUSTER_TYPES = {"scheduler": _OPT_STR, "workers": _INT, "threads_per_worker": _INT,
                  "memory_limit": _STR, "host": _STR, "dashboard_address": _OPT_STR,
                  "memory_target": _FLOAT, "wait_for_workers": _INT, "no_workers_timeout": _STR,
                  "stall_timeout": _FLOAT, "tls_ca_file": _OPT_STR, "tls_cert": _OPT_STR,
                  "tls_key": _OPT_STR}
_RUN_TYPES = {"data": _STR, "test": _OPT_STR, "test_fraction": _FLOAT, "seed": _INT, "split": _STR, "holdout": _INT,
              "preset": _STR, "based": _STR,
              "similarity": _STR, "k": _INT, "neighbourhood": _STR, "prediction": _STR, "top_n": _INT,
              "items": _OPT_STR, "keep_rated": _BOOL, "explain": _BOOL,
              "ranking": _OPT_STR, "min_support": _INT, "shrinkage": _FLOAT, "significance": _FLOAT,
              "min_similarity": _FLOAT, "amplification": _FLOAT, "bm25_k1": _FLOAT, "bm25_b": _FLOAT,
              "include_self": _BOOL, "alpha": _FLOAT, "min_k": _INT, "half_life": _OPT_FLOAT,
              "reference_time": _TIME, "decay_similarity": _BOOL,
              "baseline_epochs": _INT, "reg_user": _FLOAT, "reg_item": _FLOAT, "relevance": _OPT_FLOAT,
              "feedback": _STR,
              "skip_bad_lines": _BOOL, "rating_scale": "two numbers or nothing",
              "block_size": _OPT_INT, "out": _STR, "performance_report": _OPT_STR,
              "progress": _BOOL, "write_neighbours": _BOOL, "baselines": _BOOL}


def _checked_time(v):
    """A reference time as the run keeps it: seconds (a number, or text that spells one) or
    an ISO 8601 date as text (a TOML date or date-time becomes its ISO text, UTC where it
    has no zone); checked here, before any cluster starts (stdlib only: the library's own
    reading, :func:`dcf.io.parse_time`, reads the same forms)."""
    if isinstance(v, (datetime.datetime, datetime.date)):
        return v.isoformat()
    if _is_number(v):
        return float(v)
    text = str(v).strip()
    try:
        if math.isfinite(float(text)):
            return text
    except ValueError:
        pass
    try:
        datetime.datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
        return text
    except ValueError:
        raise ConfigError(f"reference_time {str(v)[:60]!r} is neither seconds since the epoch nor an ISO 8601 "
                          "date") from None


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _fits(v, kind: str) -> bool:
    if kind in (_OPT_STR, _OPT_INT, _OPT_FLOAT, _TIME) and v is None:
        return True
    if kind == _TIME:
        return (isinstance(v, (str, datetime.date)) and "\x00" not in str(v)) or _is_number(v)
    if kind in (_STR, _OPT_STR):
        return isinstance(v, str) and "\x00" not in v
    if kind in (_INT, _OPT_INT):
        return isinstance(v, int) and not isinstance(v, bool)
    if kind in (_FLOAT, _OPT_FLOAT):
        return _is_number(v)
    if kind == _BOOL:
        return isinstance(v, bool)
    return v is None or (isinstance(v, (list, tuple)) and all(_is_number(x) for x in v))


def _check_types(obj, types: dict) -> None:
    """Every field of ``obj`` of the kind ``types`` names (ConfigError otherwise)."""
    for name, kind in types.items():
        v = getattr(obj, name)
        if not _fits(v, kind):
            raise ConfigError(f"{name} must be {kind}, not {v!r} ({type(v).__name__})")
_RUN_KEYS = {f.name for f in fields(RunConfig)} - {"cluster"}


def load_config(path) -> RunConfig:
    """Read a TOML run file into a :class:`RunConfig` (unknown keys are errors)."""
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    cluster = raw.pop("cluster", {})
    if not isinstance(cluster, dict):
        raise ConfigError(f"{path}: cluster must be a table ([cluster] and KEY = VALUE lines), "
                          f"not {cluster!r}")
    bad = (set(raw) - _RUN_KEYS) | {f"cluster.{k}" for k in set(cluster) - _CLUSTER_KEYS}
    if bad:
        raise ConfigError(f"{path}: unknown setting(s) {', '.join(sorted(bad))}")
    try:
        return RunConfig(**raw, cluster=ClusterConfig(**cluster))
    except TypeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
