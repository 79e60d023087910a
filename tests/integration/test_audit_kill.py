"""``kill -9`` a process appending to the audit log mid-stream — from several threads, and from
tasks on an event loop (the PostgreSQL loop writer): every append that returned (the child
printed its acknowledgement) must be in the log afterwards, with the seq and hash it was
acknowledged with, and the chain must verify."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest

from txguard.audit.log import open_audit_log

# what both children share: the log named on the command line and the record worker w
# appends i-th
_PRELUDE = """
import sys
from datetime import UTC, datetime
from txguard.audit import AuditRecord, open_audit_log

log = open_audit_log(sys.argv[1])

def record(w, i):
    tid = f"tx-{w}-{i}"
    return AuditRecord(
        decision_id=f"dec-{w}-{i}", transaction_id=tid,
        decided_at=datetime.now(UTC), event={"transaction_id": tid, "amount": 1.0 * i},
        features={"f": float(i)}, score=0.5, risk_level="MEDIUM", action="REVIEW",
        reasons=[], rule_hits=[], model_version="m", policy_version="p",
        safe_mode=False, degraded=[], challenger=None, latency_ms=0.1,
        sender_account_id=f"acct-{w}",
    )
"""

# eight threads through the writer thread (``append_sync``)
CHILD = _PRELUDE + textwrap.dedent(
    """
    import threading
    out_lock = threading.Lock()

    def worker(w):
        i = 0
        while True:
            i += 1
            stored = log.append_sync(record(w, i))
            with out_lock:  # the "response": written only after append returned
                sys.stdout.write(f"ack {stored.transaction_id} {stored.seq} {stored.hash}\\n")
                sys.stdout.flush()

    for w in range(8):
        threading.Thread(target=worker, args=(w,), daemon=True).start()
    threading.Event().wait()
    """
)

# sixteen tasks on uvloop (the server's loop) through the PostgreSQL loop writer
LOOP_CHILD = _PRELUDE + textwrap.dedent(
    """
    import asyncio
    import uvloop

    async def worker(w):
        i = 0
        while True:
            i += 1
            stored = await log.append(record(w, i))
            sys.stdout.write(f"ack {stored.transaction_id} {stored.seq} {stored.hash}\\n")
            sys.stdout.flush()

    async def main():
        assert log.loop_writer
        await asyncio.gather(*(worker(w) for w in range(16)))

    uvloop.run(main())
    """
)

ACKS_BEFORE_KILL = 400


def _parse(line: str, acked: dict[str, tuple[int, str]]) -> None:
    _, tid, seq, h = line.split()
    acked[tid] = (int(seq), h)


def run_and_kill(target: str, child: str = CHILD) -> dict[str, tuple[int, str]]:
    acked: dict[str, tuple[int, str]] = {}
    deadline = time.monotonic() + 60
    with subprocess.Popen(
        [sys.executable, "-c", child, target],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        try:
            while len(acked) < ACKS_BEFORE_KILL and time.monotonic() < deadline:
                line = proc.stdout.readline()
                if not line:
                    break
                _parse(line, acked)
            os.kill(proc.pid, signal.SIGKILL)  # mid-stream: appends are in flight right now
        finally:
            if proc.poll() is None:
                proc.kill()
        proc.wait(10)
        for line in proc.stdout:  # acks already written before the kill count too
            if line.endswith("\n"):
                _parse(line, acked)
        err = proc.stderr.read()
    assert proc.returncode == -signal.SIGKILL, err
    assert len(acked) >= ACKS_BEFORE_KILL, f"child acknowledged only {len(acked)}: {err}"
    return acked


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'audit.sqlite3'}"
    return str(request.getfixturevalue("pg_url"))


def test_every_acknowledged_append_survives_sigkill(target: str) -> None:
    acked = run_and_kill(target)
    with open_audit_log(target) as log:
        report = log.verify()
        assert report.ok, report.summary()
        assert report.checked >= len(acked)
        for tid, (seq, h) in acked.items():
            stored = log.get_by_transaction(tid)
            assert stored is not None, f"{tid} was acknowledged but is not in the log"
            assert (stored.seq, stored.hash) == (seq, h)
        # the log accepts appends after the crash and continues the same chain
        page, _ = log.query(limit=1)
        fresh = replace(page[0], decision_id="dec-after", transaction_id="tx-after", seq=0)
        after = log.append_sync(fresh, timeout=10)
        assert (after.seq, after.prev_hash) == (report.head_seq + 1, report.head_hash)
        assert log.verify().ok


@pytest.mark.postgres
def test_every_acknowledged_loop_append_survives_sigkill(pg_url: str) -> None:
    """The same with the appends committed by the event loop's writer (what the service runs
    on PostgreSQL)."""
    acked = run_and_kill(pg_url, LOOP_CHILD)
    with open_audit_log(pg_url) as log:
        report = log.verify()
        assert report.ok, report.summary()
        for tid, (seq, h) in acked.items():
            stored = log.get_by_transaction(tid)
            assert stored is not None, f"{tid} was acknowledged but is not in the log"
            assert (stored.seq, stored.hash) == (seq, h)
