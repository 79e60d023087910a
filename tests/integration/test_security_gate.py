"""SecurityGate end to end over a real key store (SQLite file; PostgreSQL for revocation) and,
where sharing matters, the real Redis: the checks the HTTP layer relies on, without HTTP."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from txguard.domain.clock import FixedClock
from txguard.domain.errors import (
    AuthenticationError,
    DependencyError,
    PermissionDeniedError,
    RateLimitedError,
)
from txguard.security.gate import SecurityGate, build_security_gate
from txguard.security.keys import KeyStore, SecretBox
from txguard.security.keystore import PostgresKeyStore, SqliteKeyStore
from txguard.security.roles import Role
from txguard.security.signing import sign_request
from txguard.settings import Settings

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
JWT_SECRET = "j" * 48


def _settings(tmp_path: Path, **over: Any) -> Settings:
    base: dict[str, Any] = {
        "home": tmp_path,
        "jwt_algorithm": "HS256",
        "jwt_secret": JWT_SECRET,
        "rate_limits": {"scorer": (1.0, 3.0), "admin": (100.0, 100.0)},
    }
    base.update(over)
    return Settings(**base)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def store(tmp_path: Path, clock: FixedClock) -> KeyStore:
    return SqliteKeyStore(
        tmp_path / "k.sqlite3", clock=clock, box=SecretBox("dev-insecure-key-encryption-key")
    )


@pytest.fixture
def gate(tmp_path: Path, clock: FixedClock, store: KeyStore) -> SecurityGate:
    return build_security_gate(_settings(tmp_path), clock=clock, key_store=store)


def call(
    g: SecurityGate,
    role: Role,
    headers: dict[str, str],
    *,
    method: str = "POST",
    path: str = "/v1/x",
    body: bytes = b"{}",
    ip: str | None = "192.0.2.1",
) -> Any:
    return g.authenticate(
        method=method, path=path, headers=headers, body=body, client_ip=ip, role=role
    )


def signed(
    key: str,
    secret: str,
    clock: FixedClock,
    *,
    body: bytes = b"{}",
    path: str = "/v1/x",
    skew: float = 0.0,
) -> dict[str, str]:
    ts = int(clock.now().timestamp() + skew)
    sig = sign_request(secret, method="POST", path=path, timestamp=ts, body=body)
    return {"x-api-key": key, "x-txguard-timestamp": str(ts), "x-txguard-signature": sig}


def test_api_key_both_header_forms_case_insensitive(gate: SecurityGate, store: KeyStore) -> None:
    key, _, rec = store.create_key(name="pay", roles=[Role.SCORER])
    for headers in ({"Authorization": f"Bearer {key}"}, {"X-API-Key": key}, {"x-api-key": key}):
        ident = call(gate, Role.SCORER, headers)
        assert ident.subject == rec.key_id
        assert ident.method == "api_key"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Basic abc"},
        {"authorization": "Bearer "},
        {"x-api-key": "txg_00000000_" + "a" * 40},
        {"x-api-key": "txg_short"},
    ],
)
def test_missing_or_unknown_credentials_401(gate: SecurityGate, headers: dict[str, str]) -> None:
    with pytest.raises(AuthenticationError):
        call(gate, Role.SCORER, headers)


def test_tampered_key_with_known_id_401(gate: SecurityGate, store: KeyStore) -> None:
    key, _, _ = store.create_key(name="pay", roles=[Role.SCORER])
    forged = key[:-1] + ("a" if key[-1] != "a" else "b")
    with pytest.raises(AuthenticationError, match="unknown or revoked"):
        call(gate, Role.SCORER, {"x-api-key": forged})


def test_wrong_role_403(gate: SecurityGate, store: KeyStore) -> None:
    key, _, _ = store.create_key(name="pay", roles=[Role.SCORER])
    with pytest.raises(PermissionDeniedError, match="auditor"):
        call(gate, Role.AUDITOR, {"x-api-key": key})


def test_revoked_key_refused_within_cache_ttl(
    gate: SecurityGate, store: KeyStore, clock: FixedClock
) -> None:
    key, _, rec = store.create_key(name="pay", roles=[Role.ANALYST])
    call(gate, Role.ANALYST, {"x-api-key": key})
    store.revoke_key(rec.key_id)
    clock.advance(seconds=5.0)  # key_cache_ttl_seconds
    with pytest.raises(AuthenticationError, match="unknown or revoked"):
        call(gate, Role.ANALYST, {"x-api-key": key})


def test_key_cache_reloads_ahead_off_the_request_thread(
    gate: SecurityGate, store: KeyStore, clock: FixedClock
) -> None:
    """Past half the TTL a lookup is answered from the copy and the reload runs in a background
    thread (the event loop never waits for the key store while traffic flows); its result is
    what the next lookup sees, so a revocation takes effect before the TTL is over."""
    key, _, rec = store.create_key(name="pay", roles=[Role.ANALYST])
    call(gate, Role.ANALYST, {"x-api-key": key})  # first load, in this thread
    loads: list[str] = []
    load_keys = store.load_keys

    def recording() -> Any:
        loads.append(threading.current_thread().name)
        return load_keys()

    store.load_keys = recording  # type: ignore[method-assign]
    store.revoke_key(rec.key_id)
    clock.advance(seconds=2.0)  # under half of the 5 s TTL: no reload at all
    call(gate, Role.ANALYST, {"x-api-key": key})
    assert loads == []
    clock.advance(seconds=1.0)  # past half: served from the copy, reloaded behind it
    call(gate, Role.ANALYST, {"x-api-key": key})
    gate.keys.wait_reload()
    assert loads == ["txg-key-cache"]
    with pytest.raises(AuthenticationError, match="unknown or revoked"):
        call(gate, Role.ANALYST, {"x-api-key": key})  # 3 s after the revocation
    clock.advance(seconds=5.0)  # no lookup for a whole TTL: this one reloads in its own thread
    with pytest.raises(AuthenticationError, match="unknown or revoked"):
        call(gate, Role.ANALYST, {"x-api-key": key})
    assert loads == ["txg-key-cache", threading.current_thread().name]


def test_expired_key_refused(gate: SecurityGate, store: KeyStore, clock: FixedClock) -> None:
    key, _, _ = store.create_key(
        name="tmp", roles=[Role.SCORER], expires_at=T0 + timedelta(seconds=2)
    )
    call(gate, Role.SCORER, {"x-api-key": key})
    clock.advance(seconds=2)
    with pytest.raises(AuthenticationError, match="expired"):
        call(gate, Role.SCORER, {"x-api-key": key})


def test_admin_requires_signature_replay_and_skew(
    gate: SecurityGate, store: KeyStore, clock: FixedClock
) -> None:
    key, secret, _ = store.create_key(name="ops", roles=[Role.ADMIN])
    assert secret is not None
    with pytest.raises(AuthenticationError, match="signed request required"):
        call(gate, Role.ADMIN, {"x-api-key": key})
    good = signed(key, secret, clock)
    call(gate, Role.ADMIN, good)
    with pytest.raises(AuthenticationError, match="replayed"):
        call(gate, Role.ADMIN, good)
    with pytest.raises(AuthenticationError, match="clock skew"):
        call(gate, Role.ADMIN, signed(key, secret, clock, skew=-121))
    with pytest.raises(AuthenticationError, match="does not verify"):
        call(gate, Role.ADMIN, signed(key, "txs_wrong", clock))
    with pytest.raises(AuthenticationError, match="does not verify"):
        call(gate, Role.ADMIN, signed(key, secret, clock, body=b'{"other": 1}'))
    clock.advance(seconds=1)
    call(gate, Role.ADMIN, signed(key, secret, clock))  # a fresh request is fine
    # the same request twice in one second: legitimate with distinct nonces
    ts = str(int(clock.now().timestamp()))
    for nonce in ("a1", "a2"):
        sig = sign_request(
            secret, method="POST", path="/v1/x", timestamp=int(ts), body=b"{}", nonce=nonce
        )
        headers = {
            "x-api-key": key,
            "x-txguard-timestamp": ts,
            "x-txguard-signature": sig,
            "x-txguard-nonce": nonce,
        }
        call(gate, Role.ADMIN, headers)
    with pytest.raises(AuthenticationError, match="replayed"):
        call(gate, Role.ADMIN, headers)


def test_conflicting_credentials_401(gate: SecurityGate, store: KeyStore) -> None:
    a, _, _ = store.create_key(name="a", roles=[Role.SCORER])
    b, _, _ = store.create_key(name="b", roles=[Role.SCORER])
    call(gate, Role.SCORER, {"x-api-key": a, "authorization": f"Bearer {a}"})
    with pytest.raises(AuthenticationError, match="different credentials"):
        call(gate, Role.SCORER, {"x-api-key": a, "authorization": f"Bearer {b}"})


def test_key_requiring_signature_on_scorer_route(
    gate: SecurityGate, store: KeyStore, clock: FixedClock
) -> None:
    key, secret, _ = store.create_key(name="p", roles=[Role.SCORER], require_signature=True)
    assert secret is not None
    with pytest.raises(AuthenticationError, match="signed request required"):
        call(gate, Role.SCORER, {"x-api-key": key})
    call(gate, Role.SCORER, signed(key, secret, clock))


def test_jwt_identity_expiry_audience_and_no_admin(gate: SecurityGate, clock: FixedClock) -> None:
    def token(**over: Any) -> dict[str, str]:
        claims = {
            "sub": "bob",
            "iss": "txguard",
            "aud": "txguard-api",
            "exp": int(T0.timestamp()) + 60,
            "roles": ["analyst", "admin"],
        }
        claims.update(over)
        return {"authorization": "Bearer " + jwt.encode(claims, JWT_SECRET, algorithm="HS256")}

    assert call(gate, Role.ANALYST, token()).subject == "jwt:bob"
    with pytest.raises(AuthenticationError, match="audience"):
        call(gate, Role.ANALYST, token(aud="someone-else"))
    with pytest.raises(PermissionDeniedError, match="signed request"):
        call(gate, Role.ADMIN, token())
    clock.advance(seconds=60)
    with pytest.raises(AuthenticationError, match="expired"):
        call(gate, Role.ANALYST, token())


def test_rate_limit_per_identity_and_role(
    gate: SecurityGate, store: KeyStore, clock: FixedClock
) -> None:
    a, _, _ = store.create_key(name="a", roles=[Role.SCORER])
    b, _, _ = store.create_key(name="b", roles=[Role.SCORER])
    for _ in range(3):  # burst 3
        call(gate, Role.SCORER, {"x-api-key": a})
    with pytest.raises(RateLimitedError) as info:
        call(gate, Role.SCORER, {"x-api-key": a})
    assert info.value.retry_after == pytest.approx(1.0)
    call(gate, Role.SCORER, {"x-api-key": b})  # another identity has its own bucket
    clock.advance(seconds=1.0)
    call(gate, Role.SCORER, {"x-api-key": a})


def test_failed_attempts_and_open_routes_use_ip_budget(
    tmp_path: Path, clock: FixedClock, store: KeyStore
) -> None:
    g = build_security_gate(
        _settings(tmp_path, rate_limits={"anonymous": (1.0, 2.0)}), clock=clock, key_store=store
    )
    g.check_open_rate_limit("198.51.100.1")
    with pytest.raises(AuthenticationError):
        call(g, Role.SCORER, {}, ip="198.51.100.1")
    with pytest.raises(RateLimitedError):
        call(g, Role.SCORER, {}, ip="198.51.100.1")
    with pytest.raises(RateLimitedError):
        g.check_open_rate_limit("198.51.100.1")
    g.check_open_rate_limit("198.51.100.2")


@pytest.fixture
def shared_redis(redis_url: str) -> Iterator[list[redis.Redis]]:
    clients = [redis.Redis.from_url(redis_url) for _ in range(2)]
    yield clients
    for c in clients:
        c.close()


def test_two_workers_share_replay_cache_and_limits_through_redis(
    tmp_path: Path,
    clock: FixedClock,
    store: KeyStore,
    shared_redis: list[redis.Redis],
    key_prefix: str,
) -> None:
    s = _settings(tmp_path)
    w1, w2 = (
        build_security_gate(
            s, clock=clock, key_store=store, redis_client=c, redis_prefix=key_prefix
        )
        for c in shared_redis
    )
    key, secret, _ = store.create_key(name="ops", roles=[Role.ADMIN, Role.SCORER])
    assert secret is not None
    req = signed(key, secret, clock)
    call(w1, Role.ADMIN, req)
    with pytest.raises(AuthenticationError, match="replayed"):
        call(w2, Role.ADMIN, req)  # captured on worker 1, replayed against worker 2
    # scorer burst 3 shared: two on w1, one on w2, then both refuse
    call(w1, Role.SCORER, {"x-api-key": key})
    call(w1, Role.SCORER, {"x-api-key": key})
    call(w2, Role.SCORER, {"x-api-key": key})
    for w in (w1, w2):
        with pytest.raises(RateLimitedError):
            call(w, Role.SCORER, {"x-api-key": key})


def test_redis_down_rate_limit_fails_open_replay_fails_closed(
    tmp_path: Path, clock: FixedClock, store: KeyStore
) -> None:
    dead = redis.Redis(
        host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )
    g = build_security_gate(_settings(tmp_path), clock=clock, key_store=store, redis_client=dead)
    key, secret, _ = store.create_key(name="ops", roles=[Role.ADMIN, Role.SCORER])
    assert secret is not None
    call(g, Role.SCORER, {"x-api-key": key})  # limiter down: fail-open (the default policy)
    with pytest.raises(DependencyError, match="replay cache"):
        call(g, Role.ADMIN, signed(key, secret, clock))
    closed = build_security_gate(
        _settings(tmp_path, state_store_failure="fail_closed"),
        clock=clock,
        key_store=store,
        redis_client=dead,
    )
    with pytest.raises(DependencyError, match="rate limiter"):
        call(closed, Role.SCORER, {"x-api-key": key})


def test_postgres_store_revocation_reaches_gate(
    tmp_path: Path, clock: FixedClock, pg_url: str
) -> None:
    store = PostgresKeyStore(pg_url, clock=clock, box=SecretBox("dev-insecure-key-encryption-key"))
    g = build_security_gate(_settings(tmp_path, database_url=pg_url), clock=clock)
    key, _, rec = store.create_key(name="pg", roles=[Role.AUDITOR])
    assert call(g, Role.AUDITOR, {"x-api-key": key}).subject == rec.key_id
    store.revoke_key(rec.key_id)
    call(g, Role.AUDITOR, {"x-api-key": key})  # still cached: within the documented TTL
    clock.advance(seconds=5)
    with pytest.raises(AuthenticationError):
        call(g, Role.AUDITOR, {"x-api-key": key})


def test_key_store_outage_serves_stale_then_refuses(
    tmp_path: Path, clock: FixedClock, store: KeyStore
) -> None:
    g = build_security_gate(_settings(tmp_path), clock=clock, key_store=store)
    key, _, _ = store.create_key(name="a", roles=[Role.ANALYST])
    call(g, Role.ANALYST, {"x-api-key": key})
    (tmp_path / "k.sqlite3").unlink()
    (tmp_path / "k.sqlite3").mkdir()  # the store now fails on every read
    clock.advance(seconds=10)
    call(g, Role.ANALYST, {"x-api-key": key})
    clock.advance(seconds=60)
    with pytest.raises(DependencyError, match="key store"):
        call(g, Role.ANALYST, {"x-api-key": key})


def test_key_store_outage_retries_once_per_ttl(tmp_path: Path, clock: FixedClock) -> None:
    class Flaky:
        calls = 0
        down = False

        def __init__(self, inner: KeyStore) -> None:
            self.inner = inner

        def load_keys(self) -> Any:
            Flaky.calls += 1
            if Flaky.down:
                raise DependencyError("key store (test): down")
            return self.inner.load_keys()

    inner = SqliteKeyStore(
        tmp_path / "f.sqlite3", clock=clock, box=SecretBox("dev-insecure-key-encryption-key")
    )
    g = build_security_gate(_settings(tmp_path), clock=clock, key_store=Flaky(inner))  # type: ignore[arg-type]
    key, _, _ = inner.create_key(name="a", roles=[Role.ANALYST])
    call(g, Role.ANALYST, {"x-api-key": key})
    Flaky.down = True
    clock.advance(seconds=5)
    before = Flaky.calls
    for _ in range(20):
        call(g, Role.ANALYST, {"x-api-key": key})
    assert Flaky.calls == before + 1
    clock.advance(seconds=60)
    for _ in range(2):
        with pytest.raises(DependencyError, match="down"):
            call(g, Role.ANALYST, {"x-api-key": key})
    Flaky.down = False
    clock.advance(seconds=5)
    call(g, Role.ANALYST, {"x-api-key": key})


def test_gates_built_from_redis_url_share_limits(
    tmp_path: Path, clock: FixedClock, store: KeyStore, redis_url: str, key_prefix: str
) -> None:
    s = _settings(tmp_path, redis_url=redis_url)
    w1, w2 = (
        build_security_gate(s, clock=clock, key_store=store, redis_prefix=key_prefix)
        for _ in range(2)
    )
    key, _, _ = store.create_key(name="s", roles=[Role.SCORER])
    for w in (w1, w2, w1):  # burst 3 across both
        call(w, Role.SCORER, {"x-api-key": key})
    with pytest.raises(RateLimitedError):
        call(w2, Role.SCORER, {"x-api-key": key})
