"""The job's figures: the metrics dict (``metrics.json``), strict JSON for it, and the
summary printed at the end."""

from __future__ import annotations

import datetime
import math
import os
import platform

import numpy as np

from .. import evaluate
from ..config import RunConfig
from ..version import __version__


def collect_metrics(cfg: RunConfig, model, preds, recs, counts, shape, candidates=None, baselines=None,
                    repeated=None) -> dict:
    """The figures of a finished pipeline (``counts``: its computed cleaning reports,
    ``repeated``: the (user, item) pairs rated again where the matrix could not see them,
    :mod:`dcf.repeats`,
    ``shape``: the cluster's description, ``candidates``: the ``--items`` file's ids and how
    many the model knows, ``baselines``: :func:`dcf.evaluate.baselines.baseline_figures`
    on the same split), as written to ``metrics.json``."""
    test = preds[["user", "item", "rating"]]
    ranking = evaluate.ranking_metrics(recs, test, cfg.top_n, cfg.relevance_threshold)
    n_users, n_items = model.matrix_.shape
    train_report = counts[0]
    test_report = counts[1] if len(counts) > 1 else None
    implicit = cfg.feedback == "implicit"  # no rating to predict: the errors are not measured
    return {
        "dcf_version": __version__,
        "mae": None if implicit else evaluate.mae(preds["rating"], preds["prediction"]),
        "rmse": None if implicit else evaluate.rmse(preds["rating"], preds["prediction"]),
        "not_measured": ({"mae": SKIPPED_ERRORS, "rmse": SKIPPED_ERRORS} if implicit else {}),
        "feedback": cfg.feedback,
        **({"time_decay": time_decay(cfg, model.reference_time_)} if cfg.half_life is not None else {}),
        f"precision@{cfg.top_n}": ranking["precision"], f"recall@{cfg.top_n}": ranking["recall"],
        f"ndcg@{cfg.top_n}": ranking["ndcg"], f"map@{cfg.top_n}": ranking["map"],
        "ranking_users": ranking["users"], "relevance_threshold": cfg.relevance_threshold,
        "ranking": cfg.ranking_rule,
        "evaluation": evaluation(cfg),
        **({"candidates": candidates} if candidates is not None else {}),
        "coverage": evaluate.catalogue_coverage(recs, n_items),
        **({"baselines": baseline_entries(baselines, cfg.top_n)} if baselines is not None else {}),
        "counts": {"train_ratings": int(train_report.get("stored", 0)), "test_pairs": int(len(preds)),
                   **({"events": int(train_report.get("events", 0)), "pairs": int(train_report.get("pairs", 0))}
                      if implicit else {}),
                   "users": n_users, "items": n_items, "recommendations": int(len(recs)),
                   "read": train_report, "test_read": test_report,
                   **({"repeated_pairs": repeated} if repeated is not None else {})},
        "fallbacks": {str(k): int(v) for k, v in preds["fallback"].value_counts().items()},
        "recommendation_fallbacks": int((recs["fallback"] != "none").sum()),
        "global_mean": model.global_mean_, "rating_range": list(model.rating_range_),
        "similarity_block": int(max(model.matrix_.oriented(model.based)[0].chunks[0])),
        "cluster": shape,
        "config": cfg.to_dict(),
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count()},
    }


def baseline_entries(figures, top_n: int) -> dict:
    """``{baseline: {measure: value}}`` for metrics.json: each baseline's measures it has
    (the means and the baseline predictor predict ratings, popularity ranks), named as the
    model's are (``precision@20``)."""
    at = {"precision", "recall", "ndcg", "map", "mrr", "hit_rate"}
    out = {}
    for row in figures.to_dict("records"):
        name = row.pop("baseline")
        out[name] = {(f"{k}@{top_n}" if k in at else k): (int(v) if k == "users" else float(v))
                     for k, v in row.items() if v is not None and not (isinstance(v, float) and math.isnan(v))}
    return out


def time_decay(cfg: RunConfig, reference: float) -> dict:
    """The time decay the scores used: its half-life and reference time (seconds since the
    epoch, and as an ISO 8601 date-time in UTC)."""
    try:
        iso = datetime.datetime.fromtimestamp(reference, datetime.timezone.utc).isoformat()
    except (OverflowError, ValueError, OSError):  # beyond the years a datetime holds
        iso = None
    return {"half_life_days": cfg.half_life, "reference_time": reference, "reference_time_utc": iso,
            "decay_similarity": cfg.decay_similarity}


def _baselines_line(baselines: dict, top_n: int) -> str:
    """The baselines' headline figures in one line: the lists' precision for popularity,
    the MAE for the predictors."""
    parts = []
    for name, figures in baselines.items():
        key = f"precision@{top_n}" if name == "popularity" else "mae"
        if key in figures:
            parts.append(f"{name} {'MAE' if key == 'mae' else f'P@{top_n}'} {figures[key]:.4f}")
    return "; ".join(parts) or "nothing to compare (no test ratings)"


def _cleaning_line(counts: dict) -> str:
    """What reading and the repeated pairs' check dropped, summed over the files (empty
    where nothing was): with ``--skip-bad-lines`` a skip is reported here, not only in
    metrics.json."""
    total = dict.fromkeys(("skipped", "missing", "duplicates", "conflicts"), 0)
    for report in (counts.get("read"), counts.get("test_read"), counts.get("repeated_pairs")):
        for key in total:
            total[key] += int((report or {}).get(key, 0) or 0)
    words = {"skipped": "bad lines skipped", "missing": "lines with an empty field dropped", "duplicates": "exact duplicates dropped",
             "conflicts": "conflicting ratings dropped"}
    said = [f"{total[k]:,} {words[k]}" for k in total if total[k]]
    return ", ".join(said) + " (metrics.json: counts, with examples)" if said else ""


