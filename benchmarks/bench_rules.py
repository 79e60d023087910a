"""Rules hot path: µs per event to evaluate a rule set, vs baselines measured in the same run.

    .venv/bin/python benchmarks/bench_rules.py

Prints medians over repeated runs of:
- the example rules (examples/rules.yaml: 10 rules, 7 lists) on a typical event;
- a 20-rule set (the example + 10 more numeric rules) on the same event;
- the baseline "unsafe" way: the same 20 conditions as Python code objects run by ``eval``
  against a dict of the same values (what the safe closures must compete with);
- the floor: an empty RuleSet (no fields extracted);
- RuleEngine.reload_if_changed() when nothing changed (the per-N-requests cost), and a full load.
Bounded: well under a minute.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from txguard.domain.events import parse_transaction  # noqa: E402
from txguard.features.spec import default_spec  # noqa: E402
from txguard.rules.rules import RuleEngine, RuleSet, combine  # noqa: E402

EXAMPLE = REPO / "examples" / "rules.yaml"
EXTRA = [
    ("amount_usd > 3 * sender_mean_amount_usd_30d and sender_count_30d >= 5", "add_score"),
    ("sender_zscore_amount_usd_30d > 4", "add_score"),
    ("is_night == 1 and amount_usd > 2000", "add_score"),
    ("sender_new_device_id_90d == 1 and amount_usd > 1000", "add_score"),
    ("sender_new_recipient_country_90d == 1 and amount_usd > 5000", "force_review"),
    ("terminal_fraud_rate_7d_lag7d > 0.2", "add_score"),
    ("ip_count_1h >= 30", "add_score"),
    ("channel == 'ecommerce' and hour in [1, 2, 3, 4]", "add_score"),
    ("sender_kyc_level == 0 and amount_usd > 500", "force_review"),
    ("pair_count_30d == 0 and amount_usd > 9000", "add_score"),
]


def _twenty_rules(tmp: Path) -> Path:
    text = EXAMPLE.read_text()
    lines = [text.rstrip("\n")]
    for i, (cond, action) in enumerate(EXTRA):
        lines.append(f"  - id: extra_{i}\n    when: {cond}\n    action: {action}")
        lines.append("    score: 0.05\n    reason: extra rule")
    for f in (EXAMPLE.parent / "lists").iterdir():
        (tmp / "lists").mkdir(exist_ok=True)
        (tmp / "lists" / f.name).write_bytes(f.read_bytes())
    p = tmp / "rules.yaml"
    p.write_text("\n".join(lines) + "\n")
    return p


def _median_us(fn: Any, n: int, repeats: int = 7) -> tuple[float, float]:
    """(wall, CPU) medians over ``repeats`` runs, in µs per call. On a shared, loaded machine
    the wall time includes waiting for a core; the process CPU time does not."""
    wall, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        for _ in range(n):
            fn()
        cpu.append((time.process_time() - c) / n * 1e6)
        wall.append((time.perf_counter() - t) / n * 1e6)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    names = default_spec().names
    event = parse_transaction(
        {
            "transaction_id": "t1",
            "occurred_at": "2026-03-10T02:00:00Z",
            "amount": 2400.0,
            "currency": "EUR",
            "type": "card",
            "channel": "ecommerce",
            "sender": {
                "account_id": "a-1",
                "created_at": "2025-01-01T00:00:00Z",
                "country": "FR",
                "kyc_level": 2,
            },
            "recipient": {"account_id": "b-1", "country": "DE", "wallet_address": "0xdeadbeef"},
            "merchant_id": "m-1",
            "device_id": "d-1",
            "ip": "198.51.100.7",
        }
    )
    features = dict.fromkeys(names, 1.0)
    ex = RuleSet.load(EXAMPLE, known_features=names)
    with tempfile.TemporaryDirectory() as d:
        p20 = _twenty_rules(Path(d))
        rs20 = RuleSet.load(p20, known_features=names)
        empty = RuleSet.empty()

        # the unsafe baseline: the same 20 conditions as code objects run by eval()
        codes = [compile(r.text.replace("\n", " ").strip(), "<rule>", "eval") for r in rs20.rules]
        env_names = set().union(*(r.condition.names for r in rs20.rules))

        def by_eval() -> list[int]:
            from txguard.rules.fields import EVENT_FIELDS

            v: dict[str, Any] = {}
            for n in env_names:
                info = EVENT_FIELDS.get(n)
                v[n] = info.extract(event) if info and info.extract else features.get(n)
            v["in_list"] = lambda name, x: x in ex.lists[name]
            v["missing"] = lambda x: x is None
            out = []
            for i, c in enumerate(codes):
                try:
                    if eval(c, {"__builtins__": {}}, v):
                        out.append(i)
                except TypeError:  # None compared with a number: the safe version says False
                    pass
            return out

        n = 20_000
        t_empty = _median_us(lambda: empty.evaluate(event, features), n)
        t_ex = _median_us(lambda: ex.evaluate(event, features), n)
        t_20 = _median_us(lambda: rs20.evaluate(event, features), n)
        t_20c = _median_us(lambda: combine(rs20.evaluate(event, features)), n)
        t_eval = _median_us(by_eval, n // 4)
        eng = RuleEngine(p20, known_features=names)
        t_stat = _median_us(eng.reload_if_changed, 5_000)
        n_files = len(eng.current.files)
        t_load = _median_us(lambda: RuleSet.load(p20, known_features=names), 20, repeats=5)

    hits = rs20.evaluate(event, features)
    print(
        f"rules: example file {len(ex.rules)} rules / {len(ex.lists)} lists; "
        f"20-rule set {len(rs20.rules)} rules; {len(hits)} hits on the probe event"
    )
    print("  median of 7 runs: wall (process CPU)")
    rows = [
        ("empty RuleSet.evaluate (floor)", t_empty, "µs/event"),
        ("example rules evaluate", t_ex, "µs/event"),
        ("20 rules + 7 lists evaluate", t_20, "µs/event"),
        ("20 rules evaluate + combine", t_20c, "µs/event"),
        ("baseline: same 20 conditions via eval()", t_eval, "µs/event"),
        (f"reload_if_changed, nothing changed ({n_files} files)", t_stat, "µs/call"),
    ]
    for label, (med, best), unit in rows:
        print(f"  {label:<48} {med:8.2f} ({best:7.2f}) {unit}")
    print(
        f"  {'full load of the 20-rule file + lists':<48} {t_load[0] / 1000:8.2f} ({t_load[1] / 1000:7.2f}) ms"
    )
    print(
        f"  safe closures vs eval(): {t_eval[0] / t_20[0]:.2f}x faster (wall), "
        f"{t_eval[1] / t_20[1]:.2f}x (CPU)"
    )


if __name__ == "__main__":
    main()
