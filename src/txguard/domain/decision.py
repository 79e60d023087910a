"""What a scoring decision is: the action, the risk level, and the reasons."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class Action(StrEnum):
    APPROVE = "APPROVE"
    REVIEW = "REVIEW"
    REJECT = "REJECT"

    @property
    def severity(self) -> int:
        return _ACTION_SEVERITY[self]

    def at_least(self, other: Action) -> Action:
        """The stricter of two actions."""
        return self if self.severity >= other.severity else other


_ACTION_SEVERITY = {Action.APPROVE: 0, Action.REVIEW: 1, Action.REJECT: 2}


class RiskLevel(StrEnum):
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"


class ReasonKind(StrEnum):
    RULE = "rule"  # a rule fired
    LIST = "list"  # a list hit (blocked wallet, sanctioned country, allow-list)
    FEATURE = "feature"  # a top feature contribution (TreeSHAP)
    POLICY = "policy"  # the policy's threshold or a segment override
    SYSTEM = "system"  # safe mode, degraded state store, ...


@dataclass(frozen=True, slots=True)
class Reason:
    kind: ReasonKind
    code: str  # stable machine id: rule id, list name, feature name
    text: str  # plain words for an analyst
    value: float | None = None  # the contribution or the observed value, when there is one


@dataclass(frozen=True, slots=True)
class Decision:
    decision_id: str
    transaction_id: str
    score: float
    risk_level: RiskLevel
    action: Action
    reasons: tuple[Reason, ...]
    model_version: str | None
    policy_version: str | None
    safe_mode: bool = False
    degraded: tuple[str, ...] = ()  # what was unavailable (e.g. "state_store")
    challenger_score: float | None = None
    challenger_version: str | None = None
    latency_ms: float = 0.0
    features: Mapping[str, float | None] = field(default_factory=dict)
