"""Training on a synthetic feature table of the feature package's output shape."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from txguard.domain.errors import ValidationError
from txguard.model.train import parse_duration, plan_periods, train_from_features

NAMES = ("amount_log", "sender_count_24h", "terminal_fraud_rate_28d", "noise")


def synthetic_features(n: int = 12000, days: int = 60, seed: int = 0) -> pa.Table:
    """A feature table shaped like ``build_features`` output, with a learnable fraud signal."""
    rng = np.random.default_rng(seed)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    secs = np.sort(rng.integers(0, days * 86400, n))
    occurred = [t0 + timedelta(seconds=int(s)) for s in secs]
    x = rng.normal(size=(n, len(NAMES)))
    logit = -4.5 + 1.6 * x[:, 0] + 1.0 * x[:, 2]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    amount = np.exp(3 + x[:, 0])
    cols: dict[str, pa.Array] = {
        "transaction_id": pa.array([f"t{i}" for i in range(n)]),
        "occurred_at": pa.array(occurred, pa.timestamp("us", tz="UTC")),
        "sender_account_id": pa.array([f"a{i % 700}" for i in range(n)]),
        "terminal_id": pa.array([f"m{i % 300}" for i in range(n)]),
        "merchant_id": pa.nulls(n, pa.string()),
        "amount": pa.array(amount),
        "amount_usd": pa.array(amount),
        "label": pa.array(y, pa.int8()),
        "label_known_at": pa.array(
            [o + timedelta(days=7) for o in occurred], pa.timestamp("us", tz="UTC")
        ),
        "typology": pa.nulls(n, pa.string()),
    }
    for j, name in enumerate(NAMES):
        col = x[:, j].copy()
        col[rng.random(n) < 0.02] = np.nan
        cols[name] = pa.array(col)
    return pa.table(cols)


def test_parse_duration() -> None:
    assert parse_duration("7d") == timedelta(days=7)
    assert parse_duration("36h") == timedelta(hours=36)
    assert parse_duration("2") == timedelta(days=2)
    with pytest.raises(ValidationError, match="label_delay"):
        parse_duration("soon")


def test_periods_are_ordered_with_label_delay_gaps() -> None:
    s = datetime(2026, 1, 1, tzinfo=UTC)
    p = plan_periods(s, s + timedelta(days=60), label_delay=timedelta(days=7))
    assert p.train[0] == s
    assert p.valid[0] - p.train[1] == timedelta(days=7)
    assert p.test[0] - p.valid[1] == timedelta(days=7)
    assert p.test == (s + timedelta(days=48), s + timedelta(days=60))
    with pytest.raises(ValidationError, match="too few"):
        plan_periods(s, s + timedelta(days=10), label_delay=timedelta(days=7))


def test_train_end_to_end_on_synthetic_table() -> None:
    table = synthetic_features()
    res = train_from_features(table, NAMES, params={"num_threads": 1})
    m = res.metrics
    assert m["auc_roc"] > 0.8
    assert 0 < m["average_precision"] <= 1
    assert set(m["thresholds"]) == {"review", "reject"}
    assert res.policy.default.review <= res.policy.default.reject
    # no training row inside the gaps or later periods
    test_times = res.test_table.column("occurred_at").to_pylist()
    assert min(test_times) >= res.periods.test[0]
    assert res.periods.valid[0] - res.periods.train[1] == timedelta(days=7)
    assert res.meta["rows"]["train"] + res.meta["rows"]["valid"] + res.meta["rows"]["test"] < 12000
    assert set(res.timer.stages) >= {"split", "lightgbm", "policy", "evaluate"}
    # calibrated: mean predicted close to the observed test fraud rate
    assert abs(float(res.test_scores.mean()) - m["fraud_rate"]) < 0.02


def test_training_is_deterministic() -> None:
    table = synthetic_features(n=6000, seed=3)
    a = train_from_features(table, NAMES, params={"num_threads": 1})
    b = train_from_features(table, NAMES, params={"num_threads": 1})
    assert a.booster.model_to_string() == b.booster.model_to_string()
    assert a.meta["data_fingerprint"] == b.meta["data_fingerprint"]


def test_missing_feature_column_is_named() -> None:
    table = synthetic_features(n=3000).drop_columns(["noise"])
    with pytest.raises(ValidationError, match="noise: column missing"):
        train_from_features(table, NAMES)
