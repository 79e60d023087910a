"""Audit records for the CLI tests: every field a test does not care about has one plain value,
so each test states only what it varies."""

from __future__ import annotations

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
