"""Training on a point-in-time feature table: time-ordered periods, label-delay gaps, LightGBM
with class weighting and early stopping on validation average precision, Platt calibration and the
threshold policy fitted on the validation period, metrics on the untouched test period.

The periods, in time order::

    [ train ][ gap = label delay ][ valid ][ gap = label delay ][ test ]

A model put in production at the start of ``test`` only knows labels of transactions older than
the label delay, so validation labels (early stopping, calibration, policy) must come from before
``test_start - delay``, and training labels from before ``valid_start - delay``: the gaps make
the offline figure the one production would see. Never a random split — fraud drifts.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from txguard.domain.clock import Clock, SystemClock
from txguard.domain.errors import FieldError, ValidationError
from txguard.model.evaluate import evaluate_scores
from txguard.model.policy import Policy, fit_policy
from txguard.model.scorer import Calibration

DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 100,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "max_bin": 255,
    "deterministic": True,
    "force_row_wise": True,
    "seed": 7,
    "num_threads": 2,
    "verbose": -1,
}
MAX_ROUNDS = 1000
EARLY_STOPPING_ROUNDS = 50


class StageTimer:
    """Wall time per named stage, to print where the time goes."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self.stages: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = self._clock.monotonic()
        try:
            yield
        finally:
            self.stages[name] = self.stages.get(name, 0.0) + self._clock.monotonic() - t0

    def report(self) -> str:
        total = sum(self.stages.values()) or 1.0
        lines = [f"  {k:<22}{v:8.2f} s  {100 * v / total:5.1f} %" for k, v in self.stages.items()]
        return "\n".join([*lines, f"  {'total':<22}{total:8.2f} s"])


@dataclass(frozen=True, slots=True)
class Periods:
    """Half-open time ranges ``[start, end)`` of the three periods (aware UTC)."""

    train: tuple[datetime, datetime]
    valid: tuple[datetime, datetime]
    test: tuple[datetime, datetime]
    label_delay: timedelta

    def to_dict(self) -> dict[str, Any]:
        return {
            "train": [self.train[0].isoformat(), self.train[1].isoformat()],
            "valid": [self.valid[0].isoformat(), self.valid[1].isoformat()],
            "test": [self.test[0].isoformat(), self.test[1].isoformat()],
            "label_delay_days": self.label_delay.total_seconds() / 86400,
        }


def parse_duration(text: str) -> timedelta:
    """``7d``, ``36h``, ``90m`` or a number of days.

    >>> parse_duration("7d"), parse_duration("12h")
    (datetime.timedelta(days=7), datetime.timedelta(seconds=43200))
    """
    t = text.strip().lower()
    units = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
    try:
        value = float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t) * 86400.0
    except ValueError:
        raise ValidationError(
            [FieldError("label_delay", f"not a duration: {text!r} (use e.g. 7d or 36h)")]
        ) from None
    if value < 0 or not math.isfinite(value):
        raise ValidationError([FieldError("label_delay", f"must be >= 0, got {text!r}")])
    return timedelta(seconds=value)


def plan_periods(
    start: datetime,
    end: datetime,
    *,
    label_delay: timedelta,
    test_days: float | None = None,
    valid_days: float | None = None,
) -> Periods:
    """Split ``[start, end)`` into train / gap / valid / gap / test (whole days from the end).

    Defaults: test and validation each a fifth of the span (at least one day).
    """
    span = (end - start).total_seconds() / 86400
    td = test_days if test_days is not None else max(1.0, round(span / 5))
    vd = valid_days if valid_days is not None else max(1.0, round(span / 5))
    test_start = end - timedelta(days=td)
    valid_end = test_start - label_delay
    valid_start = valid_end - timedelta(days=vd)
    train_end = valid_start - label_delay
    if train_end <= start + timedelta(days=1):
        raise ValidationError(
            [
                FieldError(
                    "events",
                    f"{span:.1f} days of data are too few for test {td} d + valid {vd} d + two "
                    f"label-delay gaps of {label_delay} and some training",
                )
            ]
        )
    return Periods(
        train=(start, train_end),
        valid=(valid_start, valid_end),
        test=(test_start, end),
        label_delay=label_delay,
    )


