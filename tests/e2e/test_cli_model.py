"""The model CLI end to end: simulate → train → models list/show/verify/promote/rollback/diff,
evaluate, backtest, and a flipped byte refused by both ``verify`` and loading."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from txguard.cli.main import main
from txguard.domain.errors import IntegrityError
from txguard.model.registry import Registry
from txguard.settings import DEV_SIGNING_KEY


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(argv)
    out = capsys.readouterr()
    code = e.value.code if isinstance(e.value.code, int) else 1
    return code, out.out, out.err


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    """One small simulated history and a registry with two trained versions."""
    from txguard.datasets.simulate import SimConfig, simulate_to_file

    d = tmp_path_factory.mktemp("model_cli")
    events = d / "events.parquet"
    simulate_to_file(events, SimConfig(customers=200, days=45, seed=3, fraud_rate=0.02))
    reg = d / "registry"
    versions = []
    for extra in (["--promote"], ["--policy-method", "budget", "--alerts-per-day", "5"]):
        with pytest.raises(SystemExit) as e:
            main(
                ["train", "--events", str(events), "--registry", str(reg), "--valid-days", "7",
                 "--test-days", "7", *extra]
            )  # fmt: skip
        assert e.value.code in (0, None)
        versions = [i.version for i in Registry(reg, DEV_SIGNING_KEY).list()]
    assert len(versions) == 2
    return events, reg, versions


def test_train_registers_and_promotes(
    trained: tuple[Path, Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    _, reg, versions = trained
    code, out, _ = run(["models", "list", "--registry", str(reg)], capsys)
    assert code == 0
    lines = {ln.split()[0]: ln.split()[1] for ln in out.splitlines()[1:]}
    assert sorted(lines.values()) == ["candidate", "production"]
    prod = Registry(reg, DEV_SIGNING_KEY).load_production()
    assert prod.version in versions
    files = {p.name for p in (reg / "versions" / prod.version).iterdir()}
    assert {"model.txt", "spec.yaml", "policy.json", "card.html", "MANIFEST.json"} <= files
    card = (reg / "versions" / prod.version / "card.html").read_text()
    assert card.count("data:image/png;base64,") == 6


def test_show_diff_promote_rollback(
    trained: tuple[Path, Path, list[str]], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _, reg0, (v1, v2) = trained
    reg = tmp_path / "reg"
    shutil.copytree(reg0, reg)
    r = Registry(reg, DEV_SIGNING_KEY)
    first = r.production()
    other = v2 if first == v1 else v1
    code, out, _ = run(["models", "show", other, "--registry", str(reg)], capsys)
    assert code == 0 and json.loads(out)["stage"] == "candidate"
    code, out, _ = run(["models", "diff", v1, v2, "--registry", str(reg)], capsys)
    assert code == 0 and "policy" in json.loads(out)
    assert run(["models", "promote", other, "--registry", str(reg)], capsys)[0] == 0
    assert r.production() == other
    assert run(["models", "rollback", "--registry", str(reg)], capsys)[0] == 0
    assert r.production() == first


def test_flipped_byte_fails_verify_and_load(
    trained: tuple[Path, Path, list[str]], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _, reg0, _ = trained
    reg = tmp_path / "reg"
    shutil.copytree(reg0, reg)
    r = Registry(reg, DEV_SIGNING_KEY)
    v = r.production()
    assert v is not None
    assert run(["models", "verify", "--registry", str(reg)], capsys)[0] == 0
    target = reg / "versions" / v / "policy.json"
    target.chmod(0o644)
    data = bytearray(target.read_bytes())
    data[10] ^= 0x20
    target.write_bytes(bytes(data))
    code, _, err = run(["models", "verify", v, "--registry", str(reg)], capsys)
    assert code == 2
    assert err.strip() == f"error: model {v}: policy.json was modified (sha256 mismatch)"
    with pytest.raises(IntegrityError, match=r"policy\.json was modified"):
        r.load_production()


def test_train_bad_input_is_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        ["train", "--events", str(tmp_path / "none.parquet"), "--registry", str(tmp_path)], capsys
    )
    assert code == 2 and err.startswith("error:")
    code, _, err = run(
        ["train", "--events", "x.parquet", "--label-delay", "soon", "--registry", str(tmp_path)],
        capsys,
    )
    assert code == 2 and "label_delay" in err


def test_evaluate_reproduces_registered_test_metrics(
    trained: tuple[Path, Path, list[str]], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    events, reg, _ = trained
    card = tmp_path / "card.html"
    code, out, _ = run(
        ["evaluate", "--events", str(events), "--registry", str(reg), "--card", str(card)], capsys
    )
    assert code == 0
    got = json.loads(out)
    bundle = Registry(reg, DEV_SIGNING_KEY).load_production()
    # the same period, features and model give the same figures as at training time
    for key in ("n", "n_fraud", "auc_roc", "average_precision", "cp_at_100"):
        assert got[key] == pytest.approx(bundle.metrics[key], abs=1e-12), key
    assert card.read_text().count("data:image/png;base64,") == 6


def test_backtest_counts_alerts_under_the_policy(
    trained: tuple[Path, Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    events, reg, _ = trained
    bundle = Registry(reg, DEV_SIGNING_KEY).load_production()
    lo, hi = bundle.meta["periods"]["test"]
    code, out, _ = run(
        ["backtest", "--events", str(events), "--registry", str(reg), "--from", lo, "--to", hi,
         "--json"],
        capsys,
    )  # fmt: skip
    assert code == 0
    res = json.loads(out)
    assert res["transactions"] == bundle.metrics["n"]
    assert res["alerts"] == res["reviews"] + res["rejects"]
    assert sum(d["alerts"] for d in res["per_day"]) == res["alerts"]
    assert sum(d["frauds"] for d in res["per_day"]) == bundle.metrics["n_fraud"]
    assert 0 <= res["fraud_amount_caught"] <= res["fraud_amount"]
