"""``txguard features build`` end to end on a small events file."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from txguard.cli.main import main as _main
from txguard.features.spec import default_spec
from txguard.features.testing import generate_stream
from txguard.io.events import table_from_events, write_events


def main(argv: list[str]) -> None:
    """Run the CLI; success exits 0 (Typer's standalone mode), anything else propagates."""
    try:
        _main(argv)
    except SystemExit as e:
        if e.code not in (0, None):
            raise


def test_build_writes_one_row_per_transaction(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = generate_stream(200, seed=9)
    write_events(tmp_path / "events.parquet", table_from_events(events))
    main(
        [
            "features",
            "build",
            "--events",
            str(tmp_path / "events.parquet"),
            "--out",
            str(tmp_path / "f.parquet"),
        ]
    )
    out = pq.read_table(tmp_path / "f.parquet")
    assert out.num_rows == 200
    assert out.column_names[-len(default_spec().names) :] == list(default_spec().names)
    assert "200 transactions" in capsys.readouterr().out


def test_build_with_custom_spec_and_bad_inputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_events(tmp_path / "e.parquet", table_from_events(generate_stream(50, seed=1)))
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "entities: {s: [sender_account_id]}\naggregates: [{entity: s, aggs: [count], windows: [1d]}]\n"
    )
    main(
        [
            "features",
            "build",
            "--events",
            str(tmp_path / "e.parquet"),
            "--out",
            str(tmp_path / "o.parquet"),
            "--spec",
            str(spec),
        ]
    )
    assert pq.read_table(tmp_path / "o.parquet").column_names[-1] == "s_count_1d"
    spec.write_text(
        "entities: {s: [sender_account_id]}\naggregates: [{entity: s, aggs: [count], windows: [1q]}]\n"
    )
    with pytest.raises(SystemExit) as e:
        main(
            [
                "features",
                "build",
                "--events",
                str(tmp_path / "e.parquet"),
                "--out",
                str(tmp_path / "o2.parquet"),
                "--spec",
                str(spec),
            ]
        )
    assert e.value.code == 2
    assert "aggregates[0].windows[0]" in capsys.readouterr().err
    assert not (tmp_path / "o2.parquet").exists()


def test_build_refuses_rows_it_cannot_replay_and_names_them() -> None:
    import pyarrow as pa

    from txguard.domain.errors import ValidationError
    from txguard.features.replay import build_features

    table = table_from_events(generate_stream(5, seed=2))
    at = table.column("occurred_at").to_pylist()
    kinds = table.column("kind").to_pylist()
    first_tx = kinds.index("transaction")
    at[first_tx] = None
    broken = table.set_column(
        table.schema.get_field_index("occurred_at"),
        "occurred_at",
        pa.array(at, table.schema.field("occurred_at").type),
    )
    with pytest.raises(ValidationError, match=r"row \d+: occurred_at: transaction without a time"):
        build_features(broken, default_spec())
