"""Event parser hot path: µs per event for ``domain.events.parse_transaction``.

    .venv/bin/python benchmarks/bench_parse.py

The parser runs once per scored request on the event loop. Prints the best of interleaved
repeated runs (the figure least disturbed by other load) over 20,000 full events (every optional
field set, like tests/unit/test_events.py's GOOD) for:
- distinct IPv4 addresses (the regex fast path; nothing cached);
- distinct IPv6 addresses (more than the cache holds: every one goes through ``ipaddress``);
- IPv6 drawn from 1,000 hot addresses (the cache answers);
- no ``ip`` field (the floor: everything else the parser does).
Bounded: a few seconds.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "tests" / "unit"))

from test_events import GOOD  # noqa: E402  (the test suite's full event)

from txguard.domain.events import _ip_slow, parse_transaction  # noqa: E402

N = 20_000
REPEATS = 15


def _events() -> dict[str, list[dict[str, Any]]]:
    return {
        "ipv4, distinct": [
            {**GOOD, "ip": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"} for i in range(N)
        ],
        "ipv6, distinct": [{**GOOD, "ip": f"2001:db8::{i:x}"} for i in range(N)],
        "ipv6, 1000 hot": [{**GOOD, "ip": f"2001:db8::{i % 1000:x}"} for i in range(N)],
        "no ip": [{k: v for k, v in GOOD.items() if k != "ip"} for _ in range(N)],
    }


def _run(events: list[dict[str, Any]]) -> Callable[[], None]:
    def run() -> None:
        for e in events:
            parse_transaction(e)

    return run


def main() -> None:
    cases = {name: _run(evs) for name, evs in _events().items()}
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(REPEATS):
        for name, run in cases.items():
            _ip_slow.cache_clear()
            t0 = time.perf_counter()
            run()
            best[name] = min(best[name], (time.perf_counter() - t0) / N * 1e6)
    for name, us in best.items():
        print(f"parse_transaction {name:15s} {us:6.2f} µs/event (best of {REPEATS} × {N})")


if __name__ == "__main__":
    main()