def _decay_line(decay: dict) -> str:
    when = decay["reference_time_utc"] or f"{decay['reference_time']:g} s"
    where = "scores and similarity" if decay["decay_similarity"] else "scores"
    return f"half-life {decay['half_life_days']:g} days from {when}, in the {where}"


def evaluation(cfg: RunConfig) -> str:
    """How the figures were measured, in words (printed and in metrics.json)."""
    split = (f"test file {cfg.test}" if cfg.test else
             f"the latest {cfg.test_fraction:.0%} of the ratings by time as test" if cfg.split == "time" else
             f"each user's {cfg.holdout} latest rating(s) as test (users with at most {cfg.holdout} kept whole)"
             if cfg.split == "last" else
             f"random {cfg.test_fraction:.0%} of the ratings as test, seed {cfg.seed} (hash of user, item)")
    relevant = ("every test event" if cfg.feedback == "implicit" and cfg.relevance is None
                else f"test rating >= {cfg.relevance_threshold:g}")
    rules = "rated items kept" if cfg.keep_rated else "rated items excluded"
    if cfg.items:
        rules += f", only the items of {cfg.items}"
    return (f"{split}; relevant = {relevant}, {rules}, top-N by {cfg.ranking_rule}, ranking "
            "metrics averaged over users with a relevant test item")


def strict_json(obj, path: str = "", why: dict | None = None):
    """``obj`` with every NaN or infinite number replaced by ``None`` (strict JSON), the
    reasons collected under the top level's ``"undefined"`` key (``{"rmse": "..."}``)."""
    top = why is None
    why = {} if top else why
    if isinstance(obj, dict):
        out = {str(k): strict_json(v, f"{path}.{k}" if path else str(k), why) for k, v in obj.items()}
    elif isinstance(obj, (list, tuple, np.ndarray)):
        out = [strict_json(v, f"{path}[{i}]", why) for i, v in enumerate(list(obj))]
    elif isinstance(obj, (bool, np.bool_)):
        out = bool(obj)
    elif isinstance(obj, (int, np.integer)):
        out = int(obj)
    elif isinstance(obj, (float, np.floating)):
        out = float(obj)
        if not math.isfinite(out):
            why[path] = ("not a number: " if math.isnan(out) else "infinite: ") + _REASONS.get(
                path.split(".")[0].split("@")[0], "undefined for this data")
            out = None
    elif obj is None or isinstance(obj, str):
        out = obj
    else:
        raise TypeError(f"{path}: not JSON serialisable: {type(obj).__name__}")
    if top and why:
        out["undefined"] = why
    return out


_REASONS = {
    "mae": "no test pair, or ratings so large that the error overflows",
    "rmse": "no test pair, or ratings so large that their squared error overflows",
    "precision": "no test user has a relevant rating (see relevance_threshold)",
    "recall": "no test user has a relevant rating (see relevance_threshold)",
    "ndcg": "no test user has a relevant rating (see relevance_threshold)",
    "map": "no test user has a relevant rating (see relevance_threshold)",
    "coverage": "no item in the catalogue",
    "global_mean": "the training ratings are too large to average",
    "rating_range": "the training ratings are too large",
}


SKIPPED_ERRORS = "implicit feedback: no rating to predict (the ranking metrics are the summary)"


def summary(metrics: dict, top_n: int) -> str:
    """The lines ``python -m dcf.run`` prints at the end of a run."""
    num = lambda v: f"{v:.4f}" if v is not None and math.isfinite(v) else "undefined (metrics.json says why)"
    skipped = metrics.get("not_measured", {})
    errors = [(name, f"skipped: {skipped[key]}" if key in skipped else num(metrics[key]))
              for name, key in (("MAE", "mae"), ("RMSE", "rmse"))]
    rows = [*errors,
            (f"precision@{top_n}", num(metrics[f'precision@{top_n}'])),
            (f"recall@{top_n}", num(metrics[f'recall@{top_n}'])),
            (f"NDCG@{top_n}", num(metrics[f'ndcg@{top_n}'])),
            (f"MAP@{top_n}", num(metrics[f'map@{top_n}'])),
            ("coverage", num(metrics['coverage'])),
            *([("baselines", _baselines_line(metrics["baselines"], top_n))] if "baselines" in metrics else []),
            ("evaluation", metrics["evaluation"]),
            ("test pairs", f"{metrics['counts']['test_pairs']:,}"),
            *([("cleaning", cleaning)] if (cleaning := _cleaning_line(metrics["counts"])) else []),
            *([("events", f"{metrics['counts']['events']:,} read as {metrics['counts']['pairs']:,} "
                          "(user, item) pairs")] if "events" in metrics["counts"] else []),
            *([("time decay", _decay_line(metrics["time_decay"]))] if "time_decay" in metrics else []),
            *([("candidates", f"{metrics['candidates']['known']:,} of the {metrics['candidates']['ids']:,} ids in "
                              f"{metrics['candidates']['file']} are items of the model")]
              if "candidates" in metrics else []),
            ("fallbacks", ", ".join(f"{k} {v:,}" for k, v in metrics["fallbacks"].items() if v)),
            ("seconds", ", ".join(f"{k} {v:.2f}" for k, v in metrics["seconds"].items()))]
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
