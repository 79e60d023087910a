"""The service wired by bootstrap with REAL adapters (MemoryStore + SQLite audit + signed model
registry + rules file + SecurityGate), driven over HTTP in-process."""

from __future__ import annotations

import asyncio
import itertools
import shutil
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from test_service_support import amount_feature, home, later, make_key, register_model, tx

from txguard.api.app import create_app
from txguard.bootstrap import Services, build_services
from txguard.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def _services(settings: Settings, **service: Any) -> Services:
    return build_services(settings.model_copy(update=service))


async def _client(svc: Services) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(services=svc))
    return httpx.AsyncClient(transport=transport, base_url="http://t")


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    dst = tmp_path / "rules"
    shutil.copytree(REPO / "examples", dst)
    return dst / "rules.yaml"


def test_score_explain_and_audit_with_real_adapters(tmp_path: Path, rules_file: Path) -> None:
    settings = home(tmp_path)
    version = register_model(settings)
    key, _ = make_key(settings, "scorer", "analyst", "auditor")
    svc = _services(settings, rules_path=rules_file)
    h = {"Authorization": f"Bearer {key}"}

    async def go() -> None:
        async with await _client(svc) as c:
            small = (await c.post("/v1/score", content=orjson.dumps(tx("a", 20)), headers=h)).json()
            assert (small["action"], small["model_version"], small["safe_mode"]) == (
                "APPROVE",
                version,
                False,
            )
            assert not [r for r in small["reasons"] if r["kind"] == "feature"]
            big = (await c.post("/v1/score", content=orjson.dumps(tx("b", 5000)), headers=h)).json()
            assert big["action"] in ("REVIEW", "REJECT")
            feats = [r for r in big["reasons"] if r["kind"] == "feature"]
            from txguard.features.spec import default_spec

            assert feats and feats[0]["code"] == amount_feature(default_spec().names)
            assert feats[0]["text"] == "amount is 5,000 USD"
            sanctioned = tx("c", 10, sender="acct-2", recipient={"country": "KP"})
            rej = (await c.post("/v1/score", content=orjson.dumps(sanctioned), headers=h)).json()
            assert rej["action"] == "REJECT"
            assert "sanctioned_countries" in {r["code"] for r in rej["reasons"]}

            ex = (
                await c.get(f"/v1/decisions/{small['decision_id']}/explanation", headers=h)
            ).json()
            assert ex["model_version"] == version
            assert ex["model_score"] == pytest.approx(small["score"], abs=1e-9)
            rec = (await c.get(f"/v1/decisions/{big['decision_id']}", headers=h)).json()
            assert rec["features"][amount_feature(default_spec().names)] == 5000.0
            assert rec["hash"] and rec["seq"] == 2
            page = (await c.get("/v1/audit", params={"action": "REJECT"}, headers=h)).json()
            assert [r["transaction_id"] for r in page["records"]] == ["c"]

    try:
        asyncio.run(go())
        assert svc.audit.verify().ok
    finally:
        svc.close()


def test_twenty_concurrent_duplicates_one_decision_one_increment(tmp_path: Path) -> None:
    settings = home(tmp_path)
    register_model(settings)
    key, _ = make_key(settings, "scorer", "auditor")
    svc = _services(settings)
    h = {"Authorization": f"Bearer {key}"}

    async def go() -> None:
        async with await _client(svc) as c:
            body = orjson.dumps(tx("dup", 50, sender="s-dup"))
            rs = await asyncio.gather(
                *(c.post("/v1/score", content=body, headers=h) for _ in range(20))
            )
            assert {r.status_code for r in rs} == {200}
            ids = {r.json()["decision_id"] for r in rs}
            assert len(ids) == 1
            assert sum(not r.json()["replayed"] for r in rs) == 1
            nxt = orjson.dumps(tx("next", 50, sender="s-dup", at=later(1)))
            d = (await c.post("/v1/score", content=nxt, headers=h)).json()
            page = (await c.get("/v1/audit", params={"entity": "s-dup"}, headers=h)).json()
            assert [r["transaction_id"] for r in page["records"]] == ["dup", "next"]
            # velocity counted the duplicate transaction exactly once
            assert page["records"][1]["features"]["sender_count_1h"] == 1.0
            assert d["replayed"] is False

    try:
        asyncio.run(go())
    finally:
        svc.close()


