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


# The ip field: a regex fast path and a cache sit in front of ``ipaddress``; the verdicts and
# the normal form must be exactly those of ``str(ipaddress.ip_address(x))`` (recorded here).
@pytest.mark.parametrize(
    ("ip", "normal"),
    [
        ("192.0.2.10", "192.0.2.10"),
        ("0.0.0.0", "0.0.0.0"),
        ("255.255.255.255", "255.255.255.255"),
        ("256.1.1.1", None),
        ("1.2.3", None),
        ("1.2.3.4.5", None),
        ("01.2.3.4", None),  # leading zeros are refused (octal ambiguity), not normalised
        ("1.2.3.04", None),
        ("0x1.2.3.4", None),
        ("+1.2.3.4", None),
        ("1_0.2.3.4", None),
        ("1.2.3.4/32", None),
        ("1.2.3.4 ", None),
        ("\u0661.2.3.4", None),  # ARABIC-INDIC DIGIT ONE: a Unicode digit, not ASCII
        ("::1", "::1"),
        ("::", "::"),
        ("2001:db8::1", "2001:db8::1"),
        ("2001:DB8::1", "2001:db8::1"),
        ("2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
        ("::ffff:1.2.3.4", "::ffff:102:304"),
        ("fe80::1%eth0", "fe80::1%eth0"),
        ("fe80::1%", None),
        ("1::2::3", None),
        ("[::1]", None),
    ],
)
def test_tricky_ips_are_accepted_and_normalised_or_refused_as_before(
    ip: str, normal: str | None
) -> None:
    for _ in range(2):  # the second time through the cache
        if normal is None:
            assert errors_of({**GOOD, "ip": ip}) == {"ip": f"not an IPv4 or IPv6 address: {ip!r}"}
        else:
            assert parse_transaction({**GOOD, "ip": ip}).ip == normal


def _ipaddress_verdict(text: str) -> str | None:
    import ipaddress

    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


octet_text = st.one_of(
    st.integers(0, 999).map(str),
    st.integers(0, 255).map(lambda n: f"{n:03d}"),  # leading zeros
    st.text(alphabet="0123456789", min_size=0, max_size=4),
)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.lists(octet_text, min_size=3, max_size=5).map(".".join),
        st.ip_addresses(v=4).map(str),
        st.ip_addresses(v=6).map(lambda a: a.exploded),
        st.ip_addresses(v=6).map(lambda a: str(a).upper()),
    )
)
def test_ip_verdict_is_ipaddress_verdict(text: str) -> None:
    expected = _ipaddress_verdict(text)
    if not text or len(text) > 45:
        return  # refused earlier by the text checks, with their own messages
    if expected is None:
        assert errors_of({**GOOD, "ip": text}) == {"ip": f"not an IPv4 or IPv6 address: {text!r}"}
    else:
        assert parse_transaction({**GOOD, "ip": text}).ip == expected


@pytest.mark.parametrize(
    ("patch", "loc", "message"),
    [
        ({"type": 1}, "type", "unknown value 1; one of: card, transfer"),
        ({"channel": ["web"]}, "channel", "unknown value ['web']; one of: pos, ecommerce"),
        ({"type": "CARD"}, "type", "unknown value 'CARD'; one of: card"),
    ],
)
def test_enum_fields_refuse_non_values(patch: dict, loc: str, message: str) -> None:
    assert errors_of({**GOOD, **patch})[loc].startswith(message)


def test_any_mapping_is_accepted_not_only_dict() -> None:
    from types import MappingProxyType

    e = parse_transaction(
        MappingProxyType(
            {
                **GOOD,
                "sender": MappingProxyType(GOOD["sender"]),
                "metadata": MappingProxyType(GOOD["metadata"]),
            }
        )
    )
    assert e == parse_transaction(GOOD)
    assert e.type is not None and e.type.value == "card"
    errs = errors_of({**GOOD, "sender": MappingProxyType({"account_id": "a", "zzz": 1})})
    assert errs == {"sender.zzz": "unknown field"}
