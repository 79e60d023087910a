"""The PostgreSQL audit log's loop writer on the real server: commits driven by the event loop
(``append_batch_async``) give the same rows and hashes as the writer thread, share commits,
resolve duplicates to the first record, redo the careful way when another writer moved the head,
fail one batch (and only it) when the connection dies or a statement times out, and leave no
connection, loop registration or warning behind however the store is closed."""

from __future__ import annotations

import asyncio
import gc
import itertools
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import psycopg
import pytest
import uvloop
from audit_helpers import audit_record, big_features

from txguard.audit.log import AuditLog, open_audit_log
from txguard.audit.records import AuditRecord
from txguard.audit.stores import postgres
from txguard.audit.stores.base import Pending
from txguard.audit.stores.postgres import PostgresAuditStore
from txguard.domain.errors import ConflictError, DependencyError

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
T = TypeVar("T")
COLUMNS = (
    "seq, decision_id, transaction_id, decided_at, action, sender_account_id, model_version, "
    "body, prev_hash, hash"
)


def rec(i: int, **over: Any) -> AuditRecord:
    fields: dict[str, Any] = {"features": big_features(), "sender_account_id": f"acct-{i % 3}"}
    return audit_record(i, T0 + timedelta(seconds=i, microseconds=i), **(fields | over))


def sql(url: str, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


Run = Callable[[Coroutine[Any, Any, T]], T]


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Run[Any]:
    """``asyncio.run`` on the stdlib loop, and on uvloop (what ``txguard serve`` runs)."""
    if request.param == "asyncio":
        return asyncio.run

    def on_uvloop(coro: Coroutine[Any, Any, Any]) -> Any:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coro)

    return on_uvloop


@pytest.fixture
def app_url(pg_url: str) -> str:
    """``pg_url`` with an application name of its own: this test's backends can be counted."""
    return f"{pg_url}&application_name=txgtest_{uuid.uuid4().hex[:12]}"


def backends(pg_dsn: str, app_url: str) -> int:
    """This test's backends still alive, waiting up to 10 s for them to go: a backend whose
    client left notices only when it next reads or writes (one waiting for a lock, after it)."""
    name = app_url.rsplit("application_name=", 1)[1]
    query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
    deadline = time.monotonic() + 10
    while (n := int(sql(pg_dsn, query, (name,))[0][0])) and time.monotonic() < deadline:
        time.sleep(0.05)
    return n


@pytest.fixture
def other_schema(pg_dsn: str, pg_url: str) -> Iterator[str]:
    """A second schema (its own chain) and the URL that uses it."""
    schema = f"txgtest_{uuid.uuid4().hex[:12]}"
    sql(pg_dsn, f'CREATE SCHEMA "{schema}"')
    yield f"{pg_dsn}?options=-csearch_path%3D{schema}"
    sql(pg_dsn, f'DROP SCHEMA "{schema}" CASCADE')


