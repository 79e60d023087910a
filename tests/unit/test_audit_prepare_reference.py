"""``records.prepare`` against the implementation every stored chain was written with.

``_reference_prepare`` below is ``records._canonical`` + ``records.prepare`` as of commit 0ec4059
(before missing features took the C-level path), kept verbatim here as the reference: for any
record, the canonical bytes (what the chain hashes), the ``decided_at`` text and the normalised
record (what the writer hands back instead of re-reading the body) must be exactly the old ones —
equal, with the same feature key order, the same value types, and NaN/±inf as ``None``.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from txguard.audit.records import AuditRecord, _format_utc, _num, prepare
from txguard.domain.errors import FieldError, ValidationError

_INF = math.inf
_FLOAT = frozenset({float})
_STR = frozenset({str})
_NAN = math.nan


def _reference_canonical(
    record: AuditRecord,
) -> tuple[dict[str, Any], datetime, dict[str, float | None]]:
    raw = record.features
    values: Any = raw.values()
    try:
        if (
            set(map(type, values)) <= _FLOAT
            and set(map(type, raw)) <= _STR
            and (-_INF < sum(values) < _INF)
        ):
            features: dict[str, float | None] = raw
        else:
            features = {
                (k if type(k) is str else str(k)): (
                    v if type(v) is float and -_INF < v < _INF else _num(v)
                )
                for k, v in raw.items()
            }
    except (TypeError, ValueError) as e:
        raise ValidationError([FieldError("features", f"not a number: {e}")]) from e
    dt = record.decided_at
    if dt.tzinfo is not UTC:
        dt = dt.astimezone(UTC)
    score, latency, safe_mode = record.score, record.latency_ms, record.safe_mode
    reasons, rule_hits, degraded = record.reasons, record.rule_hits, record.degraded
    d = {
        "decision_id": record.decision_id,
        "transaction_id": record.transaction_id,
        "decided_at": _format_utc(dt),
        "event": record.event,
        "features": features,
        "score": score if type(score) is float and -_INF < score < _INF else _num(score),
        "risk_level": record.risk_level,
        "action": record.action,
        "reasons": reasons if type(reasons) is list else list(reasons),
        "rule_hits": rule_hits if type(rule_hits) is list else list(rule_hits),
        "model_version": record.model_version,
        "policy_version": record.policy_version,
        "safe_mode": safe_mode if type(safe_mode) is bool else bool(safe_mode),
        "degraded": (
            degraded
            if type(degraded) is list and set(map(type, degraded)) <= _STR
            else [str(d) for d in degraded]
        ),
        "challenger": record.challenger,
        "latency_ms": (
            latency if type(latency) is float and -_INF < latency < _INF else _num(latency)
        ),
        "sender_account_id": record.sender_account_id,
    }
    return d, dt, features


def _reference_prepare(record: AuditRecord) -> tuple[AuditRecord, bytes, str]:
    d, dt, features = _reference_canonical(record)
    body = orjson.dumps(d, option=orjson.OPT_SORT_KEYS)
    score, latency = d["score"], d["latency_ms"]
    if (
        dt is record.decided_at
        and features is record.features
        and score is record.score
        and latency is record.latency_ms
        and d["reasons"] is record.reasons
        and d["rule_hits"] is record.rule_hits
        and d["safe_mode"] is record.safe_mode
        and d["degraded"] is record.degraded
    ):
        return record, body, d["decided_at"]
    normal = AuditRecord(
        record.decision_id,
        record.transaction_id,
        dt,
        record.event,
        features,
        _NAN if score is None else score,
        record.risk_level,
        record.action,
        d["reasons"],
        d["rule_hits"],
        record.model_version,
        record.policy_version,
        d["safe_mode"],
        d["degraded"],
        record.challenger,
        _NAN if latency is None else latency,
        record.sender_account_id,
    )
    return normal, body, d["decided_at"]


class _Float(float):
    pass


class _Key(StrEnum):
    A = "sender_count_1h"


def _same(a: Any, b: Any) -> bool:
    """Equal in value AND type, NaN equal to NaN (``==`` would let 1 == 1.0 == True pass)."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return a == b or (math.isnan(a) and math.isnan(b))
    return bool(a == b)


