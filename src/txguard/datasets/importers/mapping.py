"""The mapping file of the generic CSV importer: which column feeds which canonical field.

A mapping is a small YAML document (examples in ``examples/mappings/``)::

    version: 1
    id_prefix: "acme-"             # optional, prefixed to every transaction_id
    columns:                       # source column -> canonical field, or metadata.<key>
      tx_id: transaction_id
      created: occurred_at
      amount: amount
      customer: sender_account_id
      note: metadata.note
    timestamp:
      format: "%Y-%m-%d %H:%M:%S"  # strftime-style; omit for RFC 3339 (2026-01-01T10:00:00Z)
      zone: Europe/Paris           # zone of times written without an offset; omit to require one
    constants:                     # canonical field -> one value for every row
      currency: EUR
    values:                        # optional recoding of source values, per canonical field
      type: {P2P: transfer, CARD: card}
    label:
      column: fraud_flag
      true_values: ["1", "yes"]    # compared stripped and case-insensitively
      false_values: ["0", "no"]    # optional: these become is_fraud=false labels

Everything wrong with the mapping itself is a ConfigurationError naming the key; everything wrong
with a data row is a reject naming its line (see ``common``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from txguard.domain.errors import ConfigurationError
from txguard.domain.events import MAX_METADATA_KEYS

MAPPING_VERSION = 1

# Canonical fields a column (or constant) can feed: the flattened event-table columns.
TEXT_FIELDS = {
    "transaction_id": 128,
    "sender_account_id": 128,
    "recipient_account_id": 128,
    "recipient_bank": 128,
    "recipient_wallet_address": 128,
    "merchant_id": 128,
    "terminal_id": 128,
    "device_id": 128,
    "jurisdiction": 16,
}
AMOUNT_FIELDS = ("amount", "amount_usd")
TIME_FIELDS = ("occurred_at", "sender_created_at")
COUNTRY_FIELDS = ("sender_country", "recipient_country")
OTHER_FIELDS = ("currency", "type", "channel", "sender_kyc_level", "ip")
FIELDS = frozenset([*TEXT_FIELDS, *AMOUNT_FIELDS, *TIME_FIELDS, *COUNTRY_FIELDS, *OTHER_FIELDS])
REQUIRED = ("occurred_at", "amount", "currency", "sender_account_id")
_TOP_KEYS = frozenset(
    ["version", "id_prefix", "columns", "timestamp", "constants", "values", "label"]
)


@dataclass(frozen=True, slots=True)
class LabelMapping:
    column: str
    true_values: frozenset[str]
    false_values: frozenset[str] | None = None  # None: any other value means "no label"


@dataclass(frozen=True, slots=True)
class CsvMapping:
    """A validated mapping. ``fields`` maps canonical field -> source column; ``metadata`` maps
    metadata key -> source column."""

    fields: dict[str, str]
    metadata: dict[str, str] = field(default_factory=dict)
    constants: dict[str, Any] = field(default_factory=dict)
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    timestamp_format: str | None = None
    zone: str | None = None
    label: LabelMapping | None = None
    id_prefix: str = ""

    @property
    def source_columns(self) -> list[str]:
        cols = [*self.fields.values(), *self.metadata.values()]
        if self.label is not None:
            cols.append(self.label.column)
        return list(dict.fromkeys(cols))


def _fail(key: str, message: str) -> ConfigurationError:
    return ConfigurationError(f"mapping: {key}: {message}")


def load_mapping(path: Path) -> CsvMapping:
    """Read and validate a mapping file; ConfigurationError names the offending key."""
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigurationError(f"mapping: no such file: {path}") from None
    except yaml.YAMLError as e:
        raise ConfigurationError(f"mapping: {path}: not valid YAML: {e}") from None
    return parse_mapping(doc)


def parse_mapping(doc: Any) -> CsvMapping:
    """Validate a mapping already loaded from YAML (see the module docstring for the format)."""
    if not isinstance(doc, dict):
        raise _fail("$", "expected a mapping (YAML object)")
    unknown = sorted(set(doc) - _TOP_KEYS)
    if unknown:
        raise _fail(unknown[0], f"unknown key; allowed: {', '.join(sorted(_TOP_KEYS))}")
    if doc.get("version", MAPPING_VERSION) != MAPPING_VERSION:
        raise _fail("version", f"unsupported {doc.get('version')!r}; this is {MAPPING_VERSION}")

    columns = _dict(doc, "columns")
    fields: dict[str, str] = {}
    metadata: dict[str, str] = {}
    for col, target in columns.items():
        if not isinstance(target, str):
            raise _fail(f"columns.{col}", "expected a canonical field name")
        if target.startswith("metadata."):
            key = target.removeprefix("metadata.")
            if not key or len(key) > 64:
                raise _fail(f"columns.{col}", "metadata key must be 1..64 characters")
            metadata[key] = str(col)
        elif target in FIELDS:
            if target in fields:
                raise _fail(f"columns.{col}", f"{target} is already fed by {fields[target]!r}")
            fields[target] = str(col)
        else:
            raise _fail(
                f"columns.{col}",
                f"unknown field {target!r}; one of {', '.join(sorted(FIELDS))} or metadata.<key>",
            )
    if len(metadata) > MAX_METADATA_KEYS:
        raise _fail("columns", f"at most {MAX_METADATA_KEYS} metadata keys")

    constants = _dict(doc, "constants")
    for name, value in constants.items():
        if name not in FIELDS or name in TIME_FIELDS or name == "transaction_id":
            raise _fail(f"constants.{name}", "not a field that can be a constant")
        if name in fields:
            raise _fail(f"constants.{name}", f"also fed by column {fields[name]!r}; choose one")
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise _fail(f"constants.{name}", "expected a string or a number")
    for name in REQUIRED:
        if name not in fields and name not in constants:
            raise _fail("columns", f"nothing feeds the required field {name}")

    values: dict[str, dict[str, str]] = {}
    for name, table in _dict(doc, "values").items():
        if name not in fields:
            raise _fail(f"values.{name}", "recodes a field that no column feeds")
        if not isinstance(table, dict):
            raise _fail(f"values.{name}", "expected a table of source value -> value")
        if any(isinstance(k, bool) or isinstance(v, bool) for k, v in table.items()):
            raise _fail(f"values.{name}", "quote yes/no/true/false (YAML reads them as booleans)")
        values[name] = {str(k): str(v) for k, v in table.items()}

    ts = _dict(doc, "timestamp")
    extra = sorted(set(ts) - {"format", "zone"})
    if extra:
        raise _fail(f"timestamp.{extra[0]}", "unknown key; allowed: format, zone")
    fmt = ts.get("format")
    if fmt is not None and (not isinstance(fmt, str) or "%" not in fmt):
        raise _fail("timestamp.format", f"expected a strftime format such as %Y-%m-%d, got {fmt!r}")
    zone = ts.get("zone")
    if zone is not None:
        try:
            ZoneInfo(str(zone))
        except (ZoneInfoNotFoundError, ValueError):
            raise _fail("timestamp.zone", f"unknown time zone {zone!r}") from None
        zone = str(zone)
    if fmt is not None and not has_offset(fmt) and zone is None:
        raise _fail("timestamp.zone", "the format has no %z, so say which zone the times are in")

    return CsvMapping(
        fields=fields,
        metadata=metadata,
        constants=dict(constants),
        values=values,
        timestamp_format=fmt,
        zone=zone,
        label=_label(doc.get("label")),
        id_prefix=str(doc.get("id_prefix") or ""),
    )


def has_offset(fmt: str) -> bool:
    """Does a strftime format parse a UTC offset (``%z``, ``%:z``, ``%#z``)?"""
    return any(tok in fmt for tok in ("%z", "%:z", "%#z"))


def _label(d: Any) -> LabelMapping | None:
    if d is None:
        return None
    if not isinstance(d, dict) or not isinstance(d.get("column"), str):
        raise _fail("label", "expected column, true_values and optionally false_values")
    extra = sorted(set(d) - {"column", "true_values", "false_values"})
    if extra:
        raise _fail(f"label.{extra[0]}", "unknown key")
    true_values = _values(d, "true_values") or frozenset({"1", "true", "yes"})
    false_values = _values(d, "false_values") if "false_values" in d else None
    if false_values is not None and true_values & false_values:
        raise _fail("label", f"values both true and false: {sorted(true_values & false_values)}")
    return LabelMapping(d["column"], true_values, false_values)


def _values(d: dict[str, Any], key: str) -> frozenset[str]:
    v = d.get(key)
    if v is None:
        return frozenset()
    if not isinstance(v, list) or not v:
        raise _fail(f"label.{key}", "expected a non-empty list")
    if any(isinstance(x, bool) for x in v):
        # YAML reads bare yes/no/true/false as booleans; the CSV holds text
        raise _fail(f"label.{key}", 'quote yes/no/true/false, e.g. ["yes", "1"]')
    return frozenset(str(x).strip().lower() for x in v)


def _dict(doc: dict[str, Any], key: str) -> dict[str, Any]:
    v = doc.get(key)
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise _fail(key, "expected a table")
    return v
