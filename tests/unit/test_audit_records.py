"""Canonical bytes, the chain arithmetic and verify_rows, without any database."""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from txguard.audit.chain import GENESIS_HASH, StoredRow, chain_hash, verify_rows
from txguard.audit.log import decode_cursor, encode_cursor
from txguard.audit.records import (
    AuditRecord,
    canonical_bytes,
    format_timestamp,
    prepare,
    record_from_canonical,
)
from txguard.audit.stores.base import Pending, plan_batch
from txguard.domain.errors import ConflictError, IntegrityError, ValidationError

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def make_record(i: int, **over: object) -> AuditRecord:
    base: dict[str, object] = {
        "decision_id": f"dec-{i}",
        "transaction_id": f"tx-{i}",
        "decided_at": T0 + timedelta(seconds=i),
        "event": {"transaction_id": f"tx-{i}", "amount": 10.5 + i, "currency": "EUR"},
        "features": {"sender_count_24h": float(i), "amount_usd": None},
        "score": 0.125,
        "risk_level": "LOW",
        "action": "APPROVE",
        "reasons": [{"kind": "feature", "code": "x", "text": "because", "value": 0.1}],
        "rule_hits": [],
        "model_version": "m-1",
        "policy_version": "p-1",
        "safe_mode": False,
        "degraded": [],
        "challenger": None,
        "latency_ms": 1.5,
        "sender_account_id": f"acct-{i % 3}",
    }
    base.update(over)
    return AuditRecord(**base)  # type: ignore[arg-type]


def link(records: list[AuditRecord]) -> list[StoredRow]:
    results, rows, _ = plan_batch(
        [Pending(r, canonical_bytes(r)) for r in records], head=(0, GENESIS_HASH), existing=[]
    )
    assert all(isinstance(r, AuditRecord) for r in results)
    return rows


def head_of(rows: list[StoredRow]) -> tuple[int, str]:
    return (rows[-1].seq, rows[-1].hash) if rows else (0, GENESIS_HASH)


# ------------------------------------------------------------------ canonical bytes


def test_canonical_bytes_sorted_compact_and_nan_as_null() -> None:
    rec = make_record(1, features={"b": float("nan"), "a": float("inf"), "c": 2})
    body = canonical_bytes(rec)
    assert body.startswith(b'{"action":"APPROVE","challenger":null,"decided_at":')
    assert b'"features":{"a":null,"b":null,"c":2.0}' in body
    assert b" " not in body.replace(b'"currency"', b"")  # no separators padding
    keys = list(orjson.loads(body))
    assert keys == sorted(keys)


def test_canonical_timestamp_is_utc_with_microseconds() -> None:
    plus2 = timezone(timedelta(hours=2))
    rec = make_record(1, decided_at=datetime(2026, 3, 1, 14, 0, 0, 5, tzinfo=plus2))
    assert orjson.loads(canonical_bytes(rec))["decided_at"] == "2026-03-01T12:00:00.000005Z"


def test_canonical_independent_of_dict_order() -> None:
    a = make_record(1, features={"x": 1.0, "y": 2.0}, event={"b": 1, "a": {"d": 1, "c": 2}})
    b = make_record(1, features={"y": 2.0, "x": 1.0}, event={"a": {"c": 2, "d": 1}, "b": 1})
    assert canonical_bytes(a) == canonical_bytes(b)


def test_naive_timestamp_and_bad_values_are_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError, match="decided_at"):
        canonical_bytes(make_record(1, decided_at=datetime(2026, 1, 1)))
    with pytest.raises(ValidationError, match="transaction_id"):
        canonical_bytes(make_record(1, transaction_id=""))
    with pytest.raises(ValidationError, match="features"):
        canonical_bytes(make_record(1, features={"x": "high"}))
    with pytest.raises(ValidationError, match="JSON"):
        canonical_bytes(make_record(1, event={"x": {1, 2}}))


def test_roundtrip_through_canonical_bytes_is_a_fixed_point() -> None:
    rec = make_record(7, features={"x": float("nan"), "y": 3}, degraded=("state_store",))
    body = canonical_bytes(rec)
    back = record_from_canonical(body, seq=3, prev_hash="p", hash="h")
    assert canonical_bytes(back) == body
    assert back.features == {"x": None, "y": 3.0}
    assert back.degraded == ["state_store"]
    assert (back.seq, back.prev_hash, back.hash) == (3, "p", "h")
    assert back.decided_at == rec.decided_at


