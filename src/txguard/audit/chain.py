"""The hash chain: how a record's hash is computed and how a stored chain is verified.

``hash(n) = sha256("txguard-audit-v1\\n" + str(n) + "\\n" + prev_hash + "\\n" + body)`` where
``body`` is the record's canonical bytes (``records.canonical_bytes``) and ``prev_hash`` is the
hash of record ``n - 1`` (64 zeros for the first). Binding the sequence number and the previous
hash into every hash makes an edit, a deletion, an insertion or a reordering visible at the first
record it touches; the ``audit_head`` row (last seq and hash, written in the same transaction as
the records) makes the removal of the newest records visible too.

The chain is unkeyed: it proves the log is internally consistent, not who wrote it. Someone with
write access who rewrites a record AND every later hash AND the head cannot be caught from the
database alone; compare the head hash ``verify`` prints with a copy kept elsewhere (docs/audit.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

import orjson

GENESIS_HASH = "0" * 64
_DOMAIN = b"txguard-audit-v1\n"
# hashlib releases the GIL while it hashes 2,048 bytes or more in one update, and the thread then
# waits to take it back — up to a switch interval behind a busy event loop, for ~10 µs of
# hashing. Bodies (~3.3 KB for a decision) are fed in pieces below that size: the same digest,
# no hand-over (the audit writer hashes every record of a batch one after another).
_PIECE = 2047


def chain_hash(seq: int, prev_hash: str, body: bytes) -> str:
    """The hash of record ``seq`` whose predecessor's hash is ``prev_hash``.

    >>> chain_hash(1, GENESIS_HASH, b"{}")[:16]
    '367aef6ffdec66df'
    """
    h = hashlib.sha256(b"%b%d\n%b\n" % (_DOMAIN, seq, prev_hash.encode()))
    if len(body) <= _PIECE:
        h.update(body)
    else:
        view = memoryview(body)
        for i in range(0, len(body), _PIECE):
            h.update(view[i : i + _PIECE])
    return h.hexdigest()


class StoredRow(NamedTuple):
    """One row as a store keeps it: the canonical body plus the columns copied out of it for
    indexing (which verify checks against the body, so editing a column alone is caught too).
    A named tuple in the stores' column order: building one per appended row is cheap, and a
    batch transposes to columns with ``zip(*rows)``."""

    seq: int
    decision_id: str
    transaction_id: str
    decided_at: str  # records.format_timestamp form
    action: str
    sender_account_id: str
    model_version: str | None
    body: bytes
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class VerifyReport:
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str = ""
    first_bad_decision_id: str | None = None
    head_seq: int = 0
    head_hash: str = GENESIS_HASH

    def summary(self) -> str:
        if self.ok:
            return f"ok: {self.checked} records verified, head {self.head_seq}:{self.head_hash}"
        who = f" (decision {self.first_bad_decision_id})" if self.first_bad_decision_id else ""
        return f"chain broken at seq {self.first_bad_seq}{who}: {self.problem}"


_INDEXED = ("decision_id", "transaction_id", "decided_at", "action", "sender_account_id")


def _column_mismatch(row: StoredRow) -> str | None:
    try:
        d = orjson.loads(row.body)
    except orjson.JSONDecodeError as e:
        return f"body is not valid JSON ({e})"
    if not isinstance(d, dict):
        return "body is not a JSON object"
    for name in (*_INDEXED, "model_version"):
        if d.get(name) != getattr(row, name):
            return f"column {name}={getattr(row, name)!r} differs from the hashed record ({d.get(name)!r})"
    return None


def verify_rows(
    rows: Iterable[StoredRow],
    *,
    head: tuple[int, str],
    anchor: tuple[int, str] | None = None,
) -> VerifyReport:
    """Walk rows in seq order and report the first one that breaks the chain.

    ``head`` is the stored (last seq, last hash); it must match the last row. ``anchor`` is a
    (seq, hash) recorded earlier outside the database: the chain must still pass through it,
    which catches a rewrite that recomputed every later hash and the head."""
    expected_seq = 1
    prev = GENESIS_HASH
    checked = 0

    def bad(seq: int, problem: str, decision_id: str | None) -> VerifyReport:
        return VerifyReport(
            ok=False,
            checked=checked,
            first_bad_seq=seq,
            problem=problem,
            first_bad_decision_id=decision_id,
            head_seq=head[0],
            head_hash=head[1],
        )

    for row in rows:
        if row.seq != expected_seq:
            what = "missing (deleted?)" if row.seq > expected_seq else "out of order"
            return bad(
                expected_seq,
                f"record seq {expected_seq} {what}; next stored record is seq {row.seq}",
                None,
            )
        if row.prev_hash != prev:
            return bad(
                row.seq,
                f"prev_hash does not match the hash of seq {row.seq - 1} "
                "(a record before it was edited, removed, inserted or reordered)",
                row.decision_id,
            )
        if chain_hash(row.seq, row.prev_hash, row.body) != row.hash:
            return bad(
                row.seq, "hash does not match the record's content (edited)", row.decision_id
            )
        mismatch = _column_mismatch(row)
        if mismatch is not None:
            return bad(row.seq, mismatch, row.decision_id)
        if anchor is not None and row.seq == anchor[0] and row.hash != anchor[1]:
            return bad(
                row.seq,
                f"hash differs from the anchored hash {anchor[1][:12]}… (rewritten since anchored)",
                row.decision_id,
            )
        prev = row.hash
        expected_seq += 1
        checked += 1
    last_seq = expected_seq - 1
    if anchor is not None and anchor[0] > last_seq:
        return bad(
            last_seq + 1,
            f"the log ends at seq {last_seq} but seq {anchor[0]} was anchored (records removed)",
            None,
        )
    if head != (last_seq, prev):
        return bad(
            last_seq if head[0] == last_seq else min(head[0], last_seq) + 1,
            f"head says seq {head[0]} hash {head[1][:12]}… but the last record is seq {last_seq} "
            f"hash {prev[:12]}… (newest records removed or appended outside the log)",
            None,
        )
    return VerifyReport(ok=True, checked=checked, head_seq=last_seq, head_hash=prev)
