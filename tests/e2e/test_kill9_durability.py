"""Durability: kill -9 the server under load; every decision a client received is in the audit
log afterwards and the hash chain verifies (SQLite default and PostgreSQL)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from test_service_support import make_key, register_model, tx

from txguard.settings import Settings

REPO = Path(__file__).resolve().parents[2]
TXGUARD = REPO / ".venv" / "bin" / "txguard"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(env: dict[str, str], port: int, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(TXGUARD), "serve", "--port", str(port), *extra],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"server not ready: {log.read_text()[-2000:]}")


def hammer(port: int, key: str, stop: threading.Event, got: list[dict[str, Any]], wid: int) -> None:
    h = {"Authorization": f"Bearer {key}"}
    i = 0
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as c:
        while not stop.is_set():
            body = orjson.dumps(tx(f"w{wid}-{i}", 10.0 + i % 3000, sender=f"s{i % 50}"))
            i += 1
            try:
                r = c.post("/v1/score", content=body, headers=h)
            except httpx.HTTPError:
                continue  # the server is gone: nothing was received
            if r.status_code == 200:
                got.append(r.json())


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_kill9_loses_no_acknowledged_decision(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TXGUARD_")}
    env["TXGUARD_HOME"] = str(tmp_path / "home")
    kw: dict[str, Any] = {"home": tmp_path / "home"}
    if backend == "postgres":
        url = request.getfixturevalue("pg_url")
        env["TXGUARD_DATABASE_URL"] = url
        kw["database_url"] = url
    settings = Settings(**kw)
    register_model(settings)
    key, _ = make_key(settings, "scorer")
    port = free_port()
    t0 = time.monotonic()
    proc = start_server(env, port, tmp_path / "server.log")
    got: list[dict[str, Any]] = []
    stop = threading.Event()
    workers = [
        threading.Thread(target=hammer, args=(port, key, stop, got, w), daemon=True)
        for w in range(8)
    ]
    try:
        for w in workers:
            w.start()
        deadline = time.monotonic() + 30
        while len(got) < 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        print(f"start {t0:.1f}, received {len(got)} at {time.monotonic() - t0:.1f} s")
        os.kill(proc.pid, signal.SIGKILL)  # mid-stream, requests in flight
        proc.wait(timeout=10)
    finally:
        stop.set()
        for w in workers:
            w.join(timeout=10)
        if proc.poll() is None:
            proc.kill()
    assert len(got) >= 200, "the load never got going"

    from txguard.audit.log import open_audit_log
    from txguard.bootstrap import audit_location

    log = open_audit_log(audit_location(settings))
    try:
        missing = [d["decision_id"] for d in got if log.get(d["decision_id"]) is None]
        assert missing == [], f"{len(missing)} acknowledged decisions lost"
        report = log.verify()
        assert report.ok, report
        assert report.checked >= len(got)
    finally:
        log.close()
    # and the operator's command agrees
    cli = subprocess.run(
        [str(TXGUARD), "audit", "verify"], check=False, env=env, capture_output=True, text=True
    )
    assert cli.returncode == 0, cli.stderr
