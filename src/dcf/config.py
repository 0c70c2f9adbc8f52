"""Frozen settings for a run, its model and its cluster; loading and checking.

A run can be configured from a TOML file (``--config run.toml``) whose keys
are the long option names with ``_`` for ``-`` (``top_n = 10``, and a
``[cluster]`` table with ``workers``, ``threads_per_worker``, ``memory_limit``,
``scheduler``); command-line flags override the file.  Nothing in a file is
ever executed.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace

from .errors import ConfigError

__all__ = ["ClusterConfig", "RunConfig", "load_config"]

CHOICES = {
    "based": ("item", "user"),
    "similarity": ("cosine", "full-cosine", "pearson-baseline", "pearson", "adjusted-cosine", "centred-cosine",
                   "jaccard"),  # = dcf.kernels.MEASURES (tested)
    "neighbourhood": ("rated", "global"),
    "prediction": ("weighted", "mean-centred", "baseline"),
    "ranking": ("prediction", "sum", "normalised-sum"),
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
    dashboard_address: str = "127.0.0.1:8787"
    memory_target: float = 0.4  # the paper's spark.storage.memoryFraction
    wait_for_workers: int = 0
    no_workers_timeout: str = "60s"
    tls_ca_file: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None

    def __post_init__(self):
        for name in ("workers", "threads_per_worker"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer, not {getattr(self, name)!r}")
        if not 0 < self.memory_target <= 1:
            raise ConfigError(f"memory_target must be in (0, 1], not {self.memory_target!r}")
        tls = [self.tls_ca_file, self.tls_cert, self.tls_key]
        if any(tls) and not all(tls):
            raise ConfigError("TLS needs all of tls_ca_file, tls_cert and tls_key")
        if self.scheduler and self.scheduler.startswith("tls://") and not all(tls):
            raise ConfigError(f"the scheduler {self.scheduler} uses TLS: give --tls-ca-file, "
                              "--tls-cert and --tls-key")


@dataclass(frozen=True)
class RunConfig:
    """Everything ``python -m dcf.run`` does, resolved (written to metrics.json)."""

    data: str = "synthetic"
    test: str | None = None
    test_fraction: float = 0.1
    seed: int = 0
    based: str = "item"
    similarity: str = "cosine"
    k: int = 50
    neighbourhood: str = "rated"
    prediction: str = "weighted"
    top_n: int = 20
    ranking: str = "prediction"
    min_support: int = 1
    shrinkage: float = 0.0
    significance: float = 0.0
    min_similarity: float = 0.0
    amplification: float = 1.0
    min_k: int = 1
    baseline_epochs: int = 10
    reg_user: float = 15.0
    reg_item: float = 10.0
    relevance: float = 4.0
    skip_bad_lines: bool = False
    rating_scale: tuple[float, float] | None = None
    block_size: int | None = None
    out: str = "dcf-output"
    performance_report: str | None = None
    progress: bool = True
    write_neighbours: bool = False
    cluster: ClusterConfig = field(default_factory=ClusterConfig)

    def __post_init__(self):
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} {getattr(self, name)!r} is not one of {', '.join(allowed)}")
        for name, low in (("k", 1), ("top_n", 1), ("min_support", 0), ("min_k", 0), ("baseline_epochs", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ConfigError(f"{name} must be an integer >= {low}, not {v!r}")
        rho = self.amplification
        if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not math.isfinite(rho) or rho <= 0:
            raise ConfigError(f"amplification must be a number > 0, not {rho!r}")
        if not 0 < self.test_fraction < 1:
            raise ConfigError(f"test_fraction must be between 0 and 1, not {self.test_fraction!r}")
        for name in ("shrinkage", "significance", "min_similarity", "reg_user", "reg_item"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise ConfigError(f"{name} must be a number >= 0, not {v!r}")
        if self.rating_scale is not None:
            scale = tuple(self.rating_scale)
            if (len(scale) != 2 or not all(isinstance(v, (int, float)) for v in scale)
                    or not 0 < scale[0] <= scale[1]):
                raise ConfigError(f"rating_scale must be two numbers 0 < low <= high, not "
                                  f"{self.rating_scale!r}")
            object.__setattr__(self, "rating_scale", (float(scale[0]), float(scale[1])))

    def to_dict(self) -> dict:
        return asdict(self)

    def with_overrides(self, **kw) -> "RunConfig":
        cluster = {k: kw.pop(k) for k in list(kw) if k in _CLUSTER_KEYS}
        kw = {k: v for k, v in kw.items() if v is not None}
        cluster = {k: v for k, v in cluster.items() if v is not None}
        return replace(self, **kw, cluster=replace(self.cluster, **cluster))


_CLUSTER_KEYS = {f.name for f in fields(ClusterConfig)}
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
    bad = (set(raw) - _RUN_KEYS) | {f"cluster.{k}" for k in set(cluster) - _CLUSTER_KEYS}
    if bad:
        raise ConfigError(f"{path}: unknown setting(s) {', '.join(sorted(bad))}")
    try:
        return RunConfig(**raw, cluster=ClusterConfig(**cluster))
    except TypeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
