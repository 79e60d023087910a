"""RedisStore.execute_many_async: feature round trips on the event loop over a lean link (real
Redis on loopback, and fake servers for the failures). The same numbers as the threaded
``execute_many`` bit for bit; NOSCRIPT reloaded; a killed connection reconnected before sending;
a refused port, a silent server and a connection lost mid-reply raise DependencyError (a sent
batch is not resent); the link closed from any thread in any state of its loop without leaking
its socket; the thread fallback for clients that are not plain TCP."""

from __future__ import annotations

import asyncio
import gc
import os
import select
import socket
import threading
import time
import warnings
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
import redis
import uvloop
from test_redis_distinct_sets import SPEC, same, stream

from txguard.domain.errors import DependencyError
from txguard.features.engine import FeatureEngine, FeatureResult
from txguard.features.stores.memory import MemoryStore
from txguard.features.stores.redis import RedisStore
from txguard.features.stores.redis_link import Endpoint

pytestmark = pytest.mark.redis


Run = Callable[[Coroutine[Any, Any, Any]], Any]
LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.fixture(params=sorted(LOOPS))
def loop_factory(request: pytest.FixtureRequest) -> Callable[[], asyncio.AbstractEventLoop]:
    """asyncio's own loop, and uvloop (what ``txguard serve`` runs)."""
    return LOOPS[request.param]


@pytest.fixture
def run(loop_factory: Callable[[], asyncio.AbstractEventLoop]) -> Run:
    """``asyncio.run`` on each kind of loop (closed when it returns)."""

    def run(coro: Coroutine[Any, Any, Any]) -> Any:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(coro)

    return run


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture
def no_leaks() -> Iterator[None]:
    """The test leaves no descriptor open and no socket to be collected unclosed. Each kind of
    loop runs once first: uvloop's first runner opens a pipe the process keeps (its signal
    wake-up), which is not the test's to close."""
    for factory in LOOPS.values():
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(asyncio.sleep(0))
    before = _fds()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        yield
        gc.collect()
    assert [w for w in seen if issubclass(w.category, ResourceWarning)] == []
    assert _fds() - before == set()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s.getsockname()[1]


def _refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once it is closed


def _in_batches(eng: FeatureEngine, events: list[Any], size: int = 16) -> Callable[[], Any]:
    async def run() -> list[FeatureResult]:
        out: list[FeatureResult] = []
        for i in range(0, len(events), size):
            out += await eng.process_many_async(events[i : i + size])
        return out

    return run


def test_async_equals_threaded_bit_for_bit(redis_url: str, key_prefix: str, run: Run) -> None:
    events = stream(500)  # a hot IP, values ageing out of the windows, repeated ids
    expected = FeatureEngine(SPEC, MemoryStore()).process_many(events)
    sync_store = RedisStore(url=redis_url, prefix=key_prefix + "sync:")
    async_store = RedisStore(url=redis_url, prefix=key_prefix + "async:")
    try:
        sync_eng = FeatureEngine(SPEC, sync_store)
        threaded = [r for i in range(0, 500, 16) for r in sync_eng.process_many(events[i : i + 16])]
        got = run(_in_batches(FeatureEngine(SPEC, async_store), events)())
        same(got, threaded)
        same(got, expected)
        assert [g.first_seen for g in got].count(False) == 6
        assert len(async_store.links()) == 1
    finally:
        sync_store.close()
        async_store.close()


def test_script_flush_between_calls_reloads(redis_url: str, key_prefix: str, run: Run) -> None:
    events = stream(60)
    expected = FeatureEngine(SPEC, MemoryStore()).process_many(events)
    store = RedisStore(url=redis_url, prefix=key_prefix)
    eng = FeatureEngine(SPEC, store)

    async def go() -> list[FeatureResult]:
        out = await eng.process_many_async(events[:30])
        store.client.script_flush()
        return out + await eng.process_many_async(events[30:])

    try:
        same(run(go()), expected)
    finally:
        store.close()


def test_a_killed_connection_is_replaced_before_sending(
    redis_url: str, key_prefix: str, run: Run
) -> None:
    events = stream(60)
    expected = FeatureEngine(SPEC, MemoryStore()).process_many(events)
    store = RedisStore(url=redis_url, prefix=key_prefix)
    eng = FeatureEngine(SPEC, store)
    admin = redis.Redis.from_url(redis_url)

    async def go() -> list[FeatureResult]:
        out = await eng.process_many_async(events[:30])
        (link,) = store.links()
        host, port = link.sockname() or ("", 0)
        assert admin.client_kill(f"{host}:{port}")
        out += await eng.process_many_async(events[30:])  # nothing lost, nothing sent twice
        assert link.sockname() != (host, port)
        return out

    try:
        same(run(go()), expected)
    finally:
        store.close()
        admin.close()


def _store_at(port: int, prefix: str, timeout_s: float = 0.2) -> RedisStore:
    return RedisStore(url=f"redis://127.0.0.1:{port}/0", prefix=prefix, timeout_s=timeout_s)


