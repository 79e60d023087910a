"""One contract for the audit log, run on every store: SQLite (file in tmp_path) and the real
PostgreSQL (own schema per test via the conftest fixtures)."""

from __future__ import annotations

import io
import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import psycopg
import pytest

from txguard.audit.chain import chain_hash
from txguard.audit.log import AuditLog, open_audit_log
from txguard.audit.records import AuditRecord, canonical_bytes, record_from_canonical
from txguard.domain.errors import ConflictError, DependencyError

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
ACTIONS = ("APPROVE", "REVIEW", "REJECT")


def make_record(i: int, **over: object) -> AuditRecord:
    base: dict[str, object] = {
        "decision_id": f"dec-{i}",
        "transaction_id": f"tx-{i}",
        "decided_at": T0 + timedelta(minutes=i),
        "event": {"transaction_id": f"tx-{i}", "amount": 100.0 + i, "currency": "EUR"},
        "features": {"sender_count_1h": float(i % 5), "ip_risk": None},
        "score": round(i / 1000, 6),
        "risk_level": "LOW",
        "action": ACTIONS[i % 3],
        "reasons": [{"kind": "rule", "code": "r1", "text": "rule fired", "value": None}],
        "rule_hits": [{"rule_id": "r1", "action": None}],
        "model_version": "m-2" if i % 2 else "m-1",
        "policy_version": "p-1",
        "safe_mode": False,
        "degraded": [],
        "challenger": {"score": 0.2, "version": "m-3"},
        "latency_ms": 2.25,
        "sender_account_id": f"acct-{i % 4}",
    }
    base.update(over)
    return AuditRecord(**base)  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'audit.sqlite3'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def opener(target: str) -> Iterator[Callable[..., AuditLog]]:
    opened: list[AuditLog] = []

    def open_(**kw: object) -> AuditLog:
        log = open_audit_log(target, **kw)  # type: ignore[arg-type]
        opened.append(log)
        return log

    yield open_
    for log in opened:
        log.close()


@pytest.fixture
def log(opener: Callable[..., AuditLog]) -> AuditLog:
    return opener()


def raw_exec(target: str, sql: str) -> list[tuple[object, ...]]:
    """Run SQL on the store behind the log's back (as an operator or attacker could)."""
    if target.startswith("sqlite:///"):
        conn = sqlite3.connect(target.removeprefix("sqlite:///"), isolation_level=None)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()
    with psycopg.connect(target, autocommit=True) as pg:
        cur = pg.execute(sql)
        return cur.fetchall() if cur.description else []


def test_append_then_read_back_exactly(log: AuditLog) -> None:
    rec = make_record(1, features={"a": float("nan"), "b": 2.5})
    stored = log.append_sync(rec, timeout=10)
    assert stored.seq == 1
    assert len(stored.hash) == 64
    assert stored.features == {"a": None, "b": 2.5}
    assert log.get("dec-1") == stored
    assert log.get_by_transaction("tx-1") == stored
    assert log.get("nope") is None
    assert log.get_by_transaction("nope") is None
    assert canonical_bytes(stored) == canonical_bytes(rec)


def test_duplicate_transaction_resolves_to_the_first_record(log: AuditLog) -> None:
    first = log.append_sync(make_record(1), timeout=10)
    again = log.append_sync(make_record(1, decision_id="dec-retry", action="REJECT"), timeout=10)
    assert again == first
    # many concurrent duplicates of a new transaction: one row, everyone gets the same record
    futs = [log.submit(make_record(2, decision_id=f"dec-2-{k}")) for k in range(20)]
    results = [f.result(timeout=10) for f in futs]
    assert all(r == results[0] for r in results)
    assert results[0].decision_id == "dec-2-0"
    page, _ = log.query(limit=100)
    assert [r.transaction_id for r in page] == ["tx-1", "tx-2"]
    assert log.get("dec-retry") is None


def test_reused_decision_id_is_a_conflict_for_that_record_only(log: AuditLog) -> None:
    log.append_sync(make_record(1), timeout=10)
    clash = log.submit(make_record(2, decision_id="dec-1"))
    fine = log.submit(make_record(3))
    with pytest.raises(ConflictError, match="dec-1"):
        clash.result(timeout=10)
    assert fine.result(timeout=10).seq == 2
    assert log.verify().ok


