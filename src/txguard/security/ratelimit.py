"""Token-bucket rate limits: per identity (and per client IP for unauthenticated requests).

A bucket holds up to ``burst`` tokens and refills at ``rate`` tokens per second; a request takes
one token or is refused with the time until one is available (``Retry-After``). The Redis
adapter does the whole read-refill-take-write in one Lua script, so every worker and replica
sharing the Redis draws from the same bucket atomically.

Time comes from the caller's injected clock (wall time, seconds), not Redis ``TIME``: the
in-memory and Redis adapters then behave identically under a test clock, and replicas' NTP
skew (milliseconds) only blurs refill by that much; the script never lets time run backwards
for a bucket.

Token leasing (``LeasedRateLimiter``). One Redis round trip per request costs the event loop
more than the rest of the gate, so the gate wraps the Redis adapter in a local layer: each
process takes tokens from the shared bucket in chunks (``acquire_many``: up to ``n`` in one
script call) and serves requests from that local allowance until it is empty. It is a wrapper
rather than part of ``RedisRateLimiter`` so that the exact one-token adapter stays available
(and testable) on its own, and so the same layer runs over the in-memory adapter in the
contract suite. The lease is ``clamp(rate * 0.02 s, 1, min(64, burst / 4))`` tokens: a slow
limit (rate 1/s, anonymous 10/s) leases one token, i.e. behaves exactly as without leasing; a
fast one (scorer 500/s) leases 10, up to 64, amortising the round trip that many times.
Guarantee: tokens are only ever taken from the shared bucket, so all processes together never
admit more than ``burst + rate * elapsed``. Cost: a process may hold up to one lease it has
not used yet, so others can be refused while it sits on it (bounded under-use); unused
leased tokens lapse after ``lease_ttl`` (1 s) so an idle process does not hoard them, and they
are not returned. A refusal is remembered locally, and answered with its ``Retry-After``, until
a whole lease has refilled (the bucket's wait plus ``(n - 1) / rate``: exactly the bucket's wait
when the lease is one token), so a client hammering past its limit costs one round trip per
lease, not one per request; the refill is not lost meanwhile, it waits in the shared bucket.

Refill ahead (``refill_ahead=True``, what the service runs). The round trip that takes a lease
would otherwise run on the event loop every ``n`` requests and stall it for as long as Redis
takes to answer: behind a batch of feature scripts that was up to a few milliseconds (seen in a
profile of the scoring service: ~3 % of the loop's time, all waiting). So when a request leaves
half a lease or less of a key's allowance, the next lease is taken by a background thread while
the rest is served; the request thread goes to the shared bucket itself only when the allowance
runs out first (a cold key, a refused or failed refill) — then exactly as without refilling
ahead. A refill that is refused or fails is dropped silently: the request that next finds the
allowance empty asks the bucket and gets the refusal (with its ``Retry-After``) or the
``DependencyError`` itself. The guarantee is unchanged (tokens only come from the shared
bucket); the bounded under-use grows to one and a half leases per process and key.

>>> from datetime import UTC, datetime
>>> from txguard.domain.clock import FixedClock
>>> lim = MemoryRateLimiter(clock=FixedClock(datetime(2026, 1, 1, tzinfo=UTC)))
>>> [lim.acquire("k", rate=1.0, burst=2.0) for _ in range(3)]
[0.0, 0.0, 1.0]
>>> lim.acquire_many("j", 5, rate=1.0, burst=3.0)
(3, 0.0)
"""

from __future__ import annotations

import logging
import math
import queue
import threading
from collections import OrderedDict
from typing import Any, Protocol

from txguard.domain.clock import Clock
from txguard.domain.errors import DependencyError

log = logging.getLogger("txguard.security")


class RateLimiter(Protocol):
    def acquire(self, key: str, *, rate: float, burst: float) -> float:
        """Take one token from ``key``'s bucket: 0.0 when allowed, else seconds to wait."""
        ...


class BulkRateLimiter(RateLimiter, Protocol):
    def acquire_many(self, key: str, n: int, *, rate: float, burst: float) -> tuple[int, float]:
        """Take up to ``n`` tokens (as many whole tokens as the bucket holds, at most ``n``):
        ``(granted, 0.0)`` with ``granted >= 1``, or ``(0, seconds until one is available)``."""
        ...


