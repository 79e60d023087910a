"""Declarative feature specs: what to compute, written once, read by every execution path.

A spec (YAML, no code) names *entities* (the fields an event is keyed by), *point-wise*
transforms of the event itself, *aggregates* of an entity over time windows, and *external*
features a caller may pass in. :meth:`FeatureSpec.from_yaml` expands it into an ordered tuple of
concrete features whose names are the model's columns: ``{entity}_{agg}_{field}_{window}``
(``sender_mean_amount_usd_7d``), with ``_lag{delay}`` for label windows that end ``delay`` before
the transaction (the handbook's "delay period").

>>> spec = FeatureSpec.from_yaml('''
... entities: {sender: [sender_account_id]}
... pointwise: [log_amount]
... aggregates:
...   - {entity: sender, aggs: [count, mean], field: amount_usd, windows: [1d, 7d]}
... ''')
>>> spec.names
('log_amount', 'sender_count_1d', 'sender_mean_amount_usd_1d', 'sender_count_7d', 'sender_mean_amount_usd_7d')

Window semantics (ADR 0002): a window of length W is cut into ``buckets`` (default 24) buckets of
width ``W / buckets`` aligned on the Unix epoch; at time t it holds the events of the current
bucket recorded so far plus the ``buckets - 1`` previous buckets. A lagged window holds the
``buckets`` whole buckets that end at the start of the bucket containing ``t - delay``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
import yaml

from txguard.domain.errors import FieldError, ValidationError

# Event fields (flat names of io.events.EVENT_SCHEMA) usable as entity keys or distinct values.
KEY_FIELDS: tuple[str, ...] = (
    "sender_account_id",
    "sender_country",
    "recipient_account_id",
    "recipient_country",
    "recipient_bank",
    "recipient_wallet_address",
    "merchant_id",
    "terminal_id",
    "device_id",
    "ip",
    "jurisdiction",
    "currency",
    "type",
    "channel",
)

POINTWISE: dict[str, str] = {
    "amount_ref": "amount in the reference currency (USD), the event's amount_usd",
    "log_amount": "log(1 + amount_usd)",
    "hour_of_day": "UTC hour 0..23",
    "day_of_week": "UTC weekday, Monday 0",
    "is_weekend": "1 on Saturday and Sunday (UTC)",
    "is_night": "1 from 00:00 to 05:59 UTC",
    "account_age_days": "days since sender.created_at",
    "kyc_level": "sender KYC level 0..3",
    "is_crypto": "1 if the currency is a crypto asset",
    "is_cross_border": "1 if sender and recipient countries differ",
    "amount_below_10k": "1 if 9,000 <= amount_usd < 10,000 (structuring under a reporting limit)",
}

# Numeric values an aggregate can summarise: raw numeric fields plus every point-wise transform.
NUMERIC_FIELDS: tuple[str, ...] = ("amount", "amount_usd", "sender_kyc_level", *POINTWISE)

AGG_NUMERIC = ("sum", "mean", "std", "max", "ratio_mean", "zscore")
AGG_VALUE = ("distinct", "new")
AGG_PLAIN = ("count", "time_since_last", "first_seen")
AGG_FRAUD = ("fraud_count", "fraud_rate")
AGGS: tuple[str, ...] = AGG_PLAIN + AGG_NUMERIC + AGG_VALUE + AGG_FRAUD

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^([1-9][0-9]{0,5})([smhdw])$")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,40}$")
_US = 1_000_000
MAX_BUCKETS = 1000


def parse_duration(text: Any) -> int:
    """``'7d'`` -> seconds. Units s, m, h, d, w.

    >>> parse_duration("36h")
    129600
    """
    m = _DURATION.match(str(text)) if isinstance(text, str | int) else None
    if not m:
        raise ValueError(f"not a duration like 1h, 24h, 7d, 30d: {text!r}")
    return int(m.group(1)) * _UNITS[m.group(2)]


def format_duration(seconds: int) -> str:
    """Canonical text of a duration: the largest unit (d, h, m, s) that divides it.

    >>> format_duration(86400), format_duration(5400)
    ('1d', '90m')
    """
    for unit in ("d", "h", "m"):
        if seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True, slots=True)
class Aggregate:
    """One aggregate feature of one entity over one window."""

    name: str
    entity: str
    agg: str
    field: str | None  # numeric field (sum/mean/...), value field (distinct/new), else None
    window_s: int
    delay_s: int  # > 0 only for fraud aggregates over a lagged window
    buckets: int

    @property
    def width_us(self) -> int:
        """Bucket width in microseconds (windows must divide evenly; checked on load)."""
        return self.window_s * _US // self.buckets


@dataclass(frozen=True, slots=True)
class Pointwise:
    name: str


Feature = Aggregate | Pointwise


class FeatureSpec:
    """An expanded, validated spec. Immutable; ``names`` are the model's columns in order."""

    __slots__ = (
        "_doc",
        "aggregates",
        "buckets",
        "entities",
        "external",
        "features",
        "hash",
        "names",
        "pointwise",
    )

    def __init__(self, doc: Mapping[str, Any]) -> None:
        errors: list[FieldError] = []
        self._doc = _normalise(doc, errors)
        if errors:
            raise ValidationError(errors, "invalid feature spec")
        self.buckets: int = self._doc["buckets"]
        self.entities: dict[str, tuple[str, ...]] = {
            k: tuple(v) for k, v in self._doc["entities"].items()
        }
        features: list[Feature] = [Pointwise(n) for n in self._doc["pointwise"]]
        for item in self._doc["aggregates"]:
            for w in item["windows"]:
                for agg in item["aggs"]:
                    features.append(_aggregate(item, agg, w, self.buckets))
        self.external: tuple[str, ...] = tuple(self._doc["external"])
        names = [f.name for f in features] + list(self.external)
        seen: set[str] = set()
        for n in names:
            if n in seen:
                errors.append(FieldError("features", f"feature {n!r} is defined twice"))
            seen.add(n)
        if errors:
            raise ValidationError(errors, "invalid feature spec")
        self.features: tuple[Feature, ...] = tuple(features)
        self.pointwise: tuple[str, ...] = tuple(self._doc["pointwise"])
        self.aggregates: tuple[Aggregate, ...] = tuple(
            f for f in features if isinstance(f, Aggregate)
        )
        self.names: tuple[str, ...] = tuple(names)
        canonical = orjson.dumps(self._doc, option=orjson.OPT_SORT_KEYS)
        self.hash: str = hashlib.sha256(canonical).hexdigest()

    @classmethod
    def from_yaml(cls, source: str | Path) -> FeatureSpec:
        """Load a spec from a YAML file path or YAML text. Errors name the offending entry."""
        text: str
        if isinstance(source, Path) or (
            "\n" not in source and (source.endswith((".yaml", ".yml")) or Path(source).is_file())
        ):
            p = Path(source)
            if not p.exists():
                raise ValidationError([FieldError(str(p), "no such spec file")])
            text = p.read_text()
        else:
            text = source
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ValidationError([FieldError("spec", f"not valid YAML: {e}")]) from None
        if not isinstance(doc, Mapping):
            raise ValidationError([FieldError("spec", "expected a mapping at the top level")])
        return cls(doc)

    def to_yaml(self) -> str:
        """The normalised spec as YAML (round-trips to an equal spec with the same hash)."""
        return yaml.safe_dump(self._doc, sort_keys=False)

    def to_dict(self) -> dict[str, Any]:
        return orjson.loads(orjson.dumps(self._doc))  # type: ignore[no-any-return]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FeatureSpec) and other.hash == self.hash

    def __hash__(self) -> int:
        return hash(self.hash)

    def __repr__(self) -> str:
        return f"FeatureSpec({len(self.names)} features, hash={self.hash[:12]})"


