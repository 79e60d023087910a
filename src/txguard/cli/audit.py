"""``txguard audit``: verify the decision log's hash chain, export it as JSONL."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

DB_HELP = (
    "audit store: sqlite:///path, a file path or postgresql://... "
    "(default: TXGUARD_DATABASE_URL, else $TXGUARD_HOME/txguard.sqlite3)"
)


def _target(db: str | None) -> str:
    if db:
        return db
    from txguard.cli._common import settings

    s = settings()
    return s.database_url or str(s.sqlite_path)


def _timestamp(name: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    from txguard.domain.errors import FieldError, ValidationError
    from txguard.domain.events import parse_timestamp

    try:
        return parse_timestamp(value)
    except ValueError as e:
        raise ValidationError([FieldError(name, str(e))]) from None


def _anchor(value: str | None) -> tuple[int, str] | None:
    if value is None:
        return None
    import re

    from txguard.domain.errors import FieldError, ValidationError

    m = re.fullmatch(r"(\d+):([0-9a-f]{64})", value.strip())
    if m is None or int(m.group(1)) < 1:
        raise ValidationError([FieldError("anchor", "expected SEQ:HASH (64 hex digits)")])
    return int(m.group(1)), m.group(2)


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="The append-only, hash-chained decision log.", no_args_is_help=True)
    app.add_typer(group, name="audit")

    @group.command("verify")
    def verify(
        db: Annotated[str | None, typer.Option(help=DB_HELP)] = None,
        anchor: Annotated[
            str | None,
            typer.Option(help="SEQ:HASH printed by an earlier verify, kept outside the database"),
        ] = None,
    ) -> None:
        """Recompute the hash chain; exit 1 naming the first bad record if it does not verify."""
        from txguard.audit.log import open_audit_log

        anchored = _anchor(anchor)

        target = _target(db)
        if "://" not in target and not Path(target).exists():
            from txguard.domain.errors import NotFoundError

            raise NotFoundError(f"no audit log at {target}")
        log = open_audit_log(target)
        try:
            report = log.verify(anchor=anchored)
        finally:
            log.close()
        if not report.ok:
            typer.echo(f"error: {report.summary()}", err=True)
            raise typer.Exit(1)
        typer.echo(report.summary())

    @group.command("export")
    def export(
        *,
        out: Annotated[Path, typer.Option(help="JSONL file to write ('-' for stdout)")],
        db: Annotated[str | None, typer.Option(help=DB_HELP)] = None,
        since: Annotated[str | None, typer.Option(help="decided at or after (RFC 3339)")] = None,
        until: Annotated[str | None, typer.Option(help="decided before (RFC 3339)")] = None,
        action: Annotated[str | None, typer.Option(help="APPROVE, REVIEW or REJECT")] = None,
        entity: Annotated[str | None, typer.Option(help="sender account id")] = None,
        model_version: Annotated[str | None, typer.Option(help="model version")] = None,
    ) -> None:
        """Write decisions (with their chain fields) as JSON lines, in seq order."""
        import sys

        from txguard.audit.log import open_audit_log
        from txguard.domain.errors import FieldError, ValidationError

        if action is not None and action not in ("APPROVE", "REVIEW", "REJECT"):
            raise ValidationError(
                [FieldError("action", f"expected APPROVE, REVIEW or REJECT, got {action!r}")]
            )
        filters = {
            "since": _timestamp("since", since),
            "until": _timestamp("until", until),
            "action": action,
            "entity": entity,
            "model_version": model_version,
        }
        log = open_audit_log(_target(db))
        try:
            if str(out) == "-":
                n = log.export(sys.stdout, **filters)
            else:
                tmp = out.with_name(out.name + ".partial")
                with tmp.open("w", encoding="utf-8") as fp:
                    n = log.export(fp, **filters)
                tmp.replace(out)  # a failed export never leaves a truncated file behind
        finally:
            log.close()
        typer.echo(f"exported {n} records" + ("" if str(out) == "-" else f" to {out}"), err=True)
