"""``txguard import ...`` end to end: the real reference files, then malformed input giving a
clear error (line and field) and a non-zero exit."""

from __future__ import annotations

import csv
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import orjson
import polars as pl
import pyarrow.compute as pc
import pytest

from txguard.cli.main import main
from txguard.io.events import EVENT_SCHEMA, iter_events, read_events, sort_for_replay

GOOD_ROW = "id,ts,amt,ccy,cust,fraud\na,2026-01-01T00:00:00Z,1,EUR,c,0\n"
MAPPING = """\
columns:
  id: transaction_id
  ts: occurred_at
  amt: amount
  ccy: currency
  cust: sender_account_id
label:
  column: fraud
  true_values: ["1"]
"""


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as ei:
        main(["import", *args])
    out, err = capsys.readouterr()
    return int(ei.value.code or 0), out, err


def _run_csv(
    capsys: pytest.CaptureFixture[str], mapping: Path, src: Path, text: str, *args: str
) -> tuple[int, str, str]:
    """Write ``text`` to ``src`` and import it with the test mapping into ``e.parquet`` beside it
    (``args``: further options)."""
    src.write_text(text)
    out = src.with_name("e.parquet")
    return _run(capsys, "csv", str(src), "-m", str(mapping), "--out", str(out), *args)


def _counts(path: Path) -> tuple[int, int]:
    kinds = pc.value_counts(pc.cast(read_events(path, ["kind"]).column("kind"), "string"))
    d = {v["values"]: v["counts"] for v in kinds.to_pylist()}
    return d.get("transaction", 0), d.get("label", 0)


@pytest.fixture
def mapping(tmp_path: Path) -> Path:
    p = tmp_path / "mapping.yaml"
    p.write_text(MAPPING)
    return p


