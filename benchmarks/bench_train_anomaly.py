"""Does an unsupervised anomaly score help? Isolation Forest as an extra LightGBM feature, on the
handbook's *validation* folds only (the test folds stay untouched), same model otherwise.

    .venv/bin/python benchmarks/bench_train_anomaly.py [--data ../shared/data/handbook/transactions.parquet] [--folds 2]

Prints AP / AUC / CP@100 per fold with and without the anomaly feature and the mean difference.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--data", type=Path, default=REPO.parent / "shared/data/handbook/transactions.parquet"
    )
    ap.add_argument("--folds", type=int, default=2)
    args = ap.parse_args()

    import lightgbm as lgb
    from sklearn.ensemble import IsolationForest

    from txguard.cli.benchmark import load_handbook_events
    from txguard.model.benchmark_handbook import (
        FAST_PARAMS,
        _metrics,
        assessment_rows,
        folds,
        prepare,
        training_rows,
    )
    from txguard.model.train import DEFAULT_PARAMS, StageTimer

    timer = StageTimer()
    d = prepare(load_handbook_events(args.data), timer)
    params = {**DEFAULT_PARAMS, **FAST_PARAMS, "num_leaves": 31}
    diffs = []
    for f in folds("valid")[: args.folds]:
        tr, te = training_rows(d, f, 14), assessment_rows(d, f)
        x_tr, x_te = np.nan_to_num(d.x[tr], nan=-1.0), np.nan_to_num(d.x[te], nan=-1.0)
        t0 = time.perf_counter()
        iso = IsolationForest(n_estimators=100, max_samples=4096, random_state=0, n_jobs=1)
        iso.fit(x_tr)
        a_tr, a_te = -iso.score_samples(x_tr), -iso.score_samples(x_te)
        t_iso = time.perf_counter() - t0
        pos = int(d.fraud[tr].sum())
        p = {**params, "scale_pos_weight": float(np.sqrt((len(tr) - pos) / pos))}
        out = {}
        for name, (a, b) in {
            "base": (d.x[tr], d.x[te]),
            "+iforest": (np.column_stack([d.x[tr], a_tr]), np.column_stack([d.x[te], a_te])),
        }.items():
            booster = lgb.train(p, lgb.Dataset(a, d.fraud[tr]), num_boost_round=300)
            out[name] = _metrics(d, te, np.asarray(booster.predict(b, raw_score=True)))
        label = f.label()["assess"]
        for name, m in out.items():
            print(
                f"{label} {name:<9} AUC {m['auc_roc']:.4f}  AP {m['average_precision']:.4f}  "
                f"CP@100 {m['cp_at_100']:.4f}"
            )
        print(f"  isolation forest fit+score {t_iso:.1f} s")
        diffs.append({k: out["+iforest"][k] - out["base"][k] for k in out["base"]})
    mean = {k: float(np.mean([x[k] for x in diffs])) for k in diffs[0]}
    print(
        "mean difference (+iforest - base): " + "  ".join(f"{k} {v:+.4f}" for k, v in mean.items())
    )


if __name__ == "__main__":
    main()
