"""Wire schemas: what the OpenAPI document declares for each route, and the functions that
turn stored records into response bodies.

The hot routes decode with orjson and validate with ``domain.events.parse_transaction`` instead
of pydantic, so their request/response schemas are declared here as JSON Schema (the request's
from ``domain.schema.transaction_schema()``, the same one ``txguard schema`` prints) and attached
through ``openapi_extra`` / ``responses``. Schemathesis checks the running app against them.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from txguard.domain.decision import Action, ReasonKind, RiskLevel
from txguard.domain.events import format_timestamp
from txguard.domain.schema import label_schema, transaction_schema

_NUM_OR_NULL: dict[str, Any] = {"anyOf": [{"type": "number"}, {"type": "null"}]}
_STR_OR_NULL: dict[str, Any] = {"anyOf": [{"type": "string"}, {"type": "null"}]}


def _strip(schema: dict[str, Any]) -> dict[str, Any]:
    s = copy.deepcopy(schema)
    s.pop("$schema", None)
    s.pop("$id", None)
    return s


def score_request_schema() -> dict[str, Any]:
    """A TransactionEvent, plus optional externally computed ``features``."""
    s = _strip(transaction_schema())
    s["properties"]["features"] = {
        "type": "object",
        "description": "features computed upstream; only names the model's spec declares "
        "external are accepted (see GET /v1/models)",
        "additionalProperties": _NUM_OR_NULL,
        "maxProperties": 64,
    }
    return s


REASON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["kind", "code", "text"],
    "properties": {
        "kind": {"type": "string", "enum": [k.value for k in ReasonKind]},
        "code": {"type": "string"},
        "text": {"type": "string"},
        "value": _NUM_OR_NULL,
    },
}

DECISION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Decision",
    "required": [
        "decision_id",
        "transaction_id",
        "score",
        "risk_level",
        "action",
        "reasons",
        "model_version",
        "policy_version",
        "safe_mode",
        "degraded",
        "latency_ms",
        "replayed",
    ],
    "properties": {
        "decision_id": {"type": "string"},
        "transaction_id": {"type": "string"},
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        "risk_level": {"type": "string", "enum": [r.value for r in RiskLevel]},
        "action": {"type": "string", "enum": [a.value for a in Action]},
        "reasons": {"type": "array", "items": REASON_SCHEMA},
        "model_version": _STR_OR_NULL,
        "policy_version": _STR_OR_NULL,
        "safe_mode": {"type": "boolean"},
        "degraded": {"type": "array", "items": {"type": "string"}},
        "latency_ms": {"type": "number"},
        "replayed": {
            "type": "boolean",
            "description": "true when this is the stored decision of an earlier request",
        },
    },
}

RECORD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "DecisionRecord",
    "required": [
        "decision_id",
        "transaction_id",
        "decided_at",
        "event",
        "features",
        "score",
        "risk_level",
        "action",
        "reasons",
        "rule_hits",
        "safe_mode",
    ],
    "properties": {
        "seq": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
        "hash": _STR_OR_NULL,
        "prev_hash": _STR_OR_NULL,
        "decision_id": {"type": "string"},
        "transaction_id": {"type": "string"},
        "decided_at": {"type": "string", "format": "date-time"},
        "event": {"type": "object"},
        "features": {"type": "object", "additionalProperties": _NUM_OR_NULL},
        "score": {"type": "number"},
        "risk_level": {"type": "string"},
        "action": {"type": "string"},
        "reasons": {"type": "array", "items": REASON_SCHEMA},
        "rule_hits": {"type": "array", "items": {"type": "object"}},
        "model_version": _STR_OR_NULL,
        "policy_version": _STR_OR_NULL,
        "safe_mode": {"type": "boolean"},
        "degraded": {"type": "array", "items": {"type": "string"}},
        "challenger": {"anyOf": [{"type": "object"}, {"type": "null"}]},
        "latency_ms": {"type": "number"},
    },
}

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Problem",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["loc", "message"],
                "properties": {"loc": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}


def batch_request_schema(max_batch: int) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["events"],
        "additionalProperties": False,
        "properties": {
            "events": {
                "type": "array",
                "minItems": 1,
                "maxItems": max_batch,
                "items": score_request_schema(),
            }
        },
    }


BATCH_RESPONSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["results", "summary"],
    "properties": {
        "results": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["index", "status"],
                "properties": {
                    "index": {"type": "integer"},
                    "status": {"type": "integer"},
                    "decision": DECISION_SCHEMA,
                    "error": PROBLEM_SCHEMA,
                },
            },
        },
        "summary": {"type": "object", "additionalProperties": {"type": "integer"}},
    },
}


def labels_request_schema(max_batch: int) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["labels"],
        "additionalProperties": False,
        "properties": {
            "labels": {
                "type": "array",
                "minItems": 1,
                "maxItems": max_batch,
                "items": _strip(label_schema()),
            }
        },
    }


LABELS_RESPONSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["accepted", "errors"],
    "properties": {
        "accepted": {"type": "integer"},
        "errors": {"type": "array", "items": PROBLEM_SCHEMA},
    },
}

AUDIT_PAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["records", "next_cursor"],
    "properties": {
        "records": {"type": "array", "items": RECORD_SCHEMA},
        "next_cursor": _STR_OR_NULL,
    },
}

EXPLANATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["decision_id", "model_version", "bias", "contributions", "model_score"],
    "properties": {
        "decision_id": {"type": "string"},
        "transaction_id": {"type": "string"},
        "model_version": {"type": "string"},
        "model_score": {"type": "number"},
        "bias": {"type": "number"},
        "contributions": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["feature", "contribution", "text"],
                "properties": {
                    "feature": {"type": "string"},
                    "value": _NUM_OR_NULL,
                    "contribution": {"type": "number"},
                    "text": {"type": "string"},
                },
            },
        },
    },
}

MODELS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["production", "serving", "safe_mode", "versions"],
    "properties": {
        "production": _STR_OR_NULL,
        "serving": _STR_OR_NULL,
        "challenger": _STR_OR_NULL,
        "safe_mode": {"type": "boolean"},
        "safe_mode_reason": _STR_OR_NULL,
        "external_features": {"type": "array", "items": {"type": "string"}},
        "versions": {"type": "array", "items": {"type": "object"}},
    },
}

RUNTIME_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["serving", "safe_mode"],
    "properties": {
        "serving": _STR_OR_NULL,
        "safe_mode": {"type": "boolean"},
        "rules_version": _STR_OR_NULL,
    },
}

HEALTH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["status"],
    "properties": {"status": {"type": "string"}},
}

READY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["ready"],
    "properties": {"ready": {"type": "boolean"}, "safe_mode": {"type": "boolean"}},
}


def json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for problem+json errors."""
    return {
        s: {
            "description": "problem",
            "content": {"application/problem+json": {"schema": PROBLEM_SCHEMA}},
        }
        for s in statuses
    }


def request_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, **json_content(schema)}}


def _num(v: Any) -> float | None:
    if v is None:
        return None
    f = float(v)
    return None if math.isnan(f) else f


def record_view(r: Any) -> dict[str, Any]:
    """A stored decision as the analyst/auditor routes return it."""
    decided = r.decided_at
    return {
        "seq": getattr(r, "seq", None),
        "hash": getattr(r, "hash", None),
        "prev_hash": getattr(r, "prev_hash", None),
        "decision_id": r.decision_id,
        "transaction_id": r.transaction_id,
        "decided_at": decided if isinstance(decided, str) else format_timestamp(decided),
        "event": dict(r.event),
        "features": {k: _num(v) for k, v in r.features.items()},
        "score": r.score,
        "risk_level": r.risk_level,
        "action": r.action,
        "reasons": list(r.reasons),
        "rule_hits": list(r.rule_hits),
        "model_version": r.model_version,
        "policy_version": r.policy_version,
        "safe_mode": r.safe_mode,
        "degraded": list(r.degraded),
        "challenger": r.challenger,
        "latency_ms": r.latency_ms,
    }
