"""Threshold policy: levels, actions, fitting from data, segment overrides, round trip."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from txguard.domain.decision import Action, RiskLevel
from txguard.domain.errors import ValidationError
from txguard.domain.events import Sender, TransactionEvent, TransactionType
from txguard.model.policy import (
    Policy,
    SegmentOverride,
    Thresholds,
    fit_policy,
    fit_thresholds,
)


def _event(
    jurisdiction: str | None = None, type_: TransactionType | None = None
) -> TransactionEvent:
    return TransactionEvent(
        transaction_id="t1",
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
        amount=10.0,
        currency="USD",
        sender=Sender(account_id="a"),
        type=type_,
        jurisdiction=jurisdiction,
    )


def test_levels_and_actions() -> None:
    t = Thresholds(medium=0.1, review=0.5, reject=0.9)
    assert t.level_action(0.05) == (RiskLevel.LOW, Action.APPROVE)
    assert t.level_action(0.1) == (RiskLevel.MEDIUM, Action.APPROVE)
    assert t.level_action(0.5) == (RiskLevel.HIGH, Action.REVIEW)
    assert t.level_action(0.95) == (RiskLevel.CRITICAL, Action.REJECT)


def test_thresholds_must_be_ordered() -> None:
    with pytest.raises(ValidationError, match="medium <= review <= reject"):
        Thresholds(medium=0.1, review=0.9, reject=0.5)


def test_segment_override_most_specific_wins() -> None:
    p = Policy(
        Thresholds(0.1, 0.5, 0.9),
        segments=(
            SegmentOverride(Thresholds(0.05, 0.2, 0.8), jurisdiction="NG"),
            SegmentOverride(Thresholds(0.05, 0.3, 0.7), type="crypto_to_fiat"),
            SegmentOverride(Thresholds(0.01, 0.1, 0.6), jurisdiction="NG", type="crypto_to_fiat"),
        ),
    )
    assert p.decide(0.25, _event()) == (RiskLevel.MEDIUM, Action.APPROVE)
    assert p.decide(0.25, _event("NG")) == (RiskLevel.HIGH, Action.REVIEW)
    assert p.decide(0.75, _event(None, TransactionType.CRYPTO_TO_FIAT))[1] is Action.REJECT
    assert p.decide(0.65, _event("NG", TransactionType.CRYPTO_TO_FIAT))[1] is Action.REJECT
    assert p.decide(0.65, _event("NG", TransactionType.CARD))[1] is Action.REVIEW


def test_round_trip_and_version_is_content_hash() -> None:
    p = Policy(
        Thresholds(0.1, 0.5, 0.9),
        segments=(SegmentOverride(Thresholds(0.05, 0.2, 0.8), jurisdiction="NG"),),
        method="precision",
        params={"review_precision": 0.5},
    )
    q = Policy.from_dict(p.to_dict())
    assert q == p and q.version == p.version
    r = Policy(Thresholds(0.1, 0.5, 0.95))
    assert r.version != p.version
    with pytest.raises(ValidationError, match="malformed policy"):
        Policy.from_dict({"segments": []})


def test_fit_precision_by_hand() -> None:
    # sorted: .9+ .8+ .7- .6+ .5- .4- ; precision at cut-offs: 1, 1, 2/3, 3/4, 3/5, 1/2
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    y = np.array([1, 1, 0, 1, 0, 0])
    t = fit_thresholds(s, y, method="precision", review_precision=0.7, reject_precision=1.0)
    assert t.review == 0.6  # lowest cut-off with precision >= 0.7 (3/4)
    assert t.reject == 0.8
    assert t.medium == pytest.approx(0.3)


def test_fit_budget_by_hand() -> None:
    s = np.arange(100) / 100.0  # 0.00 .. 0.99
    y = (s > 0.95).astype(int)
    days = np.repeat(np.arange(5), 20)
    t = fit_thresholds(s, y, days=days, method="budget", alerts_per_day=2, reject_precision=1.0)
    assert t.review == pytest.approx(0.90)  # 10 alerts over 5 days: the 10th highest score
    assert t.reject == pytest.approx(0.96)


def test_fit_cost_by_hand() -> None:
    # review cost 5: catching the 100-fraud at .9 pays; the 3-fraud at .5 is not worth 3 reviews
    s = np.array([0.9, 0.7, 0.6, 0.5])
    y = np.array([1, 0, 0, 1])
    amt = np.array([100.0, 1.0, 1.0, 3.0])
    t = fit_thresholds(s, y, amounts=amt, method="cost", review_cost=5.0, reject_precision=1.0)
    assert t.review == 0.9


def test_fit_policy_segments_only_where_data_supports() -> None:
    rng = np.random.default_rng(1)
    n = 4000
    juris = np.where(rng.random(n) < 0.5, "GB", "NG")
    y = (rng.random(n) < np.where(juris == "NG", 0.2, 0.02)).astype(int)
    s = np.clip(y * 0.4 + rng.random(n) * 0.6, 0, 1)
    small = np.array(["card"] * (n - 10) + ["cash_out"] * 10, dtype=object)
    p = fit_policy(s, y, jurisdictions=list(juris), types=list(small), method="precision")
    assert {s.jurisdiction for s in p.segments if s.jurisdiction} <= {"GB", "NG"}
    assert all(seg.type != "cash_out" for seg in p.segments)  # too few frauds to fit
    assert p.segments, "the two jurisdictions have very different base rates"
    with pytest.raises(ValidationError, match="method"):
        fit_thresholds(s, y, method="vibes")


def test_batch_actions_match_decide() -> None:
    p = Policy(
        Thresholds(0.1, 0.5, 0.9),
        segments=(SegmentOverride(Thresholds(0.05, 0.2, 0.8), jurisdiction="NG"),),
    )
    acts = p.actions([0.3, 0.3, 0.85], jurisdictions=["GB", "NG", "NG"])
    assert acts == [Action.APPROVE, Action.REVIEW, Action.REJECT]
