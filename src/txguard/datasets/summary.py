"""What is in an events table: counts per type and typology, the fraud rate, and how late labels
arrive. ``summarize`` returns plain data (JSON-ready, tested); ``render_summary`` prints it as
rich tables (``txguard demo``, ``txguard simulate --summary``).

A transaction counts as fraudulent when its ground truth says so (a simulator's
``metadata.typology``) or a fraud label names it, so imported data sets without ground truth are
summarised from their labels.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from txguard.io.events import KIND_LABEL, KIND_TRANSACTION, conform

_TYPOLOGY = r'"typology"\s*:\s*"(?P<typology>[^"]+)"'
UNKNOWN_TYPOLOGY = "(no ground truth)"


def _counts(arr: pa.Array | pa.ChunkedArray) -> dict[str, int]:
    vc = pc.value_counts(pc.cast(arr, pa.string()))
    pairs = zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True)
    return dict(sorted(((k, int(c)) for k, c in pairs if k is not None), key=lambda kc: -kc[1]))


def _quantiles(hours: np.ndarray) -> dict[str, float | None]:
    if len(hours) == 0:
        return {"median": None, "p90": None}
    return {
        "median": float(np.quantile(hours, 0.5)),
        "p90": float(np.quantile(hours, 0.9)),
    }


def summarize(table: pa.Table) -> dict[str, Any]:
    """Counts, fraud rate and label delays of an events table (any EVENT_SCHEMA table).

    Delays are ``known_at - occurred_at`` of fraud labels, in hours; ``never_labelled_share`` is
    the share of fraudulent transactions no fraud label ever names."""
    table = conform(table)
    kind = pc.cast(table.column("kind"), pa.string())
    tx = table.filter(pc.equal(kind, KIND_TRANSACTION))
    lab = table.filter(pc.equal(kind, KIND_LABEL))
    n_tx = tx.num_rows

    typology = pc.struct_field(pc.extract_regex(tx.column("metadata"), _TYPOLOGY), "typology")
    typology = typology.to_numpy(zero_copy_only=False) if n_tx else np.zeros(0, object)

    tids = tx.column("transaction_id")
    fraud_lab = lab.filter(pc.equal(lab.column("is_fraud"), True))
    at = pc.index_in(fraud_lab.column("transaction_id"), value_set=tids)
    found = pc.is_valid(at)
    idx = pc.filter(at, found).to_numpy(zero_copy_only=False).astype(np.int64)
    known = pc.filter(fraud_lab.column("known_at"), found)
    occurred_us = pc.cast(tx.column("occurred_at"), pa.int64()).to_numpy(zero_copy_only=False)
    known_us = pc.cast(known, pa.int64()).to_numpy(zero_copy_only=False)
    delay_h = (known_us - occurred_us[idx]) / 3.6e9 if len(idx) else np.zeros(0)
    labelled = np.zeros(n_tx, bool)
    labelled[idx] = True

    has_truth = np.array([t is not None for t in typology], bool)
    fraud = has_truth | labelled
    names = np.where(has_truth, typology, UNKNOWN_TYPOLOGY)
    by_typology: dict[str, dict[str, Any]] = {}
    usd = pc.fill_null(tx.column("amount_usd"), 0.0).to_numpy(zero_copy_only=False)
    delay_of_tx = np.full(n_tx, np.nan)
    delay_of_tx[idx] = delay_h
    for name in sorted(set(names[fraud].tolist())):
        sel = fraud & (names == name)
        d = delay_of_tx[sel & labelled]
        by_typology[name] = {
            "transactions": int(sel.sum()),
            "amount_usd": float(usd[sel].sum()),
            "labelled_share": float((sel & labelled).sum() / sel.sum()),
            "label_delay_hours": _quantiles(d),
        }
    by_typology = dict(sorted(by_typology.items(), key=lambda kv: -kv[1]["transactions"]))

    n_fraud = int(fraud.sum())
    occurred = tx.column("occurred_at")
    return {
        "transactions": n_tx,
        "labels": lab.num_rows,
        "fraud_labels": fraud_lab.num_rows,
        "legit_labels": lab.num_rows - fraud_lab.num_rows,
        "senders": int(pc.count_distinct(tx.column("sender_account_id")).as_py()) if n_tx else 0,
        "first": pc.min(occurred).as_py().isoformat() if n_tx else None,
        "last": pc.max(occurred).as_py().isoformat() if n_tx else None,
        "amount_usd": float(usd.sum()),
        "by_type": _counts(tx.column("type")),
        "by_channel": _counts(tx.column("channel")),
        "labels_by_source": _counts(lab.column("label_source")),
        "fraud_transactions": n_fraud,
        "fraud_rate": n_fraud / n_tx if n_tx else 0.0,
        "by_typology": by_typology,
        "label_delay_hours": _quantiles(delay_h),
        "never_labelled_share": float((fraud & ~labelled).sum() / n_fraud) if n_fraud else 0.0,
    }


def _duration(hours: float | None) -> str:
    if hours is None:
        return "-"
    if hours < 48:
        return f"{hours:.1f} h"
    return f"{hours / 24:.1f} d"


def _compact(x: float) -> str:
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    return f"{x / 1e3:.0f}k" if x >= 1e4 else f"{x:,.0f}"


def render_summary(summary: dict[str, Any], console: Any = None) -> None:
    """Print a summary as rich tables (to ``console``, a ``rich.console.Console``)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    s = summary
    over = Table(title="Events", show_header=False)
    over.add_column("what")
    over.add_column("value", justify="right")
    delays = s["label_delay_hours"]
    for k, v in (
        ("transactions", f"{s['transactions']:,}"),
        ("period (UTC)", f"{(s['first'] or '-')[:16]} … {(s['last'] or '-')[:16]}"),
        ("senders", f"{s['senders']:,}"),
        ("volume (USD)", f"{s['amount_usd']:,.0f}"),
        ("fraudulent transactions", f"{s['fraud_transactions']:,}"),
        ("fraud rate", f"{s['fraud_rate']:.3%}"),
        ("labels (fraud / cleared)", f"{s['fraud_labels']:,} / {s['legit_labels']:,}"),
        ("label delay median / p90", f"{_duration(delays['median'])} / {_duration(delays['p90'])}"),
        ("fraud never labelled", f"{s['never_labelled_share']:.1%}"),
    ):
        over.add_row(k, v)
    console.print(over)

    types = Table(title="Transactions by type")
    types.add_column("type")
    types.add_column("count", justify="right")
    types.add_column("share", justify="right")
    for k, v in s["by_type"].items():
        types.add_row(k, f"{v:,}", f"{v / max(s['transactions'], 1):.1%}")
    console.print(types)

    typ = Table(title="Fraud and laundering by typology")
    typ.add_column("typology", no_wrap=True)
    for col in ("tx", "share", "USD", "labelled", "delay p50", "p90"):
        typ.add_column(col, justify="right", no_wrap=True)
    for k, v in s["by_typology"].items():
        d = v["label_delay_hours"]
        typ.add_row(
            k,
            f"{v['transactions']:,}",
            f"{v['transactions'] / max(s['fraud_transactions'], 1):.1%}",
            _compact(v["amount_usd"]),
            f"{v['labelled_share']:.0%}",
            _duration(d["median"]),
            _duration(d["p90"]),
        )
    console.print(typ)

    src = Table(title="Labels by source")
    src.add_column("source")
    src.add_column("count", justify="right")
    for k, v in s["labels_by_source"].items():
        src.add_row(k, f"{v:,}")
    console.print(src)