def data_fingerprint(table: pa.Table) -> str:
    """sha256 of the transaction ids, times and labels a model was trained and tested on."""
    h = hashlib.sha256()
    ids = table.column("transaction_id").cast(pa.string()).to_pylist()
    h.update("\x1f".join(str(i) for i in ids).encode())
    h.update(_as_utc_ns(table.column("occurred_at")).tobytes())
    h.update(_labels(table).tobytes())
    return h.hexdigest()


def _as_utc_ns(col: pa.ChunkedArray) -> NDArray[np.int64]:
    arr = col.cast(pa.timestamp("ns", tz="UTC")).to_numpy()
    return np.asarray(arr.astype("datetime64[ns]").astype(np.int64))


def _ns(dt: datetime) -> int:
    return round(dt.timestamp() * 1e9)


@dataclass
class Fitted:
    booster: Any
    calibration: Calibration
    best_iteration: int
    valid_raw: NDArray[np.float64]


def fit_lightgbm(
    x_train: NDArray[np.float64],
    y_train: NDArray[Any],
    x_valid: NDArray[np.float64],
    y_valid: NDArray[Any],
    *,
    feature_names: tuple[str, ...] | list[str],
    params: dict[str, Any] | None = None,
    class_weight: str | float = "sqrt",
    max_rounds: int = MAX_ROUNDS,
) -> Fitted:
    """LightGBM with class weighting, early stopping on validation AP, Platt calibration.

    ``class_weight``: ``"balanced"`` (negatives/positives), ``"sqrt"`` (its square root — less
    distortion of the probability scale, usually the better AP) or a number for ``scale_pos_weight``.
    """
    import lightgbm as lgb

    pos = max(int(np.sum(y_train)), 1)
    neg = max(len(y_train) - pos, 1)
    if class_weight == "balanced":
        spw = neg / pos
    elif class_weight == "sqrt":
        spw = math.sqrt(neg / pos)
    else:
        spw = float(class_weight)
    p = {**DEFAULT_PARAMS, **(params or {}), "scale_pos_weight": spw, "metric": "average_precision"}
    names = list(feature_names)
    dtrain = lgb.Dataset(x_train, label=y_train, feature_name=names, free_raw_data=True)
    dvalid = lgb.Dataset(x_valid, label=y_valid, reference=dtrain, feature_name=names)
    booster = lgb.train(
        p,
        dtrain,
        num_boost_round=max_rounds,
        valid_sets=[dvalid],
        valid_names=["valid"],
        callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)],
    )
    best = int(booster.best_iteration or booster.current_iteration())
    # keep only the trees up to the best validation round
    booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
    valid_raw = np.asarray(booster.predict(x_valid, raw_score=True), dtype=np.float64)
    return Fitted(booster, Calibration.fit(valid_raw, y_valid), best, valid_raw)


@dataclass
class TrainResult:
    booster: Any
    calibration: Calibration
    policy: Policy
    periods: Periods
    metrics: dict[str, Any]
    meta: dict[str, Any]
    timer: StageTimer
    test_scores: NDArray[np.float64] = field(repr=False)
    test_table: pa.Table = field(repr=False)


def _matrix(table: pa.Table, names: tuple[str, ...]) -> NDArray[np.float64]:
    x = np.empty((table.num_rows, len(names)), dtype=np.float64)
    for j, n in enumerate(names):
        x[:, j] = table.column(n).to_numpy(zero_copy_only=False)
    return x


def _labels(table: pa.Table) -> NDArray[np.int8]:
    lab = table.column("label").to_numpy(zero_copy_only=False)
    return np.nan_to_num(np.asarray(lab, dtype=np.float64), nan=0.0).astype(np.int8)


