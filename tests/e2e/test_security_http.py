"""Security through the real HTTP app: the route × role matrix over ``app.routes``, signed admin
requests (bad signature, stale timestamp, replay), revoked and expired credentials, wrong
audience, 429 with Retry-After, and a grep of every log line for raw PII.

The gate gets a FixedClock (set to the real time) so expiry, cache TTL and refill are driven by
the test without sleeping; the rest of the app runs on the system clock."""

from __future__ import annotations

import logging
import re
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from starlette.exceptions import StarletteDeprecationWarning
from starlette.routing import Route

from txguard.api.app import create_app
from txguard.api.deps import route_role
from txguard.domain.clock import FixedClock
from txguard.security.gate import SecurityGate, build_security_gate
from txguard.security.keys import KeyStore
from txguard.security.keystore import open_key_store
from txguard.security.roles import Role
from txguard.security.signing import sign_request
from txguard.settings import Settings

with warnings.catch_warnings():
    # starlette warns at import that it prefers httpx2; the plain httpx it falls back to works
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

JWT_SECRET = "e2e-" + "s" * 44
OPEN_PATHS = {
    "/health",
    "/ready",
    "/docs",
    "/docs/assets/{name}",  # Swagger UI's files, served from the fastapi-offline wheel
    "/docs/oauth2-redirect",
    "/openapi.json",
}
ROLE_LIMIT = (10_000.0, 10_000.0)


@dataclass
class Env:
    client: TestClient
    clock: FixedClock
    store: KeyStore
    gate: SecurityGate
    app: Any

    def key(self, *roles: Role, **kw: Any) -> tuple[str, str | None]:
        plain, secret, _ = self.store.create_key(
            name=f"e2e-{uuid.uuid4().hex[:6]}", roles=list(roles), **kw
        )
        self.gate.keys.invalidate()
        return plain, secret

    def signed(
        self, key: str, secret: str, method: str, path: str, *, body: bytes = b"", skew: float = 0
    ) -> dict[str, str]:
        ts = int(self.clock.now().timestamp() + skew)
        sig = sign_request(secret, method=method, path=path, timestamp=ts, body=body)
        return {"X-API-Key": key, "X-Txguard-Timestamp": str(ts), "X-Txguard-Signature": sig}

    def token(self, **over: Any) -> str:
        claims: dict[str, Any] = {
            "sub": "carol",
            "iss": "txguard",
            "aud": "txguard-api",
            "exp": int(self.clock.now().timestamp()) + 60,
            "roles": ["analyst"],
        }
        claims.update(over)
        return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    home: Path = tmp_path_factory.mktemp("sec-e2e")
    settings = Settings(
        home=home,
        pii_key="e2e-pii-key",
        jwt_algorithm="HS256",
        jwt_secret=JWT_SECRET,
        rate_limits={
            "scorer": ROLE_LIMIT,
            "analyst": (1.0, 3.0),  # small on purpose: the 429 test uses it
            "auditor": ROLE_LIMIT,
            "admin": ROLE_LIMIT,
            "anonymous": ROLE_LIMIT,
        },
    )
    clock = FixedClock(datetime.now(UTC))
    store = open_key_store(settings, clock=clock)
    gate = build_security_gate(settings, clock=clock, key_store=store)
    app = create_app(settings, authorizer=gate)
    with TestClient(app) as client:
        yield Env(client=client, clock=clock, store=store, gate=gate, app=app)


def _protected_routes(app: Any) -> list[tuple[str, str, Role]]:
    out = []
    for r in app.routes:
        assert isinstance(r, Route)
        role = route_role(r)
        if role is None:
            assert r.path in OPEN_PATHS, f"{r.path} declares no role"
            continue
        path = re.sub(r"\{[^}]+\}", "x1", r.path)
        for method in sorted(r.methods or ()):
            if method != "HEAD":
                out.append((method, path, role))
    return out


def test_every_route_declares_a_role_and_open_routes_are_open(env: Env) -> None:
    routes = _protected_routes(env.app)
    assert {p for _, p, _ in routes} >= {"/v1/score", "/v1/audit", "/v1/models"}
    for path in ("/health", "/docs", "/openapi.json"):
        assert env.client.get(path).status_code == 200
    assert env.client.get("/ready").status_code in (200, 503)  # answers, never 401


def test_route_role_matrix(env: Env) -> None:
    """Every protected route refuses every identity without its role (403), refuses no
    credentials (401), and lets through the identity that has it (whatever the handler then
    answers, it is not 401/403)."""
    keys = {role: env.key(role) for role in Role}
    env.clock.advance(seconds=1)
    failures = []
    for method, path, needed in _protected_routes(env.app):
        r = env.client.request(method, path)
        if r.status_code != 401:
            failures.append(f"{method} {path} without credentials -> {r.status_code}")
        for role, (key, secret) in keys.items():
            if secret is not None:
                headers = env.signed(key, secret, method, path)
            else:
                headers = {"Authorization": f"Bearer {key}"}
            r = env.client.request(method, path, headers=headers)
            if role is needed and r.status_code in (401, 403):
                failures.append(f"{method} {path} as {role} (has it) -> {r.status_code} {r.text}")
            if role is not needed and r.status_code != 403:
                failures.append(f"{method} {path} as {role} (lacks {needed}) -> {r.status_code}")
            if r.status_code in (401, 403):
                assert r.headers["content-type"].startswith("application/problem+json")
    assert not failures, "\n".join(failures)


