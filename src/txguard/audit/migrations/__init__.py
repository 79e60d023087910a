"""Versioned SQL migrations for the audit stores.

Each dialect has a folder of ``NNNN_name.sql`` files applied in order, once, each in the same
transaction as its row in ``schema_migrations (version, name, applied_at)``. The stores run them
on open under a lock (SQLite's write lock, a PostgreSQL advisory lock) so replicas starting
together do not race. Never edit an applied file: add the next number.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from importlib import resources

from txguard.domain.errors import ConfigurationError

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

SCHEMA_MIGRATIONS_DDL = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    "version integer PRIMARY KEY, name text NOT NULL, applied_at text NOT NULL)"
)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load(dialect: str) -> list[Migration]:
    """The migrations of ``sqlite`` or ``postgres``, in version order."""
    folder = resources.files(__package__).joinpath(dialect)
    out: list[Migration] = []
    for entry in folder.iterdir():
        m = _NAME.match(entry.name)
        if m is None:
            continue
        out.append(Migration(int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    out.sort(key=lambda x: x.version)
    versions = [m.version for m in out]
    if versions != list(range(1, len(out) + 1)):
        raise ConfigurationError(
            f"audit migrations for {dialect} are not numbered 1..n: {versions}"
        )
    return out


def sqlite_statements(sql: str) -> list[str]:
    """Split a script into complete statements (trigger bodies contain semicolons)."""
    out: list[str] = []
    buf = ""
    for line in sql.splitlines(keepends=True):
        if not buf and (not line.strip() or line.lstrip().startswith("--")):
            continue
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip():
        raise ConfigurationError(f"incomplete SQL statement in migration: {buf[:80]!r}")
    return out
