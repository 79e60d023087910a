"""Token-bucket rate limits: per identity (and per client IP for unauthenticated requests).

A bucket holds up to ``burst`` tokens and refills at ``rate`` tokens per second; a request takes
one token or is refused with the time until one is available (``Retry-After``). The Redis
adapter does the whole read-refill-take-write in one Lua script, so every worker and replica
sharing the Redis draws from the same bucket atomically.

Time comes from the caller's injected clock (wall time, seconds), not Redis ``TIME``: the
in-memory and Redis adapters then behave identically under a test clock, and replicas' NTP
skew (milliseconds) only blurs refill by that much; the script never lets time run backwards
for a bucket.

>>> from datetime import UTC, datetime
>>> from txguard.domain.clock import FixedClock
>>> lim = MemoryRateLimiter(clock=FixedClock(datetime(2026, 1, 1, tzinfo=UTC)))
>>> [lim.acquire("k", rate=1.0, burst=2.0) for _ in range(3)]
[0.0, 0.0, 1.0]
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from typing import Any, Protocol

from txguard.domain.clock import Clock
from txguard.domain.errors import DependencyError


class RateLimiter(Protocol):
    def acquire(self, key: str, *, rate: float, burst: float) -> float:
        """Take one token from ``key``'s bucket: 0.0 when allowed, else seconds to wait."""
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
        now = self._clock.now().timestamp()
        with self._lock:
            tokens, last = self._buckets.pop(key, (burst, now))
            tokens = min(burst, tokens + max(0.0, now - last) * rate)
            last = max(last, now)
            if tokens >= 1.0:
                tokens -= 1.0
                wait = 0.0
            else:
                wait = (1.0 - tokens) / rate
            self._buckets[key] = (tokens, last)
            if len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
        return wait


# KEYS[1] bucket hash; ARGV rate, burst, now (s). Returns {allowed 0|1, wait seconds as text}:
# Redis truncates Lua numbers to integers in replies, hence the string.
_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
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
local allowed = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'ts', tostring(last))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, tostring(wait)}
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
        now = self._clock.now().timestamp()
        try:
            allowed, wait = self._script(
                keys=[self._prefix + key], args=[repr(rate), repr(burst), repr(now)]
            )
        except self._redis_error as e:
            raise DependencyError(f"rate limiter (redis): {e}") from e
        if int(allowed) == 1:
            return 0.0
        w = float(wait)
        return w if math.isfinite(w) and w > 0 else 1.0 / rate
