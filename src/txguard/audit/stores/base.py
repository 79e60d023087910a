"""The port every audit store implements, and the batch-linking logic they share.

A store only moves rows; the chain arithmetic (``plan_batch``) is the same for every backend so
SQLite and PostgreSQL produce byte-identical chains for the same input.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from txguard.audit.chain import StoredRow, chain_hash
from txguard.audit.records import (
    AuditRecord,
    chained,
    format_timestamp,
    prepare,
    record_from_canonical,
)
from txguard.domain.errors import ConflictError, TxguardError


@dataclass(frozen=True, slots=True)
class Pending:
    """A submitted record with its canonical bytes, computed once by the submitting thread
    (``records.prepare``): ``record`` is normalised as it reads back from ``body`` and
    ``decided_at`` is its text form ("" = derive it here)."""

    record: AuditRecord
    body: bytes
    decided_at: str = ""

    @classmethod
    def of(cls, record: AuditRecord) -> Pending:
        return cls(*prepare(record))


@dataclass(frozen=True, slots=True)
class Filters:
    since: datetime | None = None
    until: datetime | None = None
    action: str | None = None
    entity: str | None = None
    model_version: str | None = None

    def where(
        self, *, after_seq: int, ph: str, ts: Callable[[datetime], Any] = lambda t: t
    ) -> tuple[str, list[Any]]:
        """The SQL condition and its arguments selecting records after ``after_seq`` that match
        these filters; ``ph`` is the driver's placeholder, ``ts`` adapts timestamps to it."""
        where = [f"seq > {ph}"]
        args: list[Any] = [after_seq]
        for cond, at in (("decided_at >=", self.since), ("decided_at <", self.until)):
            if at is not None:
                where.append(f"{cond} {ph}")
                args.append(ts(at))
        for col, val in (
            ("action", self.action),
            ("sender_account_id", self.entity),
            ("model_version", self.model_version),
        ):
            if val is not None:
                where.append(f"{col} = {ph}")
                args.append(val)
        return " AND ".join(where), args


class AuditStore(Protocol):
    """Durable storage for the chain. ``append_batch`` runs in ONE transaction: it takes the
    chain lock, reads the head, links and inserts the new records, moves the head, commits
    durably, and returns one result per input (the stored record, or an error for that input)."""

    def append_batch(self, items: Sequence[Pending]) -> list[AuditRecord | TxguardError]: ...

    def get(self, decision_id: str) -> AuditRecord | None: ...

    def get_by_transaction(self, transaction_id: str) -> AuditRecord | None: ...

    def query(self, filters: Filters, *, after_seq: int, limit: int) -> list[AuditRecord]: ...

    def snapshot(self) -> AbstractContextManager[tuple[tuple[int, str], Iterator[StoredRow]]]:
        """A consistent read: the head (seq, hash) and every row in seq order."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class LoopAppendStore(AuditStore, Protocol):
    """A store that can also commit a batch driven by the running event loop, with the same
    rows, hashes, results and errors as ``append_batch`` (PostgreSQL: no thread, no GIL
    hand-over per batch). Safe to use from several loops and beside ``append_batch``."""

    async def append_batch_async(
        self,
        items: Sequence[Pending],
        *,
        committed: Callable[[list[AuditRecord | TxguardError]], None] | None = None,
    ) -> list[AuditRecord | TxguardError]:
        """``committed``: called on the loop with the results as soon as the commit is known,
        possibly a loop step before they are returned (at most once; not on failure)."""
        ...


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running in this thread, if any (closing from any thread)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def row_to_record(row: StoredRow) -> AuditRecord:
    return record_from_canonical(row.body, seq=row.seq, prev_hash=row.prev_hash, hash=row.hash)


def plan_batch(
    items: Sequence[Pending],
    *,
    head: tuple[int, str],
    existing: Sequence[AuditRecord],
) -> tuple[list[AuditRecord | TxguardError], list[StoredRow], tuple[int, str]]:
    """Link a batch onto the chain head.

    ``existing`` are stored records sharing a transaction id or decision id with the batch. A
    record whose transaction id is already stored (or earlier in this batch) resolves to that
    FIRST record and adds no row; a decision id reused for another transaction is a conflict
    for that record only. Returns (result per item, rows to insert, new head)."""
    by_tx = {r.transaction_id: r for r in existing}
    decision_tx = {r.decision_id: r.transaction_id for r in existing}
    seq, prev = head
    results: list[AuditRecord | TxguardError] = []
    rows: list[StoredRow] = []
    for item in items:
        rec = item.record
        tid = rec.transaction_id
        first = by_tx.get(tid)
        if first is not None:
            results.append(first)
            continue
        did = rec.decision_id
        owner = decision_tx.get(did)
        if owner is not None and owner != tid:
            results.append(ConflictError(f"decision_id {did} already used for transaction {owner}"))
            continue
        seq += 1
        h = chain_hash(seq, prev, item.body)
        rows.append(
            StoredRow(
                seq,
                did,
                tid,
                item.decided_at or format_timestamp(rec.decided_at),
                rec.action,
                rec.sender_account_id,
                rec.model_version,
                item.body,
                prev,
                h,
            )
        )
        stored = chained(rec, seq, prev, h)
        results.append(stored)
        by_tx[tid] = stored
        decision_tx[did] = tid
        prev = h
    return results, rows, (seq, prev)
