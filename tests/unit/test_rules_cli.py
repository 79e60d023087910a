"""``txguard rules check | sign | test`` through the real CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from txguard.cli.main import build_app, main

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "rules.yaml"


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(build_app(), list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def test_check_the_example() -> None:
    code, out, _ = run("rules", "check", str(EXAMPLE))
    assert code == 0
    assert out.startswith(f"ok: {EXAMPLE}: version 2026.11.1+")
    assert "rule big_new_account" in out and "list sanctioned_countries" in out


def test_check_prints_each_problem_with_its_line(tmp_path: Path) -> None:
    p = tmp_path / "rules.yaml"
    p.write_text(
        'version: "1"\nrules:\n'
        "  - {id: a, when: amout_usd > 1, action: allow, reason: r}\n"
        "  - {id: b, when: amount > 1, action: nope, reason: r}\n"
    )
    code, out, err = run("rules", "check", str(p), "--no-spec")
    assert code == 2 and out == ""
    assert err.splitlines() == [
        f"{p}:3: unknown field 'amout_usd' in condition of rule 'a' (did you mean 'amount_usd'?)",
        f"{p}:4: rule 'b': action must be one of force_review, force_reject, add_score, allow "
        "(got 'nope')",
        f"error: 2 problem(s) in {p}",
    ]


def test_check_knows_features_only_from_the_spec_or_options(tmp_path: Path) -> None:
    p = tmp_path / "rules.yaml"
    p.write_text('version: "1"\nrules:\n  - {id: a, when: my_feat > 1, action: allow, reason: r}\n')
    assert run("rules", "check", str(p))[0] == 2
    assert run("rules", "check", str(p), "--no-spec", "--feature", "my_feat")[0] == 0


def test_sign_then_check_with_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "w.txt").write_text("w1\n")
    p = tmp_path / "rules.yaml"
    p.write_text('version: "1"\nlists:\n  w: {kind: block, fields: device_id, file: w.txt}\n')
    env = {"RULES_KEY": "s3cret"}
    code, out, _ = run("rules", "sign", str(p), "--key-env", "RULES_KEY", env=env)
    assert code == 0, out
    assert (tmp_path / "rules.yaml.sig").exists() and (tmp_path / "w.txt.sig").exists()
    assert run("rules", "check", str(p), "--key-env", "RULES_KEY", env=env)[0] == 0
    (tmp_path / "w.txt").write_text("w1\nw2\n")
    # the list file changed after signing: IntegrityError through main(), one line, exit 2
    monkeypatch.setenv("RULES_KEY", "s3cret")
    with pytest.raises(SystemExit) as ei:
        main(["rules", "check", str(p), "--key-env", "RULES_KEY"])
    assert ei.value.code == 2


def test_sign_needs_the_key(tmp_path: Path) -> None:
    p = tmp_path / "rules.yaml"
    p.write_text('version: "1"\n')
    code, _, _ = run("rules", "sign", str(p), "--key-env", "NO_SUCH_VARIABLE_X")
    assert code != 0
    assert not (tmp_path / "rules.yaml.sig").exists()


def test_try_an_event(tmp_path: Path) -> None:
    ev = {
        "transaction_id": "t1",
        "occurred_at": "2026-03-10T12:00:00Z",
        "amount": 20000.0,
        "currency": "USD",
        "sender": {"account_id": "a", "created_at": "2026-03-09T00:00:00Z", "country": "FR"},
        "recipient": {"account_id": "b", "country": "NG"},
        "merchant_id": "merchant-utility-0001",
    }
    (tmp_path / "e.json").write_text(json.dumps(ev))
    code, out, err = run("rules", "test", str(EXAMPLE), "--event", str(tmp_path / "e.json"))
    assert code == 0, err
    lines = out.splitlines()
    assert "hit list high_risk_countries: force_review" in lines[0]
    assert any("big_new_account" in ln and "cancelled by allow" in ln for ln in lines)
    assert lines[-1].startswith("outcome: forced=REVIEW")
