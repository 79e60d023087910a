"""``records.prepare``'s missing-feature path against the one every stored chain was written with.

``_reference_features`` below is how ``records._canonical`` normalised the features as of commit
0ec4059 (before missing features took the C-level path), kept verbatim as the reference. The rest
of the canonical record did not change (its bytes are pinned in test_audit_records). For any
record the normalised features — in the canonical bytes (what the chain hashes) and in the
record the writer hands back — must be exactly the old ones: same keys in the same order, same
value types, NaN/±inf as ``None``, and the caller's own dict where the old code kept it.
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

from txguard.audit.records import AuditRecord, _canonical, _num, prepare
from txguard.domain.errors import FieldError, ValidationError

_INF = math.inf
_FLOAT = frozenset({float})
_STR = frozenset({str})


def _reference_features(raw: dict[Any, Any]) -> dict[str, float | None]:
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
    return features


def _check_against_the_reference(rec: AuditRecord) -> AuditRecord:
    """prepare(rec) normalises the features exactly as the reference did; returns the
    normalised record."""
    normal, body, _ = prepare(rec)
    d, _, features = _canonical(rec)
    ref = _reference_features(rec.features)
    for got in (features, normal.features):
        _assert_same_features(got, ref)
    assert body == orjson.dumps({**d, "features": ref}, option=orjson.OPT_SORT_KEYS)
    if ref is rec.features:  # never a copy where the reference used the caller's dict
        assert normal.features is rec.features
    return normal


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


def _assert_same_features(a: dict[Any, Any], b: dict[Any, Any]) -> None:
    assert list(a) == list(b)  # same keys, same order
    assert all(type(k) is type(j) for k, j in zip(a, b, strict=True))
    assert all(_same(x, y) for x, y in zip(a.values(), b.values(), strict=True))


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
    _check_against_the_reference(_record(features, score, tz_minutes, degraded))


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
    normal = _check_against_the_reference(rec)
    assert rec.features == features  # the caller's dict is never modified
    if any(not math.isfinite(v) for v in features.values()):
        assert normal.features is not rec.features
    else:
        assert normal is rec


def test_a_bad_feature_value_is_still_refused() -> None:
    with pytest.raises(ValidationError):
        prepare(_record({"a": math.nan, "b": "x"}, 0.5, 0, []))