class MemoryRateLimiter:
    """One process only. Holds at most ``max_buckets`` buckets (least recently used dropped: a
    dropped bucket comes back full, which only ever errs towards allowing)."""

    def __init__(self, *, clock: Clock, max_buckets: int = 100_000) -> None:
        self._clock = clock
        self._max = max_buckets
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def acquire(self, key: str, *, rate: float, burst: float) -> float:
        granted, wait = self.acquire_many(key, 1, rate=rate, burst=burst)
        return 0.0 if granted else wait

    def acquire_many(self, key: str, n: int, *, rate: float, burst: float) -> tuple[int, float]:
        n = max(1, int(n))
        now = self._clock.now().timestamp()
        with self._lock:
            tokens, last = self._buckets.pop(key, (burst, now))
            tokens = min(burst, tokens + max(0.0, now - last) * rate)
            last = max(last, now)
            if tokens >= 1.0:
                granted = min(n, math.floor(tokens))
                tokens -= granted
                wait = 0.0
            else:
                granted = 0
                wait = (1.0 - tokens) / rate
            self._buckets[key] = (tokens, last)
            if len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
        return granted, wait


# KEYS[1] bucket hash; ARGV rate, burst, now (s), n (tokens wanted, default 1). Returns
# {granted 0..n, wait seconds as text}: Redis truncates Lua numbers to integers in replies,
# hence the string. Grants min(n, floor(tokens)) when at least one token is there.
_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local n = math.max(1, math.floor(tonumber(ARGV[4]) or 1))
local state = redis.call('HMGET', KEYS[1], 't', 'ts')
local tokens = tonumber(state[1])
local last = tonumber(state[2])
if tokens == nil then
  tokens = burst
  last = now
end
if now > last then
  tokens = math.min(burst, tokens + (now - last) * rate)
  last = now
