"""One suite over both RateLimiter adapters (in-process and Redis), each also behind the
token-leasing layer, then the property that matters for scale-out: two limiters (two workers)
behind one Redis enforce ONE shared limit, with and without leasing."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from txguard.domain.clock import FixedClock, SystemClock
from txguard.security.ratelimit import (
    BulkRateLimiter,
    LeasedRateLimiter,
    MemoryRateLimiter,
    RateLimiter,
    RedisRateLimiter,
)

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["memory", "redis"])
def bulk(request: pytest.FixtureRequest) -> Iterator[tuple[BulkRateLimiter, FixedClock]]:
    clock = FixedClock(T0)
    if request.param == "memory":
        yield MemoryRateLimiter(clock=clock), clock
        return
    url = request.getfixturevalue("redis_url")
    prefix = request.getfixturevalue("key_prefix")
    client = redis.Redis.from_url(url)
    yield RedisRateLimiter(client, clock=clock, prefix=prefix), clock
    client.close()


@pytest.fixture(params=["plain", "leased"])
def env(
    request: pytest.FixtureRequest, bulk: tuple[BulkRateLimiter, FixedClock]
) -> tuple[RateLimiter, FixedClock]:
    """Every adapter, bare and behind the leasing layer: the limits these tests use are slow
    enough to lease one token, so the leased limiter must behave exactly like the bare one."""
    inner, clock = bulk
    if request.param == "plain":
        return inner, clock
    return LeasedRateLimiter(inner, clock=clock), clock


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


def test_acquire_many_grants_whole_tokens_up_to_n(
    bulk: tuple[BulkRateLimiter, FixedClock],
) -> None:
    lim, clock = bulk
    assert lim.acquire_many("a", 10, rate=10.0, burst=25.0) == (10, 0.0)
    assert lim.acquire_many("a", 10, rate=10.0, burst=25.0) == (10, 0.0)
    assert lim.acquire_many("a", 10, rate=10.0, burst=25.0) == (5, 0.0)  # what is left
    granted, wait = lim.acquire_many("a", 10, rate=10.0, burst=25.0)
    assert granted == 0 and wait == pytest.approx(0.1)
    clock.advance(seconds=0.35)  # 3.5 tokens: three whole ones granted, half a token stays
    assert lim.acquire_many("a", 10, rate=10.0, burst=25.0) == (3, 0.0)
    granted, wait = lim.acquire_many("a", 10, rate=10.0, burst=25.0)
    assert granted == 0 and wait == pytest.approx(0.05, abs=1e-6)  # epoch-float rounding
    # n=1 is the single-token acquire
    assert lim.acquire_many("b", 1, rate=1.0, burst=2.0) == (1, 0.0)
    assert lim.acquire("b", rate=1.0, burst=2.0) == 0.0
    granted, wait = lim.acquire_many("b", 1, rate=1.0, burst=2.0)
    assert granted == 0 and wait == pytest.approx(1.0)


class _Counting:
    """A BulkRateLimiter that counts the calls reaching the shared bucket."""

    def __init__(self, inner: BulkRateLimiter) -> None:
        self.inner = inner
        self.calls = 0
        self.taken = 0

    def acquire(self, key: str, *, rate: float, burst: float) -> float:
        raise AssertionError("the leasing layer must call acquire_many")

    def acquire_many(self, key: str, n: int, *, rate: float, burst: float) -> tuple[int, float]:
        self.calls += 1
        granted, wait = self.inner.acquire_many(key, n, rate=rate, burst=burst)
        self.taken += granted
        return granted, wait


def test_leasing_slow_limit_is_exact(bulk: tuple[BulkRateLimiter, FixedClock]) -> None:
    """rate 1/s, burst 2: leases one token at a time, so every answer is the bucket's own."""
    inner, clock = bulk
    counting = _Counting(inner)
    lim = LeasedRateLimiter(counting, clock=clock)
    waits = [lim.acquire("slow", rate=1.0, burst=2.0) for _ in range(3)]
    assert waits[:2] == [0.0, 0.0]
    assert waits[2] == pytest.approx(1.0)
    assert counting.taken == 2
    clock.advance(seconds=0.4)
    assert lim.acquire("slow", rate=1.0, burst=2.0) == pytest.approx(0.6)
    clock.advance(seconds=0.6)
    assert lim.acquire("slow", rate=1.0, burst=2.0) == 0.0
    assert lim.acquire("slow", rate=1.0, burst=2.0) == pytest.approx(1.0)


