"""Model card: one self-contained HTML page (plots embedded as base64 PNG, readable offline).

Plots: precision-recall and ROC curves, score distribution by class, calibration (reliability),
feature importance (gain) and performance over time (average precision and recall at the review
threshold per day) — what a reviewer needs to decide whether a candidate may be promoted.
"""

from __future__ import annotations

import base64
import html
import io
import json
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from txguard.model.evaluate import average_precision

if TYPE_CHECKING:
    from txguard.model.policy import Policy
    from txguard.model.train import TrainResult


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _plots(
    scores: NDArray[np.float64],
    labels: NDArray[Any],
    days: NDArray[Any],
    importance: dict[str, float],
    review: float,
) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    y = np.asarray(labels).astype(int)
    out: dict[str, str] = {}
    both = y.min(initial=0) != y.max(initial=0)

    fig, ax = plt.subplots(figsize=(5, 4))
    if both:
        p, r, _ = precision_recall_curve(y, scores)
        ax.plot(r, p)
    ax.set(
        xlabel="recall", ylabel="precision", title="Precision-recall", xlim=(0, 1), ylim=(0, 1.02)
    )
    out["Precision-recall curve"] = _png(fig)

    fig, ax = plt.subplots(figsize=(5, 4))
    if both:
        f, t, _ = roc_curve(y, scores)
        ax.plot(f, t)
    ax.plot([0, 1], [0, 1], ls=":", c="grey")
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate", title="ROC")
    out["ROC curve"] = _png(fig)

    fig, ax = plt.subplots(figsize=(5, 4))
    bins = [float(b) for b in np.linspace(0, 1, 41)]
    ax.hist(scores[y == 0], bins=bins, alpha=0.6, label="legitimate", density=True)
    ax.hist(scores[y == 1], bins=bins, alpha=0.6, label="fraud", density=True)
    ax.axvline(review, c="k", ls="--", lw=1, label="review threshold")
    ax.set(yscale="log", xlabel="calibrated score", title="Score distribution by class")
    ax.legend()
    out["Score distribution"] = _png(fig)

    fig, ax = plt.subplots(figsize=(5, 4))
    order = np.argsort(scores)
    chunks = [c for c in np.array_split(order, 20) if len(c)]
    ax.plot([scores[c].mean() for c in chunks], [y[c].mean() for c in chunks], marker="o")
    ax.plot([0, 1], [0, 1], ls=":", c="grey")
    ax.set(xscale="symlog", yscale="symlog", xlabel="mean predicted", ylabel="observed fraud rate")
    ax.set_xscale("symlog", linthresh=1e-3)
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_title("Calibration (score quantile bins)")
    out["Calibration"] = _png(fig)

    fig, ax = plt.subplots(figsize=(6, max(3, 0.25 * min(len(importance), 25))))
    top = sorted(importance.items(), key=lambda kv: kv[1])[-25:]
    ax.barh([k for k, _ in top], [v for _, v in top])
    ax.set(xlabel="total gain", title="Feature importance")
    out["Feature importance"] = _png(fig)

    fig, ax = plt.subplots(figsize=(6, 3.5))
    uniq = np.unique(days)
    aps, recs = [], []
    for d in uniq:
        m = days == d
        aps.append(average_precision(scores[m], y[m]) if y[m].any() else np.nan)
        recs.append(float((scores[m & (y == 1)] >= review).mean()) if y[m].any() else np.nan)
    ax.plot(range(len(uniq)), aps, marker=".", label="average precision")
    ax.plot(range(len(uniq)), recs, marker=".", label="recall at review threshold")
    ax.set(xlabel="test day", ylim=(0, 1.02), title="Performance over time")
    ax.legend()
    out["Performance over time"] = _png(fig)
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, dict | list):
        return f"<pre>{html.escape(json.dumps(v, indent=1, default=str))}</pre>"
    return html.escape(str(v))


def render_card(
    *,
    title: str,
    scores: NDArray[np.float64],
    labels: NDArray[Any],
    days: NDArray[Any],
    importance: dict[str, float],
    policy: Policy,
    metrics: dict[str, Any],
    meta: dict[str, Any] | None = None,
) -> str:
    """The card as one HTML string."""
    plots = _plots(
        np.asarray(scores, dtype=np.float64), labels, np.asarray(days), importance,
        policy.default.review,
    )  # fmt: skip
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{_fmt(v)}</td></tr>"
        for k, v in metrics.items()
        if k != "periods"
    )
    meta_rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in (meta or {}).items()
    )
    imgs = "".join(
        f'<figure><img alt="{html.escape(k)}" src="data:image/png;base64,{v}">'
        f"<figcaption>{html.escape(k)}</figcaption></figure>"
        for k, v in plots.items()
    )
    pol = html.escape(json.dumps(policy.to_dict(), indent=1))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}}
table{{border-collapse:collapse}}th,td{{border:1px solid #ccc;padding:3px 8px;text-align:left;
vertical-align:top}}figure{{display:inline-block;margin:8px}}pre{{margin:0;font-size:12px}}</style>
</head><body>
<h1>{html.escape(title)}</h1>
<p>Metrics on the test period, which played no part in training, early stopping, calibration or
threshold choice. Scores are calibrated probabilities.</p>
<h2>Test metrics</h2><table>{rows}</table>
<h2>Plots</h2>{imgs}
<h2>Policy (policy version {html.escape(policy.version)})</h2><pre>{pol}</pre>
<h2>Training</h2><table>{meta_rows}</table>
</body></html>
"""


def booster_importance(booster: Any) -> dict[str, float]:
    names = booster.feature_name()
    gains = booster.feature_importance(importance_type="gain")
    return {str(n): float(g) for n, g in zip(names, gains, strict=True)}


def card_from_result(result: TrainResult, *, title: str) -> str:
    from txguard.model.train import _days, _labels

    t = result.test_table
    return render_card(
        title=title,
        scores=result.test_scores,
        labels=_labels(t),
        days=_days(t),
        importance=booster_importance(result.booster),
        policy=result.policy,
        metrics=result.metrics,
        meta={k: v for k, v in result.meta.items() if k != "feature_names"},
    )
