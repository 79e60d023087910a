"""The decision pipeline against small fakes of its ports (no I/O)."""

from __future__ import annotations

import asyncio
import math

import pytest
from test_pipeline_fakes import Model, make_pipeline, tx

from txguard.domain.decision import Action
from txguard.domain.errors import ValidationError
from txguard.scoring.reasons import render_feature
from txguard.scoring.request import decision_view
from txguard.scoring.runtime import Runtime


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_low_amount_is_approved_with_no_feature_reasons() -> None:
    p, _, audit, _ = make_pipeline(model=Model())
    s = run(p.score(tx(amount=100)))
    r = s.record
    assert (r.action, r.risk_level, r.safe_mode, r.model_version) == ("APPROVE", "LOW", False, "m1")
    assert r.score == pytest.approx(0.01)
    assert r.reasons == []
    assert audit.by_tx["t1"] is r
    assert r.event["amount"] == 100  # the caller's JSON as received


def test_flagged_decision_gets_top_contributions_in_words() -> None:
    model = Model()
    p, _, _, _ = make_pipeline(model=model)
    r = run(p.score(tx(amount=6000))).record
    assert r.action == "REVIEW"
    feats = [x for x in r.reasons if x["kind"] == "feature"]
    # only positive contributions, strongest first; the negative one is left out
    assert [x["code"] for x in feats] == ["amount_usd"]
    assert feats[0]["value"] == pytest.approx(6.0)
    assert model.explained == 1


def test_rule_delta_raises_score_and_forced_reject_wins() -> None:
    p, _, _, _ = make_pipeline(model=Model())
    r = run(p.score(tx("a", amount=3000, merchant_id="risky"))).record
    assert r.score == pytest.approx(0.6)
    assert r.action == "REVIEW"
    assert r.rule_hits[0]["rule_id"] == "risky_merchant"
    r2 = run(p.score(tx("b", amount=10, sender={"account_id": "x", "country": "KP"}))).record
    assert (r2.action, r2.risk_level) == ("REJECT", "HIGH")
    assert r2.reasons[0] == {
        "kind": "list",
        "code": "sanctioned_country",
        "text": "sanctioned",
    }


def test_allow_list_overrides_model_review_but_not_forced_reject() -> None:
    p, _, _, _ = make_pipeline(model=Model())
    r = run(p.score(tx("a", amount=6000, device_id="allow-me"))).record
    assert r.action == "APPROVE"
    r2 = run(
        p.score(
            tx("b", amount=6000, device_id="allow-me", sender={"account_id": "x", "country": "KP"})
        )
    ).record
    assert r2.action == "REJECT"


def test_same_transaction_returns_first_decision_and_counts_once() -> None:
    p, engine, audit, _ = make_pipeline(model=Model())
    first = run(p.score(tx("t1")))
    again = run(p.score(tx("t1")))
    assert not first.replayed
    assert again.replayed
    assert again.record.decision_id == first.record.decision_id
    assert engine.counts == {"acct-1": 1}
    assert audit.appends == 1


def test_concurrent_duplicates_share_one_decision() -> None:
    p, engine, audit, _ = make_pipeline(model=Model())

    async def go():  # type: ignore[no-untyped-def]
        return await asyncio.gather(*(p.score(tx("dup", amount=6000)) for _ in range(20)))

    results = run(go())
    assert len({s.record.decision_id for s in results}) == 1
    assert sum(not s.replayed for s in results) == 1
    assert engine.counts == {"acct-1": 1}
    assert audit.appends == 1


def test_safe_mode_is_rules_only_and_never_approves_large_amounts() -> None:
    p, _, _, _ = make_pipeline(model=None, safe_mode_review_above_usd=1000.0)
    small = run(p.score(tx("s", amount=10))).record
    big = run(p.score(tx("b", amount=5000))).record
    rej = run(p.score(tx("r", amount=1, sender={"account_id": "x", "country": "KP"}))).record
    assert small.safe_mode and big.safe_mode and rej.safe_mode
    assert (small.action, big.action, rej.action) == ("APPROVE", "REVIEW", "REJECT")
    assert small.model_version is None
    assert small.reasons[0]["code"] == "safe_mode"
    assert "model signature invalid" in small.reasons[0]["text"]


def test_safe_mode_default_action_is_configurable() -> None:
    p, _, _, _ = make_pipeline(model=None, safe_mode_default_action=Action.REVIEW)
    assert run(p.score(tx(amount=1))).record.action == "REVIEW"


@pytest.mark.parametrize(
    ("policy", "expected"), [("fail_open", "APPROVE"), ("fail_closed", "REVIEW")]
)
def test_state_store_down(policy: str, expected: str) -> None:
    p, engine, _, _ = make_pipeline(model=Model(), state_store_failure=policy)
    engine.down = True
    r = run(p.score(tx(amount=100))).record
    assert r.degraded == ["state_store"]
    assert r.action == expected
    x = r.features["sender_count_24h"]
    assert x is None or math.isnan(x)  # only point-wise features were available
    assert any(x["code"] == "state_store_unavailable" for x in r.reasons)


