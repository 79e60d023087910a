"""The service on Redis feature state: idempotency under concurrency (with the PostgreSQL audit
log), and the state-store failure policy with Redis REALLY stopped (a throwaway redis-server of
our own — never the shared one on 6379)."""

from __future__ import annotations

import asyncio
import math
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import redis
from test_service_support import later, make_key, register_model, tx

from txguard.api.app import create_app
from txguard.bootstrap import build_services
from txguard.settings import Settings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def throwaway_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server not installed")
    port = _free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, socket_timeout=0.5)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.RedisError:
            time.sleep(0.05)
    client.close()
    yield url, proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.mark.redis
@pytest.mark.parametrize(
    ("policy", "small_action"), [("fail_open", "APPROVE"), ("fail_closed", "REVIEW")]
)
def test_state_store_down_policy(
    tmp_path: Path,
    throwaway_redis: tuple[str, subprocess.Popen[bytes]],
    policy: str,
    small_action: str,
) -> None:
    url, proc = throwaway_redis
    settings = Settings(home=tmp_path / "home", redis_url=url, state_store_failure=policy)
    register_model(settings)
    svc = build_services(settings)

    async def go() -> tuple[dict, dict]:  # type: ignore[type-arg]
        before = await svc.pipeline.score(tx("a", 20, sender="s1"))
        proc.kill()  # Redis is really gone now
        proc.wait()
        t0 = time.perf_counter()
        after = await svc.pipeline.score(tx("b", 20, sender="s1", at=later(1)))
        took = time.perf_counter() - t0
        assert took < 2.0  # the dependency timeout bounds it; it does not hang
        return before.record, after.record

    try:
        before, after = asyncio.run(go())
        assert before.degraded == [] and before.action == "APPROVE"
        assert after.degraded == ["state_store"]
        assert after.action == small_action
        x = after.features["sender_count_1h"]
        assert x is None or math.isnan(x)  # stateful features unavailable
        assert any(r["code"] == "state_store_unavailable" for r in after.reasons)
        ready = svc.readiness()
        assert ready["state_store"].startswith("unavailable")
        assert ready["ready"] is (policy == "fail_open")
        text = svc.metrics.render()[0].decode()
        assert 'txguard_degraded_decisions_total{dependency="state_store"} 1.0' in text
    finally:
        svc.close()


@pytest.mark.redis
@pytest.mark.postgres
def test_concurrent_duplicates_on_redis_and_postgres(
    tmp_path: Path, redis_url: str, key_prefix: str, pg_url: str
) -> None:
    settings = Settings(home=tmp_path / "home", redis_url=redis_url, database_url=pg_url)
    register_model(settings)
    key, _ = make_key(settings, "scorer", "auditor")
    svc = build_services(settings.model_copy(update={"redis_prefix": key_prefix}))
    h = {"Authorization": f"Bearer {key}"}

    async def go() -> None:
        transport = httpx.ASGITransport(app=create_app(services=svc))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            body = orjson.dumps(tx("dup", 50, sender="s-dup"))
            rs = await asyncio.gather(
                *(c.post("/v1/score", content=body, headers=h) for _ in range(20))
            )
            assert {r.status_code for r in rs} == {200}, [r.text for r in rs]
            assert len({r.json()["decision_id"] for r in rs}) == 1
            nxt = orjson.dumps(tx("next", 50, sender="s-dup", at=later(1)))
            assert (await c.post("/v1/score", content=nxt, headers=h)).status_code == 200
            page = (await c.get("/v1/audit", params={"entity": "s-dup"}, headers=h)).json()
            assert [r["transaction_id"] for r in page["records"]] == ["dup", "next"]
            assert page["records"][1]["features"]["sender_count_1h"] == 1.0

    try:
        asyncio.run(go())
        assert svc.audit.verify().ok
    finally:
        svc.close()