class ThreadCalls:
    """Counts the batches the loop path handed to a worker thread (connect or careful path)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.n = 0
        original = PostgresAuditStore._commit_locked

        def counted(store: PostgresAuditStore, w: Any, items: Any) -> Any:
            self.n += 1
            return original(store, w, items)

        monkeypatch.setattr(PostgresAuditStore, "_commit_locked", counted)


def loop_writer_pid(log: AuditLog) -> int:
    (w,) = log.store._loop_writers  # type: ignore[attr-defined]
    return int(w.conn.info.backend_pid)


def test_loop_writer_is_on_for_postgres_only(pg_url: str, tmp_path: Any) -> None:
    with open_audit_log(pg_url) as log:
        assert log.loop_writer
    with open_audit_log(pg_url, loop_writer=False) as log:
        assert not log.loop_writer
    with open_audit_log(tmp_path / "a.sqlite3", loop_writer=True) as log:
        assert not log.loop_writer  # SQLite's commit blocks: always the writer thread


def test_loop_path_writes_the_thread_paths_rows_byte_for_byte(
    run: Run[Any], pg_url: str, other_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = [rec(i) for i in range(1, 41)]
    threaded = open_audit_log(other_schema, loop_writer=False)
    try:
        by_thread = [threaded.append_sync(r, timeout=10) for r in records[:8]]

        async def rest(log: AuditLog) -> list[AuditRecord]:
            out = list(await log.append_many(records[8:20]))
            for r in records[20:]:
                out.append(await log.append(r))
            return out

        by_thread += run(rest(threaded))
    finally:
        threaded.close()
    calls = ThreadCalls(monkeypatch)
    looped = open_audit_log(pg_url)
    try:

        async def all_(log: AuditLog) -> list[AuditRecord]:
            out = [await log.append(r) for r in records[:8]]
            out += await log.append_many(records[8:20])
            for r in records[20:]:
                out.append(await log.append(r))
            return out

        by_loop = run(all_(looped))
        assert looped.verify().ok
    finally:
        looped.close()
    assert calls.n == 1  # only the first commit (it opens the connection) left the loop
    assert by_loop == by_thread
    query = f"SELECT {COLUMNS} FROM audit_records ORDER BY seq"
    assert sql(pg_url, query) == sql(other_schema, query)
    head = "SELECT seq, hash FROM audit_head"
    assert sql(pg_url, head) == sql(other_schema, head)


def test_concurrent_appends_share_commits(run: Run[Any], pg_url: str) -> None:
    n = 301  # one, then three waves of 100

    async def main(log: AuditLog) -> list[AuditRecord]:
        first = await log.append(rec(0))  # the connection is open: the rest is on the loop
        out = [first]
        for start in range(1, n, 100):  # three waves, each queued while a commit is in flight
            wave = [log.append(rec(i)) for i in range(start, start + 100)]
            out += await asyncio.gather(*wave)
        return out

    with open_audit_log(pg_url, max_batch=64) as log:
        out = run(main(log))
        assert sorted(r.seq for r in out) == list(range(1, n + 1))
        assert log.commits < n
        assert log.appended == n
        report = log.verify()
        assert (report.ok, report.checked) == (True, n)


def test_duplicates_resolve_to_the_first_record_within_and_across_batches(
    run: Run[Any], pg_url: str
) -> None:
    async def main(log: AuditLog) -> None:
        first = await log.append(rec(1))
        # the same transaction again in one commit: three waiters, one row
        a, b, c = await asyncio.gather(
            log.append(rec(2)), log.append(rec(2, decision_id="d2b")), log.append(rec(3))
        )
        assert b == a and c.seq == a.seq + 1
        out = await log.append_many(
            [
                rec(1, decision_id="retry-1"),  # stored: resolves to the first record
                rec(4),
                rec(4, decision_id="retry-4"),  # earlier in this call
                rec(99, decision_id="dec-3"),  # dec-3 belongs to tx-3: a conflict, alone
                rec(5),
            ],
            return_exceptions=True,
        )
        assert out[0] == first
        assert out[2] == out[1]
        assert isinstance(out[3], ConflictError)
        assert isinstance(out[4], AuditRecord) and isinstance(out[1], AuditRecord)
        assert (out[1].seq, out[4].seq) == (4, 5)
        with pytest.raises(ConflictError, match="dec-3"):
            await log.append(rec(98, decision_id="dec-3"))

    with open_audit_log(pg_url) as log:
        run(main(log))
        assert log.get_by_transaction("tx-99") is None
        report = log.verify()
        assert (report.ok, report.checked) == (True, 5)


def test_head_moved_by_another_writer_is_redone_the_careful_way(run: Run[Any], pg_url: str) -> None:
    a = open_audit_log(pg_url)
    b = open_audit_log(pg_url)  # another replica on the same chain
    try:

        async def main() -> None:
            await a.append(rec(1))
            await a.append(rec(2))
            careful = a.store.careful_batches  # type: ignore[attr-defined]
            b.append_sync(rec(3), timeout=10)  # behind a's back
            moved = await a.append(rec(4))
            assert moved.seq == 4
            assert moved.prev_hash == b.get("dec-3").hash  # type: ignore[union-attr]
            assert a.store.careful_batches == careful + 1  # type: ignore[attr-defined]
            await a.append(rec(5))  # and the fast path again
            assert a.store.careful_batches == careful + 1  # type: ignore[attr-defined]

        run(main())
        report = a.verify()
        assert (report.ok, report.checked) == (True, 5)
    finally:
        a.close()
        b.close()


def test_sync_and_loop_appends_interleaved_extend_one_chain(run: Run[Any], pg_url: str) -> None:
    """The writer thread (``submit``) and the loop writer of one log race for the chain: both
    kinds of appends land, seq order is chain order, and the chain verifies."""
    n_sync, n_async = 120, 120
    with open_audit_log(pg_url, max_batch=8) as log:

        def sync_side() -> list[AuditRecord]:
            futs = [log.submit(rec(i)) for i in range(n_sync)]
            return [f.result(timeout=30) for f in futs]

        async def main() -> list[AuditRecord]:
            thread = asyncio.create_task(asyncio.to_thread(sync_side))
            looped: list[AuditRecord] = []
            for start in range(n_sync, n_sync + n_async, 10):
                looped += await asyncio.gather(
                    *(log.append(rec(i)) for i in range(start, start + 10))
                )
            return looped + await thread

        out = run(main())
        assert sorted(r.seq for r in out) == list(range(1, n_sync + n_async + 1))
        report = log.verify()
        assert (report.ok, report.checked) == (True, n_sync + n_async)
        stored = list(log.iter_records())
        assert [r.seq for r in stored] == list(range(1, len(stored) + 1))
        for prev, cur in itertools.pairwise(stored):
            assert cur.prev_hash == prev.hash


def test_killed_connection_fails_one_batch_then_the_next_works(
    run: Run[Any], pg_url: str, pg_dsn: str
) -> None:
    async def main(log: AuditLog) -> None:
        await log.append(rec(1))
        await log.append(rec(2))
        sql(pg_dsn, "SELECT pg_terminate_backend(%s)", (loop_writer_pid(log),))
        with pytest.raises(DependencyError, match="PostgreSQL"):
            await log.append(rec(3))
        assert (await log.append(rec(4))).seq == 3
        assert (await log.append(rec(3))).seq == 4  # a retry of the failed one

    with open_audit_log(pg_url) as log:
        run(main(log))
        assert log.verify().ok


def chain_lock(admin: psycopg.Connection[Any]) -> None:
    """Hold the chain's lock (a session lock on the key the writers' transaction lock takes)."""
    admin.execute(
        "SELECT pg_advisory_lock(hashtext(current_schema() || '.txguard_audit_chain'))"
    ).fetchall()


def test_a_statement_past_the_timeout_fails_its_batch_within_the_bound(
    run: Run[Any], pg_url: str
) -> None:
    timeout = 0.5

    async def main(log: AuditLog) -> None:
        await log.append(rec(1))
        await log.append(rec(2))
        with psycopg.connect(pg_url, autocommit=True) as admin:
            chain_lock(admin)
            started = time.monotonic()
            with pytest.raises(DependencyError, match="statement timeout"):
                await log.append(rec(3))
            assert time.monotonic() - started < timeout + postgres._MARGIN_S
        assert (await log.append(rec(3))).seq == 3

    with open_audit_log(pg_url, timeout=timeout) as log:
        run(main(log))
        assert log.verify().ok


def test_a_server_that_stops_answering_is_dropped_after_the_bound(
    run: Run[Any], pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client-side bound (timeout + margin) when the server's statement_timeout does not
    fire: the connection is dropped, the batch fails ("outcome unknown"), the next reconnects."""
    monkeypatch.setattr(postgres, "_MARGIN_S", 0.3)
    timeout = 0.3

    async def main(log: AuditLog) -> None:
        await log.append(rec(1))
        await log.append(rec(2))
        (w,) = log.store._loop_writers  # type: ignore[attr-defined]
        w.conn.execute("SET statement_timeout = 0")  # idle writer: the test may use it
        with psycopg.connect(pg_url, autocommit=True) as admin:
            chain_lock(admin)
            with pytest.raises(DependencyError, match=r"timed out.*outcome unknown"):
                await log.append(rec(3))
            assert w.conn.closed
        assert (await log.append(rec(3))).seq == 3

    with open_audit_log(pg_url, timeout=timeout) as log:
        run(main(log))
        assert log.verify().ok


