"""``txguard simulate`` and ``txguard demo`` as a user runs them: real files, and a real process
for the runs that matter (the rest call the same ``main`` in-process, to stay fast)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from txguard.io.events import read_events


def txguard(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TXGUARD_HOME": str(home), "COLUMNS": "160"}
    return subprocess.run(
        [sys.executable, "-m", "txguard.cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def run(capsys, monkeypatch, home: Path, *args: str) -> tuple[int, str, str]:
    """``main(argv)`` in-process: (exit code, stdout, stderr)."""
    from txguard.cli.main import main

    monkeypatch.setenv("TXGUARD_HOME", str(home))
    monkeypatch.setenv("COLUMNS", "160")
    try:
        main(list(args))
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_simulate_twice_gives_byte_identical_files(tmp_path):
    args = ["simulate", "--customers", "400", "--days", "20", "--seed", "7"]
    a = txguard(*args, "--out", str(tmp_path / "a.parquet"), home=tmp_path)
    b = txguard(*args, "--out", str(tmp_path / "b.parquet"), home=tmp_path)
    assert a.returncode == 0, a.stderr
    assert b.returncode == 0, b.stderr
    assert "transactions" in a.stdout
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    table = read_events(tmp_path / "a.parquet")
    assert table.num_rows > 10_000


def test_simulate_with_summary_prints_typologies(tmp_path):
    r = txguard(
        "simulate",
        "--customers",
        "200",
        "--days",
        "10",
        "--fraud-rate",
        "0.05",
        "--out",
        str(tmp_path / "s.parquet"),
        "--summary",
        home=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert "account_takeover" in r.stdout
    assert "fraud rate" in r.stdout


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--customers", "-5"], "customers"),
        (["--days", "0"], "days"),
        (["--fraud-rate", "0.7"], "fraud_rate"),
        (["--start", "yesterday"], "start"),
    ],
)
def test_bad_input_is_one_line_error_and_nonzero_exit(tmp_path, capsys, monkeypatch, args, field):
    code, _, err = run(
        capsys, monkeypatch, tmp_path, "simulate", *args, "--out", str(tmp_path / "x.parquet")
    )
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"error: {field}: ")
    assert not (tmp_path / "x.parquet").exists()


def test_unwritable_output_path_is_refused(tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    code, _, err = run(
        capsys,
        monkeypatch,
        tmp_path,
        "simulate",
        "--customers",
        "10",
        "--out",
        str(blocker / "x.parquet"),
    )
    assert code == 2
    assert err.startswith("error: out: cannot write")
    assert len(err.strip().splitlines()) == 1


def test_demo_simulates_into_home_and_prints_a_summary(tmp_path):
    r = txguard("demo", "--customers", "300", "--days", "15", "--seed", "3", home=tmp_path)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "data" / "simulated.parquet"
    assert out.exists()
    for needle in ("Events", "fraud rate", "Transactions by type", "structuring", "analyst"):
        assert needle in r.stdout, needle
