"""Small fakes of the pipeline's ports, for unit tests only (no tests here; the real adapters are
tests/integration/test_service_*.py and tests/e2e/test_http_*.py)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from txguard.domain.clock import FixedClock
from txguard.domain.decision import Action, RiskLevel
from txguard.domain.errors import DependencyError
from txguard.domain.events import LabelEvent, TransactionEvent
from txguard.scoring.pipeline import Pipeline, PipelineConfig
from txguard.scoring.runtime import Runtime, RuntimeHolder

NAMES = ("amount_usd", "sender_count_24h", "terminal_fraud_rate_7d", "device_score")


@dataclass(frozen=True)
class Spec:
    names: tuple[str, ...] = NAMES
    hash: str = "spec-1"
    external: tuple[str, ...] = ("device_score",)


@dataclass(frozen=True)
class Result:
    values: dict[str, float]
    vector: np.ndarray
    first_seen: bool


class FakeEngine:
    """Counts transactions per sender; a repeated transaction id changes nothing."""

    def __init__(self) -> None:
        self.spec = Spec()
        self.counts: dict[str, int] = {}
        self.seen: dict[str, dict[str, float]] = {}
        self.down = False
        self.labels: list[LabelEvent] = []

    def _vec(self, values: Mapping[str, float]) -> np.ndarray:
        return np.array([values.get(n, math.nan) for n in NAMES], dtype=np.float64)

    def process_transaction(
        self, event: TransactionEvent, external: Mapping[str, float] | None = None
    ) -> Result:
        if self.down:
            raise DependencyError("state store down")
        tid = event.transaction_id
        if tid in self.seen:
            v = self.seen[tid]
            return Result(v, self._vec(v), False)
        sid = event.sender.account_id
        v = {
            "amount_usd": float(event.reference_amount or math.nan),
            "sender_count_24h": float(self.counts.get(sid, 0)),
            "terminal_fraud_rate_7d": 0.0,
            "device_score": (external or {}).get("device_score", math.nan),
        }
        self.counts[sid] = self.counts.get(sid, 0) + 1
        self.seen[tid] = v
        return Result(v, self._vec(v), True)

    def pointwise(self, event: TransactionEvent) -> Result:
        v = {"amount_usd": float(event.reference_amount or math.nan)}
        return Result(v, self._vec(v), True)

    def apply_label(self, label: LabelEvent) -> None:
        if self.down:
            raise DependencyError("state store down")
        self.labels.append(label)


@dataclass(frozen=True)
class Policy:
    version: str = "pol-1"
    review: float = 0.5
    reject: float = 0.9

    def decide(self, score: float, event: TransactionEvent) -> tuple[RiskLevel, Action]:
        if score >= self.reject:
            return RiskLevel.CRITICAL, Action.REJECT
        if score >= self.review:
            return RiskLevel.HIGH, Action.REVIEW
        return RiskLevel.LOW, Action.APPROVE


@dataclass
class Model:
    """score = amount_usd / 10,000 capped at 1; contributions put everything on amount."""

    version: str = "m1"
    feature_names: tuple[str, ...] = NAMES
    spec: Any = field(default_factory=Spec)
    policy: Policy = field(default_factory=Policy)
    explained: int = 0

    def predict(self, row: np.ndarray) -> float:
        return min(1.0, float(row[0]) / 10_000.0)

    def contributions(self, row: np.ndarray) -> dict[str, float]:
        self.explained += 1
        return {"amount_usd": float(row[0]) / 1000.0, "sender_count_24h": -0.1, "__bias__": -3.0}


@dataclass(frozen=True)
class Hit:
    rule_id: str
    effect: str
    score_delta: float
    reason: str
    kind: str = "rule"


@dataclass(frozen=True)
class Outcome:
    action: Action | None
    score_delta: float
    allow: bool


def combine(hits: Sequence[Hit]) -> Outcome:
    action: Action | None = None
    for h in hits:
        if h.effect == "force_reject":
            action = Action.REJECT
        elif h.effect == "force_review" and action is None:
            action = Action.REVIEW
    return Outcome(action, sum(h.score_delta for h in hits), any(h.effect == "allow" for h in hits))


class RuleSet:
    version = "rules-1"

    def evaluate(self, event: TransactionEvent, features: Mapping[str, float]) -> list[Hit]:
        hits = []
        if event.sender.country == "KP":
            hits.append(Hit("sanctioned_country", "force_reject", 0.0, "sanctioned", "list"))
        if event.device_id == "allow-me":
            hits.append(Hit("allowed_device", "allow", 0.0, "allow-listed device", "list"))
        if event.merchant_id == "risky":
            hits.append(Hit("risky_merchant", "add_score", 0.3, "risky merchant"))
        return hits


class Rules:
    current = RuleSet()


@dataclass(frozen=True)
class Record:
    decision_id: str
    transaction_id: str
    decided_at: datetime
    event: dict[str, Any]
    features: dict[str, float | None]
    score: float
    risk_level: str
    action: str
    reasons: list[dict[str, Any]]
    rule_hits: list[dict[str, Any]]
    model_version: str | None
    policy_version: str | None
    safe_mode: bool
    degraded: list[str]
    challenger: dict[str, Any] | None
    latency_ms: float
    sender_account_id: str
    seq: int = 0


class FakeAudit:
    """One record per transaction id; a second append resolves to the first."""

    def __init__(self) -> None:
        self.by_tx: dict[str, Record] = {}
        self.appends = 0

    async def append(self, record: Record) -> Record:
        self.appends += 1
        await asyncio.sleep(0)  # a commit happens elsewhere
        first = self.by_tx.get(record.transaction_id)
        if first is not None:
            return first
        stored = replace(record, seq=len(self.by_tx) + 1)
        self.by_tx[record.transaction_id] = stored
        return stored

    def get(self, decision_id: str) -> Record | None:
        return next((r for r in self.by_tx.values() if r.decision_id == decision_id), None)

    def get_by_transaction(self, transaction_id: str) -> Record | None:
        return self.by_tx.get(transaction_id)


def make_pipeline(
    *, model: Model | None = None, challenger: Model | None = None, **config: Any
) -> tuple[Pipeline, FakeEngine, FakeAudit, RuntimeHolder]:
    engine = FakeEngine()
    audit = FakeAudit()
    holder = RuntimeHolder(
        Runtime.build(
            engine=engine,
            rules=Rules(),
            combine=combine,
            champion=model,
            challenger=challenger,
            safe_mode_reason=None if model else "model signature invalid",
        )
    )
    p = Pipeline(
        holder=holder,
        audit=audit,
        new_record=Record,
        clock=FixedClock(datetime(2026, 3, 1, tzinfo=UTC)),
        config=PipelineConfig(**config),
    )
    return p, engine, audit, holder


def tx(tid: str = "t1", amount: float = 100.0, **extra: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "transaction_id": tid,
        "occurred_at": "2026-03-01T10:00:00Z",
        "amount": amount,
        "currency": "USD",
        "sender": extra.pop("sender", {"account_id": "acct-1"}),
    }
    d.update(extra)
    return d