def test_store_closed_from_another_thread_mid_commit_fails_that_batch(
    run: Run[Any], pg_url: str, pg_dsn: str, app_url: str
) -> None:
    store = PostgresAuditStore(app_url, timeout=5.0)
    items = [Pending.of(rec(i)) for i in range(1, 4)]

    async def main() -> None:
        await store.append_batch_async(items[:1])  # opens the loop connection
        await store.append_batch_async(items[1:2])  # on the loop
        with psycopg.connect(pg_url, autocommit=True) as admin:
            chain_lock(admin)
            task = asyncio.create_task(store.append_batch_async(items[2:]))
            await asyncio.sleep(0.05)
            assert not task.done()  # waiting for the lock
            await asyncio.to_thread(store.close)
            with pytest.raises(DependencyError, match="closed while the commit"):
                await task
        with pytest.raises(DependencyError, match="closed"):
            await store.append_batch_async(items[2:])

    run(main())
    assert backends(pg_dsn, app_url) == 0


def test_log_closed_from_another_thread_commits_everything_queued(
    run: Run[Any], pg_url: str, pg_dsn: str, app_url: str
) -> None:
    log = open_audit_log(app_url)
    acked: list[AuditRecord] = []
    refused: list[BaseException] = []
    started = threading.Event()

    async def main() -> None:
        async def one(i: int) -> None:
            try:
                acked.append(await log.append(rec(i)))
            except ConflictError as e:  # the log was closed before this one was queued
                refused.append(e)

        tasks = []
        for i in range(400):
            tasks.append(asyncio.create_task(one(i)))
            if i == 50:
                started.set()
            await asyncio.sleep(0)
        await asyncio.gather(*tasks)

    runner = threading.Thread(target=run, args=(main(),))
    runner.start()
    started.wait(10)
    log.close()  # from this thread while the loop is appending
    runner.join(30)
    assert not runner.is_alive()
    assert len(acked) + len(refused) == 400 and acked
    with open_audit_log(pg_url) as again:
        report = again.verify()
        assert (report.ok, report.checked) == (True, len(acked))
        for r in acked:
            assert again.get_by_transaction(r.transaction_id) == r
    assert backends(pg_dsn, app_url) == 0


