"""RuleSet.evaluate, combine's precedence, and RuleEngine's reload without restart."""

from __future__ import annotations

import math
import os
import textwrap
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from txguard.domain.decision import Action, ReasonKind
from txguard.domain.errors import IntegrityError, ValidationError
from txguard.domain.events import TransactionEvent, parse_transaction
from txguard.rules.rules import RuleEngine, RuleHit, RuleSet, combine
from txguard.rules.signing import sign_file

FEATURES = ["sender_count_1h", "sender_sum_amount_usd_24h"]

RULES = """
version: "7"
lists:
  sanctioned: {kind: sanctions, values: [IR]}
  risky: {kind: high_risk, values: [NG]}
  watch: {kind: review, fields: device_id, values: [dev-watch]}
  trusted: {kind: allow, fields: merchant_id, values: [m-good]}
rules:
  - id: big_new_account
    when: amount_usd > 10000 and sender_account_age_days < 7
    action: force_review
    score: 0.1
    reason: Large amount from a new account
  - id: burst
    when: sender_count_1h >= 10
    action: add_score
    score: 0.2
    reason: Burst of payments
  - id: structuring
    when: 9000 <= amount_usd < 10000 and sender_sum_amount_usd_24h + amount_usd >= 10000
    action: force_reject
    reason: Structuring
"""


def event(**over: object) -> TransactionEvent:
    d: dict[str, object] = {
        "transaction_id": "t1",
        "occurred_at": "2026-03-10T12:00:00Z",
        "amount": 100.0,
        "currency": "USD",
        "sender": {"account_id": "acc-1", "country": "FR", "created_at": "2026-03-08T12:00:00Z"},
        "recipient": {"account_id": "acc-2", "country": "DE"},
    }
    d.update(over)
    return parse_transaction(d)


@pytest.fixture
def rules_path(tmp_path: Path) -> Path:
    p = tmp_path / "rules.yaml"
    p.write_text(textwrap.dedent(RULES))
    return p


@pytest.fixture
def rs(rules_path: Path) -> RuleSet:
    return RuleSet.load(rules_path, known_features=FEATURES)


def ids(hits: list[RuleHit]) -> list[str]:
    return [h.rule_id for h in hits]


def test_rules_fire_on_event_fields_and_features(rs: RuleSet) -> None:
    assert ids(rs.evaluate(event(), {})) == []
    assert ids(rs.evaluate(event(amount=20000.0), {})) == ["big_new_account"]
    assert ids(rs.evaluate(event(), {"sender_count_1h": 12.0})) == ["burst"]
    feats = {"sender_sum_amount_usd_24h": 900.0}
    assert ids(rs.evaluate(event(amount=9500.0), feats)) == ["structuring"]
    assert ids(rs.evaluate(event(amount=9500.0), {"sender_sum_amount_usd_24h": 100.0})) == []


def test_amount_usd_uses_the_reference_conversion(rs: RuleSet) -> None:
    # 20,000 EUR with no amount_usd sent: converted at the static reference rate (> 10,000 USD)
    assert ids(rs.evaluate(event(amount=20000.0, currency="EUR"), {})) == ["big_new_account"]
    # an explicit amount_usd wins
    e = event(amount=20000.0, currency="EUR", amount_usd=5000.0)
    assert ids(rs.evaluate(e, {})) == []


def test_missing_values_never_fire(rs: RuleSet) -> None:
    no_age = event(amount=20000.0, sender={"account_id": "a"})  # created_at unknown
    assert rs.evaluate(no_age, {}) == []
    assert rs.evaluate(event(), {"sender_count_1h": math.nan}) == []
    assert rs.evaluate(event(amount=9500.0), {"sender_sum_amount_usd_24h": math.nan}) == []


