"""A realistic transaction simulator: people, their habits, and the fraud and laundering
typologies teams actually see, with labels that arrive late or never.

>>> table = simulate(SimConfig(customers=50, days=7, seed=1))
>>> sorted(set(table.column("kind").to_pylist()))
['label', 'transaction']

Everything is drawn column-wise with numpy from independent random streams (one per component,
keyed by name), so the same configuration gives the same table, and files written by
:func:`simulate_to_file` are byte-identical. Ground truth (``typology``, ``incident``) is in
``metadata`` of each fraudulent transaction and of its label, never in a feature column. See
``docs/simulator.md`` for the behaviours, the typologies and the label delays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from txguard.datasets.sim import aml, fraud, legit
from txguard.datasets.sim.assemble import to_table
from txguard.datasets.sim.population import Population, build_population
from txguard.datasets.sim.world import DAY, HOUR, SRC, US, Cols, concat, stream, take
from txguard.domain.errors import FieldError, ValidationError
from txguard.io.events import conform, sort_for_replay, write_events

DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)
MAX_CUSTOMERS = 5_000_000
MAX_DAYS = 3650
MAX_FRAUD_RATE = 0.5

# Share of the fraudulent transactions each typology accounts for (sums to 1).
TYPOLOGY_SHARES: dict[str, float] = {
    "card_testing": 0.22,
    "compromised_merchant": 0.16,
    "account_takeover": 0.15,
    "mule_cashout": 0.15,
    "structuring": 0.12,
    "bust_out": 0.10,
    "first_party": 0.10,
}
_GENERATORS: dict[str, Callable[[Population, np.random.Generator, int], Cols]] = {
    "account_takeover": fraud.account_takeover,
    "card_testing": fraud.card_testing,
    "compromised_merchant": fraud.compromised_merchant,
    "structuring": aml.structuring,
    "mule_cashout": aml.mule_cashout,
    "bust_out": fraud.bust_out,
    "first_party": fraud.first_party,
}
MEAN_SIZE = fraud.MEAN_SIZE | aml.MEAN_SIZE
CLEARED_SHARE = 0.02  # of legitimate payments over 250 USD, reviewed and cleared by an analyst


@dataclass(frozen=True, slots=True)
class SimConfig:
    """What to simulate. ``fraud_rate`` is the share of transactions that are fraudulent."""

    customers: int = 2000
    days: int = 30
    seed: int = 0
    fraud_rate: float = 0.01
    start: datetime = field(default=DEFAULT_START)

    def __post_init__(self) -> None:
        errors = []
        if (
            isinstance(self.customers, bool)
            or not isinstance(self.customers, int)
            or not 1 <= self.customers <= MAX_CUSTOMERS
        ):
            errors.append(
                FieldError(
                    "customers", f"expected an integer 1..{MAX_CUSTOMERS}, got {self.customers!r}"
                )
            )
        if (
            isinstance(self.days, bool)
            or not isinstance(self.days, int)
            or not 1 <= self.days <= MAX_DAYS
        ):
            errors.append(
                FieldError("days", f"expected an integer 1..{MAX_DAYS}, got {self.days!r}")
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            errors.append(FieldError("seed", f"expected a non-negative integer, got {self.seed!r}"))
        if (
            not isinstance(self.fraud_rate, int | float)
            or not 0.0 <= self.fraud_rate <= MAX_FRAUD_RATE
        ):
            errors.append(
                FieldError(
                    "fraud_rate", f"expected a share 0..{MAX_FRAUD_RATE}, got {self.fraud_rate!r}"
                )
            )
        if self.start.tzinfo is None:
            errors.append(FieldError("start", "needs a time zone"))
        if errors:
            raise ValidationError(errors, "invalid simulation settings")


def _incidents(cfg: SimConfig, legit_count: int) -> dict[str, int]:
    """Incidents per typology so that fraud makes up ``fraud_rate`` of all transactions."""
    if cfg.fraud_rate <= 0:
        return dict.fromkeys(TYPOLOGY_SHARES, 0)
    target = legit_count * cfg.fraud_rate / (1.0 - cfg.fraud_rate)
    return {
        name: max(1, round(target * share / MEAN_SIZE[name]))
        for name, share in TYPOLOGY_SHARES.items()
    }


def _cleared(cols: Cols, seed: int) -> Cols:
    """A few legitimate payments are reviewed by an analyst and confirmed genuine."""
    rng = stream(seed, "labels.cleared")
    n = len(cols["t"])
    pick = (cols["typology"] < 0) & (cols["usd"] > 250) & (rng.random(n) < CLEARED_SHARE)
    cols["labelled"] |= pick
    delay = (rng.uniform(4, 240, n) * HOUR).astype(np.int64)
    cols["label_t"] = np.where(pick, cols["t"] + delay, cols["label_t"])
    cols["label_src"] = np.where(pick, SRC["analyst"], cols["label_src"]).astype(np.int8)
    return cols


def simulate_columns(cfg: SimConfig) -> tuple[Population, Cols]:
    """The numeric columns before assembly (used by tests that check behaviour per customer)."""
    start = int(cfg.start.astimezone(UTC).timestamp() * US)
    pop = build_population(
        customers=cfg.customers,
        days=cfg.days,
        seed=cfg.seed,
        start=start,
        first_weekday=cfg.start.astimezone(UTC).weekday(),
    )
    people = legit.legitimate(pop, cfg.seed)
    # habits are drawn in local days; keep what falls inside the window in UTC
    inside = (people["t"] >= start) & (people["t"] < start + cfg.days * DAY)
    parts = [take(people, np.flatnonzero(inside))]
    plan = _incidents(cfg, int(inside.sum()))
    for name in TYPOLOGY_SHARES:  # fixed order: account numbers are handed out in turn
        parts.append(_GENERATORS[name](pop, stream(cfg.seed, f"typology.{name}"), plan[name]))
    cols = _cleared(concat(parts), cfg.seed)
    return pop, cols


def simulate(cfg: SimConfig) -> pa.Table:
    """The simulated events (transactions and labels) as an EVENT_SCHEMA table in replay order."""
    pop, cols = simulate_columns(cfg)
    return sort_for_replay(conform(to_table(cols, pop.book)))


def simulate_to_file(path: str | Path, cfg: SimConfig) -> pa.Table:
    """Simulate and write Parquet (byte-identical for the same configuration); returns the table.

    Raises ValidationError naming ``out`` when the file cannot be written."""
    p = Path(path)
    _check_writable(p)
    table = simulate(cfg)
    try:
        write_events(p, table, sort=False)
    except OSError as e:
        raise ValidationError([FieldError("out", f"cannot write {p}: {e}")]) from None
    return table


def _check_writable(p: Path) -> None:
    """Fail before spending time on generation when the output cannot be written."""
    if p.is_dir():
        raise ValidationError([FieldError("out", f"{p} is a directory")])
    parent = p.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        probe = parent / f".{p.name}.probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ValidationError([FieldError("out", f"cannot write {p}: {e.strerror or e}")]) from None