# feature maps as records carry them: missing (None), any float incl. NaN/inf, integers
FEATURES = st.dictionaries(
    st.text(min_size=1, max_size=8),
    st.none() | st.floats(allow_nan=True, allow_infinity=True) | st.integers(-1000, 1000),
    max_size=6,
)


@settings(deadline=None, max_examples=100)  # no deadline: the CI machine is shared
@given(
    FEATURES,
    st.floats(0, 1),
)
def test_roundtrip_property(features: dict[str, float | None], score: float) -> None:
    body = canonical_bytes(make_record(1, features=features, score=score))
    assert canonical_bytes(record_from_canonical(body)) == body


@settings(deadline=None, max_examples=100)
@given(
    FEATURES,
    st.floats(0, 1),
    st.integers(-14 * 60, 14 * 60),
    st.datetimes(datetime(1000, 1, 2), datetime(9999, 12, 30)),
)
def test_prepared_record_is_what_reads_back_from_its_body(
    features: dict[str, float | None], score: float, offset_min: int, at: datetime
) -> None:
    """The writer returns ``prepare``'s record instead of parsing the body it just stored: the
    two must be equal, for any features (NaN, inf, int), time zone and year."""
    tz = timezone(timedelta(minutes=offset_min))
    rec = make_record(1, features=features, score=score, decided_at=at.replace(tzinfo=tz))
    normal, body, ts = prepare(rec)
    assert body == canonical_bytes(rec)
    assert normal == record_from_canonical(body)
    assert ts == format_timestamp(rec.decided_at) == orjson.loads(body)["decided_at"]


class _Degraded(StrEnum):
    STATE = "state_store"


class _Float(float):
    pass


def _reference_body(rec: AuditRecord) -> bytes:
    """The canonical bytes built field by field, every value converted (the form the chain has
    always hashed; ``_canonical``'s fast paths must produce exactly these bytes)."""

    def num(v: Any) -> float | None:
        return None if v is None or not math.isfinite(float(v)) else float(v)

    at = rec.decided_at.astimezone(UTC)
    d = {
        "decision_id": rec.decision_id,
        "transaction_id": rec.transaction_id,
        "decided_at": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "event": rec.event,
        "features": {str(k): num(v) for k, v in rec.features.items()},
        "score": num(rec.score),
        "risk_level": rec.risk_level,
        "action": rec.action,
        "reasons": list(rec.reasons),
        "rule_hits": list(rec.rule_hits),
        "model_version": rec.model_version,
        "policy_version": rec.policy_version,
        "safe_mode": bool(rec.safe_mode),
        "degraded": [str(x) for x in rec.degraded],
        "challenger": rec.challenger,
        "latency_ms": num(rec.latency_ms),
        "sender_account_id": rec.sender_account_id,
    }
    return orjson.dumps(d, option=orjson.OPT_SORT_KEYS)


@settings(max_examples=300)
@given(
    st.dictionaries(
        st.text(min_size=1, max_size=4) | st.integers(0, 9),
        st.none()
        | st.floats(allow_nan=True, allow_infinity=True)
        | st.sampled_from([1e308, -1e308, 0.0, -0.0])
        | st.integers(-1000, 1000)
        | st.floats(-1e6, 1e6).map(_Float),
        max_size=6,
    ),
    st.floats(allow_nan=True, allow_infinity=True) | st.integers(0, 1),
    st.lists(st.sampled_from(["redis", _Degraded.STATE]), max_size=2),
    st.booleans(),
)
def test_fast_paths_give_the_reference_bytes(
    features: dict[Any, Any], score: float, degraded: list[str], as_tuples: bool
) -> None:
    reasons: Any = ({"k": 1},) if as_tuples else [{"k": 1}]
    rec = make_record(
        1,
        features=features,
        score=score,
        latency_ms=score,
        degraded=degraded,
        reasons=reasons,
        safe_mode=int(as_tuples),
    )
    normal, body, _ = prepare(rec)
    assert body == _reference_body(rec) == canonical_bytes(rec)
    assert normal == record_from_canonical(body) or math.isnan(normal.score)


def test_an_already_normal_record_is_used_as_is() -> None:
    rec = make_record(1, features={"a": 1.0, "b": 2.5})
    assert prepare(rec)[0] is rec
    for over in (
        {"features": {"a": 1}},  # int -> float
        {"features": {"a": math.nan}},  # NaN -> None
        {"decided_at": datetime(2026, 3, 1, 7, tzinfo=timezone(timedelta(hours=-5)))},
        {"reasons": ({"k": 1},)},
        {"degraded": [_Degraded.STATE]},
    ):
        other = make_record(1, **over)
        normal, body, _ = prepare(other)
        assert normal is not other
        assert body == _reference_body(other)


