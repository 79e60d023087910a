"""JSON Schema (draft 2020-12) of the canonical events, kept equal to what ``events.parse_*``
accepts (tests check both directions on generated examples)."""

from __future__ import annotations

from typing import Any

from txguard.domain.events import (
    MAX_AMOUNT,
    MAX_ID_LENGTH,
    MAX_METADATA_KEYS,
    MAX_TEXT_LENGTH,
    SCHEMA_VERSION,
    Channel,
    LabelSource,
    TransactionType,
)
from txguard.domain.money import KNOWN_CURRENCIES

_BASE = "https://txguard.dev/schemas"


def _id() -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH}


def _ts() -> dict[str, Any]:
    return {
        "type": "string",
        "format": "date-time",
        "maxLength": 40,
        "pattern": r"(Z|z|[+-]\d{2}:?\d{2})$",
        "description": "RFC 3339 with a time zone (Z or an offset)",
    }


def _amount() -> dict[str, Any]:
    return {"type": "number", "minimum": 0, "maximum": MAX_AMOUNT}


def _country() -> dict[str, Any]:
    return {"type": "string", "pattern": "^[A-Z]{2}$", "description": "ISO 3166-1 alpha-2"}


def _metadata() -> dict[str, Any]:
    return {
        "type": "object",
        "maxProperties": MAX_METADATA_KEYS,
        "propertyNames": {"minLength": 1, "maxLength": 64},
        "additionalProperties": {
            "anyOf": [
                {"type": "string", "maxLength": MAX_TEXT_LENGTH},
                {"type": "number"},
                {"type": "boolean"},
                {"type": "null"},
            ]
        },
        "description": "free scalar attributes; never used as features unless a spec says so",
    }


def transaction_schema() -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{_BASE}/transaction-event/{SCHEMA_VERSION}",
        "title": "TransactionEvent",
        "description": f"A transaction to score (txguard canonical schema {SCHEMA_VERSION}).",
        "type": "object",
        "additionalProperties": False,
        "required": ["transaction_id", "occurred_at", "amount", "currency", "sender"],
        "properties": {
            "schema_version": {"const": SCHEMA_VERSION},
            "transaction_id": _id(),
            "occurred_at": _ts(),
            "amount": _amount(),
            "currency": {"type": "string", "enum": sorted(KNOWN_CURRENCIES)},
            "amount_usd": _amount(),
            "type": {"type": "string", "enum": [t.value for t in TransactionType]},
            "channel": {"type": "string", "enum": [c.value for c in Channel]},
            "sender": {
                "type": "object",
                "additionalProperties": False,
                "required": ["account_id"],
                "properties": {
                    "account_id": _id(),
                    "created_at": _ts(),
                    "country": _country(),
                    "kyc_level": {"type": "integer", "minimum": 0, "maximum": 3},
                },
            },
            "recipient": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "account_id": _id(),
                    "country": _country(),
                    "bank": _id(),
                    "wallet_address": _id(),
                },
            },
            "merchant_id": _id(),
            "terminal_id": _id(),
            "device_id": _id(),
            "ip": {
                "type": "string",
                "maxLength": 45,
                "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}],
            },
            "jurisdiction": {"type": "string", "minLength": 1, "maxLength": 16},
            "metadata": _metadata(),
        },
    }


def label_schema() -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{_BASE}/label-event/{SCHEMA_VERSION}",
        "title": "LabelEvent",
        "description": "A verdict about an earlier transaction, usable from known_at on.",
        "type": "object",
        "additionalProperties": False,
        "required": ["transaction_id", "is_fraud", "known_at"],
        "properties": {
            "transaction_id": _id(),
            "is_fraud": {"type": "boolean"},
            "known_at": _ts(),
            "source": {"type": "string", "enum": [s.value for s in LabelSource]},
            "metadata": _metadata(),
        },
    }