def test_hits_carry_the_rule_text_and_become_reasons(rs: RuleSet) -> None:
    (hit,) = rs.evaluate(event(amount=20000.0), {})
    assert hit == RuleHit("big_new_account", "force_review", 0.1, "Large amount from a new account")
    reason = hit.to_reason()
    assert (reason.kind, reason.code, reason.value) == (ReasonKind.RULE, "big_new_account", 0.1)
    (lh,) = rs.evaluate(event(device_id="dev-watch"), {})
    assert lh.to_reason().kind is ReasonKind.LIST and lh.to_reason().value is None


def test_evaluate_does_not_touch_its_inputs(rs: RuleSet) -> None:
    feats = {"sender_count_1h": 12.0, "other": 1.0}
    before = dict(feats)
    e = event()
    rs.evaluate(e, feats)
    assert feats == before
    assert rs.evaluate(e, feats) == rs.evaluate(e, feats)


def test_empty_rule_set() -> None:
    empty = RuleSet.empty()
    assert empty.version == "empty"
    assert empty.evaluate(event(amount=1e6), {"x": 1.0}) == []


# ---------------------------------------------------------------- combine: precedence


def H(effect: str, *, delta: float = 0.0, overridable: bool = True, rid: str = "r") -> RuleHit:
    return RuleHit(rid, effect, delta, "why", "rule", overridable=overridable)


def test_nothing_forced() -> None:
    o = combine([])
    assert (o.action, o.score_delta, o.allowed) == (None, 0.0, False)
    assert o.apply(Action.REVIEW) is Action.REVIEW
    o = combine([H("add_score", delta=0.2), H("add_score", delta=0.1)])
    assert o.action is None and o.score_delta == pytest.approx(0.3)
    assert o.adjust(0.9) == 1.0 and o.adjust(0.1) == pytest.approx(0.4)


def test_reject_beats_everything() -> None:
    o = combine([H("allow"), H("force_review"), H("force_reject", overridable=False)])
    assert o.action is Action.REJECT and not o.allowed
    assert o.apply(Action.APPROVE) is Action.REJECT


def test_rule_reject_is_not_cancelled_by_allow() -> None:
    o = combine([H("force_reject"), H("allow")])
    assert o.action is Action.REJECT and not o.allowed and o.suppressed == ()


def test_allow_cancels_overridable_review_and_its_score() -> None:
    review = H("force_review", delta=0.3, rid="rev")
    o = combine([review, H("allow", rid="ok"), H("add_score", delta=0.1)])
    assert o.action is None and o.allowed
    assert o.suppressed == (review,)
    assert o.score_delta == pytest.approx(0.1)
    assert o.apply(Action.REVIEW) is Action.APPROVE  # model's review lowered
    assert o.apply(Action.REJECT) is Action.REJECT  # never a reject
    assert o.apply(Action.APPROVE) is Action.APPROVE


def test_allow_cannot_cancel_high_risk_review() -> None:
    o = combine([H("force_review", overridable=False), H("allow"), H("force_review")])
    assert o.action is Action.REVIEW and not o.allowed
    assert len(o.suppressed) == 1
    assert o.apply(Action.APPROVE) is Action.REVIEW
    assert o.apply(Action.REJECT) is Action.REJECT


def test_precedence_end_to_end(rs: RuleSet) -> None:
    def outcome(**over: object) -> tuple[Action | None, bool]:
        o = rs.outcome(event(**over), {})
        return o.action, o.allowed

    big = {"amount": 20000.0}
    assert outcome(**big) == (Action.REVIEW, False)
    assert outcome(**big, merchant_id="m-good") == (None, True)  # allow cancels rule review
    assert outcome(device_id="dev-watch", merchant_id="m-good") == (None, True)
    ng = {"recipient": {"country": "NG"}}
    assert outcome(**ng, merchant_id="m-good") == (Action.REVIEW, False)  # high_risk stays
    ir = {"recipient": {"country": "IR"}}
    assert outcome(**ir, merchant_id="m-good") == (Action.REJECT, False)  # sanctions stays


