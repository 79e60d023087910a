"""The names a rule condition can use: flattened event fields, then the model's features.

Each event field has a type (``num`` or ``str``), an extractor run once per event for the
fields a rule set actually uses, and optionally a check for the constants it is compared with,
so that ``type == "crad"`` or ``sender_country in ["ir"]`` fail at load instead of silently
never matching.

Missing values are ``None`` (a feature's ``NaN`` is turned into ``None`` too).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from txguard.domain.events import Channel, TransactionEvent, TransactionType

ValueType = Literal["num", "str", "bool"]

_COUNTRY = re.compile(r"^[A-Z]{2}$")


Check = Callable[[str], tuple[str, str] | None]  # value -> None, or (problem, hint)


def check_country(value: str) -> tuple[str, str] | None:
    """None when ``value`` is an ISO 3166-1 alpha-2 code as events carry it, else why not."""
    if _COUNTRY.match(value):
        return None
    return (
        f"{value!r} is not an ISO 3166-1 alpha-2 country code",
        "two upper-case letters, e.g. 'IR'",
    )


def _enum_check(enum: type[TransactionType] | type[Channel]) -> Check:
    allowed = tuple(m.value for m in enum)

    def check(value: str) -> tuple[str, str] | None:
        if value in allowed:
            return None
        return f"unknown value {value!r}", f"one of: {', '.join(allowed)}"

    return check


@dataclass(frozen=True, slots=True)
class FieldInfo:
    name: str
    type: ValueType
    extract: Callable[[TransactionEvent], Any] | None  # None: a feature, read from the mapping
    check: Check | None = None
    doc: str = ""


def _recipient(attr: str) -> Callable[[TransactionEvent], Any]:
    def get(e: TransactionEvent) -> Any:
        r = e.recipient
        return None if r is None else getattr(r, attr)

    return get


def _account_age_days(e: TransactionEvent) -> float | None:
    created = e.sender.created_at
    if created is None:
        return None
    return (e.occurred_at - created).total_seconds() / 86400.0


# Enum ``.value`` is a slow descriptor and an enum member hashes by its *name*, so a member is
# never found in a set of value strings: map members to their plain value with one dict lookup.
_TYPE_TEXT: dict[object, str] = {m: str(m.value) for m in TransactionType}
_CHANNEL_TEXT: dict[object, str] = {m: str(m.value) for m in Channel}


def _type(e: TransactionEvent) -> str | None:
    return _TYPE_TEXT.get(e.type)


def _channel(e: TransactionEvent) -> str | None:
    return _CHANNEL_TEXT.get(e.channel)


def _amount_usd(e: TransactionEvent) -> float | None:
    return e.amount_usd if e.amount_usd is not None else e.reference_amount


EVENT_FIELDS: dict[str, FieldInfo] = {
    f.name: f
    for f in (
        FieldInfo("amount", "num", lambda e: e.amount, doc="amount in the event's currency"),
        FieldInfo(
            "amount_usd",
            "num",
            _amount_usd,
            doc="amount in USD: the sent amount_usd, else converted at the reference rate",
        ),
        FieldInfo("currency", "str", lambda e: e.currency, doc="ISO 4217 code or crypto ticker"),
        FieldInfo("type", "str", _type, _enum_check(TransactionType), "transaction type"),
        FieldInfo("channel", "str", _channel, _enum_check(Channel), "channel"),
        FieldInfo("sender_account_id", "str", lambda e: e.sender.account_id),
        FieldInfo("sender_country", "str", lambda e: e.sender.country, check_country),
        FieldInfo("sender_kyc_level", "num", lambda e: e.sender.kyc_level, doc="0..3"),
        FieldInfo(
            "sender_account_age_days",
            "num",
            _account_age_days,
            doc="days from sender.created_at to occurred_at (fractional)",
        ),
        FieldInfo("recipient_account_id", "str", _recipient("account_id")),
        FieldInfo("recipient_country", "str", _recipient("country"), check_country),
        FieldInfo("recipient_bank", "str", _recipient("bank")),
        FieldInfo("recipient_wallet_address", "str", _recipient("wallet_address")),
        FieldInfo("merchant_id", "str", lambda e: e.merchant_id),
        FieldInfo("terminal_id", "str", lambda e: e.terminal_id),
        FieldInfo("device_id", "str", lambda e: e.device_id),
        FieldInfo("ip", "str", lambda e: e.ip),
        FieldInfo("jurisdiction", "str", lambda e: e.jurisdiction),
        FieldInfo("hour", "num", lambda e: e.occurred_at.hour, doc="hour of day, UTC, 0..23"),
        FieldInfo(
            "weekday", "num", lambda e: e.occurred_at.weekday(), doc="0 Monday .. 6 Sunday, UTC"
        ),
    )
}


def name_catalog(known_features: Any) -> dict[str, FieldInfo]:
    """Every name a condition may use. An event field wins over a feature of the same name
    (the event's own value is exact; a feature of that name would be the same number)."""
    names: dict[str, FieldInfo] = {}
    for f in known_features:
        if not isinstance(f, str):
            raise TypeError(f"feature names must be strings, got {f!r}")
        names[f] = FieldInfo(f, "num", None, doc="model feature")
    names.update(EVENT_FIELDS)
    return names
