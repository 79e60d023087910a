"""Canonical events: the public contract of txguard.

Two kinds of event enter the system: a :class:`TransactionEvent` (score it) and a
:class:`LabelEvent` (a verdict about an earlier transaction, known from ``known_at``).
Their JSON shape is versioned by :data:`SCHEMA_VERSION`; the JSON Schema is in
``txguard.domain.schema``. Parsing collects *every* bad field, each with its dotted path:

>>> parse_transaction({"transaction_id": "t1", "occurred_at": "2026-01-01T10:00:00",  # doctest: +ELLIPSIS
...                    "amount": -3, "currency": "XYZ", "sender": {"account_id": "a"}})
Traceback (most recent call last):
...
txguard.domain.errors.ValidationError: occurred_at: timestamp has no time zone ...

The parser runs once per scored request on the event loop, so its constant cost matters (it was
~4 % of the scoring service's GIL time under load, most of it ``ipaddress`` parsing the ``ip``
field). The fast paths below decide exactly as the slow ones (same accepted and refused inputs,
same messages): a canonical dotted quad is recognised by a regex, anything else goes through
``ipaddress`` behind a bounded cache; enums are looked up in their value map; plain dicts skip
the ``Mapping`` ABC check; known keys are checked with one set operation before the per-key loop.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeGuard

from txguard.domain.errors import FieldError, ValidationError
from txguard.domain.money import KNOWN_CURRENCIES, to_usd

SCHEMA_VERSION = "1.0"

MAX_ID_LENGTH = 128
MAX_TEXT_LENGTH = 256
MAX_AMOUNT = 1e12  # larger than any real single payment: a unit or parsing error upstream
MAX_METADATA_KEYS = 32
MIN_YEAR, MAX_YEAR = 1970, 2200

Scalar = str | int | float | bool | None


class TransactionType(StrEnum):
    CARD = "card"
    TRANSFER = "transfer"
    PAYMENT = "payment"
    CASH_IN = "cash_in"
    CASH_OUT = "cash_out"
    DEBIT = "debit"
    SALARY = "salary"
    CRYPTO_TO_FIAT = "crypto_to_fiat"
    FIAT_TO_CRYPTO = "fiat_to_crypto"
    CRYPTO_TRANSFER = "crypto_transfer"


class Channel(StrEnum):
    POS = "pos"
    ECOMMERCE = "ecommerce"
    MOBILE = "mobile"
    WEB = "web"
    ATM = "atm"
    BRANCH = "branch"
    API = "api"


class LabelSource(StrEnum):
    CHARGEBACK = "chargeback"
    ANALYST = "analyst"
    CUSTOMER_REPORT = "customer_report"
    CONFIRMED = "confirmed"
    IMPORT = "import"


@dataclass(frozen=True, slots=True)
class Sender:
    account_id: str
    created_at: datetime | None = None
    country: str | None = None
    kyc_level: int | None = None  # 0 none, 1 basic, 2 standard, 3 enhanced


@dataclass(frozen=True, slots=True)
class Recipient:
    account_id: str | None = None
    country: str | None = None
    bank: str | None = None
    wallet_address: str | None = None


@dataclass(frozen=True, slots=True)
class TransactionEvent:
    transaction_id: str
    occurred_at: datetime  # timezone-aware, normalised to UTC
    amount: float
    currency: str
    sender: Sender
    amount_usd: float | None = None
    type: TransactionType | None = None
    channel: Channel | None = None
    recipient: Recipient | None = None
    merchant_id: str | None = None
    terminal_id: str | None = None
    device_id: str | None = None
    ip: str | None = None
    jurisdiction: str | None = None
    metadata: Mapping[str, Scalar] = field(default_factory=dict)

    @property
    def reference_amount(self) -> float | None:
        """Amount in USD: ``amount_usd`` when sent, else converted at a static reference rate."""
        return to_usd(self.amount, self.currency, self.amount_usd)


@dataclass(frozen=True, slots=True)
class LabelEvent:
    transaction_id: str
    is_fraud: bool
    known_at: datetime  # when the verdict became known; features may use it only from then on
    source: LabelSource = LabelSource.IMPORT
    metadata: Mapping[str, Scalar] = field(default_factory=dict)


# --------------------------------------------------------------------------- parsing

_COUNTRY = re.compile(r"^[A-Z]{2}$")
_CURRENCY = re.compile(r"^[A-Z0-9]{2,10}$")

# A canonical dotted quad: ASCII digits, no leading zero, every octet 0..255. Exactly the IPv4
# texts ``ipaddress`` accepts *and* gives back unchanged from ``str()``, so a match needs no
# further work; anything else (IPv6, leading zeros, junk) falls through to ``ipaddress``.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4_CANONICAL = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


@functools.lru_cache(maxsize=4096)
def _ip_slow(text: str) -> str | None:
    """``ipaddress``'s normal form of ``text``, None if it is no address. Cached (IPv6 parsing
    costs ~8 µs; a client's address repeats), bounded so junk from callers cannot grow it."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def normalise_ip(text: str) -> str | None:
    """The normal form of an IPv4/IPv6 address (as ``str(ipaddress.ip_address(text))``), or None.

    >>> normalise_ip("192.0.2.10"), normalise_ip("2001:DB8::1"), normalise_ip("01.2.3.4")
    ('192.0.2.10', '2001:db8::1', None)
    """
    if _IPV4_CANONICAL.fullmatch(text):
        return text
    return _ip_slow(text)