def _days(table: pa.Table) -> NDArray[Any]:
    return np.asarray(_as_utc_ns(table.column("occurred_at")) // (86400 * 10**9))


def train_from_features(
    features: pa.Table,
    feature_names: tuple[str, ...],
    *,
    label_delay: timedelta = timedelta(days=7),
    test_days: float | None = None,
    valid_days: float | None = None,
    params: dict[str, Any] | None = None,
    class_weight: str | float = "sqrt",
    policy_method: str = "precision",
    policy_params: dict[str, Any] | None = None,
    segments: Callable[[pa.Table], dict[str, list[str | None]]] | None = None,
    timer: StageTimer | None = None,
) -> TrainResult:
    """Train, calibrate, fit the policy and evaluate on a feature table (see module doc)."""
    timer = timer or StageTimer()
    missing = [
        n
        for n in ("transaction_id", "occurred_at", "label", *feature_names)
        if n not in features.column_names
    ]
    if missing:
        raise ValidationError(
            [FieldError(m, "column missing from the feature table") for m in missing]
        )
    with timer.stage("split"):
        ts = _as_utc_ns(features.column("occurred_at"))
        order = np.argsort(ts, kind="stable")
        features = features.take(pa.array(order))
        ts = ts[order]
        from datetime import UTC

        start = datetime.fromtimestamp(ts[0] / 1e9, tz=UTC)
        end = datetime.fromtimestamp(ts[-1] / 1e9, tz=UTC) + timedelta(microseconds=1)
        periods = plan_periods(
            start, end, label_delay=label_delay, test_days=test_days, valid_days=valid_days
        )

        def part(rng: tuple[datetime, datetime]) -> pa.Table:
            lo, hi = np.searchsorted(ts, [_ns(rng[0]), _ns(rng[1])])
            return features.slice(int(lo), int(hi - lo))

        train_t, valid_t, test_t = part(periods.train), part(periods.valid), part(periods.test)
        for name, t in (("train", train_t), ("valid", valid_t), ("test", test_t)):
            if t.num_rows == 0 or int(_labels(t).sum()) == 0:
                raise ValidationError(
                    [
                        FieldError(
                            "events", f"the {name} period {getattr(periods, name)} has no fraud"
                        )
                    ]
                )
    with timer.stage("matrices"):
        x_tr, y_tr = _matrix(train_t, feature_names), _labels(train_t)
        x_va, y_va = _matrix(valid_t, feature_names), _labels(valid_t)
        x_te, y_te = _matrix(test_t, feature_names), _labels(test_t)
    with timer.stage("lightgbm"):
        fitted = fit_lightgbm(
            x_tr, y_tr, x_va, y_va, feature_names=feature_names, params=params,
            class_weight=class_weight,
        )  # fmt: skip
    with timer.stage("policy"):
        valid_p = fitted.calibration.apply(fitted.valid_raw)
        seg = segments(valid_t) if segments else {}
        policy = fit_policy(
            valid_p,
            y_va,
            amounts=valid_t.column("amount_usd").to_numpy(zero_copy_only=False),
            days=_days(valid_t),
            jurisdictions=seg.get("jurisdiction"),
            types=seg.get("type"),
            method=policy_method,
            **(policy_params or {}),
        )
    with timer.stage("evaluate"):
        test_p = fitted.calibration.apply(
            np.asarray(fitted.booster.predict(x_te, raw_score=True), dtype=np.float64)
        )
        metrics = evaluate_scores(
            scores=test_p,
            labels=y_te,
            amounts=test_t.column("amount_usd").to_numpy(zero_copy_only=False),
            days=_days(test_t),
            entities=np.asarray(test_t.column("sender_account_id").to_pylist(), dtype=object),
            thresholds=[("review", policy.default.review), ("reject", policy.default.reject)],
        )
        metrics["brier_test"] = float(np.mean((test_p - y_te) ** 2))
        metrics["best_iteration"] = fitted.best_iteration
        metrics["periods"] = periods.to_dict()
    with timer.stage("fingerprint"):
        fp = data_fingerprint(features)
    meta = {
        "feature_names": list(feature_names),
        "data_fingerprint": fp,
        "rows": {"train": train_t.num_rows, "valid": valid_t.num_rows, "test": test_t.num_rows},
        "periods": periods.to_dict(),
        "params": {**DEFAULT_PARAMS, **(params or {})},
        "class_weight": class_weight,
        "best_iteration": fitted.best_iteration,
    }
    return TrainResult(
        booster=fitted.booster,
        calibration=fitted.calibration,
        policy=policy,
        periods=periods,
        metrics=metrics,
        meta=meta,
        timer=timer,
        test_scores=test_p,
        test_table=test_t,
    )
