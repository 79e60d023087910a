from __future__ import annotations

from datetime import UTC, datetime

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from txguard.domain.errors import ValidationError
from txguard.domain.events import (
    TransactionEvent,
    parse_label,
    parse_transaction,
    transaction_to_dict,
)
from txguard.domain.schema import label_schema, transaction_schema

GOOD = {
    "transaction_id": "tx-1",
    "occurred_at": "2026-03-01T12:00:00+01:00",
    "amount": 120.5,
    "currency": "EUR",
    "amount_usd": 130.1,
    "type": "card",
    "channel": "ecommerce",
    "sender": {
        "account_id": "acc-1",
        "created_at": "2025-01-01T00:00:00Z",
        "country": "FR",
        "kyc_level": 2,
    },
    "recipient": {"account_id": "acc-2", "country": "DE", "bank": "DEUTDEFF"},
    "merchant_id": "m-1",
    "terminal_id": "t-1",
    "device_id": "d-1",
    "ip": "192.0.2.10",
    "jurisdiction": "EU",
    "metadata": {"mcc": "5411", "3ds": True},
}


def errors_of(d: dict) -> dict[str, str]:
    with pytest.raises(ValidationError) as ei:
        parse_transaction(d)
    return {e.loc: e.message for e in ei.value.errors}


def test_good_event_round_trips_and_normalises_to_utc() -> None:
    e = parse_transaction(GOOD)
    assert e.occurred_at == datetime(2026, 3, 1, 11, 0, tzinfo=UTC)
    assert e.sender.kyc_level == 2
    again = parse_transaction(transaction_to_dict(e))
    assert again == e


def test_minimal_event_needs_only_five_fields() -> None:
    e = parse_transaction(
        {
            "transaction_id": "t",
            "occurred_at": "2026-01-01T00:00:00Z",
            "amount": 0,
            "currency": "BTC",
            "sender": {"account_id": "a"},
        }
    )
    assert isinstance(e, TransactionEvent)
    assert e.recipient is None and e.metadata == {}


@pytest.mark.parametrize(
    ("patch", "loc", "fragment"),
    [
        ({"amount": "12"}, "amount", "expected a number"),
        ({"amount": -1}, "amount", "negative"),
        ({"amount": 5e13}, "amount", "absurd"),
        ({"currency": "XYZ"}, "currency", "unknown currency"),
        ({"occurred_at": "2026-03-01T12:00:00"}, "occurred_at", "no time zone"),
        ({"occurred_at": "yesterday"}, "occurred_at", "RFC 3339"),
        ({"transaction_id": "x" * 129}, "transaction_id", "too long"),
        ({"transaction_id": ""}, "transaction_id", "empty"),
        ({"type": "teleport"}, "type", "unknown value"),
        ({"ip": "300.1.1.1"}, "ip", "IPv4 or IPv6"),
        ({"sender": {"account_id": "a", "country": "France"}}, "sender.country", "ISO 3166"),
        ({"sender": {"account_id": "a", "kyc_level": 7}}, "sender.kyc_level", "0..3"),
        ({"sender": {"country": "FR"}}, "sender.account_id", "required"),
        ({"metadata": {"x": {"nested": 1}}}, "metadata.x", "scalars"),
        ({"surprise": 1}, "surprise", "unknown field"),
    ],
)
def test_each_bad_field_gets_a_precise_message(patch: dict, loc: str, fragment: str) -> None:
    errs = errors_of({**GOOD, **patch})
    assert loc in errs, errs
    assert fragment in errs[loc]


def test_all_bad_fields_are_reported_at_once() -> None:
    errs = errors_of({"transaction_id": 5, "amount": None, "currency": "usd"})
    assert {"transaction_id", "occurred_at", "amount", "currency", "sender"} <= set(errs)


def test_label_parsing() -> None:
    lab = parse_label(
        {
            "transaction_id": "t",
            "is_fraud": True,
            "known_at": "2026-01-08T00:00:00Z",
            "source": "chargeback",
        }
    )
    assert lab.is_fraud and lab.source.value == "chargeback"
    with pytest.raises(ValidationError, match="is_fraud"):
        parse_label({"transaction_id": "t", "is_fraud": "yes", "known_at": "2026-01-08T00:00:00Z"})


def test_json_schema_accepts_good_and_rejects_bad() -> None:
    jsonschema.validate(GOOD, transaction_schema())
    for bad in (
        {**GOOD, "currency": "XYZ"},
        {**GOOD, "occurred_at": "2026-03-01T12:00:00"},
        {**GOOD, "amount": -1},
        {**GOOD, "surprise": 1},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, transaction_schema())
    jsonschema.validate(
        {"transaction_id": "t", "is_fraud": False, "known_at": "2026-01-01T00:00:00Z"},
        label_schema(),
    )


amounts = st.one_of(st.floats(min_value=-10, max_value=2e12), st.integers(-5, 10))


@settings(max_examples=200, deadline=None)
@given(
    amount=amounts,
    currency=st.sampled_from(["USD", "EUR", "XYZ", "usd", "BTC", ""]),
    ts=st.sampled_from(
        ["2026-01-01T00:00:00Z", "2026-01-01T00:00:00", "2026-01-01T03:00:00+03:00"]
    ),
)
def test_parser_and_json_schema_agree(amount: float, currency: str, ts: str) -> None:
    d = {**GOOD, "amount": amount, "currency": currency, "occurred_at": ts}
    try:
        parse_transaction(d)
        parsed = True
    except ValidationError:
        parsed = False
    try:
        jsonschema.validate(
            d, transaction_schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
        )
        valid = True
    except jsonschema.ValidationError:
        valid = False
    assert parsed == valid