def test_promote_and_rollback_swap_without_failing_requests(tmp_path: Path) -> None:
    from txguard.model.registry import Registry

    settings = home(tmp_path)
    v1 = register_model(settings, seed=1)
    key, _ = make_key(settings, "scorer")
    svc = _services(settings)
    v2 = register_model(settings, seed=2, promote=False)
    h = {"Authorization": f"Bearer {key}"}

    async def go() -> list[str]:
        async with await _client(svc) as c:
            seen: list[str] = []
            stop = False

            async def traffic() -> None:
                i = 0
                while not stop:
                    r = await c.post("/v1/score", content=orjson.dumps(tx(f"t{i}", 20)), headers=h)
                    assert r.status_code == 200, r.text
                    seen.append(r.json()["model_version"])
                    i += 1

            task = asyncio.create_task(traffic())
            await asyncio.sleep(0.05)
            await asyncio.to_thread(svc.promote, v2)
            await asyncio.sleep(0.05)
            await asyncio.to_thread(svc.rollback)
            await asyncio.sleep(0.05)
            stop = True
            await task
            return seen

    try:
        seen = asyncio.run(go())
        assert set(seen) == {v1, v2}
        assert seen[0] == v1 and seen[-1] == v1
        # versions never interleave: each request saw one whole runtime
        changes = sum(a != b for a, b in itertools.pairwise(seen))
        assert changes == 2
        assert Registry(settings.registry_dir, "dev-insecure-signing-key").production() == v1
    finally:
        svc.close()


def test_tampered_model_starts_in_safe_mode_and_says_so(tmp_path: Path) -> None:
    settings = home(tmp_path)
    version = register_model(settings)
    model_file = settings.registry_dir / "versions" / version / "model.txt"
    model_file.parent.chmod(0o755)
    model_file.chmod(0o644)
    data = bytearray(model_file.read_bytes())
    data[100] ^= 1
    model_file.write_bytes(bytes(data))
    key, _ = make_key(settings, "scorer")
    svc = _services(settings, safe_mode_review_above_usd=1000)
    h = {"Authorization": f"Bearer {key}"}

    async def go() -> None:
        async with await _client(svc) as c:
            ready = (await c.get("/ready")).json()
            assert ready["safe_mode"] is True
            assert "IntegrityError" in ready["safe_mode_reason"]
            small = (await c.post("/v1/score", content=orjson.dumps(tx("a", 20)), headers=h)).json()
            big = (await c.post("/v1/score", content=orjson.dumps(tx("b", 5000)), headers=h)).json()
            assert small["safe_mode"] and big["safe_mode"]
            assert (small["action"], big["action"]) == ("APPROVE", "REVIEW")
            assert small["model_version"] is None

    try:
        asyncio.run(go())
        text = svc.metrics.render()[0].decode()
        assert "txguard_safe_mode 1.0" in text
    finally:
        svc.close()


def test_challenger_is_scored_in_shadow(tmp_path: Path) -> None:
    settings = home(tmp_path)
    v1 = register_model(settings, seed=1)
    v2 = register_model(settings, seed=2, promote=False, review=1e-9)
    svc = _services(settings, challenger_version=v2)
    try:
        rec = asyncio.run(svc.pipeline.score(tx("a", 300))).record
        assert rec.model_version == v1
        assert rec.challenger is not None
        assert rec.challenger["version"] == v2
        assert 0.0 <= rec.challenger["score"] <= 1.0
        # the challenger's stricter policy never acts on the decision
        assert rec.action == "APPROVE"
        assert rec.challenger["action"] in ("REVIEW", "REJECT")
    finally:
        svc.close()


def test_rules_reload_swaps_and_a_broken_file_keeps_the_old_rules(
    tmp_path: Path, rules_file: Path
) -> None:
    from txguard.domain.errors import ValidationError

    settings = home(tmp_path)
    register_model(settings)
    svc = _services(settings, rules_path=rules_file)
    try:
        before = svc.holder.current.rules.current.version
        text = rules_file.read_text()
        rules_file.write_text(text.replace('version: "2026.11.1"', 'version: "2026.11.2"'))
        after = svc.reload_rules()
        assert after != before
        assert "2026.11.2" in after
        rules_file.write_text(text + "\n  - id: broken\n    when: amout_usd > 1\n")
        with pytest.raises(ValidationError):
            svc.reload_rules()
        assert svc.holder.current.rules.current.version == after
        rec = asyncio.run(svc.pipeline.score(tx("k", 10, recipient={"country": "KP"}))).record
        assert rec.action == "REJECT"
    finally:
        svc.close()
