"""SQLite audit store: the embedded default.

WAL journal with ``synchronous=FULL``: a commit returns only after the WAL is fsync'd, so a
record whose future resolved survives ``kill -9`` and power loss. ``BEGIN IMMEDIATE`` takes the
database write lock before the head is read, so several processes appending to one file still
extend one chain. Each thread gets its own connection (sqlite3 connections are not shared).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from txguard.audit import migrations
from txguard.audit.chain import StoredRow
from txguard.audit.records import AuditRecord, format_timestamp
from txguard.audit.stores.base import Filters, Pending, plan_batch, row_to_record
from txguard.domain.errors import DependencyError, TxguardError

_COLUMNS = (
    "seq, decision_id, transaction_id, decided_at, action, sender_account_id, model_version, "
    "body, prev_hash, hash"
)


_INSERT = f"INSERT INTO audit_records ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)"


class _HeadMoved(Exception):
    """The chain head is not where this writer left it (another writer appended)."""


def _row(t: tuple[Any, ...]) -> StoredRow:
    body = t[7]
    return StoredRow(
        seq=t[0],
        decision_id=t[1],
        transaction_id=t[2],
        decided_at=t[3],
        action=t[4],
        sender_account_id=t[5],
        model_version=t[6],
        body=body.encode() if isinstance(body, str) else bytes(body),
        prev_hash=t[8],
        hash=t[9],
    )


class SqliteAuditStore:
    """The audit chain in one SQLite file (created with its parent folder if missing)."""

    def __init__(self, path: Path, *, timeout: float = 2.0) -> None:
        self.path = Path(path)
        self._timeout = timeout
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self.careful_batches = 0  # batches that read the head and looked up duplicates
        self._head: tuple[int, str] | None = None  # last head this store committed (writer only)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._migrate(self._conn())
        except (sqlite3.Error, OSError) as e:
            raise DependencyError(f"audit store {self.path}: {e}") from e

    # ------------------------------------------------------------------ connections

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=self._timeout, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            with self._lock:
                if self._closed:
                    raise DependencyError("audit store is closed")
                conn = self._connect()
                self._conns.append(conn)
            self._local.conn = conn
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(migrations.SCHEMA_MIGRATIONS_DDL)
            done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
            for m in migrations.load("sqlite"):
                if m.version in done:
                    continue
                for stmt in migrations.sqlite_statements(m.sql):
                    conn.execute(stmt)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (m.version, m.name, datetime.now(UTC).isoformat()),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # ------------------------------------------------------------------ writing

    def append_batch(self, items: Sequence[Pending]) -> list[AuditRecord | TxguardError]:
        """One transaction under the file's write lock. Fast path: link onto the head this
        writer committed last and insert without looking anything up — the unique indexes
        (seq, transaction_id, decision_id) and a guarded head update refuse the batch if
        another writer moved the head or a record is a duplicate; then it is rolled back and
        redone the careful way (read the head, resolve duplicates, link, insert)."""
        try:
            conn = self._conn()
            if self._head is not None:
                results, rows, new_head = plan_batch(items, head=self._head, existing=())
                conn.execute("BEGIN IMMEDIATE")
                try:
                    self._insert(conn, rows, self._head, new_head)
                    conn.execute("COMMIT")
                    self._head = new_head
                    return results
                except (sqlite3.IntegrityError, _HeadMoved):
                    conn.execute("ROLLBACK")
                except BaseException:
                    self._head = None
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            self._head = None
            self.careful_batches += 1
            conn.execute("BEGIN IMMEDIATE")
            try:
                head = conn.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
                tids = list({p.record.transaction_id for p in items})
                dids = list({p.record.decision_id for p in items})
                existing = [
                    row_to_record(_row(t))
                    for t in conn.execute(
                        f"SELECT {_COLUMNS} FROM audit_records WHERE transaction_id IN "
                        f"(SELECT value FROM json_each(?)) OR decision_id IN "
                        f"(SELECT value FROM json_each(?))",
                        (_json_list(tids), _json_list(dids)),
                    )
                ]
                results, rows, new_head = plan_batch(
                    items, head=(head[0], head[1]), existing=existing
                )
                self._insert(conn, rows, (head[0], head[1]), new_head)
                conn.execute("COMMIT")
                self._head = new_head
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            raise DependencyError(f"audit store {self.path}: {e}") from e
        return results

    @staticmethod
    def _insert(
        conn: sqlite3.Connection,
        rows: list[StoredRow],
        old_head: tuple[int, str],
        new_head: tuple[int, str],
    ) -> None:
        if not rows:
            return
        # column-wise: the per-row work (tuple building, body decoding) happens in C
        cols: list[Any] = list(zip(*rows, strict=True))
        cols[7] = list(map(bytes.decode, cols[7]))
        conn.executemany(_INSERT, zip(*cols, strict=True))
        moved = conn.execute(
            "UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1 AND seq = ? AND hash = ?",
            (*new_head, *old_head),
        ).rowcount
        if moved != 1:
            raise _HeadMoved()

    # ------------------------------------------------------------------ reading

    def _one(self, where: str, value: str) -> AuditRecord | None:
        try:
            t = (
                self._conn()
                .execute(f"SELECT {_COLUMNS} FROM audit_records WHERE {where} = ?", (value,))
                .fetchone()
            )
        except sqlite3.Error as e:
            raise DependencyError(f"audit store {self.path}: {e}") from e
        return None if t is None else row_to_record(_row(t))

    def get(self, decision_id: str) -> AuditRecord | None:
        return self._one("decision_id", decision_id)

    def get_by_transaction(self, transaction_id: str) -> AuditRecord | None:
        return self._one("transaction_id", transaction_id)

    def query(self, filters: Filters, *, after_seq: int, limit: int) -> list[AuditRecord]:
        cond, args = filters.where(after_seq=after_seq, ph="?", ts=format_timestamp)
        sql = f"SELECT {_COLUMNS} FROM audit_records WHERE {cond} ORDER BY seq LIMIT ?"
        try:
            rows = self._conn().execute(sql, (*args, limit)).fetchall()
        except sqlite3.Error as e:
            raise DependencyError(f"audit store {self.path}: {e}") from e
        return [row_to_record(_row(t)) for t in rows]

    @contextmanager
    def snapshot(self) -> Iterator[tuple[tuple[int, str], Iterator[StoredRow]]]:
        try:
            conn = self._connect()
        except sqlite3.Error as e:
            raise DependencyError(f"audit store {self.path}: {e}") from e
        try:
            conn.execute("BEGIN")  # deferred: the snapshot starts at the first read, below
            head = conn.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
            cur = conn.execute(f"SELECT {_COLUMNS} FROM audit_records ORDER BY seq")
            yield (head[0], head[1]), (_row(t) for t in cur)
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            raise DependencyError(f"audit store {self.path}: {e}") from e
        finally:
            conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conns, self._conns = self._conns, []
        for c in conns:
            c.close()


def _json_list(values: list[str]) -> str:
    import orjson

    return orjson.dumps(values).decode()
