"""One suite over both RateLimiter adapters (in-process and Redis), then the property that
matters for scale-out: two limiters (two workers) behind one Redis enforce ONE shared limit."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from txguard.domain.clock import FixedClock, SystemClock
from txguard.security.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["memory", "redis"])
def env(request: pytest.FixtureRequest) -> Iterator[tuple[RateLimiter, FixedClock]]:
    clock = FixedClock(T0)
    if request.param == "memory":
        yield MemoryRateLimiter(clock=clock), clock
        return
    url = request.getfixturevalue("redis_url")
    prefix = request.getfixturevalue("key_prefix")
    client = redis.Redis.from_url(url)
    yield RedisRateLimiter(client, clock=clock, prefix=prefix), clock
    client.close()


def test_burst_then_refused_with_retry_after(env: tuple[RateLimiter, FixedClock]) -> None:
    lim, _ = env
    waits = [lim.acquire("a", rate=2.0, burst=5.0) for _ in range(7)]
    assert waits[:5] == [0.0] * 5
    assert waits[5] == pytest.approx(0.5)
    assert waits[6] == pytest.approx(0.5)  # a refused request takes nothing


def test_refill_at_rate_capped_at_burst(env: tuple[RateLimiter, FixedClock]) -> None:
    lim, clock = env
    for _ in range(3):
        assert lim.acquire("a", rate=1.0, burst=3.0) == 0.0
    assert lim.acquire("a", rate=1.0, burst=3.0) == pytest.approx(1.0)
    clock.advance(seconds=0.25)
    assert lim.acquire("a", rate=1.0, burst=3.0) == pytest.approx(0.75)
    clock.advance(seconds=0.75)
    assert lim.acquire("a", rate=1.0, burst=3.0) == 0.0
    clock.advance(seconds=1000)
    allowed = sum(lim.acquire("a", rate=1.0, burst=3.0) == 0.0 for _ in range(10))
    assert allowed == 3


def test_keys_are_independent(env: tuple[RateLimiter, FixedClock]) -> None:
    lim, _ = env
    assert lim.acquire("a", rate=1.0, burst=1.0) == 0.0
    assert lim.acquire("a", rate=1.0, burst=1.0) > 0
    assert lim.acquire("b", rate=1.0, burst=1.0) == 0.0


def test_clock_going_backwards_gives_no_tokens(env: tuple[RateLimiter, FixedClock]) -> None:
    lim, clock = env
    clock.advance(seconds=10)
    assert lim.acquire("a", rate=1.0, burst=1.0) == 0.0
    clock.advance(seconds=-5)  # another replica's clock a little behind
    assert lim.acquire("a", rate=1.0, burst=1.0) > 0


def _burst(limiters: list[RedisRateLimiter], n_each: int, rate: float, burst: float) -> int:
    """Each limiter (a worker) fires ``n_each`` requests from its own thread; allowed count."""
    allowed = [0] * len(limiters)
    start = threading.Barrier(len(limiters))

    def run(i: int) -> None:
        start.wait()
        for _ in range(n_each):
            if limiters[i].acquire("shared", rate=rate, burst=burst) == 0.0:
                allowed[i] += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(limiters))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(allowed)


def test_two_workers_share_one_limit_exactly(redis_url: str, key_prefix: str) -> None:
    clock = FixedClock(T0)  # frozen time: no refill, so exactly `burst` requests may pass
    clients = [redis.Redis.from_url(redis_url) for _ in range(2)]
    limiters = [RedisRateLimiter(c, clock=clock, prefix=key_prefix) for c in clients]
    assert _burst(limiters, n_each=150, rate=10.0, burst=100.0) == 100
    for c in clients:
        c.close()


def test_two_workers_real_time_burst_gets_expected_proportion(
    redis_url: str, key_prefix: str
) -> None:
    """300 requests from two workers on the real clock against burst 50 at 20/s: allowed is
    50 plus what refilled while the burst ran, never more; the rest are refused."""
    clock = SystemClock()
    clients = [redis.Redis.from_url(redis_url) for _ in range(2)]
    limiters = [RedisRateLimiter(c, clock=clock, prefix=key_prefix) for c in clients]
    t0 = time.perf_counter()
    allowed = _burst(limiters, n_each=150, rate=20.0, burst=50.0)
    elapsed = time.perf_counter() - t0
    assert 50 <= allowed <= 50 + 20.0 * elapsed + 1
    assert 300 - allowed >= 300 - 50 - 20.0 * elapsed - 1
    for c in clients:
        c.close()


def test_redis_outage_is_a_dependency_error(key_prefix: str) -> None:
    from txguard.domain.errors import DependencyError

    dead = redis.Redis(
        host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )
    lim = RedisRateLimiter(dead, clock=FixedClock(T0), prefix=key_prefix)
    with pytest.raises(DependencyError, match="rate limiter"):
        lim.acquire("a", rate=1.0, burst=1.0)
