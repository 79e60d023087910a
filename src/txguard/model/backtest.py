"""Replaying a period through a registered model and its policy (``txguard evaluate`` and
``txguard backtest``).

Features are built over the *whole* events file, so windows at the start of the period see the
history before it, then only transactions in ``[start, end)`` are scored and counted.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from txguard.domain.decision import Action
from txguard.domain.errors import FieldError, ValidationError
from txguard.model.evaluate import card_precision_at_k, evaluate_scores
from txguard.model.pipeline import segment_lookup
from txguard.model.scorer import ModelBundle
from txguard.model.train import _as_utc_ns, _days, _labels, _matrix, _ns


def scored_period(
    bundle: ModelBundle, events: pa.Table, start: datetime | None, end: datetime | None
) -> tuple[pa.Table, NDArray[np.float64]]:
    """Feature rows of transactions in ``[start, end)`` and their calibrated scores."""
    from txguard.features.replay import build_features

    features = build_features(events, bundle.spec)
    ts = _as_utc_ns(features.column("occurred_at"))
    mask = np.ones(len(ts), dtype=bool)
    if start is not None:
        mask &= ts >= _ns(start)
    if end is not None:
        mask &= ts < _ns(end)
    part = features.filter(pa.array(mask))
    if part.num_rows == 0:
        raise ValidationError(
            [FieldError("from", f"no transactions between {start} and {end} in the events")]
        )
    return part, bundle.predict_batch(_matrix(part, bundle.feature_names))


def evaluate_period(
    bundle: ModelBundle, events: pa.Table, start: datetime | None, end: datetime | None
) -> tuple[dict[str, Any], pa.Table, NDArray[np.float64]]:
    """The ``txguard evaluate`` metric set at the version's own policy thresholds."""
    part, scores = scored_period(bundle, events, start, end)
    t = bundle.policy.default
    metrics = evaluate_scores(
        scores=scores,
        labels=_labels(part),
        amounts=part.column("amount_usd").to_numpy(zero_copy_only=False),
        days=_days(part),
        entities=np.asarray(part.column("sender_account_id").to_pylist(), dtype=object),
        thresholds=[("review", t.review), ("reject", t.reject)],
    )
    metrics["model_version"] = bundle.version
    metrics["policy_version"] = bundle.policy.version
    return metrics, part, scores


def backtest(
    bundle: ModelBundle,
    events: pa.Table,
    start: datetime | None,
    end: datetime | None,
    *,
    k: int = 100,
) -> dict[str, Any]:
    """Alerts per day, precision, recall, CP@k and fraud amount caught under the policy (with its
    segment overrides): an alert is a REVIEW or a REJECT."""
    part, scores = scored_period(bundle, events, start, end)
    seg = segment_lookup(events)(part)
    actions = bundle.policy.actions(scores, jurisdictions=seg["jurisdiction"], types=seg["type"])
    act = np.asarray([a.value for a in actions])
    alert = act != Action.APPROVE.value
    y = _labels(part).astype(bool)
    amt = np.nan_to_num(part.column("amount_usd").to_numpy(zero_copy_only=False), nan=0.0)
    days = _days(part)
    n_days = len(np.unique(days))
    per_day = []
    for d in np.unique(days):
        m = days == d
        per_day.append(
            {
                "day": str(np.datetime64(int(d), "D")),
                "transactions": int(m.sum()),
                "alerts": int((alert & m).sum()),
                "frauds": int((y & m).sum()),
                "caught": int((alert & y & m).sum()),
            }
        )
    fraud_amount = float(amt[y].sum())
    caught_amount = float(amt[y & alert].sum())
    return {
        "model_version": bundle.version,
        "policy_version": bundle.policy.version,
        "transactions": len(scores),
        "days": n_days,
        "alerts": int(alert.sum()),
        "alerts_per_day": float(alert.sum() / max(n_days, 1)),
        "reviews": int((act == Action.REVIEW.value).sum()),
        "rejects": int((act == Action.REJECT.value).sum()),
        "precision": float((alert & y).sum() / alert.sum()) if alert.any() else None,
        "recall": float((alert & y).sum() / y.sum()) if y.any() else None,
        f"cp_at_{k}": card_precision_at_k(
            days=days,
            entities=np.asarray(part.column("sender_account_id").to_pylist(), dtype=object),
            scores=scores,
            labels=y,
            k=k,
        ),
        "fraud_amount": fraud_amount,
        "fraud_amount_caught": caught_amount,
        "amount_recall": caught_amount / fraud_amount if fraud_amount else None,
        "per_day": per_day,
    }
