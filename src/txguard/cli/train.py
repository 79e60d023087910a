"""``txguard train``: events → features → LightGBM → calibrated, evaluated, signed version."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train(  # noqa: PLR0917 - typer options
        events: Annotated[
            Path, typer.Option(help="events file (Parquet from io.events, or .jsonl)")
        ],
        registry: Annotated[
            Path | None, typer.Option(help="registry directory (default: $TXGUARD_HOME/registry)")
        ] = None,
        label_delay: Annotated[
            str, typer.Option(help="how long after a transaction its label is known (7d, 36h)")
        ] = "7d",
        spec: Annotated[
            Path | None, typer.Option(help="feature spec YAML (default: built-in)")
        ] = None,
        promote: Annotated[
            bool, typer.Option("--promote", help="also make it the production version")
        ] = False,
        test_days: Annotated[
            float | None, typer.Option(help="length of the test period (default: a fifth)")
        ] = None,
        valid_days: Annotated[
            float | None, typer.Option(help="length of the validation period (default: a fifth)")
        ] = None,
        policy_method: Annotated[
            str, typer.Option(help="threshold choice: precision, budget or cost")
        ] = "precision",
        review_precision: Annotated[float, typer.Option(help="precision target: REVIEW")] = 0.5,
        reject_precision: Annotated[float, typer.Option(help="precision target: REJECT")] = 0.9,
        alerts_per_day: Annotated[float, typer.Option(help="budget method: alerts a day")] = 100.0,
        review_cost: Annotated[
            float, typer.Option(help="cost method: cost of one review, in USD")
        ] = 5.0,
        threads: Annotated[int, typer.Option(min=1, max=2, help="LightGBM threads")] = 1,
    ) -> None:
        """Train a candidate model version (time-ordered periods with label-delay gaps)."""
        from txguard.cli._common import settings
        from txguard.features.spec import FeatureSpec, default_spec
        from txguard.io.events import read_events
        from txguard.model.pipeline import train_events
        from txguard.model.registry import Registry
        from txguard.model.train import StageTimer, parse_duration

        s = settings()
        delay = parse_duration(label_delay)
        root = registry or s.registry_dir
        reg = Registry(root, s.signing_key.get_secret_value())
        timer = StageTimer()
        with timer.stage("read events"):
            table = read_events(events)
        fs = FeatureSpec.from_yaml(spec) if spec is not None else default_spec()
        run = train_events(
            table,
            fs,
            reg,
            label_delay=delay,
            promote=promote,
            timer=timer,
            test_days=test_days,
            valid_days=valid_days,
            policy_method=policy_method,
            policy_params={
                "review_precision": review_precision,
                "reject_precision": reject_precision,
                "alerts_per_day": alerts_per_day,
                "review_cost": review_cost,
            },
            params={"num_threads": threads},
        )
        m = run.result.metrics
        p = run.result.periods
        stage = "production" if run.promoted else "candidate"
        typer.echo(f"model {run.version} ({stage}) in {root}")
        typer.echo(
            f"periods: train {p.train[0]:%Y-%m-%d}..{p.train[1]:%Y-%m-%d}, valid "
            f"{p.valid[0]:%Y-%m-%d}..{p.valid[1]:%Y-%m-%d}, test {p.test[0]:%Y-%m-%d}.."
            f"{p.test[1]:%Y-%m-%d} (gaps {label_delay})"
        )
        typer.echo(
            f"test: AUC ROC {m['auc_roc']:.4f}  AP {m['average_precision']:.4f}  "
            f"CP@100 {m['cp_at_100']:.4f}  recall@1%FPR {m['recall_at_1pct_fpr']:.4f}  "
            f"trees {m['best_iteration']}"
        )
        for name, t in m["thresholds"].items():
            typer.echo(
                f"  {name:<7} >= {t['threshold']:.4f}: {t['alerts_per_day']:.1f} alerts/day, "
                f"precision {t['precision']:.3f}, recall {t['recall']:.3f}"
            )
        typer.echo("time:\n" + timer.report())