def test_concurrent_submitters_share_commits_and_chain_in_seq_order(log: AuditLog) -> None:
    n_threads, per_thread = 8, 25
    out: list[AuditRecord] = []
    lock = threading.Lock()

    def worker(t: int) -> None:
        futs = [log.submit(make_record(t * 1000 + k)) for k in range(per_thread)]
        got = [f.result(timeout=30) for f in futs]
        with lock:
            out.extend(got)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    total = n_threads * per_thread
    assert sorted(r.seq for r in out) == list(range(1, total + 1))
    assert log.commits < total  # group commit happened: fewer commits than records
    report = log.verify()
    assert (report.ok, report.checked) == (True, total)


def test_query_filters_and_pagination(log: AuditLog) -> None:
    for i in range(1, 31):
        log.submit(make_record(i))
    log.append_sync(make_record(31), timeout=10)
    since, until = T0 + timedelta(minutes=5), T0 + timedelta(minutes=20)
    page, cursor = log.query(since=since, until=until, limit=100)
    assert [r.seq for r in page] == list(range(5, 20))
    assert cursor is None
    rejects = [r.seq for r in log.iter_records(action="REJECT")]
    assert rejects == [i for i in range(1, 32) if i % 3 == 2]
    entity = [r.seq for r in log.iter_records(entity="acct-1", model_version="m-2")]
    assert entity == [i for i in range(1, 32) if i % 4 == 1 and i % 2 == 1]
    seen: list[int] = []
    cursor = None
    while True:
        page, cursor = log.query(limit=7, cursor=cursor)
        seen.extend(r.seq for r in page)
        if cursor is None:
            break
    assert seen == list(range(1, 32))


def test_export_is_jsonl_that_verifies_offline(log: AuditLog) -> None:
    for i in range(1, 11):
        log.append_sync(make_record(i), timeout=10)
    buf = io.StringIO()
    assert log.export(buf) == 10
    lines = [orjson.loads(x) for x in buf.getvalue().splitlines()]
    assert [x["seq"] for x in lines] == list(range(1, 11))
    prev = "0" * 64
    for x in lines:
        body = canonical_bytes(record_from_canonical(orjson.dumps(x)))
        assert chain_hash(x["seq"], prev, body) == x["hash"]
        assert x["prev_hash"] == prev
        prev = x["hash"]
    binary = io.BytesIO()
    assert log.export(binary, action="REVIEW") == 4  # i % 3 == 1
    assert all(orjson.loads(x)["action"] == "REVIEW" for x in binary.getvalue().splitlines())


def test_reopen_keeps_the_chain_and_continues_it(opener: Callable[..., AuditLog]) -> None:
    first = opener()
    for i in range(1, 6):
        first.append_sync(make_record(i), timeout=10)
    head = first.verify().head_hash
    first.close()
    second = opener()
    assert second.verify().head_hash == head
    assert second.append_sync(make_record(6), timeout=10).prev_hash == head
    assert second.verify().checked == 6


def test_two_writers_on_one_store_extend_one_chain(opener: Callable[..., AuditLog]) -> None:
    a, b = opener(), opener()  # two processes/replicas sharing the database
    futs = []
    for i in range(60):
        futs.append((a if i % 2 else b).submit(make_record(i)))
    seqs = sorted(f.result(timeout=30).seq for f in futs)
    assert seqs == list(range(1, 61))
    assert a.verify().ok
    assert b.verify().checked == 60


def test_writer_links_on_its_known_head_and_rechecks_when_it_moved(
    opener: Callable[..., AuditLog],
) -> None:
    """The writer skips the head read and duplicate lookup while it is the only one appending
    (store.careful_batches counts the batches that did them), and falls back correctly when
    another writer moved the head or a record duplicates a stored one."""
    a = opener()
    for i in range(1, 6):
        a.append_sync(make_record(i), timeout=10)
    assert a.store.careful_batches == 1  # type: ignore[attr-defined]  # only the first
    b = opener()  # another replica appends behind a's back
    b.append_sync(make_record(6), timeout=10)
    moved = a.append_sync(make_record(7), timeout=10)
    assert moved.seq == 7
    assert moved.prev_hash == b.get("dec-6").hash  # type: ignore[union-attr]
    assert a.store.careful_batches == 2  # type: ignore[attr-defined]
    first = a.get("dec-3")
    assert a.append_sync(make_record(3, decision_id="dec-3-retry"), timeout=10) == first
    assert a.store.careful_batches == 3  # type: ignore[attr-defined]
    assert a.append_sync(make_record(8), timeout=10).seq == 8
    assert a.store.careful_batches == 3  # type: ignore[attr-defined]
    report = a.verify()
    assert (report.ok, report.checked) == (True, 8)


