"""Audit records for the CLI tests: every field a test does not care about has one plain value,
so each test states only what it varies."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from txguard.audit.records import AuditRecord


def audit_record(i: int, decided_at: datetime, **fields: Any) -> AuditRecord:
    """Decision ``dec-<i>`` for transaction ``tx-<i>`` at ``decided_at``; ``fields`` override the
    defaults (an approved low-risk decision of model ``m-1`` under policy ``p-1``)."""
    values: dict[str, Any] = {
        "decision_id": f"dec-{i}",
        "transaction_id": f"tx-{i}",
        "decided_at": decided_at,
        "event": {"transaction_id": f"tx-{i}"},
        "features": {},
        "score": 0.1,
        "risk_level": "LOW",
        "action": "APPROVE",
        "reasons": [],
        "rule_hits": [],
        "model_version": "m-1",
        "policy_version": "p-1",
        "safe_mode": False,
        "degraded": [],
        "challenger": None,
        "latency_ms": 1.0,
        "sender_account_id": "acct-1",
    }
    return AuditRecord(**(values | fields))


def big_features() -> dict[str, float]:
    """90 features, every 7th missing (NaN): with them a record's canonical body is ~3 KB, like a
    real decision's, so PostgreSQL compresses it when stored (TOAST threshold ~2 KB)."""
    return {f"sender_count_{k}_1h": (math.nan if k % 7 == 0 else k / 3) for k in range(90)}
