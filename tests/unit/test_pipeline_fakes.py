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

from txguard.audit.records import AuditRecord
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
        self.batches: list[int] = []  # sizes of the process_many calls

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

    def process_many(
        self,
        events: list[TransactionEvent],
        externals: list[Mapping[str, float] | None] | None = None,
    ) -> list[Result]:
        self.batches.append(len(events))
        ext = externals or [None] * len(events)
        return [self.process_transaction(e, x) for e, x in zip(events, ext, strict=True)]

    async def process_many_async(
        self,
        events: list[TransactionEvent],
        externals: list[Mapping[str, float] | None] | None = None,
    ) -> list[Result]:
        return self.process_many(events, externals)

    def pointwise(
        self, event: TransactionEvent, external: Mapping[str, float] | None = None
    ) -> Result:
        v = dict.fromkeys(NAMES, math.nan)
        v["amount_usd"] = float(event.reference_amount or math.nan)
        v.update(external or {})
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
    allowed: bool

    def apply(self, policy_action: Action) -> Action:
        if self.action is not None:
            return policy_action.at_least(self.action)
        if self.allowed and policy_action is Action.REVIEW:
            return Action.APPROVE
        return policy_action


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


# the real record type (pure data, no I/O): the pipeline builds exactly what the audit log stores
Record = AuditRecord


class FakeAudit:
    """One record per transaction id; a second append resolves to the first."""

    def __init__(self) -> None:
        self.by_tx: dict[str, Record] = {}
        self.appends = 0
        self.batches: list[int] = []  # sizes of the append_many calls

    async def append(self, record: Record) -> Record:
        await asyncio.sleep(0)  # a commit happens elsewhere
        return self._store(record)

    async def append_many(
        self, records: list[Record], *, return_exceptions: bool = False
    ) -> list[Record]:
        self.batches.append(len(records))
        await asyncio.sleep(0)
        return [self._store(r) for r in records]

    def _store(self, record: Record) -> Record:
        self.appends += 1
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


def _query(self: FakeAudit, **filters: Any) -> tuple[list[Record], str | None]:
    rows = sorted(self.by_tx.values(), key=lambda r: r.seq)
    if filters.get("action"):
        rows = [r for r in rows if r.action == filters["action"]]
    start = int(filters.get("cursor") or 0)
    limit = int(filters.get("limit") or 100)
    page = rows[start : start + limit]
    nxt = str(start + limit) if start + limit < len(rows) else None
    return page, nxt


FakeAudit.query = _query  # type: ignore[attr-defined]


class KeyAuthorizer:
    """Accepts ``Bearer key-<role>`` for that role only (the real SecurityGate is tested in the
    e2e suite)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def authenticate(self, *, method, path, headers, body, client_ip, role):  # type: ignore[no-untyped-def]
        from txguard.domain.errors import AuthenticationError, PermissionDeniedError
        from txguard.security.roles import Identity, Role

        self.calls.append({"method": method, "path": path, "headers": headers, "role": role})
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer key-"):
            raise AuthenticationError("credentials required")
        have = Role(auth.removeprefix("Bearer key-"))
        if have is not role:
            raise PermissionDeniedError(f"needs {role}")
        return Identity(subject="test", roles=frozenset([have]), method="api_key")


def make_services(*, model: Model | None = None, **service: Any):  # type: ignore[no-untyped-def]
    from txguard.bootstrap import Services
    from txguard.monitor.metrics import Metrics
    from txguard.settings import Settings

    p, engine, audit, holder = make_pipeline(model=model)
    metrics = Metrics()
    p._obs = metrics
    svc = Services(
        settings=Settings(home="/nonexistent-txguard-test", **service),
        clock=p._clock,
        holder=holder,
        pipeline=p,
        audit=audit,
        metrics=metrics,
        authorizer=KeyAuthorizer(),
        registry=None,
    )
    svc.readiness = lambda: {"ready": True, "safe_mode": holder.current.safe_mode}  # type: ignore[method-assign]
    models = {model.version: model} if model else {}
    svc.model = lambda v: models[v]  # type: ignore[method-assign]
    return svc, engine, audit


class SyncClient:
    """A synchronous client over httpx's ASGI transport (starlette's TestClient warns on this
    httpx); each call runs in a fresh event loop. No lifespan: pass ready-made services."""

    def __init__(self, app: Any, *, raise_app_exceptions: bool = True) -> None:
        import httpx

        self._httpx = httpx
        self._app = app
        # False: answer what the server sends even when the app re-raises after answering
        # (Starlette's ServerErrorMiddleware does, for uvicorn to log it)
        self._raise = raise_app_exceptions

    def request(self, method: str, url: str, **kw: Any) -> Any:
        httpx = self._httpx

        async def go() -> Any:
            transport = httpx.ASGITransport(app=self._app, raise_app_exceptions=self._raise)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
                return await c.request(method, url, **kw)

        return asyncio.run(go())

    def get(self, url: str, **kw: Any) -> Any:
        return self.request("GET", url, **kw)

    def post(self, url: str, **kw: Any) -> Any:
        return self.request("POST", url, **kw)
