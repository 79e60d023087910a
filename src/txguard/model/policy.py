"""Threshold policy: calibrated score → risk level and action, thresholds chosen from data.

Three cut-offs split the score line::

    0 ── LOW ── medium ── MEDIUM ── review ── HIGH ── reject ── CRITICAL ── 1
         APPROVE          APPROVE            REVIEW            REJECT

They are fitted on the validation period (never the test period) by one of three methods:

- ``precision``: REVIEW at the lowest score whose alerts reach ``review_precision``, REJECT at
  the lowest reaching ``reject_precision`` (a rejected customer is a real cost, so it is stricter);
- ``budget``: REVIEW at the score that yields ``alerts_per_day`` alerts a day on average —
  analysts can only work so many — REJECT by ``reject_precision``;
- ``cost``: REVIEW where expected cost is lowest, reviewing costs ``review_cost`` per alert and a
  missed fraud costs its amount; REJECT by ``reject_precision``.

A segment (jurisdiction and/or transaction type) with enough fraud in the validation period gets
its own thresholds fitted the same way; the most specific matching segment wins. The policy is
stored in the registry version with the model, and its ``version`` is a hash of its content.

>>> p = Policy(Thresholds(medium=0.1, review=0.5, reject=0.9))
>>> p.level_action(0.6)
(<RiskLevel.HIGH: 'HIGH'>, <Action.REVIEW: 'REVIEW'>)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from txguard.domain.decision import Action, RiskLevel
from txguard.domain.errors import FieldError, ValidationError
from txguard.domain.events import TransactionEvent

Method = Literal["precision", "budget", "cost"]
METHODS: tuple[str, ...] = ("precision", "budget", "cost")
_NEVER = 1.0 + 1e-9  # a threshold no calibrated probability reaches


@dataclass(frozen=True, slots=True)
class Thresholds:
    medium: float
    review: float
    reject: float

    def __post_init__(self) -> None:
        if not (0.0 <= self.medium <= self.review <= self.reject <= _NEVER):
            raise ValidationError(
                [
                    FieldError(
                        "thresholds",
                        f"need 0 <= medium <= review <= reject <= 1, got "
                        f"{self.medium}, {self.review}, {self.reject}",
                    )
                ]
            )

    def level_action(self, score: float) -> tuple[RiskLevel, Action]:
        if score >= self.reject:
            return RiskLevel.CRITICAL, Action.REJECT
        if score >= self.review:
            return RiskLevel.HIGH, Action.REVIEW
        if score >= self.medium:
            return RiskLevel.MEDIUM, Action.APPROVE
        return RiskLevel.LOW, Action.APPROVE

    def to_dict(self) -> dict[str, float]:
        return {"medium": self.medium, "review": self.review, "reject": self.reject}


@dataclass(frozen=True, slots=True)
class SegmentOverride:
    """Thresholds for transactions matching every given field (``None`` matches anything)."""

    thresholds: Thresholds
    jurisdiction: str | None = None
    type: str | None = None

    @property
    def specificity(self) -> int:
        return (self.jurisdiction is not None) + (self.type is not None)

    def matches(self, jurisdiction: str | None, type_: str | None) -> bool:
        return (self.jurisdiction is None or self.jurisdiction == jurisdiction) and (
            self.type is None or self.type == type_
        )


@dataclass(frozen=True, slots=True)
class Policy:
    default: Thresholds
    segments: tuple[SegmentOverride, ...] = ()
    method: str = "manual"
    params: dict[str, Any] = field(default_factory=dict)
    _index: dict[tuple[str | None, str | None], Thresholds] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )
    _version: str = field(init=False, repr=False, compare=False, default="")

    def __post_init__(self) -> None:
        # most specific first so the first match wins
        ordered = tuple(sorted(self.segments, key=lambda s: -s.specificity))
        object.__setattr__(self, "segments", ordered)
        index: dict[tuple[str | None, str | None], Thresholds] = {}
        for s in ordered:
            index.setdefault((s.jurisdiction, s.type), s.thresholds)
        object.__setattr__(self, "_index", index)
        # read on every decision: hashed once (the policy is immutable; params is not mutated)
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        object.__setattr__(self, "_version", "pol-" + hashlib.sha256(blob).hexdigest()[:12])

    @property
    def version(self) -> str:
        return self._version

    def thresholds_for(self, jurisdiction: str | None, type_: str | None) -> Thresholds:
        index = self._index
        for key in ((jurisdiction, type_), (jurisdiction, None), (None, type_)):
            t = index.get(key)
            if t is not None:
                return t
        return self.default

    def level_action(
        self, score: float, *, jurisdiction: str | None = None, type_: str | None = None
    ) -> tuple[RiskLevel, Action]:
        return self.thresholds_for(jurisdiction, type_).level_action(score)

    def decide(self, score: float, event: TransactionEvent) -> tuple[RiskLevel, Action]:
        """Risk level and action for a calibrated score of ``event`` (segment overrides apply)."""
        type_ = event.type.value if event.type is not None else None
        return self.thresholds_for(event.jurisdiction, type_).level_action(score)

    def actions(
        self,
        scores: ArrayLike,
        *,
        jurisdictions: Sequence[str | None] | None = None,
        types: Sequence[str | None] | None = None,
    ) -> list[Action]:
        """Vectorised ``decide`` for a backtest (segments by the given columns)."""
        s = np.asarray(scores, dtype=np.float64)
        j = jurisdictions if jurisdictions is not None else [None] * len(s)
        t = types if types is not None else [None] * len(s)
        return [
            self.thresholds_for(jj, tt).level_action(float(x))[1]
            for x, jj, tt in zip(s, j, t, strict=True)
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "params": self.params,
            "default": self.default.to_dict(),
            "segments": [
                {"jurisdiction": s.jurisdiction, "type": s.type, **s.thresholds.to_dict()}
                for s in self.segments
            ],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Policy:
        try:
            segs = tuple(
                SegmentOverride(
                    Thresholds(float(s["medium"]), float(s["review"]), float(s["reject"])),
                    jurisdiction=s.get("jurisdiction"),
                    type=s.get("type"),
                )
                for s in d.get("segments", [])
            )
            dflt = d["default"]
            return cls(
                default=Thresholds(
                    float(dflt["medium"]), float(dflt["review"]), float(dflt["reject"])
                ),
                segments=segs,
                method=str(d.get("method", "manual")),
                params=dict(d.get("params", {})),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ValidationError([FieldError("policy", f"malformed policy: {e!r}")]) from e


# --------------------------------------------------------------------------- fitting


def _min_threshold_at_precision(
    s: NDArray[np.float64], y: NDArray[np.int8], target: float
) -> float:
    """Lowest cut-off whose alerts (score >= cut-off) have precision >= target; never if none."""
    order = np.argsort(-s, kind="stable")
    ss, yy = s[order], y[order]
    tp = np.cumsum(yy)
    n = np.arange(1, len(ss) + 1)
    # only cut at the last of equal scores: a threshold cannot split ties
    last = np.r_[ss[1:] != ss[:-1], True]
    ok = (tp / n >= target) & last & (tp > 0)
    if not ok.any():
        return _NEVER
    return float(ss[np.flatnonzero(ok)[-1]])


def _budget_threshold(s: NDArray[np.float64], n_days: int, alerts_per_day: float) -> float:
    n_alerts = int(alerts_per_day * n_days)
    if n_alerts <= 0:
        return _NEVER
    if n_alerts >= len(s):
        return float(s.min())
    return float(np.sort(s)[::-1][n_alerts - 1])


def _cost_threshold(
    s: NDArray[np.float64], y: NDArray[np.int8], amounts: NDArray[np.float64], review_cost: float
) -> float:
    """Minimise review_cost * alerts + missed fraud amount over the cut-offs seen."""
    order = np.argsort(-s, kind="stable")
    ss, yy, aa = s[order], y[order], amounts[order]
    fraud_amt = np.where(yy == 1, aa, 0.0)
    caught = np.cumsum(fraud_amt)
    cost = review_cost * np.arange(1, len(ss) + 1) + (fraud_amt.sum() - caught)
    last = np.r_[ss[1:] != ss[:-1], True]
    cost = np.where(last, cost, np.inf)
    i = int(np.argmin(cost))
    if fraud_amt.sum() <= cost[i]:  # reviewing nothing is cheapest
        return _NEVER
    return float(ss[i])


def fit_thresholds(
    scores: ArrayLike,
    labels: ArrayLike,
    *,
    amounts: ArrayLike | None = None,
    days: ArrayLike | None = None,
    method: str = "precision",
    review_precision: float = 0.5,
    reject_precision: float = 0.9,
    alerts_per_day: float = 100.0,
    review_cost: float = 5.0,
) -> Thresholds:
    """Fit REVIEW / REJECT (and the MEDIUM band start, half the review cut-off) from data."""
    if method not in METHODS:
        raise ValidationError([FieldError("method", f"expected one of {METHODS}, got {method!r}")])
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(np.int8)
    if len(s) == 0:
        raise ValidationError([FieldError("scores", "no rows to fit a policy on")])
    reject = _min_threshold_at_precision(s, y, reject_precision)
    if method == "precision":
        review = _min_threshold_at_precision(s, y, review_precision)
    elif method == "budget":
        n_days = len(np.unique(np.asarray(days))) if days is not None else 1
        review = _budget_threshold(s, n_days, alerts_per_day)
    else:
        if amounts is None:
            raise ValidationError([FieldError("amounts", "the cost method needs amounts")])
        a = np.nan_to_num(np.asarray(amounts, dtype=np.float64), nan=0.0)
        review = _cost_threshold(s, y, a, review_cost)
    review = min(review, reject)
    return Thresholds(medium=review / 2.0, review=review, reject=reject)


def fit_policy(
    scores: ArrayLike,
    labels: ArrayLike,
    *,
    amounts: ArrayLike | None = None,
    days: ArrayLike | None = None,
    jurisdictions: Sequence[str | None] | None = None,
    types: Sequence[str | None] | None = None,
    method: str = "precision",
    min_segment_frauds: int = 30,
    **params: float,
) -> Policy:
    """A default policy plus overrides for each jurisdiction / type with enough fraud to fit."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(np.int8)
    a = None if amounts is None else np.asarray(amounts, dtype=np.float64)
    d = None if days is None else np.asarray(days)

    total_frauds = max(int(y.sum()), 1)

    def fit(mask: NDArray[np.bool_] | None) -> Thresholds:
        if mask is None:
            return fit_thresholds(s, y, amounts=a, days=d, method=method, **params)
        p = dict(params)
        if method == "budget":
            # a segment gets the share of the analysts' budget that its fraud share deserves
            share = int(y[mask].sum()) / total_frauds
            p["alerts_per_day"] = float(params.get("alerts_per_day", 100.0)) * share
        return fit_thresholds(
            s[mask],
            y[mask],
            amounts=None if a is None else a[mask],
            days=d,  # budgets are per day of the whole period
            method=method,
            **p,
        )

    default = fit(None)
    segments: list[SegmentOverride] = []
    for column, name in ((jurisdictions, "jurisdiction"), (types, "type")):
        if column is None:
            continue
        col = np.asarray([str(c) if c is not None else "" for c in column], dtype=object)
        for value in sorted({c for c in col.tolist() if c}):
            m = col == value
            if int(y[m].sum()) < min_segment_frauds:
                continue
            t = fit(m)
            if t != default:
                segments.append(SegmentOverride(t, **{name: value}))
    return Policy(
        default=default,
        segments=tuple(segments),
        method=method,
        params={"min_segment_frauds": min_segment_frauds, **params},
    )