def test_handbook_real_file_as_a_user_runs_it(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "h.parquet"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "txguard.cli.main",
            "import",
            "handbook",
            str(shared_data / "handbook" / "transactions.parquet"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "transactions      1,754,155" in proc.stdout
    assert "labels               14,681  (14,681 fraud; known 7d after)" in proc.stdout
    assert _counts(out) == (1_754_155, 14_681)
    table = read_events(out)
    assert table.schema == EVENT_SCHEMA
    assert table.equals(sort_for_replay(table))  # written in replay order
    labels = table.filter(pc.equal(pc.cast(table.column("kind"), "string"), "label"))
    assert pc.all(labels.column("is_fraud")).as_py()
    typologies = {orjson.loads(m)["typology"] for m in labels.column("metadata").to_pylist()}
    assert typologies == {"scenario_1_amount", "scenario_2_terminal", "scenario_3_customer"}
    frame = pl.from_arrow(table.select(["kind", "transaction_id", "occurred_at", "known_at"]))
    assert isinstance(frame, pl.DataFrame)
    kind = pl.col("kind").cast(pl.String)
    tx = frame.filter(kind == "transaction").select("transaction_id", "occurred_at")
    joined = (
        frame.filter(kind == "label")
        .select("transaction_id", "known_at")
        .join(tx, on="transaction_id")
    )
    assert joined.height == 14_681  # every label is about an imported transaction
    assert (joined["known_at"] - joined["occurred_at"] == timedelta(days=7)).all()


def test_paysim_real_sample(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "p.parquet"
    src = shared_data / "paysim" / "sample_10k.csv"
    code, stdout, _ = _run(capsys, "paysim", str(src), "--out", str(out), "--label-delay", "36h")
    assert code == 0
    assert "transactions         10,000" in stdout
    assert _counts(out) == (10_000, 500)
    events = list(iter_events(out))
    occurred = {e.transaction_id: e.occurred_at for e in events if hasattr(e, "occurred_at")}
    labels = [e for e in events if hasattr(e, "known_at")]
    assert all(lab.known_at == occurred[lab.transaction_id] + timedelta(hours=36) for lab in labels)


def test_bad_amount_fails_naming_line_and_field(
    tmp_path: Path, mapping: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = "id,ts,amt,ccy,cust,fraud\na,2026-01-01T00:00:00Z,1,EUR,c,0\nb,2026-01-01T00:00:00Z,12..5,EUR,c,1\n"
    out = tmp_path / "e.parquet"
    code, _, err = _run_csv(capsys, mapping, tmp_path / "d.csv", text)
    assert code == 2
    assert err.startswith("error: ")
    assert "line 3: amt: not a valid amount: '12..5'" in err
    assert not out.exists()  # nothing imported
    with (tmp_path / "e.rejects.csv").open() as f:
        assert list(csv.DictReader(f)) == [
            {"line": "3", "field": "amt", "reason": "not a valid amount: '12..5'"}
        ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "id,ts,ccy,cust,fraud\na,2026-01-01T00:00:00Z,EUR,c,0\n",
            "row 1: amt: column missing from the header",
        ),
        (
            "id,ts,amt,ccy,cust,fraud\na,2026-01-01 08:00:00,1,EUR,c,0\n",
            "line 2: ts: timestamp has no time zone: '2026-01-01 08:00:00'",
        ),
    ],
    ids=["missing-column", "timestamp-without-zone"],
)
def test_bad_file_fails_naming_row_and_field(
    tmp_path: Path, mapping: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    code, _, err = _run_csv(capsys, mapping, tmp_path / "d.csv", text)
    assert code == 2
    assert message in err


def test_skip_invalid_writes_good_rows_and_rejects(
    tmp_path: Path, mapping: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "d.csv"
    src.write_text(
        "id,ts,amt,ccy,cust,fraud\n"
        "a,2026-01-01T00:00:00Z,1,EUR,c,1\n"
        "b,2026-01-01T00:00:00Z,-1,EUR,c,0\n"
        "c,2026-01-01T01:00:00Z,2,EUR,c,0\n"
    )
    out = tmp_path / "e.parquet"
    code, stdout, _ = _run(
        capsys,
        "csv",
        str(src),
        "-m",
        str(mapping),
        "--out",
        str(out),
        "--skip-invalid",
        "--label-delay",
        "0",
    )
    assert code == 0
    assert "rejected rows             1" in stdout
    assert _counts(out) == (2, 1)
    rejects = (tmp_path / "e.rejects.csv").read_text().splitlines()
    assert rejects == ["line,field,reason", "3,amt,not a valid amount: '-1'"]


def test_ibm_aml_to_jsonl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "ibm.csv"
    src.write_text(
        "Timestamp,From Bank,Account,To Bank,Account,Amount Received,Receiving Currency,"
        "Amount Paid,Payment Currency,Payment Format,Is Laundering\n"
        "2022/09/01 00:20,010,8000EBD30,011,8000EBD31,10.00,Euro,10.00,Euro,ACH,1\n"
    )
    out = tmp_path / "ibm.jsonl"
    code, _, _ = _run(capsys, "ibm-aml", str(src), "--out", str(out))
    assert code == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 2
    assert '"kind":"label"' in lines[1]
    assert '"known_at":"2022-09-08T00:20:00Z"' in lines[1]


@pytest.mark.parametrize("delay", ["7x", "-1d", "soon"])
def test_bad_label_delay(
    tmp_path: Path, mapping: Path, capsys: pytest.CaptureFixture[str], delay: str
) -> None:
    code, _, err = _run_csv(capsys, mapping, tmp_path / "d.csv", GOOD_ROW, "--label-delay", delay)
    assert code == 2
    assert "label_delay: expected e.g. 7d, 36h" in err


def test_bad_mapping_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "d.csv"
    src.write_text("a\n1\n")
    m = tmp_path / "m.yaml"
    m.write_text("columns: {a: amount}\n")
    code, _, err = _run(capsys, "csv", str(src), "-m", str(m), "--out", str(tmp_path / "e.parquet"))
    assert code == 2
    assert "error: mapping: columns: nothing feeds the required field occurred_at" in err


def test_out_must_not_overwrite_the_source(
    tmp_path: Path, mapping: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "d.csv"
    src.write_text(GOOD_ROW)
    code, _, err = _run(capsys, "csv", str(src), "-m", str(mapping), "--out", str(src))
    assert code == 2
    assert "--out: would overwrite the source file" in err
    assert src.read_text().startswith("id,ts")


def test_a_clean_run_removes_a_stale_rejects_file(
    tmp_path: Path, mapping: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "d.csv"
    out = tmp_path / "e.parquet"
    src.write_text("id,ts,amt,ccy,cust,fraud\na,2026-01-01T00:00:00Z,oops,EUR,c,0\n")
    assert _run(capsys, "csv", str(src), "-m", str(mapping), "--out", str(out))[0] == 2
    assert (tmp_path / "e.rejects.csv").exists()
    src.write_text(GOOD_ROW)
    assert _run(capsys, "csv", str(src), "-m", str(mapping), "--out", str(out))[0] == 0
    assert not (tmp_path / "e.rejects.csv").exists()
    assert _counts(out) == (1, 0)
