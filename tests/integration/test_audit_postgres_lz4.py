"""The PostgreSQL body-compression migration (0002): lz4 where the server has it, skipped cleanly
where it does not (simulated with a schema-local ``pg_settings`` ahead of pg_catalog), and a log
written before it keeps reading back and verifying."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from audit_helpers import audit_record, big_features

from txguard.audit.log import AuditLog, open_audit_log
from txguard.audit.records import AuditRecord, canonical_bytes, format_timestamp

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def make_record(i: int) -> AuditRecord:
    """~3 KB of canonical body, like a real decision: compressed when stored (TOAST ~2 KB)."""
    return audit_record(
        i,
        T0 + timedelta(seconds=i),
        event={"transaction_id": f"tx-{i}", "amount": 10.5, "currency": "EUR"},
        features=big_features(),
        score=0.25,
        latency_ms=1.5,
        sender_account_id=f"acct-{i}",
    )


def rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql).fetchall()


def _compression(url: str) -> str:
    return str(
        rows(
            url,
            "SELECT attcompression FROM pg_attribute "
            "WHERE attrelid = 'audit_records'::regclass AND attname = 'body'",
        )[0][0]
    )


def test_body_uses_lz4_where_the_server_has_it(pg_url: str) -> None:
    (has_lz4,) = rows(
        pg_url,
        "SELECT 'lz4' = ANY (enumvals) FROM pg_settings WHERE name = 'default_toast_compression'",
    )[0]
    with open_audit_log(pg_url) as log:
        log.append_sync(make_record(1))
    assert _compression(pg_url) == ("l" if has_lz4 else "")
    (method,) = rows(pg_url, "SELECT pg_column_compression(body) FROM audit_records")[0]
    assert method == ("lz4" if has_lz4 else "pglz")


@pytest.mark.parametrize(
    "fake",
    [
        "SELECT 'default_toast_compression'::text AS name, ARRAY['pglz']::text[] AS enumvals",
        # a server older than 14 has no per-column compression and no such setting
        "SELECT 'x'::text AS name, ARRAY[]::text[] AS enumvals WHERE false",
    ],
    ids=["built-without-lz4", "no-column-compression"],
)
def test_a_server_without_lz4_still_migrates(pg_dsn: str, pg_schema: str, fake: str) -> None:
    """A schema-local ``pg_settings`` placed before pg_catalog on the search path stands in for
    a server built without lz4: the migration is recorded, the body keeps the default, and the
    log works."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE VIEW "{pg_schema}".pg_settings AS {fake}')
    sep = "&" if "?" in pg_dsn else "?"
    url = f"{pg_dsn}{sep}options=-csearch_path%3D{pg_schema}%2Cpg_catalog"
    with open_audit_log(url) as log:
        log.append_sync(make_record(1))
        log.append_sync(make_record(2))
        assert log.verify().ok
    assert rows(url, "SELECT version FROM schema_migrations ORDER BY version") == [(1,), (2,)]
    assert _compression(url) == ""
    assert rows(url, "SELECT DISTINCT pg_column_compression(body) FROM audit_records") == [
        ("pglz",)
    ]


def test_a_log_written_before_the_lz4_migration_upgrades_and_verifies(pg_url: str) -> None:
    """Rows stored with pglz (a database from before 0002) stay readable and in the chain."""
    before = [make_record(i) for i in range(1, 6)]
    after = [make_record(i) for i in range(6, 11)]
    with open_audit_log(pg_url) as log:
        # the body as it was before 0002 (pglz) while the first records are written
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("ALTER TABLE audit_records ALTER COLUMN body SET COMPRESSION pglz")
        for r in before:
            log.append_sync(r)
    # ... and the migration not yet recorded: the next open applies it
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DELETE FROM schema_migrations WHERE version = 2")
    log2: AuditLog
    with open_audit_log(pg_url) as log2:
        for r in after:
            log2.append_sync(r)
        assert log2.verify().ok
        for r in before + after:
            got = log2.get_by_transaction(r.transaction_id)
            assert got is not None and canonical_bytes(got) == canonical_bytes(r)
            assert format_timestamp(got.decided_at) == format_timestamp(r.decided_at)
    methods = rows(pg_url, "SELECT pg_column_compression(body) FROM audit_records ORDER BY seq")
    assert [m for (m,) in methods] == ["pglz"] * 5 + ["lz4"] * 5
