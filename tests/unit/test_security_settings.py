"""Secrets from environment or files, and refusal of default secrets outside dev mode."""

from __future__ import annotations

from pathlib import Path

import pytest

from txguard.domain.errors import ConfigurationError
from txguard.settings import DEFAULT_RATE_LIMITS, Settings

STRONG = {
    "signing_key": "s" * 40,
    "pii_key": "p" * 40,
    "key_encryption_key": "k" * 40,
}


def test_prod_refuses_each_default_secret() -> None:
    Settings(env="prod", **STRONG)
    for name in STRONG:
        weak = {**STRONG, name: ""}
        with pytest.raises(ConfigurationError, match=f"TXGUARD_{name.upper()}"):
            Settings(env="prod", **weak)
    with pytest.raises(ConfigurationError, match="TXGUARD_KEY_ENCRYPTION_KEY"):
        Settings(env="prod", signing_key="s" * 40, pii_key="p" * 40)


def test_secret_from_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "pii"
    f.write_text("from-a-file\n")
    monkeypatch.setenv("TXGUARD_PII_KEY_FILE", str(f))
    monkeypatch.delenv("TXGUARD_PII_KEY", raising=False)
    s = Settings()
    assert s.pii_key.get_secret_value() == "from-a-file"
    assert "from-a-file" not in repr(s)


def test_secret_file_and_variable_together_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = tmp_path / "jwt"
    f.write_text("j" * 40)
    monkeypatch.setenv("TXGUARD_JWT_SECRET_FILE", str(f))
    monkeypatch.setenv("TXGUARD_JWT_SECRET", "j" * 40)
    with pytest.raises(ConfigurationError, match="only one"):
        Settings()
    monkeypatch.setenv("TXGUARD_JWT_SECRET_FILE", str(tmp_path / "missing"))
    monkeypatch.delenv("TXGUARD_JWT_SECRET")
    with pytest.raises(ConfigurationError, match="cannot read"):
        Settings()


def test_rate_limits_from_env_and_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TXGUARD_RATE_LIMITS", '{"scorer": [5, 10]}')
    s = Settings()
    assert s.rate_limit_for("scorer") == (5.0, 10.0)
    assert s.rate_limit_for("admin") == DEFAULT_RATE_LIMITS["admin"]
    monkeypatch.delenv("TXGUARD_RATE_LIMITS")
    with pytest.raises(ConfigurationError, match="unknown role"):
        Settings(rate_limits={"root": (1.0, 1.0)})
    with pytest.raises(ConfigurationError, match=r"RATE_LIMITS\.scorer"):
        Settings(rate_limits={"scorer": (0.0, 1.0)})
