"""Helpers for the service's integration and e2e tests (no tests here).

``register_model`` trains a small REAL LightGBM model on synthetic rows over the default feature
spec (fraud when the amount is large or the sender is busy) and registers it, signed, in a real
registry — seconds, not minutes, and every part of the load/verify/score path is the production
one.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from txguard.settings import Settings


def register_model(
    settings: Settings, *, promote: bool = True, seed: int = 1, review: float = 0.5
) -> str:
    import lightgbm as lgb

    from txguard.features.spec import default_spec
    from txguard.model.policy import Policy, Thresholds
    from txguard.model.registry import Registry
    from txguard.model.scorer import Calibration

    spec = default_spec()
    names = spec.names
    rng = np.random.default_rng(seed)
    n = 4000
    x = np.full((n, len(names)), np.nan)
    amount = rng.lognormal(4.0, 1.2, n)
    count = rng.poisson(1.0, n).astype(float)
    x[:, names.index(amount_feature(names))] = amount
    x[:, names.index("sender_count_1h")] = count
    x[:, names.index("hour_of_day")] = rng.integers(0, 24, n)
    y = ((amount > 1500) | (count >= 4)).astype(int)
    booster = lgb.train(
        {"objective": "binary", "num_leaves": 7, "verbose": -1, "seed": seed, "num_threads": 1},
        lgb.Dataset(x, y, feature_name=list(names)),
        num_boost_round=30,
    )
    reg = Registry(settings.registry_dir, settings.signing_key.get_secret_value())
    version = reg.register(
        model_text=booster.model_to_string(),
        spec_yaml=spec.to_yaml(),
        policy=Policy(default=Thresholds(medium=min(0.2, review), review=review, reject=0.97)),
        calibration=Calibration(),
        metrics={"synthetic": True},
        meta={
            "feature_names": list(names),
            "feature_spec_hash": spec.hash,
            "seed": seed,
        },
    )
    if promote:
        reg.promote(version)
    return version


def amount_feature(names: tuple[str, ...]) -> str:
    """The spec's point-wise reference amount (``amount_usd``, or ``amount_ref`` in newer specs)."""
    return next(n for n in names if n in ("amount_usd", "amount_ref"))


def tx(tid: str, amount: float = 50.0, sender: str = "acct-1", **extra: Any) -> dict[str, Any]:
    at = extra.pop("at", datetime(2026, 3, 1, 10, 0, tzinfo=UTC))
    d: dict[str, Any] = {
        "transaction_id": tid,
        "occurred_at": at.isoformat().replace("+00:00", "Z"),
        "amount": amount,
        "currency": "USD",
        "sender": {"account_id": sender},
    }
    d.update(extra)
    return d


def later(minutes: float) -> datetime:
    return datetime(2026, 3, 1, 10, 0, tzinfo=UTC) + timedelta(minutes=minutes)


def make_key(settings: Settings, *roles: str, require_signature: bool = False) -> tuple[str, Any]:
    """A real API key in the configured key store (plaintext, signing secret)."""
    from txguard.domain.clock import SystemClock
    from txguard.security.keys import parse_roles
    from txguard.security.keystore import open_key_store

    store = open_key_store(settings, clock=SystemClock())
    key, secret, _ = store.create_key(
        name="test", roles=parse_roles(list(roles)), require_signature=require_signature
    )
    return key, secret


def home(tmp_path: Path, **kw: Any) -> Settings:
    return Settings(home=tmp_path / "home", **kw)
