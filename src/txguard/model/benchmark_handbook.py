"""``txguard benchmark handbook``: the handbook's chapter-5 protocol with txguard's model.

Protocol (Le Borgne et al., *Reproducible Machine Learning for Credit Card Fraud Detection —
Practical Handbook*, ch. 5 "Model selection"), reproduced on the raw generator output:

- prequential folds of one week: a fold trains on transactions before ``start + 7 d``, leaves a
  7-day *delay period* (labels not yet known), and assesses on the following 7 days;
- 4 **test folds** whose training weeks start on 2018-08-15, -08, -01 and 07-25 (assessment
  weeks from 2018-08-29 back to 08-08), 4 **validation folds** two weeks earlier (training weeks
  from 2018-07-11 back, assessment weeks from 07-25 back to 07-04: all before any test week);
- a customer with a fraud known before an assessment day (in the fold's training week or the delay
  days up to 8 days before) is removed from that day's assessment, as the book's
  ``get_train_test_set`` does; CP@100 then also removes cards detected on earlier days;
- hyper-parameters — here the training window length, the leaf count and the number of boosting
  rounds (early stopping on each validation fold) — are chosen on the validation folds only, by
  mean average precision; test folds are scored once with the chosen ones;
- the reported figure is the mean over the 4 test folds.

The one deliberate difference: the book trains each fold on a single week; the training window is
one of our searched parameters (chosen on validation), so a fold may train on more history — all of
it older than the fold's delay period, so no label from the future is used.

An Isolation Forest score (fitted per fold on the training rows, no labels) joins as a feature:
``benchmarks/bench_train_anomaly.py`` showed it raising average precision on all four validation
folds (mean +0.007); ``--no-anomaly`` turns it off.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from txguard.domain.errors import FieldError, ValidationError
from txguard.model.evaluate import auc_roc, average_precision, card_precision_at_k
from txguard.model.train import StageTimer, fit_lightgbm

if TYPE_CHECKING:
    from txguard.features.spec import FeatureSpec


RAW_COLUMNS = (
    "TRANSACTION_ID",
    "TX_DATETIME",
    "CUSTOMER_ID",
    "TERMINAL_ID",
    "TX_AMOUNT",
    "TX_TIME_SECONDS",
    "TX_TIME_DAYS",
    "TX_FRAUD",
    "TX_FRAUD_SCENARIO",
)
BOOK = {
    "random_forest": {"auc_roc": 0.870, "average_precision": 0.678, "cp_at_100": 0.299},
    "xgboost": {"auc_roc": 0.869, "average_precision": 0.687, "cp_at_100": 0.303},
    "balanced_bagging": {"auc_roc": 0.879, "average_precision": 0.680, "cp_at_100": 0.305},
}
DAY0 = date(2018, 4, 1)  # TX_TIME_DAYS 0 in the handbook's data
FIRST_TEST_TRAINING = date(2018, 8, 15)
FIRST_VALID_TRAINING = date(2018, 7, 11)
DELTA = 7  # days: training week, delay period, assessment week
N_FOLDS = 4
DEFAULT_GRID: tuple[dict[str, Any], ...] = (
    {"train_days": 14, "num_leaves": 31},
    {"train_days": 28, "num_leaves": 31},
    {"train_days": 28, "num_leaves": 63},
)
FAST_PARAMS = {"learning_rate": 0.05, "num_threads": 1, "min_data_in_leaf": 100}


@dataclass(frozen=True, slots=True)
class Fold:
    train_start: int  # TX_TIME_DAYS of the fold's (book) training week start
    kind: str  # "valid" | "test"

    @property
    def assess(self) -> tuple[int, int]:
        s = self.train_start + 2 * DELTA
        return s, s + DELTA

    def label(self) -> dict[str, str]:
        a, b = self.assess
        return {
            "kind": self.kind,
            "train_week_start": (DAY0 + timedelta(days=self.train_start)).isoformat(),
            "assess": f"{DAY0 + timedelta(days=a)}..{DAY0 + timedelta(days=b - 1)}",
        }


def folds(kind: str) -> list[Fold]:
    first = FIRST_TEST_TRAINING if kind == "test" else FIRST_VALID_TRAINING
    start = (first - DAY0).days
    return [Fold(start - i * DELTA, kind) for i in range(N_FOLDS)]


SPEC_PATH = Path(__file__).with_name("handbook_spec.yaml")
LABEL_DELAY = timedelta(days=DELTA)  # the book's delay period: a label is known a week later


@dataclass
class HandbookData:
    day: NDArray[np.int64]
    customer: NDArray[np.int64]
    fraud: NDArray[np.int8]
    x: NDArray[np.float64]
    names: tuple[str, ...]


def load_spec(path: Path | None = None) -> FeatureSpec:
    """The benchmark's feature spec (``handbook_spec.yaml`` beside this module by default)."""
    from txguard.features.spec import FeatureSpec

    return FeatureSpec.from_yaml(path or SPEC_PATH)