def _is_mapping(v: object) -> TypeGuard[Mapping[str, Any]]:
    return type(v) is dict or isinstance(v, Mapping)


class _Collector:
    __slots__ = ("errors", "prefix")

    def __init__(self, prefix: str = "") -> None:
        self.errors: list[FieldError] = []
        self.prefix = prefix

    def add(self, loc: str, message: str) -> None:
        self.errors.append(FieldError(self.prefix + loc, message))


def _text(
    c: _Collector,
    d: Mapping[str, Any],
    key: str,
    *,
    required: bool = False,
    max_length: int = MAX_ID_LENGTH,
) -> str | None:
    v = d.get(key)
    if v is None:
        if required:
            c.add(key, "field required")
        return None
    if not isinstance(v, str):
        c.add(key, f"expected a string, got {type(v).__name__}")
        return None
    if not v:
        c.add(key, "must not be empty")
        return None
    if len(v) > max_length:
        c.add(key, f"too long: {len(v)} characters, at most {max_length}")
        return None
    if not v.isprintable():
        c.add(key, "contains control characters")
        return None
    return v


def parse_timestamp(value: Any) -> datetime:
    """RFC 3339 text (or an aware datetime) to an aware UTC datetime; ValueError says why not.

    >>> parse_timestamp("2026-03-01T12:00:00+01:00").isoformat()
    '2026-03-01T11:00:00+00:00'
    """
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        if len(value) > 40:
            raise ValueError("timestamp too long")
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"not an RFC 3339 timestamp: {value!r}") from None
    else:
        raise ValueError(f"expected an RFC 3339 string, got {type(value).__name__}")
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError("timestamp has no time zone (add Z or an offset such as +00:00)")
    if not MIN_YEAR <= dt.year <= MAX_YEAR:
        raise ValueError(f"year {dt.year} outside {MIN_YEAR}..{MAX_YEAR}")
    return dt.astimezone(UTC)


def _timestamp(
    c: _Collector, d: Mapping[str, Any], key: str, *, required: bool = False
) -> datetime | None:
    v = d.get(key)
    if v is None:
        if required:
            c.add(key, "field required")
        return None
    try:
        return parse_timestamp(v)
    except ValueError as e:
        c.add(key, str(e))
        return None


def _number(
    c: _Collector, d: Mapping[str, Any], key: str, *, required: bool = False
) -> float | None:
    v = d.get(key)
    if v is None:
        if required:
            c.add(key, "field required")
        return None
    if isinstance(v, bool) or not isinstance(v, int | float):
        c.add(key, f"expected a number, got {type(v).__name__}")
        return None
    x = float(v)
    if not math.isfinite(x):
        c.add(key, "must be a finite number")
    elif x < 0:
        c.add(key, f"must not be negative, got {v}")
    elif x > MAX_AMOUNT:
        c.add(key, f"absurd amount {v}: over {MAX_AMOUNT:.0e}")
    else:
        return x
    return None


def _country(c: _Collector, d: Mapping[str, Any], key: str) -> str | None:
    v = _text(c, d, key, max_length=8)
    if v is not None and not _COUNTRY.match(v):
        c.add(key, f"not an ISO 3166-1 alpha-2 country code: {v!r}")
        return None
    return v


def _enum(c: _Collector, d: Mapping[str, Any], key: str, enum: type[StrEnum]) -> Any:
    v = d.get(key)
    if v is None:
        return None
    # same verdict as enum(v) for a StrEnum without _missing_: exactly its values are accepted
    member = enum._value2member_map_.get(v) if isinstance(v, str) else None
    if member is None:
        allowed = ", ".join(m.value for m in enum)
        c.add(key, f"unknown value {v!r}; one of: {allowed}")
    return member


