"""Model figures: training time by stage on a synthetic feature table, and single-row scoring
latency of the registry bundle (C API fast path) against ``Booster.predict`` measured in the
same run. Bounded (< 2 min on the shared 2-core machine).

    .venv/bin/python benchmarks/bench_train_scoring.py [--rows 300000] [--trees 300]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "unit"))


def _median_us(fn, rows: np.ndarray, repeats: int = 5) -> float:  # type: ignore[no-untyped-def]
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for r in rows:
            fn(r)
        runs.append((time.perf_counter() - t0) / len(rows) * 1e6)
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=300_000)
    ap.add_argument("--trees", type=int, default=300)
    args = ap.parse_args()

    import lightgbm as lgb
    from test_model_train import NAMES, synthetic_features  # type: ignore[import-not-found]

    from txguard.features.spec import FeatureSpec
    from txguard.model.policy import Policy, Thresholds
    from txguard.model.registry import Registry
    from txguard.model.scorer import Calibration
    from txguard.model.train import StageTimer, train_from_features

    t0 = time.perf_counter()
    table = synthetic_features(n=args.rows, days=60, seed=1)
    print(f"synthetic feature table: {args.rows:,} rows in {time.perf_counter() - t0:.1f} s")
    timer = StageTimer()
    res = train_from_features(table, NAMES, params={"num_threads": 1}, timer=timer)
    print(f"training on {args.rows:,} rows, 1 thread, {res.metrics['best_iteration']} trees:")
    print(timer.report())

    # single-row latency on a fixed-size model (the anchor in ARCHITECTURE.md is 300 trees)
    rng = np.random.default_rng(0)
    n_feat = 30
    x = rng.normal(size=(50_000, n_feat))
    y = (x[:, 0] + x[:, 1] * x[:, 2] + rng.normal(size=len(x)) > 2).astype(int)
    names = [f"f{i}" for i in range(n_feat)]
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_threads": 1, "num_leaves": 31},
        lgb.Dataset(x, y, feature_name=names),
        num_boost_round=args.trees,
    )
    spec = FeatureSpec.from_yaml(
        "entities: {sender: [sender_account_id]}\npointwise: []\nexternal: ["
        + ", ".join(names)
        + "]\n"
    )
    with tempfile.TemporaryDirectory() as d:
        reg = Registry(Path(d), "bench-key")
        v = reg.register(
            model_text=booster.model_to_string(),
            spec_yaml=spec.to_yaml(),
            policy=Policy(Thresholds(0.1, 0.5, 0.9)),
            calibration=Calibration(1.0, 0.0),
            metrics={},
            meta={"feature_names": names, "feature_spec_hash": spec.hash},
        )
        t0 = time.perf_counter()
        bundle = reg.load(v)
        load_ms = (time.perf_counter() - t0) * 1e3
    rows = x[:2000]
    base = _median_us(lambda r: booster.predict(r.reshape(1, -1), num_threads=1), rows[:500])
    fast = _median_us(bundle.predict, rows)
    shap = _median_us(bundle.contributions, rows[:50], repeats=3)
    t0 = time.perf_counter()
    bundle.predict_batch(x)
    batch = (time.perf_counter() - t0) / len(x) * 1e6
    print(f"\nscoring, {args.trees} trees x {n_feat} features (medians of 5 runs):")
    print(f"  registry load + verify        {load_ms:8.1f} ms")
    print(f"  Booster.predict, 1 row        {base:8.1f} us")
    print(f"  ModelBundle.predict, 1 row    {fast:8.1f} us   ({base / fast:.1f}x faster)")
    print(f"  predict_batch, per row        {batch:8.2f} us")
    print(f"  contributions (TreeSHAP)      {shap / 1e3:8.2f} ms")


if __name__ == "__main__":
    main()
