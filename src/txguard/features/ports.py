"""The state-store port: the only thing the FeatureEngine needs from a store.

The engine compiles each transaction into a list of :data:`EntityOp` (one per entity the event
has a key for); a store applies it atomically and returns the *state before* the update, reduced
to the numbers the features need. Both adapters (``stores.memory``, ``stores.redis``) run the same
algorithm on the same plan, so they return bit-identical numbers — see ADR 0002.

EntityOp layout (plain lists so that it crosses into Lua as MessagePack unchanged)::

    [key, ttl_ms, ops, vals, groups, distincts, label_groups]
    ops        per slot: 1 sum, 2 min, 3 max            (slot 0 count, 1 min t, 2 max t, 3 fraud,
    vals       this transaction's contribution per slot  then per numeric field: count, sum,
                                                          sum of squares, max)
    groups     [[gid, bucket, prune_below, [lo, hi, [slot, ...]], ...], ...]
    distincts  [[did, value or "", prune_below_t, [lo_t, ...]], ...]
    label_groups [[gid, bucket], ...]  buckets a fraud label of this transaction increments

Result, per entity in order: for each group, for each range, the wanted slots aggregated over
buckets ``lo..hi`` (ascending order); then for each distinct set, for each ``lo_t``: the number of
values last seen at or after ``lo_t`` and 1/0 whether this event's value is one of them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

EntityOp = list[Any]
# one transaction's store call: (transaction id, event time µs, record TTL ms, entity ops)
TxOps = tuple[str, int, int, list[EntityOp]]
# a network store's execute_many awaited on the running event loop (optional: a store that has
# it, RedisStore, is awaited without a worker thread; see StateStore.execute_many)
ExecuteManyAsync = Callable[[list[TxOps]], Awaitable[list[tuple[bool, list[float]]]]]

OP_SUM, OP_MIN, OP_MAX = 1, 2, 3


class StateStore(Protocol):
    def execute(
        self, tx_id: str, t_us: int, tx_ttl_ms: int, ops: list[EntityOp]
    ) -> tuple[bool, list[float]]:
        """Read-then-update for one transaction, atomically. Returns ``(first_seen, numbers)``;
        a transaction id already applied changes nothing and returns the numbers of the first
        time with ``first_seen`` False. Failures raise ``DependencyError``."""
        ...

    def execute_many(self, items: list[TxOps]) -> list[tuple[bool, list[float]]]:
        """``execute`` for several transactions in ONE round trip, applied in list order (each
        one atomic, exactly as if ``execute`` were called for each in turn: a later item sees
        the earlier ones' updates, a repeated id is ``first_seen`` False). Results in order.
        Failures raise ``DependencyError`` for the whole call."""
        ...

    def apply_label(self, tx_id: str, is_fraud: bool) -> bool:
        """Mark a recorded transaction fraud (or not). Returns False if the transaction is not
        known (never seen or expired); applying the same verdict twice changes nothing."""
        ...

    def close(self) -> None: ...