def test_closed_after_the_loop_ended_leaves_nothing_behind(
    run: Run[Any], pg_url: str, pg_dsn: str, app_url: str
) -> None:
    log = open_audit_log(app_url)

    async def main(start: int) -> None:
        await asyncio.gather(*(log.append(rec(i)) for i in range(start, start + 20)))

    run(main(1))
    run(main(21))  # a second loop, after the first has ended: the same connection
    assert len(log.store._loop_writers) == 1  # type: ignore[attr-defined]
    log.close()
    gc.collect()  # an unclosed connection or transport would warn (an error under pytest)
    assert backends(pg_dsn, app_url) == 0
    with open_audit_log(pg_url) as again:
        assert again.verify().checked == 40


def test_records_of_a_cancelled_caller_are_committed_anyway(run: Run[Any], pg_url: str) -> None:
    async def main(log: AuditLog) -> None:
        await log.append(rec(1))
        task = asyncio.create_task(log.append(rec(2)))
        await asyncio.sleep(0)  # queued
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (await log.append(rec(2, decision_id="retry"))).decision_id == "dec-2"

    with open_audit_log(pg_url) as log:
        run(main(log))
        assert log.verify().checked == 2


@pytest.mark.parametrize("new_loop", [asyncio.new_event_loop, uvloop.new_event_loop])
def test_loop_stopped_mid_commit_then_closed(
    new_loop: Callable[[], asyncio.AbstractEventLoop], pg_url: str, pg_dsn: str, app_url: str
) -> None:
    """A loop that stops (and is closed) while its commit is in flight and a record waits
    behind it: closing the log commits the waiting record through the writer thread, drops the
    orphaned commit's connection, and leaves no backend behind."""
    log = open_audit_log(app_url)
    loop = new_loop()
    try:
        loop.run_until_complete(log.append(rec(1)))
        loop.run_until_complete(log.append(rec(2)))  # the loop's connection is open
        with psycopg.connect(pg_url, autocommit=True) as admin:
            chain_lock(admin)
            stuck = loop.create_task(log.append(rec(3)))
            loop.run_until_complete(asyncio.sleep(0.05))  # its commit waits for the lock
            queued = loop.create_task(log.append(rec(4)))
            loop.run_until_complete(asyncio.sleep(0))  # queued behind the commit in flight
            assert not stuck.done() and not queued.done()
    finally:
        loop.close()  # the tasks are abandoned pending: nobody awaits them any more
    log.close()
    abandoned = list(asyncio.all_tasks(loop))
    for t in abandoned:
        t._log_destroy_pending = False  # type: ignore[attr-defined]
    del stuck, queued, abandoned, t
    gc.collect()
    assert backends(pg_dsn, app_url) == 0
    with open_audit_log(pg_url) as again:
        assert again.get_by_transaction("tx-4") is not None  # committed by the writer thread
        report = again.verify()
        assert report.ok and report.checked in (3, 4)  # tx-3: outcome unknown


def test_committed_is_called_from_the_socket_callback_before_the_results_return(
    run: Run[Any], pg_url: str
) -> None:
    store = PostgresAuditStore(pg_url)
    items = [Pending.of(rec(i)) for i in range(1, 6)]
    seen: list[tuple[list[Any], bool]] = []
    returned = False

    def committed(results: list[Any]) -> None:
        seen.append((results, returned))

    async def main() -> None:
        nonlocal returned
        first = await store.append_batch_async(items[:2], committed=committed)  # connects
        assert seen == []  # not the fast path: the caller resolves from the returned list
        got = await store.append_batch_async(items[2:], committed=committed)
        returned = True
        assert seen == [(got, False)] and seen[0][0] is got
        assert [r.seq for r in first + got] == [1, 2, 3, 4, 5]  # type: ignore[union-attr]

    try:
        run(main())
    finally:
        store.close()
