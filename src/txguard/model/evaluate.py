"""Honest evaluation metrics for fraud scores.

Every metric takes plain numpy arrays so the trainer, the handbook benchmark and the backtest
share one implementation. Ranking metrics (AUC ROC, average precision) come from scikit-learn;
the fraud-specific ones are written here against the definitions they reproduce:

- **Card Precision@k** (Le Borgne et al., *Reproducible Machine Learning for Credit Card Fraud
  Detection — Practical Handbook*, ch. 4.2): per day, each entity (card / customer) gets its
  highest score of the day; the k best entities are the day's alerts; precision is the share of
  them that had a fraud that day, divided by k. Entities found compromised on an earlier day of the
  period are removed from later days (an investigator would have blocked the card). Mean over days.
- **Recall at a false-positive rate**: the recall at the highest threshold whose FPR does not
  exceed the budget (the ROC curve's step function read at that FPR).
- **Amount-weighted recall**: the share of fraud *money* caught, which is what losses are made of.

>>> import numpy as np
>>> card_precision_at_k(days=np.array([0, 0, 0, 1, 1]), entities=np.array([1, 2, 3, 1, 2]),
...                     scores=np.array([.9, .8, .1, .9, .7]), labels=np.array([1, 0, 0, 1, 1]),
...                     k=2)
0.5
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from txguard.domain.errors import FieldError, ValidationError

FloatArray = NDArray[np.float64]


def _arrays(scores: ArrayLike, labels: ArrayLike) -> tuple[FloatArray, NDArray[np.int8]]:
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(np.int8)
    if s.shape != y.shape or s.ndim != 1:
        raise ValidationError(
            [FieldError("scores", f"shape {s.shape} does not match labels {y.shape}")]
        )
    if np.isnan(s).any():
        raise ValidationError([FieldError("scores", "contains NaN")])
    return s, y


def auc_roc(scores: ArrayLike, labels: ArrayLike) -> float:
    """Area under the ROC curve; NaN when only one class is present."""
    from sklearn.metrics import roc_auc_score

    s, y = _arrays(scores, labels)
    if y.min(initial=0) == y.max(initial=0):
        return float("nan")
    return float(roc_auc_score(y, s))


def average_precision(scores: ArrayLike, labels: ArrayLike) -> float:
    """Average precision (area under the step-wise precision-recall curve)."""
    from sklearn.metrics import average_precision_score

    s, y = _arrays(scores, labels)
    if y.sum() == 0:
        return float("nan")
    return float(average_precision_score(y, s))


def card_precision_at_k_per_day(
    *,
    days: ArrayLike,
    entities: ArrayLike,
    scores: ArrayLike,
    labels: ArrayLike,
    k: int = 100,
    remove_detected: bool = True,
) -> list[tuple[Any, float]]:
    """CP@k for each day, in day order: ``[(day, precision), ...]`` (see the module doc)."""
    if k < 1:
        raise ValidationError([FieldError("k", f"must be >= 1, got {k}")])
    s, y = _arrays(scores, labels)
    d = np.asarray(days)
    e = np.asarray(entities)
    detected: set[Any] = set()
    out: list[tuple[Any, float]] = []
    for day in np.unique(d):
        m = d == day
        de, ds, dy = e[m], s[m], y[m]
        if detected:
            keep = ~np.isin(de, np.fromiter(detected, dtype=de.dtype, count=len(detected)))
            de, ds, dy = de[keep], ds[keep], dy[keep]
        # per entity: highest score and whether any of its transactions that day was fraud
        uniq, inv = np.unique(de, return_inverse=True)
        best = np.full(len(uniq), -np.inf)
        np.maximum.at(best, inv, ds)
        fraud = np.zeros(len(uniq), dtype=np.int8)
        np.maximum.at(fraud, inv, dy)
        # stable order: ties broken by entity id so the figure is reproducible
        order = np.lexsort((uniq, -best))[:k]
        hits = uniq[order][fraud[order] == 1]
        out.append((day.item() if hasattr(day, "item") else day, len(hits) / k))
        if remove_detected:
            detected.update(hits.tolist())
    return out


def card_precision_at_k(
    *,
    days: ArrayLike,
    entities: ArrayLike,
    scores: ArrayLike,
    labels: ArrayLike,
    k: int = 100,
    remove_detected: bool = True,
) -> float:
    """Mean over days of :func:`card_precision_at_k_per_day`; NaN for an empty input."""
    per_day = card_precision_at_k_per_day(
        days=days, entities=entities, scores=scores, labels=labels, k=k,
        remove_detected=remove_detected,
    )  # fmt: skip
    if not per_day:
        return float("nan")
    return float(np.mean([p for _, p in per_day]))


def recall_at_fpr(scores: ArrayLike, labels: ArrayLike, fpr: float) -> float:
    """Recall of the strictest cut-off set whose false-positive rate is at most ``fpr``."""
    from sklearn.metrics import roc_curve

    s, y = _arrays(scores, labels)
    if y.min(initial=0) == y.max(initial=0):
        return float("nan")
    f, t, _ = roc_curve(y, s)
    ok = f <= fpr + 1e-12
    return float(t[ok].max()) if ok.any() else 0.0


def amount_weighted_recall(
    scores: ArrayLike, labels: ArrayLike, amounts: ArrayLike, threshold: float
) -> float:
    """Share of fraud amount whose score is at or above ``threshold``."""
    s, y = _arrays(scores, labels)
    a = np.nan_to_num(np.asarray(amounts, dtype=np.float64), nan=0.0)
    total = float(a[y == 1].sum())
    if total == 0.0:
        return float("nan")
    return float(a[(y == 1) & (s >= threshold)].sum() / total)


@dataclass(frozen=True, slots=True)
class ThresholdReport:
    """What a cut-off does over a period."""

    threshold: float
    alerts: int
    alerts_per_day: float
    precision: float
    recall: float
    amount_recall: float

    def to_dict(self) -> dict[str, float]:
        return {
            "threshold": self.threshold,
            "alerts": self.alerts,
            "alerts_per_day": self.alerts_per_day,
            "precision": self.precision,
            "recall": self.recall,
            "amount_recall": self.amount_recall,
        }


def at_threshold(
    scores: ArrayLike, labels: ArrayLike, amounts: ArrayLike, days: ArrayLike, threshold: float
) -> ThresholdReport:
    """Alerts, alerts per day, precision, recall and amount recall of ``score >= threshold``."""
    s, y = _arrays(scores, labels)
    flagged = s >= threshold
    n_days = max(len(np.unique(np.asarray(days))), 1)
    tp = int((flagged & (y == 1)).sum())
    n = int(flagged.sum())
    pos = int((y == 1).sum())
    return ThresholdReport(
        threshold=float(threshold),
        alerts=n,
        alerts_per_day=n / n_days,
        precision=tp / n if n else float("nan"),
        recall=tp / pos if pos else float("nan"),
        amount_recall=amount_weighted_recall(s, y, amounts, threshold),
    )


def evaluate_scores(
    *,
    scores: ArrayLike,
    labels: ArrayLike,
    amounts: ArrayLike,
    days: ArrayLike,
    entities: ArrayLike,
    thresholds: Sequence[tuple[str, float]] = (),
    k: int = 100,
) -> dict[str, Any]:
    """The full metric set of ``txguard evaluate`` as a JSON-ready dict.

    ``days`` are calendar days (any sortable value), ``entities`` the card / account ids used for
    CP@k, ``thresholds`` named cut-offs such as ``[("review", 0.3), ("reject", 0.8)]``.
    """
    s, y = _arrays(scores, labels)
    out: dict[str, Any] = {
        "n": len(s),
        "n_fraud": int(y.sum()),
        "fraud_rate": float(y.mean()) if len(y) else float("nan"),
        "days": len(np.unique(np.asarray(days))),
        "auc_roc": auc_roc(s, y),
        "average_precision": average_precision(s, y),
        f"cp_at_{k}": card_precision_at_k(days=days, entities=entities, scores=s, labels=y, k=k),
        "recall_at_1pct_fpr": recall_at_fpr(s, y, 0.01),
        "recall_at_5pct_fpr": recall_at_fpr(s, y, 0.05),
        "thresholds": {
            name: at_threshold(s, y, amounts, days, t).to_dict() for name, t in thresholds
        },
    }
    return out
