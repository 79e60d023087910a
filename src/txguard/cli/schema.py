"""``txguard schema``: print the versioned JSON Schema of the canonical events."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("schema")
    def schema(
        kind: Annotated[str, typer.Argument(help="transaction or label")] = "transaction",
        out: Annotated[Path | None, typer.Option(help="write to this file instead")] = None,
    ) -> None:
        """Print the JSON Schema of a canonical event."""
        import orjson

        from txguard.domain.errors import FieldError, ValidationError
        from txguard.domain.schema import label_schema, transaction_schema

        if kind not in ("transaction", "label"):
            raise ValidationError(
                [FieldError("kind", f"expected transaction or label, got {kind!r}")]
            )
        doc = transaction_schema() if kind == "transaction" else label_schema()
        text = orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
        if out:
            out.write_text(text + "\n")
        else:
            typer.echo(text)