def from_features(table: pa.Table, names: tuple[str, ...]) -> HandbookData:
    """The protocol's arrays from a ``build_features`` table (any row order)."""
    import pyarrow.compute as pc

    us = table.column("occurred_at").cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    day0_us = (DAY0 - date(1970, 1, 1)).days * 86_400_000_000
    day = (us.to_numpy() - day0_us) // 86_400_000_000  # TX_TIME_DAYS of the raw file
    customer = pc.cast(table.column("sender_account_id"), pa.int64()).to_numpy()
    x = np.column_stack(
        [table.column(n).to_numpy(zero_copy_only=False).astype(np.float64) for n in names]
    )
    return HandbookData(
        day=np.asarray(day, dtype=np.int64),
        customer=np.asarray(customer, dtype=np.int64),
        fraud=table.column("label").to_numpy().astype(np.int8),
        x=x,
        names=names,
    )


def prepare(events: pa.Table, timer: StageTimer, spec: FeatureSpec | None = None) -> HandbookData:
    """Build the spec's features for canonical handbook events (``import_handbook`` with the
    7-day label delay) with the engine's offline path, ``features.replay.build_features`` — the
    values ``FeatureEngine`` computes online."""
    from txguard.features.replay import build_features

    spec = spec or load_spec()
    with timer.stage("features"):
        table = build_features(events, spec)
    return from_features(table, tuple(spec.names))


def assessment_rows(d: HandbookData, fold: Fold) -> NDArray[np.int64]:
    """Rows assessed in a fold: its week, minus customers with a fraud already known that day."""
    a, b = fold.assess
    rows = np.flatnonzero((d.day >= a) & (d.day < b))
    keep = np.ones(len(rows), dtype=bool)
    for day in range(a, b):
        known_mask = (d.day >= fold.train_start) & (d.day <= day - DELTA - 1) & (d.fraud == 1)
        known = np.unique(d.customer[known_mask])
        m = d.day[rows] == day
        keep[m] = ~np.isin(d.customer[rows[m]], known)
    return rows[keep]


def training_rows(d: HandbookData, fold: Fold, train_days: int) -> NDArray[np.int64]:
    end = fold.train_start + DELTA  # labels of the last training day are known at assessment start
    return np.flatnonzero((d.day >= end - train_days) & (d.day < end))


def _metrics(d: HandbookData, rows: NDArray[np.int64], p: NDArray[np.float64]) -> dict[str, float]:
    y = d.fraud[rows]
    return {
        "auc_roc": auc_roc(p, y),
        "average_precision": average_precision(p, y),
        "cp_at_100": card_precision_at_k(
            days=d.day[rows], entities=d.customer[rows], scores=p, labels=y, k=100
        ),
    }


