"""The ports the decision pipeline needs, declared here by the package that uses them.

Each is the narrowest ``Protocol`` the pipeline calls; the real adapters live in ``features``,
``model``, ``rules`` and ``audit`` and are wired in ``txguard.bootstrap``. Declaring them here keeps
``scoring`` testable with small fakes and lets a stream worker reuse the pipeline unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from txguard.domain.decision import Action, RiskLevel
from txguard.domain.events import LabelEvent, TransactionEvent

FloatVector = npt.NDArray[np.float64]


class FeatureResultLike(Protocol):
    @property
    def values(self) -> Mapping[str, float]: ...
    @property
    def vector(self) -> FloatVector: ...
    @property
    def first_seen(self) -> bool: ...


class FeatureSpecLike(Protocol):
    @property
    def names(self) -> tuple[str, ...]: ...
    @property
    def hash(self) -> str: ...
    @property
    def external(self) -> tuple[str, ...]: ...


class FeatureEnginePort(Protocol):
    """Online features: values as of just before the event, then the event is recorded (one
    state-store round trip; a repeated transaction id returns the first values, ``first_seen``
    False). Store failures raise ``DependencyError``."""

    @property
    def spec(self) -> FeatureSpecLike: ...

    def process_transaction(
        self, event: TransactionEvent, external: Mapping[str, float] | None = None
    ) -> FeatureResultLike: ...

    def process_many(
        self,
        events: list[TransactionEvent],
        externals: list[Mapping[str, float] | None] | None = None,
    ) -> Sequence[FeatureResultLike]:
        """``process_transaction`` for each event in turn, with ONE store round trip."""
        ...

    async def process_many_async(
        self,
        events: list[TransactionEvent],
        externals: list[Mapping[str, float] | None] | None = None,
    ) -> Sequence[FeatureResultLike]:
        """``process_many`` with the round trip awaited on the running event loop where the
        store has one (else called inline)."""
        ...

    def pointwise(
        self, event: TransactionEvent, external: Mapping[str, float] | None = None
    ) -> FeatureResultLike:
        """Every feature of the spec, the stateful ones NaN (the store is not called)."""
        ...

    def apply_label(self, label: LabelEvent) -> None: ...


class PolicyPort(Protocol):
    @property
    def version(self) -> str: ...

    def decide(self, score: float, event: TransactionEvent) -> tuple[RiskLevel, Action]: ...


class ModelPort(Protocol):
    """A loaded, verified registry version."""

    @property
    def version(self) -> str: ...
    @property
    def feature_names(self) -> tuple[str, ...]: ...
    @property
    def spec(self) -> Any: ...
    @property
    def policy(self) -> PolicyPort: ...

    def predict(self, row: FloatVector) -> float: ...

    def contributions(self, row: FloatVector) -> dict[str, float]: ...


class RuleHitLike(Protocol):
    @property
    def rule_id(self) -> str: ...
    @property
    def effect(self) -> str: ...  # force_review | force_reject | add_score | allow
    @property
    def score_delta(self) -> float: ...
    @property
    def reason(self) -> str: ...
    @property
    def kind(self) -> str: ...  # rule | list


class RuleSetPort(Protocol):
    @property
    def version(self) -> str: ...

    def evaluate(
        self, event: TransactionEvent, features: Mapping[str, float]
    ) -> Sequence[RuleHitLike]: ...


class RuleEnginePort(Protocol):
    """Holder of the current rule set; ``current`` is swapped atomically on reload."""

    @property
    def current(self) -> RuleSetPort: ...


class OutcomeLike(Protocol):
    """What the fired rules mean together (precedence is the rules package's)."""

    @property
    def action(self) -> Action | None: ...  # forced action, if any
    @property
    def score_delta(self) -> float: ...
    @property
    def allowed(self) -> bool: ...  # an allow hit stands

    def apply(self, policy_action: Action) -> Action:
        """The final action given the policy's (forced actions, allow-list precedence)."""
        ...


Combine = Callable[..., OutcomeLike]  # (hits) -> outcome


class AuditRecordLike(Protocol):
    """The fields of a stored decision the pipeline reads back (see ``audit.records``)."""

    @property
    def decision_id(self) -> str: ...
    @property
    def transaction_id(self) -> str: ...
    @property
    def decided_at(self) -> datetime: ...
    @property
    def event(self) -> Mapping[str, Any]: ...
    @property
    def features(self) -> Mapping[str, float | None]: ...
    @property
    def score(self) -> float: ...
    @property
    def risk_level(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def reasons(self) -> Sequence[Mapping[str, Any]]: ...
    @property
    def rule_hits(self) -> Sequence[Mapping[str, Any]]: ...
    @property
    def model_version(self) -> str | None: ...
    @property
    def policy_version(self) -> str | None: ...
    @property
    def safe_mode(self) -> bool: ...
    @property
    def degraded(self) -> Sequence[str]: ...
    @property
    def challenger(self) -> Mapping[str, Any] | None: ...
    @property
    def latency_ms(self) -> float: ...


class AuditPort(Protocol):
    """The audit log: ``append`` returns once the record is durable (group commit); a second
    record for a transaction id resolves to the FIRST stored one."""

    async def append(self, record: Any) -> Any: ...

    async def append_many(
        self, records: Sequence[Any], *, return_exceptions: Literal[True]
    ) -> list[Any]:
        """``append`` for several records with one waiter; with ``return_exceptions`` a record
        that fails gets its error in its place. An invalid record refuses the whole call
        (``ValidationError``, nothing enqueued)."""
        ...

    def get(self, decision_id: str) -> Any | None: ...

    def get_by_transaction(self, transaction_id: str) -> Any | None: ...


RecordFactory = Callable[..., Any]


class PipelineObserver(Protocol):
    """Metrics hooks (implemented in ``monitor.metrics``); must be cheap."""

    def stage(self, name: str, seconds: float) -> None: ...

    def decided(
        self, *, action: str, risk_level: str, model_version: str | None, replayed: bool
    ) -> None: ...

    def degraded(self, what: str) -> None: ...


class NullObserver:
    """An observer that records nothing."""

    def stage(self, name: str, seconds: float) -> None:
        return None

    def decided(
        self, *, action: str, risk_level: str, model_version: str | None, replayed: bool
    ) -> None:
        return None

    def degraded(self, what: str) -> None:
        return None
