"""Reading and writing canonical events as Parquet and JSONL with one explicit Arrow schema."""

from txguard.io.events import (
    EVENT_SCHEMA,
    KIND_LABEL,
    KIND_TRANSACTION,
    events_from_table,
    iter_events,
    read_events,
    read_jsonl,
    table_from_events,
    write_events,
    write_jsonl,
)

__all__ = [
    "EVENT_SCHEMA",
    "KIND_LABEL",
    "KIND_TRANSACTION",
    "events_from_table",
    "iter_events",
    "read_events",
    "read_jsonl",
    "table_from_events",
    "write_events",
    "write_jsonl",
]
