"""``txguard demo --duration``: the whole main job, bounded — simulate, train, serve, stream."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_bounded_run(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TXGUARD_")}
    env["TXGUARD_HOME"] = str(tmp_path / "home")
    env["COLUMNS"] = "200"
    out = subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "txguard"),
            "demo",
            "--customers",
            "400",
            "--days",
            "30",
            "--duration",
            "4",
            "--port",
            "0",
            "--stream-days",
            "3",
            "--warm-days",
            "1",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = out.stdout
    for step in ("1/4", "2/4", "3/4", "4/4", "/docs", "decisions"):
        assert step in text
    assert "safe mode" in text and "YES" not in text.split("safe mode", 1)[1][:60]

    from txguard.audit.log import open_audit_log

    log = open_audit_log(tmp_path / "home" / "txguard.sqlite3")
    try:
        records, _ = log.query(limit=1000)
        assert len(records) > 10
        assert all(r.model_version for r in records)  # a trained model decided, not safe mode
        assert log.verify().ok
    finally:
        log.close()
