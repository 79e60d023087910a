"""The immutable runtime snapshot the pipeline scores with, and its holder.

Promote, rollback and reload build a NEW :class:`Runtime` (model loaded and verified, feature
engine built, everything precomputed) off the request path, then swap it in with one reference
assignment. A request reads ``holder.current`` once at its start and uses that snapshot to the
end, so no request ever sees a half-loaded model and none fails during a swap.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime

from txguard.scoring.ports import (
    Combine,
    FeatureEnginePort,
    ModelPort,
    RuleEnginePort,
)


@dataclass(frozen=True, slots=True)
class Runtime:
    """What one request scores with. ``champion`` None means SAFE MODE (rules-only)."""

    engine: FeatureEnginePort
    rules: RuleEnginePort
    combine: Combine
    champion: ModelPort | None = None
    challenger: ModelPort | None = None
    safe_mode_reason: str | None = None
    loaded_at: datetime | None = None
    # precomputed: do the engine's vector columns equal the model's (no per-request re-ordering)?
    champion_aligned: bool = field(default=False)
    challenger_aligned: bool = field(default=False)

    @staticmethod
    def build(
        *,
        engine: FeatureEnginePort,
        rules: RuleEnginePort,
        combine: Combine,
        champion: ModelPort | None,
        challenger: ModelPort | None = None,
        safe_mode_reason: str | None = None,
        loaded_at: datetime | None = None,
    ) -> Runtime:
        names = tuple(engine.spec.names)
        if champion is None and safe_mode_reason is None:
            safe_mode_reason = "no production model"
        return Runtime(
            engine=engine,
            rules=rules,
            combine=combine,
            champion=champion,
            challenger=challenger,
            safe_mode_reason=safe_mode_reason if champion is None else None,
            loaded_at=loaded_at,
            champion_aligned=champion is not None and tuple(champion.feature_names) == names,
            challenger_aligned=challenger is not None and tuple(challenger.feature_names) == names,
        )

    @property
    def safe_mode(self) -> bool:
        return self.champion is None


class RuntimeHolder:
    """The current Runtime. Reads are a plain attribute load; swaps are serialised so two admin
    operations cannot interleave their load-then-swap."""

    __slots__ = ("_current", "lock")

    def __init__(self, runtime: Runtime) -> None:
        self._current = runtime
        self.lock = threading.Lock()  # held by admin operations around build + swap

    @property
    def current(self) -> Runtime:
        return self._current

    def swap(self, runtime: Runtime) -> Runtime:
        """Install ``runtime``; returns the previous one."""
        old, self._current = self._current, runtime
        return old