def _metadata(c: _Collector, d: Mapping[str, Any], key: str = "metadata") -> dict[str, Scalar]:
    v = d.get(key)
    if v is None:
        return {}
    if not _is_mapping(v):
        c.add(key, f"expected an object, got {type(v).__name__}")
        return {}
    if len(v) > MAX_METADATA_KEYS:
        c.add(key, f"too many keys: {len(v)}, at most {MAX_METADATA_KEYS}")
        return {}
    out: dict[str, Scalar] = {}
    for k, x in v.items():
        if not isinstance(k, str) or not k or len(k) > 64:
            c.add(key, f"keys must be strings of 1..64 characters, got {k!r}")
            continue
        if isinstance(x, str) and len(x) > MAX_TEXT_LENGTH:
            c.add(f"{key}.{k}", f"too long: at most {MAX_TEXT_LENGTH} characters")
        elif isinstance(x, float) and not math.isfinite(x):
            c.add(f"{key}.{k}", "must be a finite number")
        elif x is None or isinstance(x, str | int | float | bool):
            out[k] = x
        else:
            c.add(f"{key}.{k}", f"values must be scalars, got {type(x).__name__}")
    return out


def _object(c: _Collector, d: Mapping[str, Any], key: str, *, required: bool) -> Mapping[str, Any]:
    v = d.get(key)
    if v is None:
        if required:
            c.add(key, "field required")
        return {}
    if not _is_mapping(v):
        c.add(key, f"expected an object, got {type(v).__name__}")
        return {}
    return v


_TX_FIELDS = frozenset(
    [
        "transaction_id",
        "occurred_at",
        "amount",
        "currency",
        "amount_usd",
        "type",
        "channel",
        "sender",
        "recipient",
        "merchant_id",
        "terminal_id",
        "device_id",
        "ip",
        "jurisdiction",
        "metadata",
        "schema_version",
    ]
)
_SENDER_FIELDS = frozenset(["account_id", "created_at", "country", "kyc_level"])
_RECIPIENT_FIELDS = frozenset(["account_id", "country", "bank", "wallet_address"])
_LABEL_FIELDS = frozenset(["transaction_id", "is_fraud", "known_at", "source", "metadata"])


def _unknown(c: _Collector, d: Mapping[str, Any], allowed: frozenset[str], prefix: str) -> None:
    if allowed.issuperset(d):
        return
    for k in d:
        if k not in allowed:
            c.add(f"{prefix}{k}", "unknown field")


def parse_transaction(d: Mapping[str, Any]) -> TransactionEvent:
    """Validate a JSON-shaped mapping into a TransactionEvent, or raise ValidationError listing
    every bad field."""
    if not _is_mapping(d):
        raise ValidationError([FieldError("$", f"expected an object, got {type(d).__name__}")])
    c = _Collector()
    _unknown(c, d, _TX_FIELDS, "")
    tid = _text(c, d, "transaction_id", required=True)
    at = _timestamp(c, d, "occurred_at", required=True)
    amount = _number(c, d, "amount", required=True)
    currency = _text(c, d, "currency", required=True, max_length=10)
    if currency is not None and (not _CURRENCY.match(currency) or currency not in KNOWN_CURRENCIES):
        c.add("currency", f"unknown currency code {currency!r} (ISO 4217 or a crypto ticker)")
        currency = None
    amount_usd = _number(c, d, "amount_usd")
    tx_type = _enum(c, d, "type", TransactionType)
    channel = _enum(c, d, "channel", Channel)

    sd = _object(c, d, "sender", required=True)
    sc = _Collector("sender.")
    _unknown(sc, sd, _SENDER_FIELDS, "")
    s_id = _text(sc, sd, "account_id", required=bool(sd) or "sender" in d)
    s_created = _timestamp(sc, sd, "created_at")
    s_country = _country(sc, sd, "country")
    kyc = sd.get("kyc_level")
    if kyc is not None and (isinstance(kyc, bool) or not isinstance(kyc, int) or not 0 <= kyc <= 3):
        sc.add("kyc_level", f"expected an integer 0..3, got {kyc!r}")
        kyc = None
    c.errors.extend(sc.errors)

    rd = _object(c, d, "recipient", required=False)
    rc = _Collector("recipient.")
    _unknown(rc, rd, _RECIPIENT_FIELDS, "")
    recipient = None
    if rd:
        recipient = Recipient(
            account_id=_text(rc, rd, "account_id"),
            country=_country(rc, rd, "country"),
            bank=_text(rc, rd, "bank"),
            wallet_address=_text(rc, rd, "wallet_address"),
        )
    c.errors.extend(rc.errors)

    ip_text = _text(c, d, "ip", max_length=45)
    ip = None if ip_text is None else normalise_ip(ip_text)
    if ip_text is not None and ip is None:
        c.add("ip", f"not an IPv4 or IPv6 address: {ip_text!r}")
    merchant_id = _text(c, d, "merchant_id")
    terminal_id = _text(c, d, "terminal_id")
    device_id = _text(c, d, "device_id")
    jurisdiction = _text(c, d, "jurisdiction", max_length=16)
    metadata = _metadata(c, d)
    sv = d.get("schema_version")
    if sv is not None and sv != SCHEMA_VERSION:
        c.add("schema_version", f"unsupported schema version {sv!r}; this is {SCHEMA_VERSION}")

    if c.errors:
        raise ValidationError(c.errors, "invalid transaction event")
    assert tid is not None and at is not None and amount is not None and currency is not None
    assert s_id is not None
    return TransactionEvent(
        transaction_id=tid,
        occurred_at=at,
        amount=amount,
        currency=currency,
        amount_usd=amount_usd,
        type=tx_type,
        channel=channel,
        sender=Sender(account_id=s_id, created_at=s_created, country=s_country, kyc_level=kyc),
        recipient=recipient,
        merchant_id=merchant_id,
        terminal_id=terminal_id,
        device_id=device_id,
        ip=ip,
        jurisdiction=jurisdiction,
        metadata=metadata,
    )


