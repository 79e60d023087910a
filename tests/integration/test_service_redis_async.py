"""The service with Redis awaits feature round trips on its event loop (``features_async``, on by
default with Redis): the setting's mapping, the same decisions as the threaded path, and the
app's lifespan shutdown closing the link it made on its loop."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import orjson
import pytest
from test_service_support import later, make_key, register_model, tx

from txguard.api.app import create_app
from txguard.bootstrap import build_services, pipeline_config
from txguard.settings import Settings

pytestmark = pytest.mark.redis


def test_features_async_is_on_with_redis_unless_switched_off(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert pipeline_config(Settings(home=home, redis_url="redis://h/0")).features_async
    assert not pipeline_config(Settings(home=home)).features_async  # MemoryStore: inline
    off = pipeline_config(Settings(home=home, redis_url="redis://h/0", features_async=False))
    assert not off.features_async and off.features_in_thread  # the threaded path
    assert pipeline_config(Settings(home=home, features_async=True)).features_async


def _decide(settings: Settings) -> list[dict[str, object]]:
    """Score a burst (concurrent: shared batches) and a follow-up per sender; the decisions as
    stored, without what differs per run (ids, times, latency)."""
    svc = build_services(settings)

    async def go() -> list[dict[str, object]]:
        burst = [tx(f"t{i}", 10.0 + i, sender=f"s{i % 3}", at=later(i)) for i in range(24)]
        burst.append(burst[5])  # a repeated id inside a batch
        scored = await svc.pipeline.score_many(burst)
        scored += await svc.pipeline.score_many([tx("u", 5.0, sender="s1", at=later(30))])
        assert all(not isinstance(s, Exception) for s in scored), scored
        return [
            {
                "tx": s.record.transaction_id,  # type: ignore[union-attr]
                "features": s.record.features,  # type: ignore[union-attr]
                "score": s.record.score,  # type: ignore[union-attr]
                "action": s.record.action,  # type: ignore[union-attr]
            }
            for s in scored
        ]

    try:
        out = asyncio.run(go())
    finally:
        links = svc.store.links()  # type: ignore[union-attr]
        svc.close()
    assert len(links) == (1 if svc.pipeline.config.features_async else 0)
    assert all(link.fileno() == -1 for link in links)
    return out


def test_the_same_decisions_on_the_loop_and_in_a_thread(
    tmp_path: Path, redis_url: str, key_prefix: str
) -> None:
    def settings(name: str, **kw: object) -> Settings:
        s = Settings(home=tmp_path / name, redis_url=redis_url, redis_prefix=key_prefix + name)
        register_model(s)
        return s.model_copy(update=kw)

    on_loop = _decide(settings("loop"))
    threaded = _decide(settings("thread", features_async=False))
    sort = orjson.OPT_SORT_KEYS
    assert orjson.dumps(on_loop, option=sort) == orjson.dumps(threaded, option=sort)
    assert on_loop[-1]["features"]["sender_count_1h"] == 8.0  # type: ignore[index]


def test_the_lifespan_shutdown_closes_the_link(
    tmp_path: Path, redis_url: str, key_prefix: str
) -> None:
    settings = Settings(home=tmp_path / "home", redis_url=redis_url, redis_prefix=key_prefix)
    register_model(settings)
    key, _ = make_key(settings, "scorer")
    app = create_app(settings)  # the services are built and closed by its lifespan

    async def go() -> list[object]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                r = await c.post(
                    "/v1/score",
                    content=orjson.dumps(tx("l1")),
                    headers={"Authorization": f"Bearer {key}"},
                )
                assert r.status_code == 200, r.text
                assert r.json()["degraded"] == []
            links: list[object] = app.state.services.store.links()
            assert len(links) == 1 and links[0].fileno() != -1  # type: ignore[attr-defined]
        return links

    (link,) = asyncio.run(go())
    assert link.fileno() == -1 and link.closed  # type: ignore[attr-defined]


def test_audit_async_maps_to_the_audit_logs_loop_writer(tmp_path: Path, pg_url: str) -> None:
    """``audit_async`` unset: the service commits PostgreSQL batches from its event loop; off:
    through the writer thread; SQLite always through the writer thread."""
    for value, on_pg in ((None, True), (False, False), (True, True)):
        home = tmp_path / f"pg-{value}"
        svc = build_services(Settings(home=home, database_url=pg_url, audit_async=value))
        try:
            assert svc.audit.loop_writer is on_pg
        finally:
            svc.close()
    svc = build_services(Settings(home=tmp_path / "sqlite", audit_async=True))
    try:
        assert svc.audit.loop_writer is False
    finally:
        svc.close()