def test_leasing_amortises_calls_and_remembers_refusals(
    bulk: tuple[BulkRateLimiter, FixedClock],
) -> None:
    inner, clock = bulk
    counting = _Counting(inner)
    lim = LeasedRateLimiter(counting, clock=clock)
    # rate 1000/s, burst 100: lease min(1000 * 0.02, 64, 100 / 4) = 20 tokens
    allowed = sum(lim.acquire("fast", rate=1000.0, burst=100.0) == 0.0 for _ in range(100))
    assert allowed == 100
    assert counting.calls == 5 and counting.taken == 100
    # empty: refused until a whole lease has refilled (1 ms for a token, 19 ms for the rest)
    wait = lim.acquire("fast", rate=1000.0, burst=100.0)
    assert wait == pytest.approx(0.020, abs=1e-6)
    calls = counting.calls
    clock.advance(seconds=0.005)
    for _ in range(50):  # hammering past the limit: the refusal is answered locally
        assert lim.acquire("fast", rate=1000.0, burst=100.0) == pytest.approx(0.015, abs=1e-6)
    assert counting.calls == calls
    clock.advance(seconds=0.0151)  # a hair past the wait: epoch timestamps round
    allowed = sum(lim.acquire("fast", rate=1000.0, burst=100.0) == 0.0 for _ in range(30))
    assert allowed == 20  # the refill was not lost: one lease of 20
    assert counting.calls == calls + 2  # that lease, then the next refusal


def test_leased_tokens_lapse_locally(bulk: tuple[BulkRateLimiter, FixedClock]) -> None:
    """An idle process does not hoard its lease: after ``lease_ttl`` the unused tokens are
    dropped and the next request goes back to the shared bucket."""
    inner, clock = bulk
    counting = _Counting(inner)
    lim = LeasedRateLimiter(counting, clock=clock, lease_ttl=0.5)
    assert lim.acquire("k", rate=1000.0, burst=100.0) == 0.0
    assert counting.calls == 1 and counting.taken == 20  # 19 held locally
    clock.advance(seconds=0.49)
    assert lim.acquire("k", rate=1000.0, burst=100.0) == 0.0
    assert counting.calls == 1  # served from the lease
    clock.advance(seconds=0.02)
    assert lim.acquire("k", rate=1000.0, burst=100.0) == 0.0
    assert counting.calls == 2  # the 18 left had lapsed: a fresh lease


class _ByThread(_Counting):
    """Counts the calls reaching the shared bucket per calling thread."""

    def __init__(self, inner: BulkRateLimiter) -> None:
        super().__init__(inner)
        self.threads: list[str] = []

    def acquire_many(self, key: str, n: int, *, rate: float, burst: float) -> tuple[int, float]:
        self.threads.append(threading.current_thread().name)
        return super().acquire_many(key, n, rate=rate, burst=burst)


def test_refill_ahead_takes_leases_off_the_request_thread(
    bulk: tuple[BulkRateLimiter, FixedClock],
) -> None:
    """Frozen clock: the bucket holds exactly ``burst`` = 100 tokens, leases of 20. The request
    thread takes the first lease; every later one is taken by the refill thread while the
    allowance still has half a lease; every token is served exactly once, then the empty
    bucket's refusal reaches the request thread as without refilling ahead."""
    inner, _clock = bulk
    counting = _ByThread(inner)
    lim = LeasedRateLimiter(counting, clock=_clock, refill_ahead=True)
    me = threading.current_thread().name
    waits = []
    for _ in range(130):
        waits.append(lim.acquire("k", rate=1000.0, burst=100.0))
        assert lim.wait_refills()
    assert waits[:100] == [0.0] * 100
    assert all(w > 0 for w in waits[100:])
    assert counting.taken == 100
    assert counting.threads[0] == me  # the cold key's first lease
    refills = [t for t in counting.threads if t != me]
    assert refills and set(refills) == {"txg-rate-lease"}
    assert len(refills) >= 4  # 80 tokens after the first lease: four refills of 20
    # the request thread asked the bucket twice: the first lease and the final refusal (the
    # refusal is then remembered locally)
    assert counting.threads.count(me) == 2


def test_refill_ahead_failure_surfaces_on_the_next_empty_request(key_prefix: str) -> None:
    """A refill that fails is dropped; the request that finds the allowance empty asks the
    bucket itself and gets the DependencyError (the gate then fails open or closed)."""
    from txguard.domain.errors import DependencyError

    clock = FixedClock(T0)
    inner = MemoryRateLimiter(clock=clock)
    broken = {"on": False}

    class _Flaky:
        def acquire(self, key: str, *, rate: float, burst: float) -> float:
            raise AssertionError("the leasing layer must call acquire_many")

        def acquire_many(self, key: str, n: int, *, rate: float, burst: float) -> tuple[int, float]:
            if broken["on"]:
                raise DependencyError("rate limiter (redis): connection refused")
            return inner.acquire_many(key, n, rate=rate, burst=burst)

    lim = LeasedRateLimiter(_Flaky(), clock=clock, refill_ahead=True)
    assert lim.acquire("k", rate=1000.0, burst=1000.0) == 0.0  # lease of 20, 19 left
    broken["on"] = True
    for _ in range(19):  # the lease is served whole
        assert lim.acquire("k", rate=1000.0, burst=1000.0) == 0.0
        assert lim.wait_refills()
    # the failed refills added nothing: the next request asks the bucket itself
    with pytest.raises(DependencyError, match="rate limiter"):
        lim.acquire("k", rate=1000.0, burst=1000.0)


