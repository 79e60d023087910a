"""Events → features → trained, evaluated, signed registry version (what ``txguard train`` runs).

Kept apart from the CLI so the end-to-end path is callable from tests and notebooks.
"""

from __future__ import annotations

import math
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from txguard.model.registry import Registry
from txguard.model.train import StageTimer, TrainResult, train_from_features


def code_version() -> str:
    """Package version, plus the git commit when run from a checkout."""
    try:
        v = metadata.version("txguard")
    except metadata.PackageNotFoundError:
        v = "unknown"
    try:
        here = Path(__file__).resolve().parent
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{v}+{sha}" if sha else v


def segment_lookup(events: pa.Table) -> Callable[[pa.Table], dict[str, list[str | None]]]:
    """Jurisdiction and transaction type of each feature row, joined on transaction_id."""
    import pyarrow.compute as pc

    tx = events.filter(pc.equal(events.column("kind").cast(pa.string()), "transaction"))
    ids = tx.column("transaction_id").to_pylist()
    juris = tx.column("jurisdiction").cast(pa.string()).to_pylist()
    types = tx.column("type").cast(pa.string()).to_pylist()
    by_id = {i: (j, t) for i, j, t in zip(ids, juris, types, strict=True)}

    def lookup(features: pa.Table) -> dict[str, list[str | None]]:
        rows = [by_id.get(i, (None, None)) for i in features.column("transaction_id").to_pylist()]
        return {"jurisdiction": [r[0] for r in rows], "type": [r[1] for r in rows]}

    return lookup


@dataclass
class TrainRun:
    version: str
    result: TrainResult
    promoted: bool


def train_events(
    events: pa.Table,
    spec: Any,
    registry: Registry,
    *,
    label_delay: timedelta,
    promote: bool = False,
    timer: StageTimer | None = None,
    test_days: float | None = None,
    valid_days: float | None = None,
    policy_method: str = "precision",
    policy_params: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    write_card: bool = True,
) -> TrainRun:
    """Build features, train, evaluate, register (and optionally promote) a version."""
    from txguard.features.replay import build_features

    timer = timer or StageTimer()
    with timer.stage("features"):
        features = build_features(events, spec)
    result = train_from_features(
        features,
        tuple(spec.names),
        label_delay=label_delay,
        test_days=test_days,
        valid_days=valid_days,
        params=params,
        policy_method=policy_method,
        policy_params=policy_params,
        segments=segment_lookup(events),
        timer=timer,
    )
    extra: dict[str, bytes] = {}
    if write_card:
        with timer.stage("model card"):
            from txguard.model.card import card_from_result

            extra["card.html"] = card_from_result(result, title="txguard model").encode()
    with timer.stage("register"):
        version = registry.register(
            model_text=result.booster.model_to_string(),
            spec_yaml=spec.to_yaml(),
            policy=result.policy,
            calibration=result.calibration,
            metrics=_jsonable(result.metrics),
            meta={
                **_jsonable(result.meta),
                "feature_spec_hash": spec.hash,
                "code_version": code_version(),
                "timings_s": dict(timer.stages),
            },
            extra_files=extra,
        )
        if promote:
            registry.promote(version)
    return TrainRun(version=version, result=result, promoted=promote)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj
