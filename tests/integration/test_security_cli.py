"""``txguard keys create|list|revoke`` against the embedded SQLite store, through the real CLI
entry point (subprocess), and the keys it prints work with the gate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from txguard.domain.clock import SystemClock
from txguard.domain.errors import AuthenticationError
from txguard.security.gate import build_security_gate
from txguard.security.roles import Role
from txguard.settings import Settings


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TXGUARD_")}
    env["TXGUARD_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "txguard.cli.main", "keys", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def cli(home: Path, *args: str) -> str:
    """In-process (the subprocess above proves the entry point; this keeps the test fast)."""
    from typer.testing import CliRunner

    from txguard.cli.main import build_app

    result = CliRunner().invoke(
        build_app(), ["keys", *args], env={"TXGUARD_HOME": str(home)}, catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    return result.stdout


def test_create_list_revoke_round_trip(tmp_path: Path) -> None:
    out = run(tmp_path, "create", "--name", "checkout", "-r", "scorer", "-r", "admin", "--json")
    assert out.returncode == 0, out.stderr
    created = json.loads(out.stdout)
    assert created["key"].startswith(created["key_id"] + "_")
    assert created["signing_secret"].startswith("txs_")
    assert created["roles"] == ["admin", "scorer"]

    gate = build_security_gate(Settings(home=tmp_path), clock=SystemClock())
    ident = gate.authenticate(
        method="POST",
        path="/v1/score",
        headers={"x-api-key": created["key"]},
        body=b"",
        client_ip=None,
        role=Role.SCORER,
    )
    assert ident.subject == created["key_id"]

    listed = cli(tmp_path, "list", "--json")
    [row] = json.loads(listed)
    assert row["key_id"] == created["key_id"]
    assert row["state"] == "active"
    assert created["key"] not in listed
    assert created["signing_secret"] not in listed

    assert "revoked" in cli(tmp_path, "revoke", created["key_id"])
    assert json.loads(cli(tmp_path, "list", "--json"))[0]["state"] == "revoked"
    gate.keys.invalidate()
    with pytest.raises(AuthenticationError):
        gate.authenticate(
            method="POST",
            path="/v1/score",
            headers={"x-api-key": created["key"]},
            body=b"",
            client_ip=None,
            role=Role.SCORER,
        )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("create", "--name", "x", "-r", "root"), "unknown role 'root'"),
        (("create", "--name", "x", "-r", "scorer", "--expires-in-days", "0"), "expires_in_days"),
        (("revoke", "txg_nothere"), "no API key with id 'txg_nothere'"),
    ],
)
def test_bad_input_is_one_line_error_exit_2(
    tmp_path: Path,
    args: tuple[str, ...],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from txguard.cli.main import main

    monkeypatch.setenv("TXGUARD_HOME", str(tmp_path))
    with pytest.raises(SystemExit) as exit_info:
        main(["keys", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert message in err
    assert err.count("\n") == 1
