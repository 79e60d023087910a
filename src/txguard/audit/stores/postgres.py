"""PostgreSQL audit store: for several API replicas sharing one log.

A batch is one transaction: ``pg_advisory_xact_lock`` on a key derived from the schema name
serialises chain appends across replicas, the head is read inside the lock, rows go in with one
COPY, the head moves, and the commit (``synchronous_commit`` as configured on the server, ``on``
by default: flushed to the WAL on disk) is what resolves the callers' futures.

The writer thread owns one connection (reopened after a failure); reads use a small pool.
Every statement has ``statement_timeout`` = the store's timeout, so a stuck database becomes a
``DependencyError`` instead of a hung request.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from txguard.audit import migrations
from txguard.audit.chain import StoredRow
from txguard.audit.records import AuditRecord, format_timestamp
from txguard.audit.stores.base import Filters, Pending, plan_batch, row_to_record
from txguard.domain.errors import DependencyError, TxguardError

_COLUMNS = (
    "seq, decision_id, transaction_id, decided_at, action, sender_account_id, model_version, "
    "body, prev_hash, hash"
)
_CHAIN_LOCK = "SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.txguard_audit_chain'))"
_MIGRATION_LOCK = (
    "SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.txguard_audit_migrations'))"
)


def _row(t: tuple[Any, ...]) -> StoredRow:
    decided: datetime = t[3]
    return StoredRow(
        seq=t[0],
        decision_id=t[1],
        transaction_id=t[2],
        decided_at=format_timestamp(decided),
        action=t[4],
        sender_account_id=t[5],
        model_version=t[6],
        body=t[7].encode(),
        prev_hash=t[8],
        hash=t[9],
    )


class PostgresAuditStore:
    """The audit chain in the tables of the connection's current schema (``search_path``)."""

    def __init__(self, url: str, *, timeout: float = 2.0, pool_size: int = 4) -> None:
        self._url = url
        self._timeout = timeout
        self._connect_timeout = max(1, math.ceil(timeout))
        self._writer: psycopg.Connection[tuple[Any, ...]] | None = None
        self._writer_lock = threading.Lock()
        try:
            conn = self._connect()
        except psycopg.Error as e:
            raise DependencyError(f"audit store (PostgreSQL): {e}") from e
        try:
            self._migrate(conn)
        except psycopg.Error as e:
            conn.close()
            raise DependencyError(f"audit store (PostgreSQL) migration failed: {e}") from e
        self._writer = conn
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            open=True,
            timeout=timeout,
            kwargs={"autocommit": True, "connect_timeout": self._connect_timeout},
            configure=self._configure,
            name="txguard-audit",
        )

    # ------------------------------------------------------------------ connections

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(f"SET statement_timeout = {int(self._timeout * 1000)}")

    def _connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        conn = psycopg.connect(self._url, autocommit=True, connect_timeout=self._connect_timeout)
        self._configure(conn)
        return conn

    def _migrate(self, conn: psycopg.Connection[Any]) -> None:
        with conn.transaction():
            conn.execute(_MIGRATION_LOCK)
            conn.execute(migrations.SCHEMA_MIGRATIONS_DDL)
            done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
            for m in migrations.load("postgres"):
                if m.version in done:
                    continue
                conn.execute(m.sql.encode())
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) "
                    "VALUES (%s, %s, now()::text)",
                    (m.version, m.name),
                )

    def _writer_conn(self) -> psycopg.Connection[tuple[Any, ...]]:
        if self._writer is None or self._writer.closed or self._writer.broken:
            if self._writer is not None:
                self._writer.close()
            self._writer = self._connect()
        return self._writer

    # ------------------------------------------------------------------ writing

    def append_batch(self, items: Sequence[Pending]) -> list[AuditRecord | TxguardError]:
        with self._writer_lock:
            try:
                conn = self._writer_conn()
                with conn.transaction():
                    conn.execute(_CHAIN_LOCK)
                    head = conn.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
                    assert head is not None, "audit_head row missing"
                    tids = list({p.record.transaction_id for p in items})
                    dids = list({p.record.decision_id for p in items})
                    existing = [
                        row_to_record(_row(t))
                        for t in conn.execute(
                            f"SELECT {_COLUMNS} FROM audit_records "
                            "WHERE transaction_id = ANY(%s) OR decision_id = ANY(%s)",
                            (tids, dids),
                        )
                    ]
                    results, rows, new_head = plan_batch(
                        items, head=(head[0], head[1]), existing=existing
                    )
                    if rows:
                        with (
                            conn.cursor() as cur,
                            cur.copy(f"COPY audit_records ({_COLUMNS}) FROM STDIN") as copy,
                        ):
                            for r in rows:
                                copy.write_row(
                                    (
                                        r.seq,
                                        r.decision_id,
                                        r.transaction_id,
                                        r.decided_at,
                                        r.action,
                                        r.sender_account_id,
                                        r.model_version,
                                        r.body.decode(),
                                        r.prev_hash,
                                        r.hash,
                                    )
                                )
                        conn.execute(
                            "UPDATE audit_head SET seq = %s, hash = %s WHERE id = 1", new_head
                        )
            except psycopg.Error as e:
                raise DependencyError(f"audit store (PostgreSQL): {e}") from e
        return results

    # ------------------------------------------------------------------ reading

    @contextmanager
    def _read(self) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        try:
            with self._pool.connection() as conn:
                yield conn
        except (psycopg.Error, PoolTimeout) as e:
            raise DependencyError(f"audit store (PostgreSQL): {e}") from e

    def _one(self, where: str, value: str) -> AuditRecord | None:
        with self._read() as conn:
            t = conn.execute(
                f"SELECT {_COLUMNS} FROM audit_records WHERE {where} = %s", (value,)
            ).fetchone()
        return None if t is None else row_to_record(_row(t))

    def get(self, decision_id: str) -> AuditRecord | None:
        return self._one("decision_id", decision_id)

    def get_by_transaction(self, transaction_id: str) -> AuditRecord | None:
        return self._one("transaction_id", transaction_id)

    def query(self, filters: Filters, *, after_seq: int, limit: int) -> list[AuditRecord]:
        where = ["seq > %s"]
        args: list[Any] = [after_seq]
        if filters.since is not None:
            where.append("decided_at >= %s")
            args.append(filters.since)
        if filters.until is not None:
            where.append("decided_at < %s")
            args.append(filters.until)
        for col, val in (
            ("action", filters.action),
            ("sender_account_id", filters.entity),
            ("model_version", filters.model_version),
        ):
            if val is not None:
                where.append(f"{col} = %s")
                args.append(val)
        sql = (
            f"SELECT {_COLUMNS} FROM audit_records WHERE {' AND '.join(where)} "
            "ORDER BY seq LIMIT %s"
        )
        with self._read() as conn:
            rows = conn.execute(sql, (*args, limit)).fetchall()
        return [row_to_record(_row(t)) for t in rows]

    @contextmanager
    def snapshot(self) -> Iterator[tuple[tuple[int, str], Iterator[StoredRow]]]:
        with self._read() as conn:
            try:
                with conn.transaction():
                    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    head = conn.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
                    assert head is not None, "audit_head row missing"
                    with conn.cursor(name="txguard_audit_verify") as cur:
                        cur.itersize = 2000
                        cur.execute(f"SELECT {_COLUMNS} FROM audit_records ORDER BY seq")
                        yield (head[0], head[1]), (_row(t) for t in cur)
            except psycopg.Error as e:
                raise DependencyError(f"audit store (PostgreSQL): {e}") from e

    def close(self) -> None:
        with self._writer_lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        self._pool.close()