def test_external_features_only_when_declared() -> None:
    p, _, _, _ = make_pipeline(model=Model())
    r = run(p.score({**tx("e"), "features": {"device_score": 0.7}})).record
    assert r.features["device_score"] == pytest.approx(0.7)
    with pytest.raises(ValidationError) as ei:
        run(p.score({**tx("f", amount=-1), "features": {"sender_count_24h": 3}}))
    locs = {e.loc for e in ei.value.errors}
    assert locs == {"amount", "features.sender_count_24h"}


def test_challenger_is_recorded_but_never_acts() -> None:
    class Harsh(Model):
        def predict(self, row):  # type: ignore[no-untyped-def]
            return 0.99

    p, _, _, _ = make_pipeline(model=Model(), challenger=Harsh(version="m2"))
    r = run(p.score(tx(amount=100))).record
    assert r.action == "APPROVE"
    assert r.challenger == {
        "version": "m2",
        "score": 0.99,
        "action": "REJECT",
        "risk_level": "CRITICAL",
    }


def test_swap_runtime_between_requests() -> None:
    p, engine, _, holder = make_pipeline(model=None)
    assert run(p.score(tx("a"))).record.safe_mode
    old = holder.current
    holder.swap(
        Runtime.build(
            engine=engine, rules=old.rules, combine=old.combine, champion=Model(version="m9")
        )
    )
    r = run(p.score(tx("b"))).record
    assert (r.safe_mode, r.model_version) == (False, "m9")


def test_explanation_recomputes_from_stored_features() -> None:
    model = Model()
    p, _, _, _ = make_pipeline(model=model)
    r = run(p.score(tx(amount=2000))).record
    ex = p.explain(r, model)
    assert ex["model_score"] == pytest.approx(0.2)
    assert ex["contributions"][0]["feature"] == "amount_usd"
    assert ex["contributions"][0]["contribution"] == pytest.approx(2.0)


def test_decision_view_has_the_contract_fields() -> None:
    p, _, _, _ = make_pipeline(model=Model())
    view = decision_view(run(p.score(tx())))
    assert set(view) >= {
        "decision_id",
        "transaction_id",
        "score",
        "risk_level",
        "action",
        "reasons",
        "model_version",
        "policy_version",
        "safe_mode",
        "latency_ms",
    }


def test_batch_has_per_item_errors() -> None:
    p, _, _, _ = make_pipeline(model=Model())
    out = run(p.score_many([tx("a"), {"nope": 1}, tx("c")]))
    assert not isinstance(out[0], Exception)
    assert isinstance(out[1], ValidationError)
    assert not isinstance(out[2], Exception)


@pytest.mark.parametrize(
    ("name", "value", "text"),
    [
        ("sender_ratio_mean_amount_usd_30d", 14.0, "amount is 14× this sender's 30-day average"),
        ("sender_count_1h", 7.0, "7 transactions of this sender in the last hour"),
        (
            "terminal_fraud_rate_7d",
            0.38,
            "38 % of this terminal's known-outcome transactions in the last 7 days were fraud",
        ),
        ("unknown_thing", 2.5, "unknown thing = 2.50"),
        ("sender_count_1h", float("nan"), "sender count 1h is unknown"),
    ],
)
def test_render_feature(name: str, value: float, text: str) -> None:
    assert render_feature(name, value) == text


def test_concurrent_requests_share_one_feature_store_round_trip() -> None:
    p, engine, audit, _ = make_pipeline(model=Model())

    async def go():  # type: ignore[no-untyped-def]
        return await asyncio.gather(*(p.score(tx(f"c{i}", amount=10 + i)) for i in range(12)))

    results = run(go())
    assert engine.batches == [12]
    # one sender: within the batch each request sees the ones before it, as if one by one
    counts = sorted(s.record.features["sender_count_24h"] for s in results)
    assert counts == [float(i) for i in range(12)]
    assert audit.appends == 12


def test_concurrent_decisions_share_one_audit_append() -> None:
    p, _, audit, _ = make_pipeline(model=Model())

    async def go():  # type: ignore[no-untyped-def]
        return await asyncio.gather(*(p.score(tx(f"a{i}", amount=10 + i)) for i in range(9)))

    results = run(go())
    assert sum(audit.batches) == 9 and len(audit.batches) <= 2
    assert sorted(s.record.seq for s in results) == list(range(1, 10))


def test_a_batch_spanning_a_runtime_swap_goes_to_each_engine_in_order() -> None:
    from test_pipeline_fakes import FakeEngine

    from txguard.domain.events import parse_transaction
    from txguard.scoring.pipeline import _process_jobs

    a, b = FakeEngine(), FakeEngine()
    parsed = [parse_transaction(tx(f"s{i}", amount=10)) for i in range(4)]
    jobs = [(a, parsed[0], None), (a, parsed[1], None), (b, parsed[2], None), (a, parsed[3], None)]
    out = _process_jobs(jobs)  # type: ignore[arg-type]
    assert (a.batches, b.batches) == ([2, 1], [1])
    # each engine counted only its own transactions, in submission order
    assert [r.values["sender_count_24h"] for r in out] == [0.0, 1.0, 0.0, 2.0]