def test_canonical_bytes_are_pinned() -> None:
    """sha256 prefixes of the canonical bytes of awkward records, as computed by the code that
    wrote every existing chain (before the CPU work): a change here breaks stored chains."""
    recs = [
        AuditRecord(
            "d1",
            "t1",
            datetime(2026, 3, 1, 12, 0, 0, 5, tzinfo=UTC),
            {"a": [1, 2.5, None], "b": "é"},
            {"x": 1.5, "y": 0.1, "z": -0.0},
            0.125,
            "LOW",
            "APPROVE",
            [{"k": 1}],
            [],
            "m",
            "p",
            False,
            [],
            None,
            1.25,
            "acct",
        ),
        AuditRecord(
            *(  # type: ignore[arg-type]  # wrong types on purpose: all normalised
                "d2",
                "t2",
                datetime(2026, 3, 1, 7, 0, tzinfo=timezone(timedelta(hours=-5))),
                {},
                {"x": math.nan, "y": math.inf, "z": 3, 5: 1e308, "w": _Float(2.5), "v": None},
                1,
                "HIGH",
                "REJECT",
                ({"k": 2},),
                (),
                None,
                None,
                1,
                [_Degraded.STATE, "x"],
                {"score": 0.5},
                math.nan,
                "acct2",
            )
        ),
        AuditRecord(
            "d3",
            "t3",
            datetime(999, 1, 1, tzinfo=UTC),
            {},
            {"a": 1e308, "b": 1e308},
            0.5,
            "LOW",
            "APPROVE",
            [],
            [],
            "m",
            "p",
            True,
            ["a"],
            None,
            2.0,
            "a",
        ),
    ]
    got = [hashlib.sha256(prepare(r)[1]).hexdigest()[:16] for r in recs]
    assert got == ["01f2e51782b9a4fe", "522889659032470c", "e2cff505407341b9"]


def test_timestamp_text_is_the_historical_strftime_form() -> None:
    for dt in (
        datetime(2026, 3, 1, 9, 0, tzinfo=UTC),
        datetime(999, 1, 1, 0, 0, 0, 5, tzinfo=UTC),
        datetime(2026, 3, 1, 23, 30, 0, 123456, tzinfo=timezone(timedelta(hours=-5))),
    ):
        assert format_timestamp(dt) == dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_corrupt_body_is_an_integrity_error() -> None:
    with pytest.raises(IntegrityError, match="seq 9"):
        record_from_canonical(b'{"decision_id": "x"}', seq=9)


# ------------------------------------------------------------------ chain


def test_chain_hash_binds_seq_prev_and_body() -> None:
    h = chain_hash(1, GENESIS_HASH, b"{}")
    assert len(h) == 64
    assert chain_hash(2, GENESIS_HASH, b"{}") != h
    assert chain_hash(1, "f" * 64, b"{}") != h
    assert chain_hash(1, GENESIS_HASH, b"{ }") != h


@pytest.mark.parametrize("size", [0, 1, 2046, 2047, 2048, 3300, 4094, 4095, 10_000])
def test_chain_hash_is_sha256_of_the_whole_input_whatever_the_body_size(size: int) -> None:
    """Bodies are hashed in pieces (to keep the GIL): the digest is still the one-shot one,
    documented in the module: sha256(domain, seq, prev_hash, body)."""
    import hashlib
    import random

    body = random.Random(size).randbytes(size)
    prev = "ab" * 32
    expected = hashlib.sha256(b"txguard-audit-v1\n7\n" + prev.encode() + b"\n" + body)
    assert chain_hash(7, prev, body) == expected.hexdigest()


def test_intact_chain_verifies() -> None:
    rows = link([make_record(i) for i in range(1, 6)])
    report = verify_rows(rows, head=head_of(rows))
    assert report.ok
    assert report.checked == 5
    assert report.head_hash == rows[-1].hash


def test_empty_chain_verifies() -> None:
    assert verify_rows([], head=(0, GENESIS_HASH)).ok


