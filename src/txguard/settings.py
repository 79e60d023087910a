"""The one configuration object. Built in entry points (CLI, app factory) and passed down;
never instantiated at import time."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from txguard.domain.errors import ConfigurationError

DEV_SIGNING_KEY = "dev-insecure-signing-key"
DEV_PII_KEY = "dev-insecure-pii-key"


class Settings(BaseSettings):
    """Every setting, read from ``TXGUARD_*`` environment variables (or passed explicitly).

    >>> s = Settings(home="/tmp/x", env="dev")
    >>> str(s.registry_dir)
    '/tmp/x/registry'
    """

    model_config = SettingsConfigDict(env_prefix="TXGUARD_", extra="ignore", frozen=True)

    home: Path = Field(default=Path(".txguard"), description="embedded default's data directory")
    env: Literal["dev", "prod"] = "dev"
    redis_url: str | None = Field(default=None, description="switches feature state etc. to Redis")
    database_url: str | None = Field(
        default=None, description="switches audit log, keys etc. to PostgreSQL"
    )
    # secrets: refused at their dev defaults outside dev mode
    signing_key: SecretStr = Field(
        default=SecretStr(DEV_SIGNING_KEY), description="HMAC key signing registry artifacts"
    )
    pii_key: SecretStr = Field(
        default=SecretStr(DEV_PII_KEY), description="HMAC key for hashing PII in logs and metrics"
    )
    # dependency timeouts (seconds)
    redis_timeout: float = 0.05
    database_timeout: float = 2.0
    state_store_failure: Literal["fail_open", "fail_closed"] = "fail_open"

    @property
    def registry_dir(self) -> Path:
        return self.home / "registry"

    @property
    def sqlite_path(self) -> Path:
        return self.home / "txguard.sqlite3"

    @property
    def state_snapshot_path(self) -> Path:
        return self.home / "state" / "features.snapshot"

    @model_validator(mode="after")
    def _refuse_dev_secrets_in_prod(self) -> Settings:
        if self.env != "dev":
            bad = [
                name
                for name, default in (("signing_key", DEV_SIGNING_KEY), ("pii_key", DEV_PII_KEY))
                if getattr(self, name).get_secret_value() in ("", default)
            ]
            if bad:
                raise ConfigurationError(
                    "refusing to start with default or empty secrets outside dev mode: "
                    + ", ".join(f"TXGUARD_{b.upper()}" for b in bad)
                )
        return self


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides (the CLI's options)."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
