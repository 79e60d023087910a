"""What ``AuditLog.append_many`` would save the scoring service: ``bench_http_stages`` with the
pipeline's per-decision ``audit.append`` routed through a coalescer that hands the log whole
micro-batches (one ``append_many`` in flight, the next batch filling behind it — the pattern of
the feature store's Coalescer).

An estimate for wiring ``append_many`` into the pipeline, not the wiring itself: the coalescer
lives here, around the service's real AuditLog; everything else is the production build.

    .venv/bin/python benchmarks/bench_audit_coalesced.py [--repeats 3] [--n 1500]

Compare with ``benchmarks/bench_http_stages.py`` (same arguments) run alternately.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_http_stages


class CoalescedAudit:
    """``append(record)`` for many concurrent callers, sent to the log as ``append_many`` calls:
    the records that arrive while one call is in flight go together in the next."""

    def __init__(self, log: Any) -> None:
        self._log = log
        self._pending: list[tuple[Any, asyncio.Future[Any]]] = []
        self._busy = False
        self._task: asyncio.Task[None] | None = None
        self.calls = 0
        self.records = 0

    def get(self, decision_id: str) -> Any:
        return self._log.get(decision_id)

    def get_by_transaction(self, transaction_id: str) -> Any:
        return self._log.get_by_transaction(transaction_id)

    async def append(self, record: Any) -> Any:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending.append((record, fut))
        if not self._busy:
            self._busy = True
            self._task = loop.create_task(self._drain())
        return await fut

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                self.calls += 1
                self.records += len(batch)
                try:
                    out = await self._log.append_many([r for r, _ in batch], return_exceptions=True)
                except Exception as e:  # refused whole (invalid record) or the log closed
                    out = [e] * len(batch)
                for (_, fut), res in zip(batch, out, strict=True):
                    if fut.done():
                        continue
                    if isinstance(res, BaseException):
                        fut.set_exception(res)
                    else:
                        fut.set_result(res)
        finally:
            self._busy = False


def main() -> None:
    from txguard import bootstrap

    build = bootstrap.build_services
    made: list[CoalescedAudit] = []

    def build_coalesced(*args: Any, **kw: Any) -> Any:
        svc = build(*args, **kw)
        coalesced = CoalescedAudit(svc.pipeline._audit)
        svc.pipeline._audit = coalesced
        made.append(coalesced)
        return svc

    bootstrap.build_services = build_coalesced
    bench_http_stages.main()
    for c in made:
        if c.calls:
            print(f"# coalesced: {c.records / c.calls:.1f} records per append_many call")


if __name__ == "__main__":
    main()