def _assert_same_record(new: AuditRecord, old: AuditRecord) -> None:
    for name in AuditRecord.__slots__:
        a, b = getattr(new, name), getattr(old, name)
        if name == "features":
            assert list(a.items()) == list(b.items())  # same keys, same order
            assert all(_same(x, y) for x, y in zip(a.values(), b.values(), strict=True))
            assert all(type(k) is type(j) for k, j in zip(a, b, strict=True))
        else:
            assert _same(a, b), name


# values as the pipeline and other callers produce them: finite floats, NaN (missing), ±inf,
# None, integers, bools, float subclasses (numpy's float64 is one), huge values whose sum
# overflows
VALUES = (
    st.floats(allow_nan=True, allow_infinity=True)
    | st.just(math.nan)
    | st.none()
    | st.integers(-(10**6), 10**6)
    | st.booleans()
    | st.sampled_from([1e308, -1e308, 0.0, -0.0, 5e-324])
    | st.floats(-1e6, 1e6).map(_Float)
)
KEYS = st.text(min_size=1, max_size=12) | st.integers(0, 99) | st.just(_Key.A)
FEATURES = st.dictionaries(KEYS, VALUES, max_size=90) | st.dictionaries(
    st.text(min_size=1, max_size=12),
    st.floats(allow_nan=True, allow_infinity=True) | st.just(math.nan),
    max_size=90,
)
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _record(features: dict[Any, Any], score: Any, tz_minutes: int, degraded: list[Any]) -> Any:
    return AuditRecord(
        "dec-1",
        "tx-1",
        T0.astimezone(timezone(timedelta(minutes=tz_minutes))),
        {"transaction_id": "tx-1", "amount": 12.5, "nested": {"b": 1, "a": [1, None]}},
        features,
        score,
        "LOW",
        "APPROVE",
        [{"kind": "feature", "code": "x", "value": 0.1}],
        [],
        "m-1",
        "p-1",
        False,
        degraded,
        None,
        score,
        "acct-1",
    )


@settings(max_examples=600, deadline=None)  # no deadline: the CI machine is shared
@given(
    FEATURES,
    st.floats(allow_nan=True, allow_infinity=True) | st.integers(0, 1),
    st.sampled_from([0, 0, 60, -300]),
    st.lists(st.sampled_from(["state_store", "redis"]), max_size=2),
)
def test_prepare_equals_the_reference_for_any_record(
    features: dict[Any, Any], score: Any, tz_minutes: int, degraded: list[Any]
) -> None:
    rec = _record(features, score, tz_minutes, degraded)
    normal, body, at = prepare(rec)
    ref_normal, ref_body, ref_at = _reference_prepare(rec)
    assert body == ref_body
    assert at == ref_at
    if ref_normal is rec:  # never a copy where the reference used the record itself
        assert normal is rec
    _assert_same_record(normal, ref_normal)


@pytest.mark.parametrize(
    "features",
    [
        {"a": math.nan, "b": 1.5, "c": math.inf, "d": -math.inf},  # the common case: NaN = missing
        {"a": 1e308, "b": 1e308},  # finite values whose sum overflows: nothing to replace
        {"a": 1e308, "b": 1e308, "c": math.nan},
        {},
        {"a": math.nan},
    ],
)
def test_non_finite_features_become_none_in_a_copy(features: dict[str, float]) -> None:
    rec = _record(features, 0.5, 0, [])
    normal, body, _ = prepare(rec)
    ref_normal, ref_body, _ = _reference_prepare(rec)
    assert body == ref_body
    _assert_same_record(normal, ref_normal)
    assert rec.features == features  # the caller's dict is never modified
    if any(not math.isfinite(v) for v in features.values()):
        assert normal.features is not rec.features
    else:
        assert normal is rec


def test_a_bad_feature_value_is_still_refused() -> None:
    with pytest.raises(ValidationError):
        prepare(_record({"a": math.nan, "b": "x"}, 0.5, 0, []))