# ---------------------------------------------------------------- RuleEngine


def _bump(path: Path, text: str) -> None:
    """Rewrite and move the mtime forward so the change is visible whatever the fs resolution."""
    st = path.stat()
    path.write_text(text)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))


def test_engine_loads_and_reloads(rules_path: Path) -> None:
    eng = RuleEngine(rules_path, known_features=FEATURES)
    first = eng.current
    assert ids(first.evaluate(event(amount=20000.0), {})) == ["big_new_account"]
    assert eng.reload_if_changed() is False
    _bump(rules_path, rules_path.read_text().replace("amount_usd > 10000", "amount_usd > 50000"))
    assert eng.reload_if_changed() is True
    assert eng.current is not first and eng.current.version != first.version
    assert eng.current.evaluate(event(amount=20000.0), {}) == []
    assert first.evaluate(event(amount=20000.0), {}) != []  # the old set is untouched
    assert eng.reload_if_changed() is False


def test_broken_reload_keeps_the_old_set(rules_path: Path) -> None:
    eng = RuleEngine(rules_path, known_features=FEATURES)
    good = eng.current
    good_text = rules_path.read_text()
    _bump(rules_path, good_text.replace("amount_usd > 10000", "amout_usd > 10000"))
    with pytest.raises(ValidationError, match="unknown field 'amout_usd'"):
        eng.reload_if_changed()
    assert eng.current is good
    assert isinstance(eng.last_error, ValidationError)
    assert eng.reload_if_changed() is False  # the same broken file is not retried every call
    with pytest.raises(ValidationError):
        eng.reload()  # an explicit reload tries again
    assert eng.current is good
    _bump(rules_path, good_text.replace("10000 and", "20000 and"))
    assert eng.reload_if_changed() is True
    assert eng.last_error is None


def test_list_file_change_is_picked_up(tmp_path: Path) -> None:
    (tmp_path / "w.txt").write_text("w1\n")
    p = tmp_path / "rules.yaml"
    p.write_text(
        'version: "1"\nlists:\n  w: {kind: block, fields: recipient_wallet_address, file: w.txt}\n'
    )
    eng = RuleEngine(p, known_features=[])
    e = event(recipient={"wallet_address": "w2"})
    assert eng.current.evaluate(e, {}) == []
    _bump(tmp_path / "w.txt", "w1\nw2\n")
    assert eng.reload_if_changed() is True
    assert ids(eng.current.evaluate(e, {})) == ["w"]


def test_touch_without_change_keeps_the_version(rules_path: Path) -> None:
    eng = RuleEngine(rules_path, known_features=FEATURES)
    v = eng.current.version
    _bump(rules_path, rules_path.read_text())
    assert eng.reload_if_changed() is False
    assert eng.current.version == v


def test_engine_refuses_a_bad_file_at_start(tmp_path: Path) -> None:
    p = tmp_path / "rules.yaml"
    p.write_text('version: "1"\nrules:\n  - {id: a, when: nope > 1, action: allow, reason: r}\n')
    with pytest.raises(ValidationError, match=r"rules\.yaml:3: unknown field 'nope'"):
        RuleEngine(p, known_features=[])


def test_signed_reload(rules_path: Path) -> None:
    sign_file(rules_path, "key")
    eng = RuleEngine(rules_path, known_features=FEATURES, signing_key="key")
    good = eng.current
    _bump(rules_path, rules_path.read_text() + "# tampered\n")  # signature no longer matches
    with pytest.raises(IntegrityError):
        eng.reload_if_changed()
    assert eng.current is good
    sign_file(rules_path, "key")  # the signature file changes too: re-check
    assert eng.reload_if_changed() is True


