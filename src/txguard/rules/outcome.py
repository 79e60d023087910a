"""What rule and list hits mean together: :func:`combine` and its precedence.

Precedence, strongest first (a demanding compliance officer's reading of "allow-list"):

1. **REJECT** — any ``force_reject`` hit (a rule, a ``block`` list, a ``sanctions`` list).
   Nothing overrides it, an allow-list hit included.
2. **REVIEW that an allow cannot cancel** — a ``high_risk`` country list hit
   (``overridable=False``): enhanced due diligence is an obligation, not a fraud guess.
3. **allow** — an ``allow`` hit (a rule or an ``allow`` list) cancels every *overridable*
   ``force_review`` (from rules and ``review`` lists); the cancelled hits stay visible in
   :attr:`Outcome.suppressed` and add no score. With nothing forced, :meth:`Outcome.apply` also
   lowers the model policy's REVIEW to APPROVE — but never its REJECT.
4. **REVIEW** — any remaining ``force_review`` hit.
5. **score** — ``score_delta`` is the sum of the deltas of every hit not suppressed; it moves
   the model's calibrated probability before the policy thresholds (:meth:`Outcome.adjust`).

>>> hits = [RuleHit("big_new_account", "force_review", 0.1, "large amount, new account"),
...         RuleHit("trusted_merchants", "allow", 0.0, "on an allow-list", "list")]
>>> o = combine(hits)
>>> o.action, o.allowed, [h.rule_id for h in o.suppressed], o.apply(Action.REVIEW)
(None, True, ['big_new_account'], <Action.APPROVE: 'APPROVE'>)
>>> combine(hits + [RuleHit("sanctioned_countries", "force_reject", 0.0, "OFAC", "list",
...                         overridable=False)]).action
<Action.REJECT: 'REJECT'>
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from txguard.domain.decision import Action, Reason, ReasonKind


class Effect(StrEnum):
    FORCE_REVIEW = "force_review"
    FORCE_REJECT = "force_reject"
    ADD_SCORE = "add_score"
    ALLOW = "allow"


@dataclass(frozen=True, slots=True)
class RuleHit:
    """One rule that fired or one list that matched; each becomes a reason of the decision."""

    rule_id: str  # the rule's id, or the list's name
    effect: str  # an Effect value: force_review | force_reject | add_score | allow
    score_delta: float
    reason: str
    kind: str = "rule"  # "rule" | "list"
    overridable: bool = True  # may an allow hit cancel this force_review? (high_risk: no)

    def to_reason(self) -> Reason:
        """The decision's reason for this hit (code = rule id or list name)."""
        return Reason(
            kind=ReasonKind.LIST if self.kind == "list" else ReasonKind.RULE,
            code=self.rule_id,
            text=self.reason,
            value=self.score_delta if self.score_delta else None,
        )


@dataclass(frozen=True, slots=True)
class Outcome:
    """The net effect of a list of hits (see the module docstring for the precedence)."""

    action: Action | None  # forced: None, REVIEW or REJECT
    score_delta: float
    allowed: bool  # an allow hit stands (nothing forced it away)
    hits: tuple[RuleHit, ...] = ()
    suppressed: tuple[RuleHit, ...] = ()  # force_review hits cancelled by an allow hit

    def adjust(self, score: float) -> float:
        """The model's probability moved by ``score_delta``, kept within 0..1."""
        return min(1.0, max(0.0, score + self.score_delta))

    def apply(self, policy_action: Action) -> Action:
        """The final action given what the model policy decided."""
        if self.action is Action.REJECT:
            return Action.REJECT
        if self.action is Action.REVIEW:
            return policy_action.at_least(Action.REVIEW)
        if self.allowed and policy_action is Action.REVIEW:
            return Action.APPROVE
        return policy_action


NO_OUTCOME = Outcome(action=None, score_delta=0.0, allowed=False)


def combine(hits: Iterable[RuleHit]) -> Outcome:
    """Fold hits into one :class:`Outcome` by the documented precedence (one pass)."""
    hits = tuple(hits)
    if not hits:
        return NO_OUTCOME
    rejected = allow = binding_review = False
    reviews: list[RuleHit] = []
    for h in hits:
        e = h.effect
        if e == "force_reject":
            rejected = True
        elif e == "allow":
            allow = True
        elif e == "force_review":
            if h.overridable:
                reviews.append(h)
            else:
                binding_review = True
    suppressed: tuple[RuleHit, ...] = ()
    if rejected:
        action: Action | None = Action.REJECT
    elif binding_review or (reviews and not allow):
        action = Action.REVIEW
    else:
        action = None
    if allow and not rejected and reviews:
        suppressed = tuple(reviews)
        delta = sum(
            h.score_delta for h in hits if not (h.overridable and h.effect == "force_review")
        )
    else:
        delta = sum(h.score_delta for h in hits)
    return Outcome(
        action=action,
        score_delta=float(delta),
        allowed=allow and action is None,
        hits=hits,
        suppressed=suppressed,
    )