def test_nothing_listening_raises_dependency_error(no_leaks: None, run: Run) -> None:
    store = _store_at(_refused_port(), "x:")
    eng = FeatureEngine(SPEC, store)

    async def go() -> None:
        for _ in range(2):  # and again: each call tries a new connection
            with pytest.raises(DependencyError, match="connect"):
                await asyncio.wait_for(eng.process_many_async(stream(2)), 5)
            assert store.links()[0].fileno() == -1

    run(go())
    store.close()


def test_a_silent_server_times_out_and_the_next_call_reconnects(
    silent_port: int, no_leaks: None, run: Run
) -> None:
    store = _store_at(silent_port, "x:")
    eng = FeatureEngine(SPEC, store)

    async def go() -> None:
        with pytest.raises(DependencyError, match=r"no answer within 0\.2 s"):
            await asyncio.wait_for(eng.process_many_async(stream(2)), 5)  # bounded by 0.2 s
        (link,) = store.links()
        assert link.fileno() == -1  # dropped: a late answer must not be read as the next one
        with pytest.raises(DependencyError, match="no answer"):
            await asyncio.wait_for(eng.process_many_async(stream(2)), 5)

    run(go())
    store.close()


def test_a_connection_lost_after_sending_is_not_resent(no_leaks: None, run: Run) -> None:
    """A server that reads the batch and hangs up: the transactions may have been applied, so
    the batch fails (DependencyError) and is not sent again on a new connection."""
    received: list[bytes] = []
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(10)

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(10)
            received.append(conn.recv(1 << 20))

    t = threading.Thread(target=serve)
    t.start()
    store = _store_at(listener.getsockname()[1], "x:", timeout_s=5)
    events = stream(3)
    try:
        with pytest.raises(DependencyError, match="closed by the server"):
            run(FeatureEngine(SPEC, store).process_many_async(events))
        t.join()
        assert len(received) == 1 and received[0].count(b"EVALSHA") == len(events)
        listener.settimeout(0)
        with pytest.raises(BlockingIOError):
            listener.accept()  # no second connection came to send it again
    finally:
        store.close()
        listener.close()


def test_auth_and_select_are_sent_on_connect(redis_url: str, key_prefix: str, run: Run) -> None:
    client = redis.Redis.from_url(redis_url)
    base = client.connection_pool.connection_kwargs
    host, port = base["host"], base["port"]
    db1 = redis.Redis(host=host, port=port, db=1)
    store = RedisStore(db1, prefix=key_prefix)
    try:
        run(FeatureEngine(SPEC, store).process_many_async(stream(2)))
        assert db1.exists(f"{key_prefix}tx:t0") == 1  # written in db 1, not db 0
        assert client.exists(f"{key_prefix}tx:t0") == 0
        # the shared server has no password: an AUTH is refused, which proves it was sent
        with_password = RedisStore(redis.Redis(host=host, port=port, password="x"), prefix="x:")
        with pytest.raises(DependencyError, match="connect"):
            run(FeatureEngine(SPEC, with_password).process_many_async(stream(1)))
        with_password.close()
    finally:
        for k in db1.scan_iter(match=key_prefix + "*"):
            db1.delete(k)
        store.close()
        db1.close()
        client.close()


def test_endpoint_only_for_plain_tcp() -> None:
    ep = Endpoint.of_client(
        redis.Redis.from_url("redis://u:pw@127.0.0.1:6390/3", socket_timeout=0.05), timeout_s=1
    )
    assert ep is not None
    assert (ep.host, ep.port, ep.db, ep.auth, ep.read_timeout) == (
        "127.0.0.1",
        6390,
        3,
        ("AUTH", "u", "pw"),
        0.05,
    )
    assert ep.connect_timeout == 0.05  # none given: the read timeout, as redis-py does
    for url in ("unix:///tmp/txg-none.sock", "rediss://127.0.0.1:6390/0"):
        c = redis.Redis.from_url(url)
        assert Endpoint.of_client(c, timeout_s=1) is None, url
        c.close()


def test_a_client_that_is_not_plain_tcp_falls_back_to_a_thread(
    redis_url: str, key_prefix: str, run: Run
) -> None:
    class Custom(redis.connection.Connection):
        pass

    kw = redis.Redis.from_url(redis_url).connection_pool.connection_kwargs
    pool = redis.ConnectionPool(connection_class=Custom, host=kw["host"], port=kw["port"])
    store = RedisStore(redis.Redis(connection_pool=pool), prefix=key_prefix)
    threads: list[int] = []
    original = store.execute_many

    def execute_many(items: Any) -> Any:
        threads.append(threading.get_ident())
        return original(items)

    store.execute_many = execute_many  # type: ignore[method-assign]
    events = stream(40)
    try:
        got = run(_in_batches(FeatureEngine(SPEC, store), events)())
        same(got, FeatureEngine(SPEC, MemoryStore()).process_many(events))
        assert threads and threading.get_ident() not in threads
        assert store.links() == []
    finally:
        store.close()


# ---------------------------------------------------------------------- closing


