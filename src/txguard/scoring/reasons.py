"""Reasons in plain words.

Analysts read "amount is 14× this sender's 30-day average", not ``amount_to_sender_mean_30d``.
Feature names follow ``{entity}_{agg}_{field}_{window}`` (see docs/features.md), so one small
grammar renders every feature of every spec; a name it does not recognise falls back to
``name = value`` rather than guessing. Rendering happens only for flagged decisions.

>>> render_feature("sender_count_1h", 7.0)
'7 transactions of this sender in the last hour'
>>> render_feature("terminal_fraud_rate_7d", 0.38)
"38 % of this terminal's known-outcome transactions in the last 7 days were fraud"
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from txguard.domain.decision import Reason, ReasonKind

_WINDOW = re.compile(r"^(\d+)([smhdw])$")
_UNIT_WORDS = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week"}
_ENTITY_WORDS = {
    "sender": "sender",
    "recipient": "recipient",
    "pair": "sender→recipient pair",
    "terminal": "terminal",
    "merchant": "merchant",
    "device": "device",
    "ip": "IP address",
    "wallet": "wallet",
    "card": "card",
    "customer": "customer",
}


def window_words(token: str) -> str | None:
    """``"24h"`` → ``"24 hours"``, ``"1h"`` → ``"hour"``; None when not a window."""
    m = _WINDOW.match(token)
    if not m:
        return None
    n, unit = int(m.group(1)), _UNIT_WORDS[m.group(2)]
    if unit == "hour" and n % 24 == 0 and n >= 48:
        n, unit = n // 24, "day"
    return unit if n == 1 else f"{n} {unit}s"


def _num(v: float) -> str:
    if abs(v) >= 100 or float(v).is_integer():
        return f"{v:,.0f}"
    return f"{v:,.2f}"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} seconds"
    if seconds < 7200:
        return f"{seconds / 60:.0f} minutes"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} hours"
    return f"{seconds / 86400:.0f} days"


_FIELD_WORDS = {
    "recipient_account_id": "recipients",
    "sender_account_id": "senders",
    "recipient_country": "recipient countries",
    "device_id": "devices",
    "recipient_wallet_address": "wallets",
    "ip": "IP addresses",
    "merchant_id": "merchants",
    "terminal_id": "terminals",
}
_POINTWISE: dict[str, Callable[[float], str]] = {
    "amount_usd": lambda v: f"amount is {_num(v)} USD",
    "amount_ref": lambda v: f"amount is {_num(v)} USD",
    "log_amount": lambda v: f"amount is {_num(math.expm1(v))} USD",
    "hour_of_day": lambda v: f"made at {v:02.0f}h UTC",
    "day_of_week": lambda v: f"made on day {v:.0f} of the week (0 = Monday)",
    "is_weekend": lambda v: "made at the weekend" if v >= 0.5 else "made on a weekday",
    "is_night": lambda v: "made at night" if v >= 0.5 else "made in the daytime",
    "account_age_days": lambda v: f"account is {_num(v)} days old",
    "kyc_level": lambda v: f"KYC level {v:.0f} (0 none .. 3 enhanced)",
    "is_crypto": lambda v: "a crypto transaction" if v >= 0.5 else "not a crypto transaction",
    "is_cross_border": lambda v: "cross-border" if v >= 0.5 else "domestic",
    "amount_below_10k": lambda v: (
        "amount just under 10,000 USD" if v >= 0.5 else "amount not near 10,000 USD"
    ),
}


def render_feature(name: str, value: float | None) -> str:
    """One feature and its value in plain words (best effort, never raises)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f"{name.replace('_', ' ')} is unknown"
    v = float(value)
    if name in _POINTWISE:
        return _POINTWISE[name](v)
    parts = name.split("_")
    lag = None
    if len(parts) > 1 and parts[-1].startswith("lag") and window_words(parts[-1][3:]):
        lag = window_words(parts[-1][3:])
        parts = parts[:-1]
    window = window_words(parts[-1]) if parts else None
    body = parts[:-1] if window else parts
    entity = _ENTITY_WORDS.get(body[0], body[0]) if body else ""
    rest = "_".join(body[1:])
    in_window = f"in the last {window}" if window else "so far"
    if lag:
        in_window = f"in the {window or 'window'} up to {lag} ago"

    if "ratio" in rest and "amount" in rest:
        avg = f"{window.replace(' ', '-').removesuffix('s')} average" if window else "average"
        return f"amount is {v:.1f}× this {entity}'s {avg}".replace(".0×", "×")
    if "zscore" in rest:
        return f"amount is {v:.1f} standard deviations from this {entity}'s mean {in_window}"
    if "fraud_rate" in rest:
        return (
            f"{v * 100:.0f} % of this {entity}'s known-outcome transactions {in_window} were fraud"
        )
    if "fraud_count" in rest:
        return f"{_num(v)} known frauds involving this {entity} {in_window}"
    if "amount_below_10k" in rest:
        return f"{_num(v)} payments just under 10,000 USD from this {entity} {in_window}"
    if rest.startswith("count"):
        noun = "transaction" if v == 1 else "transactions"
        return f"{_num(v)} {noun} of this {entity} {in_window}"
    if rest.startswith("distinct"):
        field = rest.removeprefix("distinct").strip("_")
        what = _FIELD_WORDS.get(field, field.replace("_", " ") or "values")
        return f"{_num(v)} distinct {what} for this {entity} {in_window}"
    if rest.startswith("new"):
        field = rest.removeprefix("new").strip("_")
        what = _FIELD_WORDS.get(field, field.replace("_", " ")).removesuffix("s")
        what = what.replace("countrie", "country").replace("addresse", "address")
        seen = f"not seen in the last {window}" if window else "never seen before"
        return f"new {what} for this {entity} ({seen})" if v >= 0.5 else f"known {what}"
    if rest.startswith("sum"):
        return f"{_num(v)} USD moved by this {entity} {in_window}"
    for agg, word in (("mean", "average"), ("max", "largest"), ("std", "spread of")):
        if rest.startswith(agg):
            return f"{word} amount of this {entity} {in_window}: {_num(v)} USD"
    if "time_since" in rest or "seconds" in rest:
        return f"{_duration(v)} since this {entity}'s previous transaction"
    if "first_seen" in rest:
        return (
            f"first transaction of this {entity} {in_window}"
            if v >= 0.5
            else f"{entity} seen before"
        )
    if name.startswith("is_"):
        return f"{name.removeprefix('is_').replace('_', ' ')}: {'yes' if v >= 0.5 else 'no'}"
    return f"{name.replace('_', ' ')} = {_num(v)}"


def top_contributions(contributions: Mapping[str, float], *, k: int = 3) -> list[tuple[str, float]]:
    """The k features that pushed the score UP the most (bias and non-positive ones left out)."""
    items = [(n, c) for n, c in contributions.items() if n != "__bias__" and c > 0]
    items.sort(key=lambda x: -x[1])
    return items[:k]


def feature_reasons(
    contributions: Mapping[str, float], values: Mapping[str, float | None], *, k: int = 3
) -> list[Reason]:
    """The top contributions as FEATURE reasons (value = the contribution in log-odds)."""
    return [
        Reason(ReasonKind.FEATURE, name, render_feature(name, values.get(name)), round(c, 6))
        for name, c in top_contributions(contributions, k=k)
    ]


def reason_to_dict(r: Reason) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": r.kind.value, "code": r.code, "text": r.text}
    if r.value is not None:
        out["value"] = r.value
    return out


def reasons_to_dicts(reasons: Sequence[Reason]) -> list[dict[str, Any]]:
    return [reason_to_dict(r) for r in reasons]