def test_migrations_recorded_once_and_table_is_append_only(
    opener: Callable[..., AuditLog], target: str
) -> None:
    opener().append_sync(make_record(1), timeout=10)
    opener()  # a second open must not re-apply anything
    # PostgreSQL has a second migration (lz4 compression of the body)
    versions = [(1,), (2,)] if target.startswith("postgresql") else [(1,)]
    assert raw_exec(target, "SELECT version FROM schema_migrations ORDER BY version") == versions
    with pytest.raises((sqlite3.Error, psycopg.Error), match="append-only"):
        raw_exec(target, "UPDATE audit_records SET action = 'APPROVE'")
    with pytest.raises((sqlite3.Error, psycopg.Error), match="append-only"):
        raw_exec(target, "DELETE FROM audit_records")


def test_identical_input_gives_identical_chains_on_both_backends(
    tmp_path: Path, pg_url: str
) -> None:
    heads = []
    for target in (str(tmp_path / "a.sqlite3"), pg_url):
        with open_audit_log(target) as log:
            for i in range(1, 21):
                log.submit(make_record(i))
            log.append_sync(make_record(21), timeout=10)
            heads.append(log.verify().head_hash)
    assert heads[0] == heads[1]


def test_unreachable_store_is_a_dependency_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DependencyError, match="audit store"):
        open_audit_log(blocker / "audit.sqlite3")
    with pytest.raises(DependencyError, match="PostgreSQL"):
        open_audit_log("postgresql://postgres@127.0.0.1:1/test", timeout=1)


def test_sqlite_locked_database_times_out_then_recovers(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    with open_audit_log(path, timeout=0.2) as log:
        log.append_sync(make_record(1), timeout=10)
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(DependencyError, match="locked"):
            log.append_sync(make_record(2), timeout=10)
        other.execute("ROLLBACK")
        other.close()
        assert log.append_sync(make_record(3), timeout=10).seq == 2
        assert log.verify().ok


@pytest.mark.postgres
def test_postgres_lost_connection_fails_one_batch_then_reconnects(pg_url: str, pg_dsn: str) -> None:
    with open_audit_log(pg_url) as log:
        log.append_sync(make_record(1), timeout=10)
        writer = log.store._writer  # type: ignore[attr-defined]
        pid = writer.info.backend_pid
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(DependencyError, match="PostgreSQL"):
            log.append_sync(make_record(2), timeout=10)
        assert log.append_sync(make_record(3), timeout=10).seq == 2
        assert log.verify().ok


def test_append_many_on_the_real_store(opener: Callable[..., AuditLog]) -> None:
    """A micro-batch with a stored duplicate, an in-call duplicate and a reused decision id,
    split over commits: each record resolves as ``append`` would and the chain verifies."""
    import asyncio

    log = opener(max_batch=4)
    first = log.append_sync(make_record(0), timeout=10)
    batch = [
        make_record(0, decision_id="dec-retry"),  # stored: resolves to the first record
        *(make_record(i) for i in range(1, 8)),
        make_record(3, decision_id="dec-retry-3"),  # earlier in this call
        make_record(99, decision_id="dec-1"),  # decision id of tx-1: a conflict, alone
        make_record(8),
    ]
    out = asyncio.run(log.append_many(batch, return_exceptions=True))
    assert out[0] == first
    assert [r.seq for r in out[1:8] if isinstance(r, AuditRecord)] == list(range(2, 9))
    assert out[8] == out[3]
    assert isinstance(out[9], ConflictError)
    assert isinstance(out[10], AuditRecord) and out[10].seq == 9
    for r in out:
        if isinstance(r, AuditRecord):
            assert log.get_by_transaction(r.transaction_id) == r
    assert log.get_by_transaction("tx-99") is None
    assert log.verify().ok