def _with_anomaly(
    x_tr: NDArray[np.float64], x_te: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Append an Isolation Forest score (fitted on the training rows only, no labels)."""
    from sklearn.ensemble import IsolationForest

    a, b = np.nan_to_num(x_tr, nan=-1.0), np.nan_to_num(x_te, nan=-1.0)
    iso = IsolationForest(n_estimators=100, max_samples=4096, random_state=0, n_jobs=1).fit(a)
    return (
        np.column_stack([x_tr, -iso.score_samples(a)]),
        np.column_stack([x_te, -iso.score_samples(b)]),
    )


def _fit_fold(
    d: HandbookData,
    fold: Fold,
    cfg: dict[str, Any],
    *,
    rounds: int | None,
    anomaly: bool = True,
) -> tuple[dict[str, float], int]:
    tr = training_rows(d, fold, int(cfg["train_days"]))
    te = assessment_rows(d, fold)
    if not d.fraud[tr].any() or not d.fraud[te].any():
        raise ValidationError(
            [
                FieldError(
                    "data",
                    f"no fraud in the {fold.kind} fold assessing {fold.label()['assess']} or its "
                    f"training days; the protocol needs TX_TIME_DAYS 0 = 2018-04-01 and data "
                    f"through 2018-09-04",
                )
            ]
        )
    x_tr, x_te = d.x[tr], d.x[te]
    names = list(d.names)
    if anomaly:
        x_tr, x_te = _with_anomaly(x_tr, x_te)
        names.append("isolation_forest_score")
    params = {**FAST_PARAMS, "num_leaves": int(cfg["num_leaves"])}
    if rounds is None:  # validation fold: early stopping on its own assessment week
        fitted = fit_lightgbm(
            x_tr, d.fraud[tr], x_te, d.fraud[te], feature_names=names, params=params,
            max_rounds=1000,
        )  # fmt: skip
        booster, best = fitted.booster, fitted.best_iteration
    else:
        import lightgbm as lgb

        pos = max(int(d.fraud[tr].sum()), 1)
        from txguard.model.train import DEFAULT_PARAMS

        p = {**DEFAULT_PARAMS, **params, "scale_pos_weight": math.sqrt((len(tr) - pos) / pos)}
        booster = lgb.train(p, lgb.Dataset(x_tr, d.fraud[tr]), num_boost_round=rounds)
        best = rounds
    scores = np.asarray(booster.predict(x_te, raw_score=True), dtype=np.float64)
    return _metrics(d, te, scores), best


def run(
    events: pa.Table,
    *,
    grid: tuple[dict[str, Any], ...] = DEFAULT_GRID,
    anomaly: bool = True,
    timer: StageTimer | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the protocol; returns the JSON-ready result (mean of the test folds + details)."""
    timer = timer or StageTimer()
    say = progress or (lambda _msg: None)
    d = prepare(events, timer)
    say(f"{len(d.day):,} transactions, {len(d.names)} features")
    selection = []
    with timer.stage("model selection"):
        for cfg in grid:
            per = [_fit_fold(d, f, cfg, rounds=None, anomaly=anomaly) for f in folds("valid")]
            ap = float(np.mean([m["average_precision"] for m, _ in per]))
            rounds = int(np.median([r for _, r in per]))
            selection.append({**cfg, "valid_ap": ap, "rounds": rounds})
            say(f"valid {cfg}: AP {ap:.3f}, rounds {rounds}")
    best = max(selection, key=lambda s: s["valid_ap"])
    out_folds = []
    with timer.stage("test folds"):
        for f in folds("test"):
            m, _ = _fit_fold(d, f, best, rounds=int(best["rounds"]), anomaly=anomaly)
            out_folds.append({**f.label(), **m})
            say(f"test {f.label()['assess']}: {m}")
    mean = {
        k: float(np.mean([f[k] for f in out_folds]))
        for k in ("auc_roc", "average_precision", "cp_at_100")
    }
    return {
        **mean,
        "folds": out_folds,
        "chosen": best,
        "selection": selection,
        "features": [*d.names, *(["isolation_forest_score"] if anomaly else [])],
        "book": BOOK,
        "timings_s": dict(timer.stages),
    }
