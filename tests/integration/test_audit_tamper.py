"""Tampering with the stored log by raw SQL — as someone with database access could — must make
``txguard audit verify`` exit non-zero and name the first bad record, on SQLite and PostgreSQL.

The append-only triggers are dropped/disabled first: they stop accidents, the chain is what
catches a deliberate edit."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from audit_helpers import audit_record

from txguard.audit.chain import chain_hash
from txguard.audit.log import open_audit_log
from txguard.audit.records import AuditRecord
from txguard.cli.main import main

T0 = datetime(2026, 4, 1, tzinfo=UTC)
N = 10


def make_record(i: int) -> AuditRecord:
    return audit_record(
        i,
        T0 + timedelta(seconds=i),
        event={"transaction_id": f"tx-{i}", "amount": 50.0 * i, "currency": "USD"},
        features={"sender_sum_amount_24h": 10.0 * i, "ip_risk": None},
        score=0.01 * i,
        latency_ms=3.0,
    )


class Db:
    """Raw access to the store behind the log's back."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.sqlite = target.startswith("sqlite:///")

    def run(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if self.sqlite:
            conn = sqlite3.connect(self.target.removeprefix("sqlite:///"), isolation_level=None)
            try:
                return conn.execute(sql, params).fetchall()
            finally:
                conn.close()
        with psycopg.connect(self.target, autocommit=True) as pg:
            cur = pg.execute(sql.replace("?", "%s"), params)
            return cur.fetchall() if cur.description else []

    def unprotect(self) -> None:
        if self.sqlite:
            self.run("DROP TRIGGER audit_records_no_update")
            self.run("DROP TRIGGER audit_records_no_delete")
        else:
            self.run("ALTER TABLE audit_records DISABLE TRIGGER USER")

    def row(self, seq: int) -> tuple[Any, ...]:
        return self.run("SELECT body, prev_hash, hash FROM audit_records WHERE seq = ?", (seq,))[0]

    def move(self, seq_from: int, seq_to: int) -> None:
        self.run("UPDATE audit_records SET seq = ? WHERE seq = ?", (seq_to, seq_from))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Db:
    if request.param == "sqlite":
        target = f"sqlite:///{tmp_path / 'audit.sqlite3'}"
    else:
        target = str(request.getfixturevalue("pg_url"))
    with open_audit_log(target) as log:
        for i in range(1, N):
            log.submit(make_record(i))
        log.append_sync(make_record(N), timeout=10)
    d = Db(target)
    d.unprotect()
    return d


def verify_cli(target: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main(["audit", "verify", "--db", target])
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out + out.err


def edit_one_byte(db: Db) -> None:
    body = db.row(4)[0]
    pos = body.index('"score":') + len('"score":') + 3  # a digit of the score
    new = body[:pos] + ("7" if body[pos] != "7" else "8") + body[pos + 1 :]
    db.run("UPDATE audit_records SET body = ? WHERE seq = 4", (new,))


def edit_indexed_column(db: Db) -> None:
    db.run("UPDATE audit_records SET action = 'REJECT' WHERE seq = 4")


def rewrite_and_rehash(db: Db) -> None:
    body, prev, _ = db.row(4)
    new = body.replace('"APPROVE"', '"REVIEW"')
    db.run(
        "UPDATE audit_records SET body = ?, action = 'REVIEW', hash = ? WHERE seq = 4",
        (new, chain_hash(4, prev, new.encode())),
    )


def delete_middle(db: Db) -> None:
    db.run("DELETE FROM audit_records WHERE seq = 4")


def delete_newest(db: Db) -> None:
    db.run("DELETE FROM audit_records WHERE seq = ?", (N,))


def insert_middle(db: Db) -> None:
    # renumber 4..N up by one (through negatives: seq is unique), then forge a well-chained seq 4
    db.run("UPDATE audit_records SET seq = -seq WHERE seq >= 4")
    db.run("UPDATE audit_records SET seq = 1 - seq WHERE seq < 0")
    _, _, prev = db.row(3)
    forged = db.row(2)[0].replace('"dec-2"', '"dec-forged"').replace('"tx-2"', '"tx-forged"')
    db.run(
        "INSERT INTO audit_records (seq, decision_id, transaction_id, decided_at, action, "
        "sender_account_id, model_version, body, prev_hash, hash) "
        "SELECT 4, 'dec-forged', 'tx-forged', decided_at, action, sender_account_id, "
        "model_version, ?, ?, ? FROM audit_records WHERE seq = 2",
        (forged, prev, chain_hash(4, prev, forged.encode())),
    )


def append_behind_the_log(db: Db) -> None:
    _, _, prev = db.row(N)
    body = db.row(1)[0].replace('"dec-1"', '"dec-x"').replace('"tx-1"', '"tx-x"')
    db.run(
        "INSERT INTO audit_records (seq, decision_id, transaction_id, decided_at, action, "
        "sender_account_id, model_version, body, prev_hash, hash) "
        "SELECT ?, 'dec-x', 'tx-x', decided_at, action, sender_account_id, model_version, "
        "?, ?, ? FROM audit_records WHERE seq = 1",
        (N + 1, body, prev, chain_hash(N + 1, prev, body.encode())),
    )


def swap_3_and_4(db: Db) -> None:
    db.move(3, -3)
    db.move(4, 3)
    db.move(-3, 4)


CASES: list[tuple[Callable[[Db], None], int, str]] = [
    (edit_one_byte, 4, "edited"),
    (edit_indexed_column, 4, "column action"),
    (rewrite_and_rehash, 5, "prev_hash"),
    (delete_middle, 4, "missing"),
    (delete_newest, N, "head"),
    (insert_middle, 5, "prev_hash"),
    (append_behind_the_log, N + 1, "head"),
    (swap_3_and_4, 3, "prev_hash"),
]


def test_untouched_log_verifies(db: Db, capsys: pytest.CaptureFixture[str]) -> None:
    code, text = verify_cli(db.target, capsys)
    assert code == 0, text
    assert f"{N} records verified" in text


@pytest.mark.parametrize(
    ("tamper", "bad_seq", "problem"), CASES, ids=[c[0].__name__ for c in CASES]
)
def test_tampering_is_detected_and_named(
    db: Db,
    capsys: pytest.CaptureFixture[str],
    tamper: Callable[[Db], None],
    bad_seq: int,
    problem: str,
) -> None:
    tamper(db)
    code, text = verify_cli(db.target, capsys)
    assert code == 1, text
    assert len(text.strip().splitlines()) == 1
    assert f"chain broken at seq {bad_seq}" in text
    assert problem in text
    with open_audit_log(db.target) as log:
        report = log.verify()
    assert (report.ok, report.first_bad_seq) == (False, bad_seq)


def rewrite_everything_from(db: Db, seq: int) -> None:
    """The attack the chain alone cannot see: edit one record, recompute every later hash and
    prev_hash, and move the head."""
    prev = db.row(seq - 1)[2]
    for s in range(seq, N + 1):
        body = db.row(s)[0]
        if s == seq:
            body = body.replace('"APPROVE"', '"REJECT"')
        h = chain_hash(s, prev, body.encode())
        db.run(
            "UPDATE audit_records SET body = ?, action = ?, prev_hash = ?, hash = ? WHERE seq = ?",
            (body, "REJECT" if s == seq else "APPROVE", prev, h, s),
        )
        prev = h
    db.run("UPDATE audit_head SET hash = ? WHERE id = 1", (prev,))


def test_full_rewrite_passes_alone_but_fails_against_an_anchor(
    db: Db, capsys: pytest.CaptureFixture[str]
) -> None:
    code, text = verify_cli(db.target, capsys)
    assert code == 0
    anchor = text.split("head ", 1)[1].strip()  # SEQ:HASH, kept outside the database
    assert anchor.startswith(f"{N}:")
    rewrite_everything_from(db, 4)
    code, text = verify_cli(db.target, capsys)
    assert code == 0, "an unkeyed chain cannot see a full rewrite on its own"
    with pytest.raises(SystemExit) as exc:
        main(["audit", "verify", "--db", db.target, "--anchor", anchor])
    err = capsys.readouterr().err
    assert exc.value.code == 1
    assert f"chain broken at seq {N}" in err
    assert "anchored" in err


def test_anchor_past_the_end_and_malformed_anchor(
    db: Db, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["audit", "verify", "--db", db.target, "--anchor", f"{N + 5}:{'a' * 64}"])
    assert exc.value.code == 1
    assert "anchored" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["audit", "verify", "--db", db.target, "--anchor", "12:zz"])
    assert exc.value.code == 2
    assert "anchor" in capsys.readouterr().err