def default_spec() -> FeatureSpec:
    """The built-in spec covering card fraud (handbook) and AML/crypto typologies."""
    text = resources.files("txguard.features").joinpath("default_spec.yaml").read_text()
    return FeatureSpec.from_yaml(text)


# --------------------------------------------------------------------------- validation


def _aggregate(item: Mapping[str, Any], agg: str, window: str, buckets: int) -> Aggregate:
    field = item.get("field")
    parts = [item["entity"], agg]
    if agg in AGG_NUMERIC or agg in AGG_VALUE:
        parts.append(field)
    else:
        field = None
    parts.append(window)
    delay = 0
    if agg in AGG_FRAUD and item.get("delay"):
        delay = parse_duration(item["delay"])
        parts.append("lag" + format_duration(delay))
    return Aggregate(
        name="_".join(parts),
        entity=item["entity"],
        agg=agg,
        field=field,
        window_s=parse_duration(window),
        delay_s=delay,
        buckets=buckets,
    )


def _str_list(v: Any, loc: str, errors: list[FieldError]) -> list[str]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        errors.append(FieldError(loc, "expected a list of strings"))
        return []
    return list(v)


def _normalise(doc: Mapping[str, Any], errors: list[FieldError]) -> dict[str, Any]:
    known = {"version", "buckets", "entities", "pointwise", "aggregates", "external"}
    for k in doc:
        if k not in known:
            errors.append(FieldError(str(k), f"unknown key; one of: {', '.join(sorted(known))}"))
    if doc.get("version", 1) != 1:
        errors.append(FieldError("version", f"unsupported spec version {doc.get('version')!r}"))
    buckets = doc.get("buckets", 24)
    if isinstance(buckets, bool) or not isinstance(buckets, int) or not 1 <= buckets <= MAX_BUCKETS:
        errors.append(FieldError("buckets", f"expected an integer 1..{MAX_BUCKETS}"))
        buckets = 24

    entities: dict[str, list[str]] = {}
    raw_entities = doc.get("entities") or {}
    if not isinstance(raw_entities, Mapping):
        errors.append(FieldError("entities", "expected a mapping name -> list of event fields"))
        raw_entities = {}
    for name, fields in raw_entities.items():
        loc = f"entities.{name}"
        if not isinstance(name, str) or not _NAME.match(name):
            errors.append(FieldError(loc, "entity names are lower_snake_case"))
            continue
        fl = _str_list(fields, loc, errors)
        if not fl:
            errors.append(FieldError(loc, "needs at least one event field"))
        for f in fl:
            if f not in KEY_FIELDS:
                errors.append(
                    FieldError(loc, f"unknown key field {f!r}; one of: {', '.join(KEY_FIELDS)}")
                )
        entities[name] = fl

    pointwise = _str_list(doc.get("pointwise") or [], "pointwise", errors)
    for i, p in enumerate(pointwise):
        if p not in POINTWISE:
            errors.append(
                FieldError(
                    f"pointwise[{i}]", f"unknown transform {p!r}; one of: {', '.join(POINTWISE)}"
                )
            )

    aggregates: list[dict[str, Any]] = []
    raw_aggs = doc.get("aggregates") or []
    if not isinstance(raw_aggs, list):
        errors.append(FieldError("aggregates", "expected a list"))
        raw_aggs = []
    for i, item in enumerate(raw_aggs):
        loc = f"aggregates[{i}]"
        if not isinstance(item, Mapping):
            errors.append(FieldError(loc, "expected a mapping"))
            continue
        norm = _normalise_aggregate(item, loc, entities, buckets, errors)
        if norm is not None:
            aggregates.append(norm)

    external = _str_list(doc.get("external") or [], "external", errors)
    for i, n in enumerate(external):
        if not _NAME.match(n):
            errors.append(
                FieldError(f"external[{i}]", f"feature names are lower_snake_case: {n!r}")
            )
    return {
        "version": 1,
        "buckets": buckets,
        "entities": entities,
        "pointwise": pointwise,
        "aggregates": aggregates,
        "external": external,
    }