end
local granted = 0
local wait = 0
if tokens >= 1 then
  granted = math.min(n, math.floor(tokens))
  tokens = tokens - granted
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'ts', tostring(last))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {granted, tostring(wait)}
"""


class RedisRateLimiter:
    """Shared across processes. Redis errors raise ``DependencyError``; the gate decides
    whether that fails open or closed."""

    def __init__(self, client: Any, *, clock: Clock, prefix: str = "txguard:") -> None:
        self._clock = clock
        self._prefix = prefix + "rl:"
        self._script = client.register_script(_LUA)
        import redis  # the adapter's own dependency, resolved once, not per request

        self._redis_error: type[Exception] = redis.RedisError

    def acquire(self, key: str, *, rate: float, burst: float) -> float:
        granted, wait = self.acquire_many(key, 1, rate=rate, burst=burst)
        return 0.0 if granted else wait

    def acquire_many(self, key: str, n: int, *, rate: float, burst: float) -> tuple[int, float]:
        now = self._clock.now().timestamp()
        try:
            granted, wait = self._script(
                keys=[self._prefix + key],
                args=[repr(rate), repr(burst), repr(now), str(max(1, int(n)))],
            )
        except self._redis_error as e:
            raise DependencyError(f"rate limiter (redis): {e}") from e
        if int(granted) >= 1:
            return int(granted), 0.0
        w = float(wait)
        return 0, (w if math.isfinite(w) and w > 0 else 1.0 / rate)


def lease_size(rate: float, burst: float, *, horizon: float = 0.02, cap: int = 64) -> int:
    """Tokens to lease at once: ``horizon`` seconds of the rate, at most ``cap`` and a quarter
    of the burst, at least one.

    >>> lease_size(1.0, 2.0), lease_size(500.0, 1000.0), lease_size(1e9, 1e9), lease_size(1e9, 8)
    (1, 10, 64, 2)
    """
    return max(1, math.floor(min(rate * horizon, cap, burst / 4)))


class LeasedRateLimiter:
    """Local allowance per bucket key in front of a shared ``BulkRateLimiter`` (see the module
    docstring). Thread-safe; the lock is not held across the inner call, so two threads that
    find the same key empty may both lease (both leases come from the shared bucket, so the
    limit holds; only the local surplus grows, by one lease per such thread)."""

    def __init__(
        self,
        inner: BulkRateLimiter,
        *,
        clock: Clock,
        horizon: float = 0.02,
        max_lease: int = 64,
        lease_ttl: float = 1.0,
        max_keys: int = 100_000,
        refill_ahead: bool = False,
    ) -> None:
        self._inner = inner
        self._clock = clock
        self._horizon = horizon
        self._max_lease = max_lease
        self._ttl = lease_ttl
        self._max_keys = max_keys
        # key -> (tokens held, monotonic time they lapse); tokens == 0 marks a refusal
        # remembered until that time
        self._local: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._lock = threading.Lock()
        self._ahead = refill_ahead
        self._refilling: set[str] = set()  # keys with a lease on its way (refill ahead)
        self._jobs: queue.SimpleQueue[tuple[str, int, float, float]] | None = None
        self._idle = threading.Condition(self._lock)  # notified when a refill has landed

    def acquire(self, key: str, *, rate: float, burst: float) -> float:
        now = self._clock.monotonic()
        with self._lock:
            held = self._local.get(key)
            if held is not None:
                tokens, until = held
                if now < until:
                    if tokens > 0:
                        left = tokens - 1
                        if left:
                            self._local[key] = (left, until)
                        else:
                            del self._local[key]
                        if self._ahead and key not in self._refilling:
                            n = lease_size(rate, burst, horizon=self._horizon, cap=self._max_lease)
                            if n > 1 and left <= n // 2:
                                self._refill_later(key, n, rate, burst)
                        return 0.0
                    return until - now  # refused earlier; no token before `until`
                del self._local[key]  # lapsed lease or refusal
        n = lease_size(rate, burst, horizon=self._horizon, cap=self._max_lease)
        granted, wait = self._inner.acquire_many(key, n, rate=rate, burst=burst)
        if not granted:
            wait += (n - 1) / rate  # ask again when a whole lease has refilled
        with self._lock:
            if granted > 1:
                tokens = self._local.pop(key, (0, 0.0))[0]  # a concurrent lease adds up
                self._local[key] = (tokens + granted - 1, now + self._ttl)
            elif granted == 0 and self._local.get(key, (0, 0.0))[0] == 0:
                self._local[key] = (0, now + wait)  # unless another thread has just leased
            if len(self._local) > self._max_keys:
                self._local.popitem(last=False)  # its tokens lapse early: errs towards refusing
        return 0.0 if granted else wait

    # -- refill ahead ----------------------------------------------------------------------
    def _refill_later(self, key: str, n: int, rate: float, burst: float) -> None:
        """Queue a lease for ``key`` to the refill thread (started on first use; called with
        the lock held)."""
        self._refilling.add(key)
        if self._jobs is None:
            self._jobs = queue.SimpleQueue()
            threading.Thread(target=self._refill_loop, name="txg-rate-lease", daemon=True).start()
        self._jobs.put((key, n, rate, burst))

    def _refill_loop(self) -> None:
        jobs = self._jobs
        assert jobs is not None
        while True:
            key, n, rate, burst = jobs.get()
            try:
                granted, _ = self._inner.acquire_many(key, n, rate=rate, burst=burst)
            except Exception as e:  # the request that finds the allowance empty will see it
                log.debug("rate limit refill for %s failed: %s", key, e)
                granted = 0
            now = self._clock.monotonic()
            with self._lock:
                self._refilling.discard(key)
                if granted:
                    tokens, until = self._local.pop(key, (0, 0.0))
                    if until <= now:  # lapsed meanwhile (a remembered refusal has 0 tokens)
                        tokens = 0
                    self._local[key] = (tokens + granted, now + self._ttl)
                    if len(self._local) > self._max_keys:
                        self._local.popitem(last=False)
                self._idle.notify_all()

    def wait_refills(self, timeout: float = 5.0) -> bool:
        """Wait until no refill is on its way (tests, orderly shutdown); False on timeout."""
        with self._lock:
            return self._idle.wait_for(lambda: not self._refilling, timeout)