def parse_label(d: Mapping[str, Any]) -> LabelEvent:
    """Validate a JSON-shaped mapping into a LabelEvent."""
    if not isinstance(d, Mapping):
        raise ValidationError([FieldError("$", f"expected an object, got {type(d).__name__}")])
    c = _Collector()
    _unknown(c, d, _LABEL_FIELDS, "")
    tid = _text(c, d, "transaction_id", required=True)
    fraud = d.get("is_fraud")
    if not isinstance(fraud, bool):
        c.add("is_fraud", "field required" if fraud is None else "expected true or false")
    known_at = _timestamp(c, d, "known_at", required=True)
    source = _enum(c, d, "source", LabelSource) or LabelSource.IMPORT
    metadata = _metadata(c, d)
    if c.errors:
        raise ValidationError(c.errors, "invalid label event")
    assert tid is not None and known_at is not None and isinstance(fraud, bool)
    return LabelEvent(tid, fraud, known_at, source, metadata)


# --------------------------------------------------------------------------- to JSON shape


def format_timestamp(dt: datetime) -> str:
    """UTC, microsecond precision when needed, ``Z`` suffix."""
    s = dt.astimezone(UTC).isoformat()
    return s[:-6] + "Z" if s.endswith("+00:00") else s


def transaction_to_dict(e: TransactionEvent) -> dict[str, Any]:
    """The JSON shape of an event, without absent optional fields (inverse of parse)."""
    out: dict[str, Any] = {
        "transaction_id": e.transaction_id,
        "occurred_at": format_timestamp(e.occurred_at),
        "amount": e.amount,
        "currency": e.currency,
    }
    s: dict[str, Any] = {"account_id": e.sender.account_id}
    if e.sender.created_at is not None:
        s["created_at"] = format_timestamp(e.sender.created_at)
    if e.sender.country is not None:
        s["country"] = e.sender.country
    if e.sender.kyc_level is not None:
        s["kyc_level"] = e.sender.kyc_level
    out["sender"] = s
    if e.amount_usd is not None:
        out["amount_usd"] = e.amount_usd
    if e.type is not None:
        out["type"] = e.type.value
    if e.channel is not None:
        out["channel"] = e.channel.value
    if e.recipient is not None:
        r = {k: getattr(e.recipient, k) for k in _RECIPIENT_ORDER}
        r = {k: v for k, v in r.items() if v is not None}
        if r:
            out["recipient"] = r
    for k in ("merchant_id", "terminal_id", "device_id", "ip", "jurisdiction"):
        v = getattr(e, k)
        if v is not None:
            out[k] = v
    if e.metadata:
        out["metadata"] = dict(e.metadata)
    return out


_RECIPIENT_ORDER = ("account_id", "country", "bank", "wallet_address")


def label_to_dict(e: LabelEvent) -> dict[str, Any]:
    out: dict[str, Any] = {
        "transaction_id": e.transaction_id,
        "is_fraud": e.is_fraud,
        "known_at": format_timestamp(e.known_at),
        "source": e.source.value,
    }
    if e.metadata:
        out["metadata"] = dict(e.metadata)
    return out
