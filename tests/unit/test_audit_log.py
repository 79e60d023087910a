"""The group-commit writer of AuditLog, driven through a gated in-memory store.

The gate lets a test hold a commit "in flight" and watch what queues behind it — something a real
database cannot be made to do deterministically. The contract suite
(tests/contract/test_audit_store.py) runs the observable behaviour on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest

from txguard.audit.chain import GENESIS_HASH, StoredRow
from txguard.audit.log import AuditLog
from txguard.audit.records import AuditRecord
from txguard.audit.stores.base import Filters, Pending, plan_batch, row_to_record
from txguard.domain.errors import ConflictError, DependencyError, TxguardError, ValidationError

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def make_record(i: int, **over: object) -> AuditRecord:
    base: dict[str, object] = {
        "decision_id": f"dec-{i}",
        "transaction_id": f"tx-{i}",
        "decided_at": T0 + timedelta(seconds=i),
        "event": {"transaction_id": f"tx-{i}"},
        "features": {"f": float(i)},
        "score": 0.5,
        "risk_level": "LOW",
        "action": "APPROVE",
        "reasons": [],
        "rule_hits": [],
        "model_version": "m",
        "policy_version": "p",
        "safe_mode": False,
        "degraded": [],
        "challenger": None,
        "latency_ms": 1.0,
        "sender_account_id": "a",
    }
    base.update(over)
    return AuditRecord(**base)  # type: ignore[arg-type]


class GatedStore:
    """In-memory store; ``gate`` blocks commits while cleared, ``fail_next`` fails one batch."""

    def __init__(self) -> None:
        self.rows: list[StoredRow] = []
        self.batches: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.fail_next: Exception | None = None
        self.closed = False

    def append_batch(self, items: Sequence[Pending]) -> list[AuditRecord | TxguardError]:
        self.entered.set()
        assert self.gate.wait(10)
        if self.fail_next is not None:
            err, self.fail_next = self.fail_next, None
            raise err
        head = (self.rows[-1].seq, self.rows[-1].hash) if self.rows else (0, GENESIS_HASH)
        tids = {p.record.transaction_id for p in items}
        dids = {p.record.decision_id for p in items}
        existing = [
            row_to_record(r) for r in self.rows if r.transaction_id in tids or r.decision_id in dids
        ]
        results, rows, _ = plan_batch(items, head=head, existing=existing)
        self.rows.extend(rows)
        self.batches.append(len(items))
        return results

    def get(self, decision_id: str) -> AuditRecord | None:
        return next((row_to_record(r) for r in self.rows if r.decision_id == decision_id), None)

    def get_by_transaction(self, transaction_id: str) -> AuditRecord | None:
        return next(
            (row_to_record(r) for r in self.rows if r.transaction_id == transaction_id), None
        )

    def query(self, filters: Filters, *, after_seq: int, limit: int) -> list[AuditRecord]:
        out = [
            row_to_record(r)
            for r in self.rows
            if r.seq > after_seq and (filters.action is None or r.action == filters.action)
        ]
        return out[:limit]

    @contextmanager
    def snapshot(self) -> Iterator[tuple[tuple[int, str], Iterator[StoredRow]]]:
        head = (self.rows[-1].seq, self.rows[-1].hash) if self.rows else (0, GENESIS_HASH)
        yield head, iter(list(self.rows))

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def store() -> GatedStore:
    return GatedStore()


def test_records_queued_behind_a_commit_share_the_next_one(store: GatedStore) -> None:
    log = AuditLog(store)
    store.gate.clear()
    first = log.submit(make_record(0))
    assert store.entered.wait(5)  # the writer is inside commit #1 with one record
    rest = [log.submit(make_record(i)) for i in range(1, 51)]
    assert not first.done()  # not resolved before its commit returns
    store.gate.set()
    stored = [f.result(timeout=5) for f in [first, *rest]]
    assert store.batches == [1, 50]
    assert log.commits == 2
    assert [r.seq for r in stored] == list(range(1, 52))
    assert log.verify().ok
    log.close()


def test_max_batch_bounds_a_commit(store: GatedStore) -> None:
    log = AuditLog(store, max_batch=8)
    store.gate.clear()
    futs = [log.submit(make_record(i)) for i in range(40)]
    assert store.entered.wait(5)
    store.gate.set()
    for f in futs:
        f.result(timeout=5)
    assert sum(store.batches) == 40
    assert max(store.batches) <= 8
    log.close()


def test_failed_commit_fails_its_batch_and_the_log_keeps_working(store: GatedStore) -> None:
    log = AuditLog(store)
    store.fail_next = DependencyError("database went away")
    with pytest.raises(DependencyError, match="went away"):
        log.append_sync(make_record(1), timeout=5)
    store.fail_next = RuntimeError("driver bug")
    with pytest.raises(DependencyError, match="RuntimeError: driver bug"):
        log.append_sync(make_record(2), timeout=5)
    assert log.append_sync(make_record(3), timeout=5).seq == 1
    log.close()


def test_invalid_record_is_refused_at_submit_without_touching_the_batch(store: GatedStore) -> None:
    log = AuditLog(store)
    with pytest.raises(ValidationError, match="decided_at"):
        log.submit(make_record(1, decided_at=datetime(2026, 1, 1)))
    with pytest.raises(ValidationError, match="record"):
        log.submit({"decision_id": "x"})  # type: ignore[arg-type]
    assert store.batches == []
    log.close()


def test_close_drains_the_queue_then_refuses(store: GatedStore) -> None:
    log = AuditLog(store)
    store.gate.clear()
    futs = [log.submit(make_record(i)) for i in range(20)]
    closer = threading.Thread(target=log.close)
    closer.start()
    store.gate.set()
    closer.join(5)
    assert not closer.is_alive()
    assert all(f.result(timeout=0).seq > 0 for f in futs)
    assert store.closed
    with pytest.raises(ConflictError, match="closed"):
        log.submit(make_record(99))


def test_async_append_and_duplicate_returns_first(store: GatedStore) -> None:
    log = AuditLog(store)

    async def run() -> tuple[AuditRecord, AuditRecord]:
        a = await log.append(make_record(1))
        b = await log.append(make_record(1, decision_id="dec-retry"))
        return a, b

    a, b = asyncio.run(run())
    assert b == a
    assert b.decision_id == "dec-1"
    assert log.appended == 1
    log.close()


def test_async_appends_of_one_batch_resolve_together_and_cancel_keeps_the_record(
    store: GatedStore,
) -> None:
    log = AuditLog(store)
    store.gate.clear()
    blocker = log.submit(make_record(0))
    assert store.entered.wait(5)

    async def run() -> list[AuditRecord]:
        tasks = [asyncio.create_task(log.append(make_record(i))) for i in range(1, 21)]
        doomed = asyncio.create_task(log.append(make_record(99)))
        await asyncio.sleep(0.05)  # every append is queued behind the gated commit
        doomed.cancel()
        store.gate.set()
        return await asyncio.gather(*tasks)

    stored = asyncio.run(run())
    assert blocker.result(timeout=5).seq == 1
    assert [r.seq for r in stored] == list(range(2, 22))
    assert store.batches == [1, 21]  # the cancelled caller's decision is still committed
    assert log.get_by_transaction("tx-99") is not None
    log.close()


def test_linger_only_after_a_large_commit(store: GatedStore) -> None:
    log = AuditLog(store, linger_s=2.0, linger_from=4)
    log.append_sync(make_record(0), timeout=5)  # idle log: no linger, a batch of one
    store.entered.clear()
    store.gate.clear()
    first = log.submit(make_record(1))
    assert store.entered.wait(5)
    rest = [log.submit(make_record(i)) for i in range(2, 7)]
    store.gate.set()
    assert [f.result(timeout=5).seq for f in (first, *rest)] == list(range(2, 8))
    assert store.batches == [1, 1, 5]
    # the previous commit held 5 (>= 4): a lone record now waits (up to 2 s) for company,
    # until the batch is over half the previous one (3 of 5)
    late = log.submit(make_record(7))
    threading.Timer(0.05, lambda: [log.submit(make_record(i)) for i in (8, 9)]).start()
    late.result(timeout=5)
    assert store.batches[-1] == 3
    log.close()


def test_query_pages_with_an_opaque_cursor(store: GatedStore) -> None:
    log = AuditLog(store)
    for i in range(7):
        log.append_sync(make_record(i, action="REVIEW" if i % 2 else "APPROVE"), timeout=5)
    page, cursor = log.query(limit=3)
    assert [r.seq for r in page] == [1, 2, 3]
    assert cursor is not None
    page, cursor = log.query(limit=3, cursor=cursor)
    assert [r.seq for r in page] == [4, 5, 6]
    page, cursor = log.query(limit=3, cursor=cursor)
    assert ([r.seq for r in page], cursor) == ([7], None)
    assert [r.seq for r in log.iter_records(action="REVIEW")] == [2, 4, 6]
    with pytest.raises(ValidationError, match="limit"):
        log.query(limit=0)
    with pytest.raises(ValidationError, match="since"):
        log.query(since=datetime(2026, 1, 1))
    log.close()


def test_a_store_that_breaks_its_contract_fails_the_batch_not_the_writer(
    store: GatedStore,
) -> None:
    log = AuditLog(store)
    real = store.append_batch
    store.append_batch = lambda items: []  # type: ignore[method-assign]  # wrong length
    with pytest.raises(DependencyError, match="writer failed"):
        log.append_sync(make_record(1), timeout=5)
    store.append_batch = real  # type: ignore[method-assign]
    assert log.append_sync(make_record(2), timeout=5).seq == 1
    log.close()


# ---------------------------------------------------------------------- append_many


def _count_wakeups(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count ``call_soon_threadsafe`` calls (the writer waking the event loop)."""
    calls = [0]
    real = asyncio.BaseEventLoop.call_soon_threadsafe

    def counting(self: asyncio.BaseEventLoop, *args: object, **kw: object) -> object:
        calls[0] += 1
        return real(self, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(asyncio.BaseEventLoop, "call_soon_threadsafe", counting)
    return calls


def test_append_many_is_one_queue_item_with_one_waiter(
    store: GatedStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = AuditLog(store)
    store.gate.clear()
    blocker = log.submit(make_record(0))
    assert store.entered.wait(5)
    wakeups = _count_wakeups(monkeypatch)

    async def run() -> list[AuditRecord]:
        task = asyncio.create_task(log.append_many([make_record(i) for i in range(1, 21)]))
        await asyncio.sleep(0.05)  # queued behind the gated commit
        assert not task.done()
        store.gate.set()
        return await task

    stored = asyncio.run(run())
    assert blocker.result(timeout=5).seq == 1
    assert [r.transaction_id for r in stored] == [f"tx-{i}" for i in range(1, 21)]
    assert [r.seq for r in stored] == list(range(2, 22))
    assert store.batches == [1, 20]
    assert wakeups[0] == 1  # twenty records, one wake-up of the event loop
    assert log.appended == 21
    assert log.verify().ok
    log.close()


def test_append_many_splits_over_max_batch_and_keeps_order(
    store: GatedStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = AuditLog(store, max_batch=8)
    wakeups = _count_wakeups(monkeypatch)
    stored = asyncio.run(log.append_many([make_record(i) for i in range(20)]))
    assert store.batches == [8, 8, 4]
    assert [r.seq for r in stored] == list(range(1, 21))
    assert [r.decision_id for r in stored] == [f"dec-{i}" for i in range(20)]
    assert wakeups[0] == 1  # settled once, after the last of its three commits
    log.close()


def test_append_many_duplicates_resolve_to_the_first_record(store: GatedStore) -> None:
    log = AuditLog(store)
    first = log.append_sync(make_record(1), timeout=5)
    batch = [
        make_record(1, decision_id="dec-retry-1"),  # stored earlier
        make_record(2),
        make_record(2, decision_id="dec-retry-2"),  # earlier in this call
        make_record(3),
    ]
    stored = asyncio.run(log.append_many(batch))
    assert stored[0] == first
    assert stored[2] == stored[1]
    assert [r.decision_id for r in stored] == ["dec-1", "dec-2", "dec-2", "dec-3"]
    assert log.appended == 3
    log.close()


def test_append_many_conflict_raises_or_takes_its_place(store: GatedStore) -> None:
    log = AuditLog(store)
    log.append_sync(make_record(1), timeout=5)
    reused = make_record(9, decision_id="dec-1")  # decision id of another transaction
    with pytest.raises(ConflictError, match="dec-1"):
        asyncio.run(log.append_many([make_record(2), reused, make_record(3)]))
    # the others were committed anyway; a retry resolves to them
    assert log.get_by_transaction("tx-3") is not None
    out = asyncio.run(
        log.append_many([make_record(3), reused, make_record(4)], return_exceptions=True)
    )
    assert isinstance(out[1], ConflictError)
    assert [type(r) for r in out] == [AuditRecord, ConflictError, AuditRecord]
    assert [r.seq for r in out if isinstance(r, AuditRecord)] == [3, 4]
    log.close()


def test_append_many_refuses_the_whole_call_if_one_record_is_invalid(store: GatedStore) -> None:
    log = AuditLog(store)
    bad = [make_record(0), make_record(1, decided_at=datetime(2026, 1, 1)), "nope"]
    with pytest.raises(ValidationError) as info:
        asyncio.run(log.append_many(bad))  # type: ignore[arg-type]
    assert [e.loc for e in info.value.errors] == ["records[1].decided_at", "records[2].record"]
    assert asyncio.run(log.append_many([])) == []
    log.close()
    assert store.batches == []  # nothing of the refused call was enqueued
    assert log.get_by_transaction("tx-0") is None


def test_append_many_failed_commit_raises_and_the_log_keeps_working(store: GatedStore) -> None:
    log = AuditLog(store)
    store.fail_next = DependencyError("database went away")
    with pytest.raises(DependencyError, match="went away"):
        asyncio.run(log.append_many([make_record(1), make_record(2)]))
    out = asyncio.run(log.append_many([make_record(1), make_record(2)]))
    assert [r.seq for r in out] == [1, 2]
    log.close()
    with pytest.raises(ConflictError, match="closed"):
        asyncio.run(log.append_many([make_record(3)]))