def test_refill_ahead_never_exceeds_the_shared_bucket(redis_url: str, key_prefix: str) -> None:
    """Two refilling-ahead limiters (two processes) on one Redis bucket, requests from two
    threads each and a clock moving on its own: the tokens taken from the bucket stay within
    ``burst + rate * elapsed`` and the admitted requests within what was taken."""
    clock = SystemClock()
    clients = [redis.Redis.from_url(redis_url) for _ in range(2)]
    shared = [_ByThread(RedisRateLimiter(c, clock=clock, prefix=key_prefix)) for c in clients]
    procs = [LeasedRateLimiter(c, clock=clock, refill_ahead=True) for c in shared]
    rate, burst = 2000.0, 200.0  # lease 40
    t0 = time.monotonic()
    allowed = _burst([procs[0], procs[0], procs[1], procs[1]], n_each=1500, rate=rate, burst=burst)
    for p in procs:
        assert p.wait_refills()
    elapsed = time.monotonic() - t0
    taken = sum(c.taken for c in shared)
    assert allowed <= taken <= burst + rate * elapsed + 1e-6
    assert allowed >= 200  # the burst at least was admitted
    assert any(t == "txg-rate-lease" for c in shared for t in c.threads)
    for c in clients:
        c.close()


def test_leased_processes_never_exceed_the_shared_bucket(redis_url: str, key_prefix: str) -> None:
    """Two processes (two leasing limiters, two connections) on one Redis bucket, a test
    clock moving in uneven steps, demand a little over the rate with pauses: after every
    request the total admitted is within ``burst + rate * elapsed``; over the run it is within
    three leases of what two bare (one token per call) limiters admit on the same schedule,
    with a fraction of their Redis calls."""
    clock = FixedClock(T0)
    clients = [redis.Redis.from_url(redis_url) for _ in range(2)]
    bare = [_Counting(RedisRateLimiter(c, clock=clock, prefix=key_prefix)) for c in clients]
    shared = [_Counting(RedisRateLimiter(c, clock=clock, prefix=key_prefix)) for c in clients]
    procs = [LeasedRateLimiter(c, clock=clock) for c in shared]
    rate, burst = 2000.0, 200.0  # lease min(40, 64, 50) = 40
    admitted = admitted_bare = requests = 0
    elapsed = 0.0
    steps = [0.0, 0.0, 0.0001, 0.0003, 0.0, 0.001, 0.0007]  # ~3,300 requests/s
    for i in range(6000):
        dt = 0.2 if i % 1500 == 1499 else steps[i % len(steps)]
        clock.advance(seconds=dt)
        elapsed += dt
        requests += 1
        who = (i // 3) % 2  # the processes take turns in runs of three
        if procs[who].acquire("leased", rate=rate, burst=burst) == 0.0:
            admitted += 1
        if bare[who].acquire_many("bare", 1, rate=rate, burst=burst)[0]:
            admitted_bare += 1
        assert admitted <= burst + rate * elapsed + 1e-6
    assert sum(c.taken for c in shared) <= burst + rate * elapsed + 1e-6
    assert admitted_bare - 3 * 40 <= admitted <= admitted_bare
    assert admitted < requests  # the schedule did push past the limit
    assert sum(c.calls for c in shared) < requests / 5
    for c in clients:
        c.close()


def test_leased_workers_share_one_limit_under_threads(redis_url: str, key_prefix: str) -> None:
    clock = FixedClock(T0)  # frozen: exactly `burst` tokens exist, leases of 20
    clients = [redis.Redis.from_url(redis_url) for _ in range(2)]
    limiters: list[RateLimiter] = [
        LeasedRateLimiter(RedisRateLimiter(c, clock=clock, prefix=key_prefix), clock=clock)
        for c in clients
    ]
    allowed = _burst(limiters, n_each=150, rate=1000.0, burst=100.0)
    assert 100 - 2 * 19 <= allowed <= 100
    for c in clients:
        c.close()


def test_leased_redis_outage_is_a_dependency_error(key_prefix: str) -> None:
    from txguard.domain.errors import DependencyError

    dead = redis.Redis(
        host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )
    clock = FixedClock(T0)
    lim = LeasedRateLimiter(RedisRateLimiter(dead, clock=clock, prefix=key_prefix), clock=clock)
    with pytest.raises(DependencyError, match="rate limiter"):
        lim.acquire("a", rate=1000.0, burst=1000.0)


def _burst(limiters: Sequence[RateLimiter], n_each: int, rate: float, burst: float) -> int:
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
