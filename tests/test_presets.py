"""Presets (``--preset``, ``KNN.from_preset``): each the measured best of its kind, and
each pinned here to the figure it is documented with, on MovieLens 100K."""

import dask
import numpy as np
import pandas as pd
import pytest

from dcf import KNN, ItemKNN, evaluate, split
from dcf.config import CHOICES, RunConfig
from dcf.datasets import movielens_folds
from dcf.errors import ConfigError
from dcf.evaluate import cross_validate
from dcf.presets import PRESETS, with_preset
from dcf.run.cli import build_parser, resolve


def test_every_preset_is_valid_settings_and_flags_win():
    assert list(PRESETS) == list(CHOICES["preset"])
    for name, chosen in PRESETS.items():
        cfg = with_preset(RunConfig(), name)
        assert cfg.preset == name and all(getattr(cfg, k) == v for k, v in chosen.settings.items())
        model = KNN.from_preset(name)
        model.check_params()
        assert all(getattr(model, k) == v for k, v in chosen.settings.items())
    cfg = resolve(build_parser().parse_args(["--preset", "rating", "--k", "45"]))
    assert (cfg.k, cfg.similarity, cfg.amplification) == (45, "centred-cosine", 2.0)
    assert ItemKNN.from_preset("ranking", k=10).k == 10 and PRESETS["ranking"].ranking == "normalised-sum"
    with pytest.raises(ConfigError, match="not one of"):
        KNN.from_preset("fastest")


def test_a_config_file_wins_over_its_preset(tmp_path):
    (tmp_path / "run.toml").write_text('preset = "implicit"\nk = 80\n')
    cfg = resolve(build_parser().parse_args(["--config", str(tmp_path / "run.toml")]))
    assert (cfg.preset, cfg.k, cfg.similarity, cfg.feedback, cfg.ranking) == ("implicit", 80, "bm25", "implicit", "sum")


@pytest.mark.slow
def test_rating_preset_five_fold_mae(ml100k):
    with dask.config.set(scheduler="threads"):
        got = cross_validate(KNN.from_preset("rating"), folds=movielens_folds(), n=None, baselines=False)
    assert got.folds["mae"].mean() == pytest.approx(0.7094, abs=5e-5)


@pytest.mark.slow
def test_ranking_preset_u1_precision(ml100k):
    with dask.config.set(scheduler="threads"):
        got = cross_validate(KNN.from_preset("ranking"), folds=movielens_folds()[:1], n=20, baselines=False)
    # the preset's ranking is a recommend argument: cross_validate ranks by the model's default
    train, test = movielens_folds()[0]
    from dcf import read_ratings

    with dask.config.set(scheduler="threads"):
        model = KNN.from_preset("ranking").fit(read_ratings(train))
        recs = model.recommend(n=20, ranking=PRESETS["ranking"].ranking).compute()
    truth = pd.read_csv(test, sep="\t", names=["user", "item", "rating", "time"])
    assert evaluate.ranking_metrics(recs, truth, 20, 4.0)["precision"] == pytest.approx(0.3067, abs=5e-5)
    assert got.folds["precision"].iloc[0] < 0.30  # ranked by the sum, not the normalised sum: worse


@pytest.mark.slow
def test_implicit_preset_beats_sars_published_precision(ml100k):
    frame = pd.read_csv(ml100k / "u.data", sep="\t", names=["user", "item", "rating", "time"])
    with dask.config.set(scheduler="sync"):
        train, test = split.user_holdout([dask.delayed(frame.astype({"rating": np.float64}))], 0.25, 42)
        train, test = (pd.concat(dask.compute(*x), ignore_index=True) for x in (train, test))
    with dask.config.set(scheduler="threads"):
        model = KNN.from_preset("implicit").fit(train.drop(columns="time"))
        recs = model.recommend(n=10, ranking=PRESETS["implicit"].ranking).compute()
    precision = evaluate.ranking_metrics(recs, test, 10, threshold=0.0)["precision"]
    assert precision == pytest.approx(0.3688, abs=5e-5) and precision > 0.331
