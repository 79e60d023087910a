"""The one configuration object. Built in entry points (CLI, app factory) and passed down;
never instantiated at import time."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from txguard.domain.errors import ConfigurationError

DEV_SIGNING_KEY = "dev-insecure-signing-key"
DEV_PII_KEY = "dev-insecure-pii-key"
DEV_KEY_ENCRYPTION_KEY = "dev-insecure-key-encryption-key"
# secrets that may also come from a file named by TXGUARD_<NAME>_FILE (Docker/Kubernetes secrets)
SECRET_FIELDS = ("signing_key", "pii_key", "key_encryption_key", "jwt_secret", "rules_signing_key")
DEFAULT_RATE_LIMITS: dict[str, tuple[float, float]] = {
    # role -> (tokens per second, burst). "anonymous" is per client IP, unauthenticated.
    "scorer": (500.0, 1000.0),
    "analyst": (20.0, 60.0),
    "auditor": (10.0, 30.0),
    "admin": (5.0, 20.0),
    "anonymous": (10.0, 30.0),
}


class _SecretFilesSource(PydanticBaseSettingsSource):
    """Reads ``TXGUARD_<NAME>_FILE`` for each secret field: the file's content, stripped of the
    trailing newline editors add. Lower priority than the plain variable; setting both is refused
    because one of them would be silently ignored."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in SECRET_FIELDS:
            var = f"TXGUARD_{name.upper()}"
            path = os.environ.get(f"{var}_FILE")
            if not path:
                continue
            if os.environ.get(var):
                raise ConfigurationError(f"both {var} and {var}_FILE are set; set only one")
            try:
                out[name] = Path(path).read_text().rstrip("\r\n")
            except OSError as e:
                raise ConfigurationError(f"{var}_FILE: cannot read {path}: {e}") from e
        return out


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
    key_encryption_key: SecretStr = Field(
        default=SecretStr(DEV_KEY_ENCRYPTION_KEY),
        description="encrypts API keys' request-signing secrets at rest",
    )
    # authentication: API keys always; JWT bearer tokens when jwt_algorithm is set
    jwt_algorithm: Literal["HS256", "RS256"] | None = None
    jwt_secret: SecretStr | None = Field(default=None, description="HS256 shared secret")
    jwt_public_key: str | None = Field(default=None, description="RS256 public key (PEM)")
    jwt_issuer: str = "txguard"
    jwt_audience: str = "txguard-api"
    jwt_roles_claim: str = "roles"
    jwt_leeway_seconds: float = Field(default=0.0, ge=0, le=300)
    signature_max_skew_seconds: float = Field(default=120.0, gt=0, le=900)
    key_cache_ttl_seconds: float = Field(
        default=5.0, gt=0, le=300, description="revocation takes effect within this time"
    )
    rate_limits: dict[str, tuple[float, float]] = Field(
        default_factory=lambda: dict(DEFAULT_RATE_LIMITS),
        description="role -> (requests per second, burst); 'anonymous' is per client IP",
    )
    # dependency timeouts (seconds)
    redis_timeout: float = 0.05
    database_timeout: float = 2.0
    state_store_failure: Literal["fail_open", "fail_closed"] = "fail_open"
    # the scoring service
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    metrics_port: int | None = Field(
        default=None, description="serve /metrics without auth on this port instead"
    )
    opentelemetry: bool = Field(
        default=False,
        description="FastAPI's native OpenTelemetry spans, metrics and logs (needs a provider "
        "configured in the process); off: the Prometheus /metrics are the service's metrics, "
        "and the per-request provider checks cost the hot path",
    )
    max_body_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)
    max_batch: int = Field(default=1000, ge=1, le=10_000)
    rules_path: Path | None = Field(default=None, description="rules YAML; none = no rules")
    rules_signing_key: SecretStr | None = Field(
        default=None, description="when set, rules and list files must carry a valid .sig"
    )
    challenger_version: str | None = Field(default=None, description="shadow model version")
    safe_mode_default_action: Literal["APPROVE", "REVIEW", "REJECT"] = Field(
        default="APPROVE",
        description="SAFE MODE action when no rule fires and the amount is under the review bar",
    )
    safe_mode_review_above_usd: float = Field(default=1000.0, ge=0)
    idempotency_wait_s: float = Field(default=2.0, ge=0, le=30)
    explain_top_k: int = Field(default=3, ge=0, le=20)
    snapshot_interval_s: float = Field(
        default=30.0, ge=0, description="MemoryStore feature-state snapshot period"
    )
    redis_prefix: str = Field(default="txg:", min_length=1, max_length=64)
    feature_spec_path: Path | None = Field(
        default=None, description="feature spec YAML for training; none = the default spec"
    )
    gil_switch_interval_s: float = Field(
        default=0.0005,
        gt=0,
        le=0.1,
        description="sys.setswitchinterval for the server process: the audit writer thread "
        "then hands the GIL back to the event loop sooner (measured: steadier, ~10-100 % more "
        "decisions/s than the 5 ms default on 2 cores)",
    )
    features_in_thread: bool | None = Field(
        default=None,
        description="run each batched feature-store round trip in a worker thread; "
        "none = yes with Redis, inline with the in-process MemoryStore",
    )
    features_async: bool | None = Field(
        default=None,
        description="await each batched feature-store round trip on the event loop (a lean "
        "link per loop, no worker thread); none = yes with Redis; off = features_in_thread",
    )
    audit_async: bool | None = Field(
        default=None,
        description="commit audit batches from the event loop (no writer-thread hop); "
        "none = yes with PostgreSQL; SQLite always commits in its writer thread",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            _SecretFilesSource(settings_cls),
            dotenv_settings,
            file_secret_settings,
        )

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
        if self.jwt_algorithm == "HS256" and (
            self.jwt_secret is None or len(self.jwt_secret.get_secret_value()) < 32
        ):
            raise ConfigurationError("TXGUARD_JWT_SECRET must be at least 32 characters for HS256")
        if self.jwt_algorithm == "RS256" and not self.jwt_public_key:
            raise ConfigurationError("TXGUARD_JWT_PUBLIC_KEY is required for RS256")
        unknown = set(self.rate_limits) - set(DEFAULT_RATE_LIMITS)
        if unknown:
            raise ConfigurationError(
                f"TXGUARD_RATE_LIMITS: unknown role(s) {sorted(unknown)}; "
                f"expected some of {sorted(DEFAULT_RATE_LIMITS)}"
            )
        for role, (rate, burst) in self.rate_limits.items():
            if rate <= 0 or burst < 1:
                raise ConfigurationError(
                    f"TXGUARD_RATE_LIMITS.{role}: need rate > 0 and burst >= 1, got {rate}, {burst}"
                )
        if self.env != "dev":
            defaults = (
                ("signing_key", DEV_SIGNING_KEY),
                ("pii_key", DEV_PII_KEY),
                ("key_encryption_key", DEV_KEY_ENCRYPTION_KEY),
            )
            bad = [
                name
                for name, default in defaults
                if getattr(self, name).get_secret_value() in ("", default)
            ]
            if bad:
                raise ConfigurationError(
                    "refusing to start with default or empty secrets outside dev mode: "
                    + ", ".join(f"TXGUARD_{b.upper()}" for b in bad)
                )
        return self

    def rate_limit_for(self, role: str) -> tuple[float, float]:
        """(rate per second, burst) for a role or ``anonymous``; the default when unset."""
        return self.rate_limits.get(role, DEFAULT_RATE_LIMITS[role])


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides (the CLI's options)."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
