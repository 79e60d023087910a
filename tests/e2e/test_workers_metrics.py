"""Two workers, one service: the metrics count every worker's decisions whichever worker answers
the scrape (prometheus_client multiprocess mode, set up by `txguard serve --workers N`)."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from test_kill9_durability import free_port, start_server
from test_service_support import make_key, register_model, tx

from txguard.settings import Settings


def _decisions(text: str) -> float:
    return sum(
        float(m.group(1))
        for m in re.finditer(r"^txguard_decisions_total\{[^}]*\} ([0-9.e+]+)$", text, re.M)
    )


def test_metrics_add_up_over_two_workers(
    tmp_path: Path, redis_url: str, key_prefix: str, pg_url: str
) -> None:
    metrics_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TXGUARD_", "PROMETHEUS_"))}
    env.update(
        TXGUARD_HOME=str(tmp_path / "home"),
        TXGUARD_REDIS_URL=redis_url,
        TXGUARD_REDIS_PREFIX=key_prefix,
        TXGUARD_DATABASE_URL=pg_url,
        TXGUARD_METRICS_PORT=str(metrics_port),
    )
    settings = Settings(home=tmp_path / "home", redis_url=redis_url, database_url=pg_url)
    register_model(settings)
    key, _ = make_key(settings, "scorer")
    port = free_port()
    proc = start_server(env, port, tmp_path / "server.log", "--workers", "2")
    try:
        h = {"Authorization": f"Bearer {key}"}
        scrapes: list[float] = []
        # new connections each time, so both workers get requests and scrapes
        for i in range(40):
            r = httpx.post(
                f"http://127.0.0.1:{port}/v1/score",
                content=orjson.dumps(tx(f"mw-{i}", 10.0 + i)),
                headers=h,
                timeout=10,
            )
            assert r.status_code == 200, r.text
        for _ in range(8):
            # one worker binds the metrics port; it answers for both
            m = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10)
            assert m.status_code == 200, m.text
            scrapes.append(_decisions(m.text))
        assert scrapes == [40.0] * 8
        # both workers write their values where the scrape reads them
        files = list((tmp_path / "home" / "run").glob("prometheus-*/counter_*.db"))
        assert len(files) == 2, files
    finally:
        proc.terminate()
        proc.wait(timeout=20)
