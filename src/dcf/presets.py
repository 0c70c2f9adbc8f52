"""Named settings, each the measured best of its kind (``--preset NAME``,
:meth:`dcf.model.KNN.from_preset`); ``paper`` stays the default.

======== ============================================================ ============================
name     settings                                                     measured (benchmarks/RESULTS.md)
======== ============================================================ ============================
paper    item cosine (co-rated), rated neighbourhood, weighted         ML-100K 5-fold MAE 0.813,
         prediction, Top-N by predicted rating: the 2015 paper's       u1 P@20 0.017
rating   centred-cosine, baseline prediction, k 30, reg_item 2,        ML-100K 5-fold MAE 0.7094
         reg_user 5, amplification 2
ranking  bm25 (K1 2, B 0.75), global lists, k 200, amplification 4,   ML-100K u1 P@20 0.307
         Top-N by the normalised sum (chosen by :mod:`dcf.tune`)
implicit events, bm25, global lists, k 200, Top-N by the sum          ML-100K, SAR's protocol:
                                                                       P@10 0.369 (SAR 0.331)
======== ============================================================ ============================
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .config import RunConfig
from .errors import ConfigError

__all__ = ["Preset", "PRESETS", "preset", "with_preset"]


@dataclass(frozen=True)
class Preset:
    """A named setting: ``settings`` (the run's, which :class:`dcf.model.KNN`'s share),
    ``ranking`` (the Top-N order it was measured with; None: the feedback's default) and
    ``measured`` (its figures, in words, with where they come from)."""

    name: str
    settings: dict = field(default_factory=dict)
    ranking: str | None = None
    measured: str = ""


PRESETS = {p.name: p for p in (
    Preset("paper", {}, None, "ML-100K u1-u5 MAE 0.813 (the paper's protocol), u1 precision@20 0.017"),
    Preset("rating", {"similarity": "centred-cosine", "prediction": "baseline", "k": 30, "reg_item": 2.0,
                      "reg_user": 5.0, "amplification": 2.0}, None,
           "ML-100K u1-u5 MAE 0.7094 (benchmarks/accuracy.py; surprise KNNBaseline 0.721, LensKit item kNN 0.717)"),
    Preset("ranking", {"similarity": "bm25", "neighbourhood": "global", "k": 200, "bm25_k1": 2.0, "bm25_b": 0.75,
                       "amplification": 4.0}, "normalised-sum",
           "ML-100K u1 precision@20 0.307, relevant = rating >= 4, chosen by dcf.tune inside u1.base "
           "(implicit cosine 0.265)"),
    Preset("implicit", {"feedback": "implicit", "similarity": "bm25", "neighbourhood": "global", "k": 200}, "sum",
           "ML-100K, SAR's protocol, P@10 0.369, NDCG@10 0.427 (benchmarks/accuracy.py --protocol sar; SAR 0.331)"),
)}


def preset(name: str) -> Preset:
    """The preset ``name``; a ConfigError naming the choices otherwise."""
    if name not in PRESETS:
        raise ConfigError(f"preset {name!r} is not one of {', '.join(PRESETS)}")
    return PRESETS[name]


def with_preset(cfg: RunConfig, name: str) -> RunConfig:
    """``cfg`` with preset ``name``'s settings where ``cfg`` still holds the defaults (a
    setting given in a config file, or later on the command line, wins over the preset)."""
    chosen = preset(name)
    defaults = RunConfig()
    wanted = {**chosen.settings, **({"ranking": chosen.ranking} if chosen.ranking else {})}
    return replace(cfg, preset=name, **{k: v for k, v in wanted.items() if getattr(cfg, k) == getattr(defaults, k)})
