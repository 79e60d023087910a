"""Reasons in plain words.

Analysts read "amount is 14× this sender's 30-day average", not ``amount_to_sender_mean_30d``.
Feature names follow ``{entity}_{agg}_{field}_{window}`` (see docs/features.md), so one small
grammar renders every feature of every spec; a name it does not recognise falls back to
``name = value`` rather than guessing. Rendering happens only for flagged decisions.

>>> render_feature("sender_count_1h", 7.0)
'7 transactions from this sender in the last hour'
>>> render_feature("terminal_fraud_rate_7d", 0.38)
"38 % of this terminal's known-outcome transactions in the last 7 days were fraud"
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
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


def render_feature(name: str, value: float | None) -> str:
    """One feature and its value in plain words (best effort, never raises)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f"{name.replace('_', ' ')} is unknown"
    parts = name.split("_")
    window = window_words(parts[-1]) if parts else None
    body = parts[:-1] if window else parts
    entity = _ENTITY_WORDS.get(body[0], body[0]) if body else ""
    rest = "_".join(body[1:])
    in_window = f"in the last {window}" if window else "so far"
    v = float(value)

    if ("ratio" in name or "_to_" in name or "relative" in name) and "amount" in name:
        avg = f"{window.replace(' ', '-').removesuffix('s')} average" if window else "average"
        who = next((_ENTITY_WORDS[p] for p in parts if p in _ENTITY_WORDS), "sender")
        return f"amount is {v:.1f}× this {who}'s {avg}".replace(".0×", "×")
    if "zscore" in name or "z_score" in name:
        return f"amount is {v:.1f} standard deviations from this {entity}'s usual {in_window}"
    if "fraud_rate" in name or "risk" in rest:
        return (
            f"{v * 100:.0f} % of this {entity}'s known-outcome transactions {in_window} were fraud"
        )
    if "fraud_count" in name:
        return f"{_num(v)} known frauds at this {entity} {in_window}"
    if rest.startswith("count"):
        noun = "transaction" if v == 1 else "transactions"
        return f"{_num(v)} {noun} from this {entity} {in_window}"
    if rest.startswith("distinct"):
        what = rest.removeprefix("distinct").strip("_").replace("_", " ") or "values"
        return f"{_num(v)} distinct {what} for this {entity} {in_window}"
    if rest.startswith("sum"):
        return f"{_num(v)} USD moved by this {entity} {in_window}"
    for agg, word in (("mean", "average"), ("max", "largest"), ("std", "spread of")):
        if rest.startswith(agg):
            return f"{word} amount of this {entity} {in_window}: {_num(v)} USD"
    if "since" in name or "seconds" in name:
        return f"{_duration(v)} since this {entity}'s previous transaction"
    if "age" in name and "day" in name:
        return f"account is {_num(v)} days old"
    if name.startswith(("is_", "new_")) or "_new_" in name or name.endswith("_new"):
        flag = name.removeprefix("is_").replace("_", " ")
        return f"{flag}: {'yes' if v >= 0.5 else 'no'}"
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