def _one_call(store: RedisStore, run: Run) -> None:
    run(FeatureEngine(SPEC, store).process_many_async(stream(2)))


def test_close_after_its_loop_closed(
    redis_url: str, key_prefix: str, no_leaks: None, run: Run
) -> None:
    store = RedisStore(url=redis_url, prefix=key_prefix)
    _one_call(store, run)  # its loop is closed now, the link's socket still open
    (link,) = store.links()
    assert link.fileno() != -1
    store.close()
    assert link.fileno() == -1 and link.closed


def test_a_new_loop_closes_the_link_of_a_closed_one(
    redis_url: str, key_prefix: str, no_leaks: None, run: Run
) -> None:
    store = RedisStore(url=redis_url, prefix=key_prefix)
    _one_call(store, run)
    (first,) = store.links()
    _one_call(store, run)
    assert first.fileno() == -1 and store.links() != [first]
    store.close()


class LoopThread:
    """An event loop running in a thread of its own."""

    def __init__(self, loop_factory: Callable[[], asyncio.AbstractEventLoop]) -> None:
        self.loop = loop_factory()
        self.thread = threading.Thread(target=self.loop.run_forever)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


def test_close_from_another_thread_while_the_loop_runs_idle(
    redis_url: str,
    key_prefix: str,
    no_leaks: None,
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    store = RedisStore(url=redis_url, prefix=key_prefix)
    lt = LoopThread(loop_factory)
    try:
        lt.run(FeatureEngine(SPEC, store).process_many_async(stream(2))).result(10)
        (link,) = store.links()
        store.close()  # the loop is running (idle) in the other thread
        assert link.fileno() == -1
        with pytest.raises(DependencyError, match="closed"):
            lt.run(FeatureEngine(SPEC, store).process_many_async(stream(2))).result(10)
    finally:
        lt.stop()


def test_close_from_another_thread_mid_flight(
    silent_port: int, no_leaks: None, loop_factory: Callable[[], asyncio.AbstractEventLoop]
) -> None:
    store = _store_at(silent_port, "x:", timeout_s=30)  # only the close can end this call
    lt = LoopThread(loop_factory)
    try:
        fut = lt.run(FeatureEngine(SPEC, store).process_many_async(stream(2)))
        while not store.links() or store.links()[0].fileno() == -1:
            threading.Event().wait(0.01)  # until it is connected and waiting for an answer
        (link,) = store.links()
        store.close()
        with pytest.raises(DependencyError, match="link closed"):
            fut.result(10)
        assert link.fileno() == -1
    finally:
        lt.stop()


def test_close_on_the_loop_fails_a_round_trip_in_flight(
    silent_port: int, no_leaks: None, run: Run
) -> None:
    store = _store_at(silent_port, "x:", timeout_s=30)

    async def go() -> None:
        call = asyncio.ensure_future(FeatureEngine(SPEC, store).process_many_async(stream(2)))
        while not store.links() or store.links()[0].fileno() == -1:
            await asyncio.sleep(0.01)
        (link,) = store.links()
        store.close()  # from the loop's own thread
        assert link.fileno() == -1
        with pytest.raises(DependencyError, match="link closed"):
            await asyncio.wait_for(call, 10)

    run(go())


def test_an_answer_waiting_after_a_loop_stall_is_not_a_timeout(
    redis_url: str, key_prefix: str, run: Run
) -> None:
    """The loop blocked (a long synchronous call) past the read timeout while the answer
    arrived: the answer is read (both loops poll for I/O before they run due timers), not
    taken for a timeout."""
    client = redis.Redis.from_url(redis_url, socket_timeout=0.05)
    store = RedisStore(client, prefix=key_prefix)
    eng = FeatureEngine(SPEC, store)

    async def go() -> list[FeatureResult]:
        await eng.process_many_async(stream(1))  # connected
        call = asyncio.ensure_future(eng.process_many_async(stream(3)))
        await asyncio.sleep(0)  # sent; now waiting for the answer
        (link,) = store.links()
        assert select.select([link.fileno()], [], [], 5)[0]  # the answer is in the socket
        time.sleep(0.1)  # the stall: twice the read timeout, the loop blocked
        return await call

    try:
        assert len(run(go())) == len(stream(3))
    finally:
        store.close()


def test_concurrent_callers_on_one_loop_take_turns(
    redis_url: str, key_prefix: str, run: Run
) -> None:
    """Callers other than the pipeline's single-flight coalescer may overlap on one loop: their
    round trips run one at a time, in the order they were made."""
    events = stream(90)
    expected = FeatureEngine(SPEC, MemoryStore()).process_many(events)
    store = RedisStore(url=redis_url, prefix=key_prefix)
    eng = FeatureEngine(SPEC, store)

    async def go() -> list[FeatureResult]:
        parts = [events[i : i + 10] for i in range(0, len(events), 10)]
        got = await asyncio.gather(*(eng.process_many_async(p) for p in parts))
        return [r for part in got for r in part]

    try:
        same(run(go()), expected)
        assert len(store.links()) == 1
    finally:
        store.close()
