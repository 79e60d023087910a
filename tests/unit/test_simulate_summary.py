"""``summarize`` on a table whose answer is known by hand, and the rich rendering of it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from rich.console import Console

from txguard.datasets.simulate import SimConfig, simulate
from txguard.datasets.summary import UNKNOWN_TYPOLOGY, render_summary, summarize
from txguard.domain.events import (
    LabelEvent,
    LabelSource,
    Sender,
    TransactionEvent,
    TransactionType,
)
from txguard.io.events import table_from_events

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def _tx(i: int, kind: TransactionType, usd: float, typology: str | None = None) -> TransactionEvent:
    return TransactionEvent(
        transaction_id=f"t{i}",
        occurred_at=T0 + timedelta(hours=i),
        amount=usd,
        currency="USD",
        amount_usd=usd,
        type=kind,
        sender=Sender(account_id=f"a{i % 3}"),
        metadata={"typology": typology, "incident": 1} if typology else {},
    )


def _label(i: int, fraud: bool, after_hours: float, source: LabelSource) -> LabelEvent:
    known = T0 + timedelta(hours=i + after_hours)
    return LabelEvent(f"t{i}", fraud, known, source, {})


@pytest.fixture
def hand_made():
    events = [
        _tx(0, TransactionType.CARD, 10.0),
        _tx(1, TransactionType.CARD, 20.0, "card_testing"),
        _tx(2, TransactionType.TRANSFER, 500.0, "account_takeover"),
        _tx(3, TransactionType.TRANSFER, 70.0),  # fraud known from its label only
        _tx(4, TransactionType.CARD, 5.0, "card_testing"),  # never labelled
        _tx(5, TransactionType.SALARY, 3000.0),
        _label(1, True, 48.0, LabelSource.CHARGEBACK),
        _label(2, True, 10.0, LabelSource.CUSTOMER_REPORT),
        _label(3, True, 100.0, LabelSource.ANALYST),
        _label(0, False, 5.0, LabelSource.ANALYST),
    ]
    return table_from_events(events)


def test_summary_of_a_hand_made_table(hand_made):
    s = summarize(hand_made)
    assert s["transactions"] == 6
    assert s["labels"] == 4
    assert (s["fraud_labels"], s["legit_labels"]) == (3, 1)
    assert s["senders"] == 3
    assert s["by_type"] == {"card": 3, "transfer": 2, "salary": 1}
    assert s["fraud_transactions"] == 4
    assert s["fraud_rate"] == pytest.approx(4 / 6)
    assert s["never_labelled_share"] == pytest.approx(1 / 4)
    assert s["label_delay_hours"]["median"] == pytest.approx(48.0)
    assert s["labels_by_source"] == {"analyst": 2, "chargeback": 1, "customer_report": 1}
    ct = s["by_typology"]["card_testing"]
    assert ct["transactions"] == 2
    assert ct["labelled_share"] == pytest.approx(0.5)
    assert ct["amount_usd"] == pytest.approx(25.0)
    assert s["by_typology"][UNKNOWN_TYPOLOGY]["transactions"] == 1
    assert s["by_typology"]["account_takeover"]["label_delay_hours"]["median"] == pytest.approx(10)
    assert s["amount_usd"] == pytest.approx(3605.0)


def test_empty_table_summarises_to_zeros(hand_made):
    s = summarize(hand_made.slice(0, 0))
    assert s["transactions"] == 0
    assert s["fraud_rate"] == 0.0
    assert s["label_delay_hours"] == {"median": None, "p90": None}


def test_summary_of_a_simulation_agrees_with_its_ground_truth():
    table = simulate(SimConfig(customers=300, days=20, seed=9, fraud_rate=0.02))
    s = summarize(table)
    tagged = sum(v["transactions"] for v in s["by_typology"].values())
    assert tagged == s["fraud_transactions"]
    assert UNKNOWN_TYPOLOGY not in s["by_typology"]  # every fraud label names tagged fraud
    assert s["transactions"] + s["labels"] == table.num_rows
    assert 0 < s["label_delay_hours"]["median"] < s["label_delay_hours"]["p90"]


def test_render_prints_the_tables(hand_made):
    console = Console(record=True, width=140)
    render_summary(summarize(hand_made), console)
    text = console.export_text()
    for needle in (
        "fraud rate",
        "66.667%",
        "card_testing",
        "account_takeover",
        "chargeback",
        "Transactions by type",
        "2.0 d",
    ):
        assert needle in text, needle
