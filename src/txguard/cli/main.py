"""Entry point: builds the Typer app from every command module of ``txguard.cli``."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import typer

import txguard.cli as _pkg
from txguard.domain.errors import TxguardError


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="txguard",
        help="Real-time transaction risk scoring for fraud and AML teams.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )

    @app.callback()
    def _root() -> None:
        """Real-time transaction risk scoring for fraud and AML teams."""

    for info in sorted(pkgutil.iter_modules(_pkg.__path__), key=lambda m: m.name):
        if info.name in ("main",) or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"txguard.cli.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)
    return app


def main(argv: list[str] | None = None) -> None:
    """Run the CLI. A TxguardError becomes one line on stderr and exit code 2; usage errors
    are reported by Typer (exit code 2)."""
    app = build_app()
    try:
        app(args=argv)
    except TxguardError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
