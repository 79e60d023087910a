"""Helpers shared by command modules."""

from __future__ import annotations

from typing import Annotated

import typer

from txguard.settings import Settings, load_settings

# The simulated population's options, alike wherever a command simulates one (defaults stay with
# each command: the demo has its own seed).
Customers = Annotated[int, typer.Option(help="number of customers to simulate")]
Days = Annotated[int, typer.Option(help="length of the simulated window in days")]
Seed = Annotated[int, typer.Option(help="random seed; same seed, same data")]
FraudRate = Annotated[
    float, typer.Option("--fraud-rate", help="share of transactions that are fraudulent")
]


def settings() -> Settings:
    return load_settings()