def _normalise_aggregate(
    item: Mapping[str, Any],
    loc: str,
    entities: Mapping[str, list[str]],
    buckets: int,
    errors: list[FieldError],
) -> dict[str, Any] | None:
    n_before = len(errors)
    for k in item:
        if k not in ("entity", "aggs", "field", "windows", "delay"):
            errors.append(
                FieldError(f"{loc}.{k}", "unknown key; one of: entity, aggs, field, windows, delay")
            )
    entity = item.get("entity")
    if entity not in entities:
        errors.append(
            FieldError(f"{loc}.entity", f"unknown entity {entity!r}; declare it under entities")
        )
    aggs = _str_list(item.get("aggs"), f"{loc}.aggs", errors)
    if not aggs:
        errors.append(FieldError(f"{loc}.aggs", f"needs at least one of: {', '.join(AGGS)}"))
    field = item.get("field")
    for j, a in enumerate(aggs):
        aloc = f"{loc}.aggs[{j}]"
        if a not in AGGS:
            errors.append(FieldError(aloc, f"unknown aggregate {a!r}; one of: {', '.join(AGGS)}"))
        elif a in AGG_NUMERIC and field not in NUMERIC_FIELDS:
            errors.append(
                FieldError(
                    f"{loc}.field",
                    f"{a} needs a numeric field, one of: {', '.join(NUMERIC_FIELDS)}",
                )
            )
        elif a in AGG_VALUE and field not in KEY_FIELDS:
            errors.append(
                FieldError(
                    f"{loc}.field", f"{a} needs an event field, one of: {', '.join(KEY_FIELDS)}"
                )
            )
    if any(a in AGG_NUMERIC for a in aggs) and any(a in AGG_VALUE for a in aggs):
        errors.append(
            FieldError(f"{loc}.aggs", "numeric and distinct/new aggregates need separate entries")
        )
    windows = _str_list(item.get("windows"), f"{loc}.windows", errors)
    if not windows:
        errors.append(FieldError(f"{loc}.windows", "needs at least one window"))
    canon_windows = []
    for j, w in enumerate(windows):
        try:
            s = parse_duration(w)
        except ValueError as e:
            errors.append(FieldError(f"{loc}.windows[{j}]", str(e)))
            continue
        if (s * _US) % buckets:
            errors.append(
                FieldError(
                    f"{loc}.windows[{j}]",
                    f"{w} does not split into {buckets} whole-microsecond buckets",
                )
            )
        canon_windows.append(format_duration(s))
    delay = item.get("delay")
    if delay is not None:
        try:
            d = parse_duration(delay)
            delay = format_duration(d)
        except ValueError as e:
            errors.append(FieldError(f"{loc}.delay", str(e)))
        if not all(a in AGG_FRAUD for a in aggs):
            errors.append(
                FieldError(f"{loc}.delay", "only fraud_count and fraud_rate take a delay")
            )
    if len(errors) > n_before:
        return None
    out: dict[str, Any] = {"entity": entity, "aggs": aggs}
    if any(a in AGG_NUMERIC or a in AGG_VALUE for a in aggs):
        out["field"] = field
    out["windows"] = canon_windows
    if delay:
        out["delay"] = delay
    return out
