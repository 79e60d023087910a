"""Evaluation metrics against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from txguard.domain.errors import ValidationError
from txguard.model.evaluate import (
    amount_weighted_recall,
    at_threshold,
    auc_roc,
    average_precision,
    card_precision_at_k,
    card_precision_at_k_per_day,
    evaluate_scores,
    recall_at_fpr,
)


def test_auc_by_hand() -> None:
    # positives 0.9, 0.4; negatives 0.8, 0.1: of 4 pairs, 3 ranked right
    assert auc_roc([0.9, 0.4, 0.8, 0.1], [1, 1, 0, 0]) == pytest.approx(0.75)


def test_average_precision_by_hand() -> None:
    # ranking: 0.9(+) 0.8(-) 0.4(+) 0.1(-): precision at the recalls 1/2 and 1 is 1 and 2/3
    assert average_precision([0.9, 0.4, 0.8, 0.1], [1, 1, 0, 0]) == pytest.approx(
        0.5 * 1 + 0.5 * 2 / 3
    )


def test_single_class_is_nan_not_a_crash() -> None:
    assert math.isnan(auc_roc([0.1, 0.2], [0, 0]))
    assert math.isnan(average_precision([0.1, 0.2], [0, 0]))


def test_card_precision_tiny_example() -> None:
    days = np.array([0, 0, 0, 1, 1])
    ents = np.array([1, 2, 3, 1, 2])
    scores = np.array([0.9, 0.8, 0.1, 0.9, 0.7])
    labels = np.array([1, 0, 0, 1, 1])
    # day 0: top-2 entities 1 (fraud), 2 (not) -> 1/2; entity 1 is now known compromised.
    # day 1: entity 1 removed; only entity 2 left (fraud) -> 1 hit / k=2 -> 1/2
    per_day = card_precision_at_k_per_day(
        days=days, entities=ents, scores=scores, labels=labels, k=2
    )
    assert per_day == [(0, 0.5), (1, 0.5)]
    assert card_precision_at_k(days=days, entities=ents, scores=scores, labels=labels, k=2) == 0.5
    # without removal day 1 counts entity 1 again: 2/2
    assert card_precision_at_k(
        days=days, entities=ents, scores=scores, labels=labels, k=2, remove_detected=False
    ) == pytest.approx(0.75)


def test_card_precision_uses_each_entitys_max_score_and_any_fraud() -> None:
    # entity 7 has two transactions: its low-scored one is the fraud, its max score still ranks it
    days = np.array([3, 3, 3, 3])
    ents = np.array([7, 7, 8, 9])
    scores = np.array([0.95, 0.05, 0.9, 0.2])
    labels = np.array([0, 1, 0, 1])
    assert card_precision_at_k(days=days, entities=ents, scores=scores, labels=labels, k=1) == 1.0
    assert card_precision_at_k(days=days, entities=ents, scores=scores, labels=labels, k=2) == 0.5
    assert card_precision_at_k(
        days=days, entities=ents, scores=scores, labels=labels, k=3
    ) == pytest.approx(2 / 3)


def test_card_precision_rejects_bad_k() -> None:
    with pytest.raises(ValidationError, match="k"):
        card_precision_at_k(days=[0], entities=[1], scores=[0.1], labels=[0], k=0)


def test_recall_at_fpr_by_hand() -> None:
    # 10 negatives 0.0..0.9, positives 0.95, 0.85, 0.05
    neg = np.arange(10) / 10
    pos = np.array([0.95, 0.85, 0.05])
    s = np.concatenate([neg, pos])
    y = np.concatenate([np.zeros(10), np.ones(3)])
    # FPR 0: only 0.95 above every negative -> recall 1/3
    assert recall_at_fpr(s, y, 0.0) == pytest.approx(1 / 3)
    # FPR 10 %: threshold 0.85 lets one negative (0.9) through -> 2/3
    assert recall_at_fpr(s, y, 0.1) == pytest.approx(2 / 3)


def test_amount_weighted_recall_and_threshold_report() -> None:
    s = np.array([0.9, 0.2, 0.7, 0.1])
    y = np.array([1, 1, 0, 0])
    amt = np.array([100.0, 300.0, 50.0, 10.0])
    assert amount_weighted_recall(s, y, amt, 0.5) == pytest.approx(0.25)
    r = at_threshold(s, y, amt, np.array([0, 0, 1, 1]), 0.5)
    assert (r.alerts, r.alerts_per_day, r.precision, r.recall) == (2, 1.0, 0.5, 0.5)


def test_evaluate_scores_shape_and_mismatch() -> None:
    rng = np.random.default_rng(0)
    y = rng.random(500) < 0.1
    s = np.where(y, rng.random(500) * 0.5 + 0.5, rng.random(500) * 0.7)
    out = evaluate_scores(
        scores=s,
        labels=y,
        amounts=np.ones(500),
        days=np.arange(500) // 100,
        entities=np.arange(500) % 50,
        thresholds=[("review", 0.6)],
        k=5,
    )
    assert out["n"] == 500 and out["days"] == 5
    assert 0.8 < out["auc_roc"] <= 1.0
    assert set(out) >= {"average_precision", "cp_at_5", "recall_at_1pct_fpr", "thresholds"}
    with pytest.raises(ValidationError, match="shape"):
        auc_roc([0.1, 0.2], [1])
