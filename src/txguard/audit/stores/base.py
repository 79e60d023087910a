"""The port every audit store implements, and the batch-linking logic they share.

A store only moves rows; the chain arithmetic (``plan_batch``) is the same for every backend so
SQLite and PostgreSQL produce byte-identical chains for the same input.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from txguard.audit.chain import StoredRow, chain_hash
from txguard.audit.records import AuditRecord, format_timestamp, record_from_canonical
from txguard.domain.errors import ConflictError, TxguardError


@dataclass(frozen=True, slots=True)
class Pending:
    """A submitted record with its canonical bytes (computed by the submitting thread)."""

    record: AuditRecord
    body: bytes


@dataclass(frozen=True, slots=True)
class Filters:
    since: datetime | None = None
    until: datetime | None = None
    action: str | None = None
    entity: str | None = None
    model_version: str | None = None


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
        first = by_tx.get(rec.transaction_id)
        if first is not None:
            results.append(first)
            continue
        owner = decision_tx.get(rec.decision_id)
        if owner is not None and owner != rec.transaction_id:
            results.append(
                ConflictError(f"decision_id {rec.decision_id} already used for transaction {owner}")
            )
            continue
        seq += 1
        h = chain_hash(seq, prev, item.body)
        row = StoredRow(
            seq=seq,
            decision_id=rec.decision_id,
            transaction_id=rec.transaction_id,
            decided_at=format_timestamp(rec.decided_at),
            action=rec.action,
            sender_account_id=rec.sender_account_id,
            model_version=rec.model_version,
            body=item.body,
            prev_hash=prev,
            hash=h,
        )
        stored = row_to_record(row)
        rows.append(row)
        results.append(stored)
        by_tx[rec.transaction_id] = stored
        decision_tx[rec.decision_id] = rec.transaction_id
        prev = h
    return results, rows, (seq, prev)
