"""Request-side helpers of the pipeline: splitting a score request into the event and external
features, and the row a model reads."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from txguard.domain.errors import FieldError, ValidationError
from txguard.domain.events import TransactionEvent, parse_transaction
from txguard.scoring.ports import FeatureSpecLike, FloatVector

if TYPE_CHECKING:
    from txguard.scoring.pipeline import Scored

_NAN = float("nan")


def parse_request(
    raw: Any, spec: FeatureSpecLike
) -> tuple[TransactionEvent, dict[str, Any], dict[str, float] | None]:
    """Split a score request into the event, its JSON as received, and external features.

    Only features the spec declares external may be passed; every problem is reported with its
    path (``features.x``) together with the event's own field errors.
    """
    if not isinstance(raw, Mapping):
        raise ValidationError([FieldError("$", f"expected an object, got {type(raw).__name__}")])
    event_json = dict(raw)
    feats = event_json.pop("features", None)
    errors: list[FieldError] = []
    external: dict[str, float] | None = None
    if feats is not None:
        if not isinstance(feats, Mapping):
            errors.append(FieldError("features", f"expected an object, got {type(feats).__name__}"))
        else:
            allowed = set(spec.external)
            external = {}
            for k, v in feats.items():
                if k not in allowed:
                    shown = ", ".join(sorted(allowed)) or "none"
                    errors.append(
                        FieldError(f"features.{k}", f"not an external feature (allowed: {shown})")
                    )
                elif v is None:
                    external[k] = _NAN
                elif isinstance(v, bool) or not isinstance(v, int | float):
                    errors.append(FieldError(f"features.{k}", "expected a number or null"))
                elif not math.isfinite(float(v)):
                    errors.append(FieldError(f"features.{k}", "must be a finite number"))
                else:
                    external[k] = float(v)
    try:
        event = parse_transaction(event_json)
    except ValidationError as e:
        raise ValidationError([*e.errors, *errors], e.title) from None
    if errors:
        raise ValidationError(errors, "invalid transaction event")
    return event, event_json, external


def row_of(names: Sequence[str], values: Mapping[str, float]) -> FloatVector:
    return np.fromiter((values.get(n, _NAN) for n in names), dtype=np.float64, count=len(names))


def decision_view(scored: Scored) -> dict[str, Any]:
    """The response body of a score request (the stored decision; a replay says so)."""
    r = scored.record
    return {
        "decision_id": r.decision_id,
        "transaction_id": r.transaction_id,
        "score": r.score,
        "risk_level": r.risk_level,
        "action": r.action,
        "reasons": list(r.reasons),
        "model_version": r.model_version,
        "policy_version": r.policy_version,
        "safe_mode": r.safe_mode,
        "degraded": list(r.degraded),
        "latency_ms": round(scored.latency_ms, 3),
        "replayed": scored.replayed,
    }
