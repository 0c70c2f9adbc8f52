"""Metrics against hand-computed values and their ranges."""

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dcf import evaluate


def test_mae_rmse_by_hand():
    assert evaluate.mae([4, 2, 5], [3, 2, 3]) == pytest.approx(1.0)
    assert evaluate.rmse([4, 2, 5], [3, 2, 3]) == pytest.approx(math.sqrt(5 / 3))
    with pytest.raises(ValueError):
        evaluate.mae([1, 2], [1])


def test_ranking_metrics_hand_made_case():
    recs = pd.DataFrame({"user": [1, 1, 1, 2, 2, 2], "rank": [1, 2, 3, 1, 2, 3],
                         "item": [10, 11, 12, 10, 13, 14]})
    test = pd.DataFrame({"user": [1, 1, 2, 2, 3], "item": [11, 99, 14, 10, 10],
                         "rating": [5, 4, 4, 3, 2]})
    m = evaluate.ranking_metrics(recs, test, n=3, threshold=4)
    # user 1: relevant {11, 99}, hit 11 at rank 2; user 2: relevant {14}, hit at rank 3;
    # user 3: nothing relevant -> not evaluated
    assert m["users"] == 2
    assert m["precision"] == pytest.approx((1 / 3 + 1 / 3) / 2)
    assert m["recall"] == pytest.approx((1 / 2 + 1) / 2)
    ndcg1 = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    ndcg2 = (1 / math.log2(4)) / 1
    assert m["ndcg"] == pytest.approx((ndcg1 + ndcg2) / 2)
    assert evaluate.catalogue_coverage(recs, 10) == pytest.approx(0.5)


@given(st.integers(0, 10_000))
@settings(max_examples=40, deadline=None)
def test_metrics_lie_in_their_range(seed):
    rng = np.random.default_rng(seed)
    users, items, n = 6, 12, 4
    recs = pd.DataFrame([(u, r + 1, i) for u in range(users)
                         for r, i in enumerate(rng.permutation(items)[:n])],
                        columns=["user", "rank", "item"])
    test = pd.DataFrame({"user": rng.integers(0, users, 20), "item": rng.integers(0, items, 20),
                         "rating": rng.integers(1, 6, 20)})
    m = evaluate.ranking_metrics(recs, test, n)
    for key in ("precision", "recall", "ndcg"):
        assert 0.0 <= m[key] <= 1.0
    assert 0.0 <= evaluate.catalogue_coverage(recs, items) <= 1.0
    t = rng.uniform(1, 5, 10)
    p = rng.uniform(1, 5, 10)
    assert 0 <= evaluate.mae(t, p) <= evaluate.rmse(t, p) <= 4