def test_readers_always_see_a_whole_rule_set(rules_path: Path) -> None:
    eng = RuleEngine(rules_path, known_features=FEATURES)
    texts = [
        rules_path.read_text(),
        rules_path.read_text().replace('version: "7"', 'version: "8"'),
    ]
    seen: set[str] = set()
    stop = threading.Event()
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            while not stop.is_set():
                cur = eng.current
                seen.add(cur.version.split("+")[0])
                assert ids(cur.evaluate(event(amount=20000.0), {})) == ["big_new_account"]
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(20):
            _bump(rules_path, texts[i % 2])
            eng.reload()
    finally:
        stop.set()
        t.join()
    assert errors == []
    assert seen <= {"7", "8"}


# ---------------------------------------------------------------- combine: property


def _reference_combine(hits: list[RuleHit]) -> tuple[Action | None, bool, float, set[int]]:
    """The precedence of docs/rules.md, written the plain way, step by step."""
    if any(h.effect == "force_reject" for h in hits):
        return Action.REJECT, False, sum(h.score_delta for h in hits), set()
    allow = any(h.effect == "allow" for h in hits)
    cancelled = {
        i for i, h in enumerate(hits) if allow and h.effect == "force_review" and h.overridable
    }
    remaining = [h for i, h in enumerate(hits) if h.effect == "force_review" and i not in cancelled]
    action = Action.REVIEW if remaining else None
    delta = sum(h.score_delta for i, h in enumerate(hits) if i not in cancelled)
    return action, allow and action is None, delta, cancelled


_hit = st.builds(
    RuleHit,
    rule_id=st.sampled_from(["a", "b", "c"]),
    effect=st.sampled_from(["force_review", "force_reject", "add_score", "allow"]),
    score_delta=st.sampled_from([0.0, 0.05, -0.1, 0.25]),
    reason=st.just("r"),
    kind=st.sampled_from(["rule", "list"]),
    overridable=st.booleans(),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_hit, max_size=8))
def test_combine_follows_the_documented_precedence(hits: list[RuleHit]) -> None:
    o = combine(hits)
    action, allowed, delta, cancelled = _reference_combine(hits)
    assert o.action is action
    assert o.allowed is allowed
    assert o.score_delta == pytest.approx(delta)
    assert [id(h) for h in o.suppressed] == [id(hits[i]) for i in sorted(cancelled)]
    assert o.hits == tuple(hits)
    for policy in Action:
        final = o.apply(policy)
        if action is Action.REJECT:
            assert final is Action.REJECT
        elif action is Action.REVIEW:
            assert final is policy.at_least(Action.REVIEW)
        elif allowed and policy is Action.REVIEW:
            assert final is Action.APPROVE
        else:
            assert final is policy


def test_derived_event_fields(tmp_path: Path) -> None:
    p = tmp_path / "rules.yaml"
    p.write_text(
        'version: "1"\nrules:\n'
        "  - {id: h, when: hour == 23 and weekday == 1, action: add_score, score: 0.1, reason: r}\n"
        "  - {id: age, when: 1.99 < sender_account_age_days < 2.01, action: allow, reason: r}\n"
        "  - {id: t, when: type == 'card' and channel == 'web', action: allow, reason: r}\n"
    )
    rs = RuleSet.load(p, known_features=[])
    # 2026-03-10 is a Tuesday (weekday 1); hour and weekday are taken in UTC
    e = event(occurred_at="2026-03-10T23:30:00Z", type="card", channel="web")
    assert ids(rs.evaluate(e, {})) == ["h", "t"]
    e = event(occurred_at="2026-03-11T01:30:00+02:00")  # Wednesday locally, Tuesday 23h UTC
    assert ids(rs.evaluate(e, {})) == ["h"]
    e = event(occurred_at="2026-03-11T23:30:00Z")  # Wednesday 23h
    assert ids(rs.evaluate(e, {})) == []
    e = event(occurred_at="2026-03-10T12:00:00Z")  # sender created 2026-03-08T12:00Z
    assert ids(rs.evaluate(e, {})) == ["age"]
