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
    # MAP: user 1's hit at rank 2 (P@2 = 1/2) over its 2 relevant items; user 2's at rank 3 over 1
    assert m["map"] == pytest.approx(((1 / 2) / 2 + (1 / 3) / 1) / 2)
    assert evaluate.catalogue_coverage(recs, 10) == pytest.approx(0.5)
    # MRR: user 1's first hit at rank 2, user 2's at 3; both hit
    assert (m["mrr"], m["hit_rate"]) == (pytest.approx((1 / 2 + 1 / 3) / 2), 1.0)
    # popularity bias: items 10 and 11 rated by 3 and 1 of 4 training users; 12-14 by none
    counts = pd.Series({10: 3, 11: 1})
    assert evaluate.average_popularity(recs, counts, 4) == pytest.approx((3 + 1 + 0 + 3 + 0 + 0) / 6 / 4)


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
    for key in ("precision", "recall", "ndcg", "map"):
        assert 0.0 <= m[key] <= 1.0
    assert 0.0 <= evaluate.catalogue_coverage(recs, items) <= 1.0
    t = rng.uniform(1, 5, 10)
    p = rng.uniform(1, 5, 10)
    assert 0 <= evaluate.mae(t, p) <= evaluate.rmse(t, p) <= 4


@given(st.integers(0, 10_000), st.integers(1, 6), st.sampled_from([3.0, 4.0]))
@settings(max_examples=60, deadline=None)
def test_ranking_metrics_equal_a_loop_and_sklearns_ndcg(seed, n, threshold):
    # independent formulas: precision and recall by a plain loop over users, NDCG by
    # scikit-learn's ndcg_score (binary gains, the list's rank as the score)
    from sklearn.metrics import ndcg_score

    rng = np.random.default_rng(seed)
    users, items = 5, 10
    lists = {u: rng.permutation(items)[:n].tolist() for u in range(users)}
    recs = pd.DataFrame([(u, r + 1, i) for u, lst in lists.items() for r, i in enumerate(lst)],
                        columns=["user", "rank", "item"])
    test = pd.DataFrame({"user": rng.integers(0, users, 25), "item": rng.integers(0, items, 25),
                         "rating": rng.integers(1, 6, 25)}).drop_duplicates(["user", "item"])
    m = evaluate.ranking_metrics(recs, test, n, threshold)
    precision, recall, ndcg, ap, rr = [], [], [], [], []
    for u in range(users):
        relevant = set(test.loc[(test["user"] == u) & (test["rating"] >= threshold), "item"])
        if not relevant:
            continue
        hits = sum(1 for i in lists[u] if i in relevant)
        found, total = 0, 0.0
        for r, i in enumerate(lists[u], start=1):  # precision at each hit's rank, over every relevant item
            if i in relevant:
                found += 1
                total += found / r
        ap.append(total / len(relevant))
        rr.append(next((1 / r for r, i in enumerate(lists[u], start=1) if i in relevant), 0.0))
        precision.append(hits / n)
        recall.append(hits / len(relevant))
        truth = np.array([[1.0 if i in relevant else 0.0 for i in range(items)]])
        score = np.zeros((1, items))
        score[0, lists[u]] = np.arange(n, 0, -1)  # rank 1 highest; unlisted items below
        ndcg.append(ndcg_score(truth, score, k=n))
    assert m["users"] == len(precision)
    if precision:
        assert m["precision"] == pytest.approx(np.mean(precision), abs=1e-12)
        assert m["recall"] == pytest.approx(np.mean(recall), abs=1e-12)
        assert m["ndcg"] == pytest.approx(np.mean(ndcg), abs=1e-12)
        assert m["map"] == pytest.approx(np.mean(ap), abs=1e-12)
        assert m["mrr"] == pytest.approx(np.mean(rr), abs=1e-12)
        assert m["hit_rate"] == pytest.approx(np.mean(np.asarray(rr) > 0), abs=1e-12)
        per_user = evaluate.user_metrics(recs, test, n, threshold)
        np.testing.assert_allclose(per_user["rr"], rr, atol=1e-12)
        np.testing.assert_allclose(per_user["ap"], ap, atol=1e-12)
    # the same ids spelled otherwise give the same figures: as text on both sides, text
    # against integers (7 equals "7"), and integers too large for one key per pair
    for recs_ids, test_ids in [(str, str), (int, str), (lambda v: v + 2**62, lambda v: v + 2**62)]:
        other = evaluate.ranking_metrics(
            recs.assign(user=recs["user"].map(recs_ids), item=recs["item"].map(recs_ids)),
            test.assign(user=test["user"].map(test_ids), item=test["item"].map(test_ids)), n, threshold)
        assert other == pytest.approx(m, abs=1e-12)
    # the runs compared a few pairs at a time, or refused for lists too long: the same
    from unittest.mock import patch

    from dcf.evaluate import metrics as metric_module

    for cells, width in ((3, 1024), (10**6, 1)):
        with patch.object(metric_module, "LISTED_CELLS", cells), patch.object(metric_module, "LISTED_WIDTH", width):
            assert evaluate.ranking_metrics(recs, test, n, threshold) == pytest.approx(m, abs=1e-12)
    # lists in any row order (not user after user: the pair-key search, not the runs) say the same
    shuffled = recs.sample(frac=1.0, random_state=seed)
    assert evaluate.ranking_metrics(shuffled, test, n, threshold) == pytest.approx(m, abs=1e-12)
    # ranks past n never count, on any path (users' runs, integer keys and text)
    extra = pd.DataFrame([(u, n + 1 + r, i) for u in range(users)
                          for r, i in enumerate(sorted(set(range(items)) - set(lists[u]))[:2])],
                         columns=["user", "rank", "item"])
    longer = pd.concat([recs, extra], ignore_index=True)
    assert evaluate.ranking_metrics(longer, test, n, threshold) == pytest.approx(m, abs=1e-12)
    assert evaluate.ranking_metrics(longer.sort_values(["user", "rank"]), test, n, threshold) == \
        pytest.approx(m, abs=1e-12)
    assert evaluate.ranking_metrics(longer.astype({"user": str, "item": str}), test, n, threshold) == \
        pytest.approx(m, abs=1e-12)
    # integers held as objects (what predictions carry) compare as integers
    as_objects = evaluate.ranking_metrics(recs, test.astype({"user": object, "item": object}), n, threshold)
    assert as_objects == pytest.approx(m, abs=1e-12)
    assert evaluate.integer_ids(pd.Series([1, np.int64(2)], dtype=object)).tolist() == [1, 2]
    assert evaluate.integer_ids(pd.Series([1, True], dtype=object)) is None
    assert evaluate.integer_ids(pd.Series([1, 2**63], dtype=object)) is None


@given(st.integers(0, 2**32 - 1), st.integers(1, 3000))
@settings(max_examples=40, deadline=None)
def test_mae_and_rmse_do_not_depend_on_the_order_of_the_predictions(seed, n):
    # a job on two workers and on one cuts its predictions into different parts: the same
    # figures to the bit (a plain mean's last bit followed the order)
    rng = np.random.default_rng(seed)
    truth, guess = rng.integers(1, 6, n).astype(float), rng.random(n) * 4 + 1
    order = rng.permutation(n)
    for metric in (evaluate.mae, evaluate.rmse):
        got = metric(truth, guess)
        assert got == metric(truth[order], guess[order])
        want = np.mean(np.abs(truth - guess)) if metric is evaluate.mae else np.sqrt(np.mean((truth - guess) ** 2))
        assert got == pytest.approx(want, rel=1e-13)