def test_admin_signature_stale_replay_bad(env: Env) -> None:
    key, secret = env.key(Role.ADMIN)
    assert secret is not None
    env.clock.advance(seconds=1)
    assert env.client.get("/v1/models", headers={"X-API-Key": key}).status_code == 401
    good = env.signed(key, secret, "GET", "/v1/models")
    assert env.client.get("/v1/models", headers=good).status_code == 200
    replay = env.client.get("/v1/models", headers=good)
    assert replay.status_code == 401
    assert "replayed" in replay.json()["detail"]
    stale = env.client.get(
        "/v1/models", headers=env.signed(key, secret, "GET", "/v1/models", skew=-121)
    )
    assert stale.status_code == 401
    assert "clock skew" in stale.json()["detail"]
    bad = env.signed(key, "txs_not-the-secret", "GET", "/v1/models")
    assert env.client.get("/v1/models", headers=bad).status_code == 401
    other_path = env.signed(key, secret, "POST", "/v1/models/reload")
    assert env.client.post("/v1/rules/reload", headers=other_path).status_code == 401
    body = b'{"note": "signed"}'
    tampered = env.signed(key, secret, "POST", "/v1/rules/reload", body=body)
    r = env.client.post("/v1/rules/reload", headers=tampered, content=b'{"note": "changed"}')
    assert r.status_code == 401


def test_revoked_key_refused_after_cache_ttl(env: Env) -> None:
    key, _ = env.key(Role.AUDITOR)
    headers = {"Authorization": f"Bearer {key}"}
    assert env.client.get("/v1/audit", headers=headers).status_code not in (401, 403)
    [rec] = [r for r in env.store.list_keys() if key.startswith(r.key_id)]
    env.store.revoke_key(rec.key_id)
    env.clock.advance(seconds=env.app.state.settings.key_cache_ttl_seconds)
    assert env.client.get("/v1/audit", headers=headers).status_code == 401


def test_expired_key_and_expired_token(env: Env) -> None:
    key, _ = env.key(Role.AUDITOR, expires_at=env.clock.now() + timedelta(seconds=30))
    assert env.client.get("/v1/audit", headers={"X-API-Key": key}).status_code not in (401, 403)
    token = env.token(roles=["auditor"], exp=int(env.clock.now().timestamp()) + 30)
    bearer = {"Authorization": f"Bearer {token}"}
    assert env.client.get("/v1/audit", headers=bearer).status_code not in (401, 403)
    env.clock.advance(seconds=31)
    r = env.client.get("/v1/audit", headers={"X-API-Key": key})
    assert r.status_code == 401
    r = env.client.get("/v1/audit", headers=bearer)
    assert r.status_code == 401
    assert "expired" in r.json()["detail"]


def test_wrong_audience_and_issuer(env: Env) -> None:
    for over, word in (({"aud": "another-api"}, "audience"), ({"iss": "evil"}, "issuer")):
        token = env.token(roles=["auditor"], **over)
        r = env.client.get("/v1/audit", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401
        assert word in r.json()["detail"]


def test_429_with_retry_after(env: Env) -> None:
    key, _ = env.key(Role.ANALYST)  # analyst: 1/s, burst 3
    headers = {"X-API-Key": key}
    codes = [env.client.get("/v1/decisions/nope", headers=headers).status_code for _ in range(5)]
    assert codes[:3] == [404, 404, 404]
    assert codes[3:] == [429, 429]
    r = env.client.get("/v1/decisions/nope", headers=headers)
    assert r.status_code == 429
    assert int(r.headers["Retry-After"]) >= 1
    env.clock.advance(seconds=1)
    assert env.client.get("/v1/decisions/nope", headers=headers).status_code == 404


def test_logs_carry_no_raw_pii(
    env: Env, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    account, wallet, ip = "acct-PII-7731", "0x" + "ab12" * 10, "203.0.113.77"
    key, _ = env.key(Role.SCORER, Role.ANALYST)
    headers = {"X-API-Key": key}
    env.clock.advance(seconds=10)  # refill the analyst bucket
    tx = {
        "transaction_id": f"t-{uuid.uuid4().hex[:8]}",
        "occurred_at": datetime.now(UTC).isoformat(),
        "amount": 250.0,
        "currency": "USD",
        "type": "crypto_to_fiat",
        "sender": {"account_id": account, "country": "DE"},
        "recipient": {"account_id": account + "-r", "wallet_address": wallet},
        "ip": ip,
    }
    caplog.set_level(logging.DEBUG)
    r = env.client.post("/v1/score", headers=headers, json=tx)
    assert r.status_code == 200, r.text
    bad = {**tx, "amount": "lots", "transaction_id": 5}
    assert env.client.post("/v1/score", headers=headers, json=bad).status_code == 422
    env.client.post("/v1/score/batch", headers=headers, json={"events": [tx, bad]})
    env.client.get(f"/v1/decisions/{tx['transaction_id']}", headers=headers)
    env.client.post("/v1/score", headers={"X-API-Key": "txg_bad"}, json=tx)
    out, err = capfd.readouterr()
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    text = "\n".join(formatter.format(rec) + " " + repr(vars(rec)) for rec in caplog.records)
    text += out + err
    assert "authentication failed on POST /v1/score" in text  # the capture did see the app log
    for raw in (account, wallet, ip):
        assert raw not in text, f"raw PII {raw!r} in the logs"