def test_edited_body_is_named() -> None:
    rows = link([make_record(i) for i in range(1, 6)])
    body = rows[2].body.replace(b'"APPROVE"', b'"REJECT"')
    rows[2] = rows[2]._replace(body=body)
    report = verify_rows(rows, head=head_of(rows))
    assert not report.ok
    assert report.first_bad_seq == 3
    assert report.first_bad_decision_id == "dec-3"
    assert "edited" in report.problem


def test_edited_and_rehashed_record_is_caught_at_the_next_link() -> None:
    rows = link([make_record(i) for i in range(1, 6)])
    body = rows[1].body.replace(b'"score":0.125', b'"score":0.015')
    assert body != rows[1].body
    rows[1] = rows[1]._replace(body=body, hash=chain_hash(2, rows[1].prev_hash, body))
    report = verify_rows(rows, head=head_of(rows))
    assert report.first_bad_seq == 3
    assert "prev_hash" in report.problem


def test_edited_index_column_is_caught() -> None:
    rows = link([make_record(i) for i in range(1, 4)])
    rows[1] = rows[1]._replace(action="REJECT")
    report = verify_rows(rows, head=head_of(rows))
    assert (report.ok, report.first_bad_seq) == (False, 2)
    assert "column action" in report.problem


def test_deleted_middle_record_is_named() -> None:
    rows = link([make_record(i) for i in range(1, 6)])
    del rows[1]
    report = verify_rows(rows, head=head_of(rows))
    assert report.first_bad_seq == 2
    assert "missing" in report.problem


def test_deleted_newest_record_is_caught_by_the_head() -> None:
    rows = link([make_record(i) for i in range(1, 6)])
    head = head_of(rows)
    report = verify_rows(rows[:-1], head=head)
    assert report.first_bad_seq == 5
    assert "head" in report.problem


def test_reordered_records_are_caught() -> None:
    rows = link([make_record(i) for i in range(1, 6)])
    a, b = rows[1], rows[2]
    # swap contents but keep the seq numbers in place
    rows[1] = b._replace(seq=2)
    rows[2] = a._replace(seq=3)
    report = verify_rows(rows, head=head_of(rows))
    assert report.first_bad_seq == 2


def test_inserted_record_is_caught() -> None:
    rows = link([make_record(i) for i in range(1, 5)])
    forged = link([make_record(99)])[0]
    forged = forged._replace(
        seq=3, prev_hash=rows[1].hash, hash=chain_hash(3, rows[1].hash, forged.body)
    )
    shifted = [r._replace(seq=r.seq + 1) for r in rows[2:]]
    tampered = [*rows[:2], forged, *shifted]
    report = verify_rows(tampered, head=head_of(rows))
    assert report.first_bad_seq == 4


# ------------------------------------------------------------------ batch planning


def test_duplicate_transaction_resolves_to_first_in_batch_and_in_store() -> None:
    first = make_record(1)
    dup_same_batch = make_record(1, decision_id="dec-other")
    items = [Pending(r, canonical_bytes(r)) for r in (first, dup_same_batch, make_record(2))]
    results, rows, head = plan_batch(items, head=(0, GENESIS_HASH), existing=[])
    assert [r.seq for r in rows] == [1, 2]
    assert results[1] == results[0]
    assert head == (2, rows[-1].hash)
    stored_first = results[0]
    assert isinstance(stored_first, AuditRecord)
    again = make_record(1, decision_id="dec-third")
    results2, rows2, head2 = plan_batch(
        [Pending(again, canonical_bytes(again))], head=head, existing=[stored_first]
    )
    assert rows2 == []
    assert results2 == [stored_first]
    assert head2 == head


def test_reused_decision_id_fails_only_that_record() -> None:
    stored = link([make_record(1)])
    first = record_from_canonical(
        stored[0].body, seq=1, prev_hash=GENESIS_HASH, hash=stored[0].hash
    )
    clash = make_record(2, decision_id="dec-1")
    ok = make_record(3)
    results, rows, _ = plan_batch(
        [Pending(clash, canonical_bytes(clash)), Pending(ok, canonical_bytes(ok))],
        head=(1, stored[0].hash),
        existing=[first],
    )
    assert isinstance(results[0], ConflictError)
    assert isinstance(results[1], AuditRecord)
    assert [r.seq for r in rows] == [2]


def test_cursor_roundtrip_and_garbage_refused() -> None:
    assert decode_cursor(encode_cursor(1234)) == 1234
    for bad in ("nope", encode_cursor(1)[:-1] + "!", "c2VxOi0x"):
        with pytest.raises(ValidationError, match="cursor"):
            decode_cursor(bad)
