"""``SecurityGate``: the one call the HTTP layer makes for every protected request.

``authenticate`` runs, in order: credentials (API key or JWT; 401) → role (403) → rate limit
(429 with ``retry_after``) → request signature when the key requires it or the route is
``admin`` (401) → replay (401). Nothing here touches a database: key records are held in memory
by ``KeyCache`` and reloaded from the store at most every ``key_cache_ttl_seconds`` (default 5 s),
so a revocation takes effect on every worker within that time; the service reloads in a background
thread from half the TTL on, so no request waits for the store while traffic flows. A presented key is looked up by
its public id, then its SHA-256 is compared in constant time.

Failures of the shared stores: the rate limiter follows ``Settings.state_store_failure``
(fail-open by default: a Redis outage must not stop payments being scored); the replay cache
always fails closed (503), since without it a captured signed request could be replayed; the key
cache keeps serving its last good copy for ``MAX_STALE_SECONDS`` and then refuses (503).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from txguard.domain.clock import Clock
from txguard.domain.errors import (
    AuthenticationError,
    DependencyError,
    PermissionDeniedError,
    RateLimitedError,
)
from txguard.io.redis import connect_redis
from txguard.security.jwt import JwtVerifier
from txguard.security.keys import KeyStore, SecretBox, StoredKey, key_id_of
from txguard.security.keystore import open_key_store
from txguard.security.pii import PiiHasher
from txguard.security.ratelimit import (
    LeasedRateLimiter,
    MemoryRateLimiter,
    RateLimiter,
    RedisRateLimiter,
)
from txguard.security.replay import MemoryReplayCache, RedisReplayCache, ReplayCache
from txguard.security.roles import Identity, Role
from txguard.security.signing import (
    NONCE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify_signature,
)
from txguard.settings import Settings

log = logging.getLogger("txguard.security")

MAX_STALE_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class _CachedKey:
    stored: StoredKey
    identity: Identity
    signing_secret: str | None


class KeyCache:
    """Active keys by id, reloaded from the store when older than ``ttl`` seconds.

    With ``refresh_ahead`` (what the service runs) a lookup that finds the copy older than half
    the TTL starts the reload in a background thread and is answered from the copy: the event
    loop does not wait for a database connection and query every few seconds (a stall of
    several milliseconds for every request in flight). A lookup still reloads in its own thread
    once the copy is a whole TTL old (no traffic for a while, or the background reload failed),
    so a revocation takes effect within the TTL either way."""

    def __init__(
        self,
        store: KeyStore,
        *,
        box: SecretBox,
        clock: Clock,
        ttl: float,
        refresh_ahead: bool = False,
    ) -> None:
        self._store = store
        self._box = box
        self._clock = clock
        self._ttl = ttl
        self._keys: dict[str, _CachedKey] = {}
        self._loaded_at: float | None = None  # last successful load
        self._next_load = float("-inf")  # no store round trip before this (also after failures)
        # a lookup after this starts a background reload (refresh_ahead)
        self._next_ahead = float("inf") if not refresh_ahead else float("-inf")
        self._ahead = refresh_ahead
        self._reloading: threading.Thread | None = None
        self._last_error = ""
        self._lock = threading.Lock()

    def get(self, key_id: str) -> _CachedKey | None:
        now = self._clock.monotonic()
        if now >= self._next_load:
            self._refresh(now)
        elif now >= self._next_ahead:
            self._refresh_in_background(now)
        if self._loaded_at is None or now - self._loaded_at >= MAX_STALE_SECONDS:
            raise DependencyError(f"key store unavailable: {self._last_error}")
        return self._keys.get(key_id)

    def invalidate(self) -> None:
        """Reload on the next lookup (after this process created or revoked a key)."""
        with self._lock:
            self._next_load = float("-inf")

    def _refresh_in_background(self, now: float) -> None:
        with self._lock:
            if self._reloading is not None or now < self._next_ahead:
                return
            self._next_ahead = float("inf")  # until this reload has run
            t = self._reloading = threading.Thread(
                target=self._refresh, args=(now, True), name="txg-key-cache", daemon=True
            )
        t.start()

    def wait_reload(self, timeout: float = 5.0) -> None:
        """Wait for a background reload in progress (tests, orderly shutdown)."""
        t = self._reloading
        if t is not None:
            t.join(timeout)

    def _refresh(self, now: float, ahead: bool = False) -> None:
        try:
            self._reload(now, ahead)
        finally:
            if ahead:
                self._reloading = None

    def _reload(self, now: float, ahead: bool) -> None:
        with self._lock:
            if not ahead and now < self._next_load:
                return  # another thread refreshed while we waited
            self._next_ahead = now + self._ttl / 2 if self._ahead else float("inf")
            try:
                rows = self._store.load_keys()
            except DependencyError as e:
                # one attempt per TTL while the store is down, not one per request; get()
                # serves the last good copy until it is MAX_STALE_SECONDS old
                self._next_load = now + self._ttl
                self._last_error = str(e)
                log.warning("API key cache refresh failed (serving the last good copy): %s", e)
                return
            fresh: dict[str, _CachedKey] = {}
            for row in rows:
                rec = row.record
                secret = (
                    self._box.open(row.signing_secret_enc, key_id=rec.key_id)
                    if row.signing_secret_enc
                    else None
                )
                ident = Identity(
                    subject=rec.key_id,
                    roles=rec.roles,
                    method="api_key",
                    expires_at=rec.expires_at,
                    require_signature=rec.require_signature,
                    attributes={"name": rec.name},
                )
                fresh[rec.key_id] = _CachedKey(stored=row, identity=ident, signing_secret=secret)
            self._keys = fresh
            self._loaded_at = now
            self._next_load = now + self._ttl


class SecurityGate:
    """Framework-free; the API's ``requires(role)`` dependency calls ``authenticate``."""

    def __init__(
        self,
        *,
        settings: Settings,
        clock: Clock,
        keys: KeyCache,
        limiter: RateLimiter,
        replay: ReplayCache,
        jwt: JwtVerifier | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._keys = keys
        self._limiter = limiter
        self._replay = replay
        self._jwt = jwt
        self._hasher = PiiHasher.from_settings(settings)
        self._skew = settings.signature_max_skew_seconds
        self._fail_open = settings.state_store_failure == "fail_open"

    @property
    def keys(self) -> KeyCache:
        return self._keys

    def authenticate(
        self,
        *,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
        client_ip: str | None,
        role: Role,
    ) -> Identity:
        """The caller's identity, or the error the API maps to 401/403/429/503.

        ``path`` is what was signed: the API passes the path plus ``?query`` when there is one.
        """
        h = {k.lower(): v for k, v in headers.items()}
        cached: _CachedKey | None = None
        try:
            identity, cached = self._identify(h)
        except AuthenticationError as e:
            # a security event worth keeping; the IP only as its keyed hash
            log.info(
                "authentication failed on %s %s from %s: %s",
                method,
                path,
                self._ip_token(client_ip),
                e,
            )
            # failed attempts draw on the caller's IP budget, so guessing is throttled too
            self.check_open_rate_limit(client_ip)
            raise
        if not identity.has(role):
            log.info(
                "permission denied: %s lacks %s on %s %s",
                identity.subject,
                role.value,
                method,
                path,
            )
            raise PermissionDeniedError(f"this route needs the {role.value!r} role")
        self._rate_limit(f"id:{identity.subject}:{role.value}", role.value)
        needs_signature = role is Role.ADMIN or identity.require_signature
        if cached is None:
            if needs_signature:
                raise PermissionDeniedError(
                    "admin routes need a signed request made with an API key, not a token"
                )
            return identity
        if needs_signature or h.get(SIGNATURE_HEADER):
            self._check_signature(cached, method=method, path=path, headers=h, body=body)
        return identity

    def check_open_rate_limit(self, client_ip: str | None) -> None:
        """Per-IP budget (``rate_limits['anonymous']``) for unauthenticated requests. The IP is
        keyed by its PII hash so Redis holds no raw addresses."""
        self._rate_limit(f"ip:{self._ip_token(client_ip)}", "anonymous")

    def _ip_token(self, client_ip: str | None) -> str:
        return self._hasher.token(client_ip) if client_ip else "unknown"

    # -- steps ----------------------------------------------------------------------------
    def _identify(self, h: Mapping[str, str]) -> tuple[Identity, _CachedKey | None]:
        presented = h.get("x-api-key", "").strip()
        auth = h.get("authorization", "").strip()
        if auth:
            scheme, _, value = auth.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise AuthenticationError("Authorization must be 'Bearer <key or token>'")
            if presented and presented != value.strip():
                raise AuthenticationError("Authorization and X-API-Key carry different credentials")
            presented = value.strip()
        if not presented:
            raise AuthenticationError(
                "credentials required: Authorization: Bearer <key or token>, or X-API-Key"
            )
        if presented.startswith("txg_"):
            return self._api_key(presented)
        if self._jwt is None:
            raise AuthenticationError("unknown credential (JWT is not enabled)")
        return self._jwt.verify(presented), None

    def _api_key(self, presented: str) -> tuple[Identity, _CachedKey]:
        key_id = key_id_of(presented)
        cached = self._keys.get(key_id) if key_id else None
        digest = hashlib.sha256(presented.encode()).hexdigest()
        # compare even when unknown, so timing does not tell known ids from unknown ones
        expected = cached.stored.key_hash if cached else "0" * 64
        if not hmac.compare_digest(digest, expected) or cached is None:
            raise AuthenticationError("unknown or revoked API key")
        rec = cached.stored.record
        now = self._clock.now()
        if not rec.active_at(now):
            raise AuthenticationError("API key has expired or been revoked")
        return cached.identity, cached

    def _rate_limit(self, key: str, limit_name: str) -> None:
        rate, burst = self._settings.rate_limit_for(limit_name)
        try:
            wait = self._limiter.acquire(key, rate=rate, burst=burst)
        except DependencyError as e:
            if self._fail_open:
                log.warning("rate limiter unavailable, allowing (fail_open): %s", e)
                return
            raise
        if wait > 0:
            raise RateLimitedError(f"rate limit exceeded; retry in {wait:.2f} s", retry_after=wait)

    def _check_signature(
        self,
        cached: _CachedKey,
        *,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
    ) -> None:
        secret = cached.signing_secret
        if secret is None:
            raise AuthenticationError(
                "this API key has no signing secret; create one with --require-signature"
            )
        signature = headers.get(SIGNATURE_HEADER)
        verify_signature(
            secret,
            method=method,
            path=path,
            timestamp_header=headers.get(TIMESTAMP_HEADER),
            signature_header=signature,
            body=body,
            now=self._clock.now().timestamp(),
            max_skew=self._skew,
            nonce_header=headers.get(NONCE_HEADER),
        )
        assert signature is not None
        token = f"{cached.identity.subject}:{signature.strip().lower()}"
        if not self._replay.first_use(token, ttl=2 * self._skew + 1):
            raise AuthenticationError("replayed request: this signature was already used")


def build_security_gate(
    settings: Settings,
    *,
    clock: Clock,
    redis_client: Any | None = None,
    key_store: KeyStore | None = None,
    redis_prefix: str = "txguard:",
) -> SecurityGate:
    """Wire the gate: Redis-backed limits and replay cache when a client is given (or
    ``settings.redis_url`` is set; the limiter leases tokens locally, see ``ratelimit``),
    in-process otherwise; keys from ``key_store`` or the
    configured store (PostgreSQL if ``database_url``, else SQLite)."""
    if redis_client is None and settings.redis_url:
        redis_client = connect_redis(settings)
    store = key_store if key_store is not None else open_key_store(settings, clock=clock)
    box = SecretBox(settings.key_encryption_key.get_secret_value())
    limiter: RateLimiter
    replay: ReplayCache
    if redis_client is not None:
        # leases tokens from the shared bucket in chunks: no Redis round trip per request
        limiter = LeasedRateLimiter(
            RedisRateLimiter(redis_client, clock=clock, prefix=redis_prefix),
            clock=clock,
            refill_ahead=True,  # the next lease is taken off the request path
        )
        replay = RedisReplayCache(redis_client, prefix=redis_prefix)
    else:
        limiter = MemoryRateLimiter(clock=clock)
        replay = MemoryReplayCache(clock=clock)
    return SecurityGate(
        settings=settings,
        clock=clock,
        keys=KeyCache(
            store, box=box, clock=clock, ttl=settings.key_cache_ttl_seconds, refresh_ahead=True
        ),
        limiter=limiter,
        replay=replay,
        jwt=JwtVerifier.from_settings(settings, clock=clock),
    )
