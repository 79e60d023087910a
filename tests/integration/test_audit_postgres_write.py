"""The PostgreSQL audit store's write path on the real server: rows sent as binary column arrays
in one pipeline come back byte for byte, whatever their ids contain."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
import pytest
from audit_helpers import audit_record, big_features

from txguard.audit.log import open_audit_log
from txguard.audit.records import AuditRecord, canonical_bytes
from txguard.audit.stores.postgres import _int8_array, _text_array

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

# what ids and versions may contain: quotes, backslashes, dollar-quote tags, JSON-looking text,
# multi-byte UTF-8, array-literal punctuation
AWKWARD = ["it's", 'say "hi"', "back\\slash", "$txg$", "{a,b}", "NULL", "é 日本 🙂", "x" * 300]


def make_record(i: int, **over: Any) -> AuditRecord:
    fields: dict[str, Any] = {
        "event": {"transaction_id": f"tx-{i}", "note": '50$ $$ \\ " \u0000 é', "amount": 10.5},
        "features": big_features(),
        "score": 0.25,
        "latency_ms": 1.5,
        "sender_account_id": f"acct-{i}",
    }
    return audit_record(i, T0 + timedelta(seconds=i, microseconds=i), **(fields | over))


def rows(url: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def test_rows_with_awkward_values_read_back_byte_for_byte(pg_url: str) -> None:
    records = [
        make_record(
            i,
            decision_id=f"dec-{i}-{text}",
            transaction_id=f"tx-{i}-{text}",
            sender_account_id=text,
            action=text,
            model_version=None if i % 2 else text,
        )
        for i, text in enumerate(AWKWARD)
    ]
    log = open_audit_log(pg_url)
    try:
        log.append_sync(make_record(100))  # the first batch of a writer is the careful one

        async def many() -> list[AuditRecord]:
            return await log.append_many(records)  # one batch: NULL and text model versions

        stored = asyncio.run(many())
        assert log.store.careful_batches == 1  # type: ignore[attr-defined]
        assert log.verify().ok
    finally:
        log.close()
    got = rows(
        pg_url,
        "SELECT seq, decision_id, transaction_id, decided_at, action, sender_account_id, "
        "model_version, body, prev_hash, hash FROM audit_records WHERE seq > 1 ORDER BY seq",
    )
    assert len(got) == len(records)
    for rec, s, row in zip(records, stored, got, strict=True):
        assert row[0] == s.seq
        assert row[1:3] == (rec.decision_id, rec.transaction_id)
        assert row[3] == rec.decided_at
        assert row[4:7] == (rec.action, rec.sender_account_id, rec.model_version)
        assert row[7].encode() == canonical_bytes(rec)
        assert row[8:] == (s.prev_hash, s.hash)


def test_binary_arrays_decode_to_the_values_sent(pg_url: str) -> None:
    texts: list[bytes | None] = [t.encode() for t in AWKWARD] + [b"", None, b"last"]
    ints = [0, 1, -1, 2**63 - 1, -(2**63)]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        res = conn.pgconn.exec_params(
            b"SELECT to_json($1::text[])::text, to_json($2::int8[])::text",
            [_text_array(texts), _int8_array(ints)],
            [1009, 1016],  # text[], int8[]
            [1, 1],  # binary
        )
        assert res.error_message == b""
        got = [orjson.loads(res.get_value(0, i) or b"") for i in range(2)]
    assert got == [[None if t is None else t.decode() for t in texts], ints]
