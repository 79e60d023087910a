"""``txguard audit export`` and ``verify`` through the real CLI entry point, on a SQLite log and
on the default location from settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from audit_helpers import audit_record

from txguard.audit.log import open_audit_log
from txguard.audit.records import AuditRecord
from txguard.cli.main import main

T0 = datetime(2026, 5, 1, tzinfo=UTC)


def make_record(i: int) -> AuditRecord:
    return audit_record(
        i,
        T0 + timedelta(hours=i),
        features={"f": float(i)},
        action=("APPROVE", "REVIEW", "REJECT")[i % 3],
        sender_account_id=f"acct-{i % 2}",
    )


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(args)
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = tmp_path / "audit.sqlite3"
    with open_audit_log(path) as log:
        for i in range(12):
            log.submit(make_record(i))
        log.append_sync(make_record(12), timeout=10)
    return str(path)


def test_export_with_filters(db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.jsonl"
    code, _, err = cli(
        [
            "audit", "export", "--db", db, "--out", str(out),
            "--since", "2026-05-01T03:00:00Z", "--until", "2026-05-01T11:00:00+00:00",
            "--action", "REJECT",
        ],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    rows = [orjson.loads(x) for x in out.read_text().splitlines()]
    assert [r["transaction_id"] for r in rows] == ["tx-5", "tx-8"]
    assert all(len(r["hash"]) == 64 and r["seq"] > 0 for r in rows)
    assert "exported 2 records" in err
    assert not out.with_name("out.jsonl.partial").exists()


def test_export_to_stdout_by_entity(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(["audit", "export", "--db", db, "--out", "-", "--entity", "acct-1"], capsys)
    assert code == 0
    assert [orjson.loads(x)["seq"] for x in out.splitlines()] == [2, 4, 6, 8, 10, 12]


def test_bad_filters_are_one_line_errors(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(["audit", "export", "--db", db, "--out", "-", "--action", "DENY"], capsys)
    assert (code, err.count("\n")) == (2, 1)
    assert "action" in err
    code, _, err = cli(
        ["audit", "export", "--db", db, "--out", "-", "--since", "yesterday"], capsys
    )
    assert code == 2
    assert "since" in err


def test_verify_uses_the_default_location_from_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TXGUARD_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TXGUARD_DATABASE_URL", raising=False)
    code, _, err = cli(["audit", "verify"], capsys)
    assert code == 2
    assert "no audit log at" in err
    with open_audit_log(tmp_path / "home" / "txguard.sqlite3") as log:
        log.append_sync(make_record(1), timeout=10)
    code, out, _ = cli(["audit", "verify"], capsys)
    assert code == 0
    assert out.startswith("ok: 1 records verified")
