"""Named lists: file format, normalisation, kinds and their automatic checks."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from txguard.domain.errors import ValidationError
from txguard.domain.events import TransactionEvent, parse_transaction
from txguard.rules._yaml import Problems
from txguard.rules.lists import ListKind, parse_list_text
from txguard.rules.rules import RuleSet


def event(**over: object) -> TransactionEvent:
    d: dict[str, object] = {
        "transaction_id": "t1",
        "occurred_at": "2026-03-01T12:00:00Z",
        "amount": 100.0,
        "currency": "USD",
        "sender": {"account_id": "acc-1", "country": "FR"},
        "recipient": {"account_id": "acc-2", "country": "DE"},
    }
    d.update(over)
    return parse_transaction(d)


def load(tmp_path: Path, lists_yaml: str, files: dict[str, str] | None = None) -> RuleSet:
    for name, text in (files or {}).items():
        (tmp_path / name).write_text(text)
    p = tmp_path / "rules.yaml"
    p.write_text('version: "1"\nlists:\n' + textwrap.indent(textwrap.dedent(lists_yaml), "  "))
    return RuleSet.load(p, known_features=[])


def test_list_file_format() -> None:
    p = Problems("r")
    text = "# header\n\nw1\n  w2  \nw3 # trailing comment\nw#4\n\t# indented comment\n"
    values = parse_list_text(text, source="w.txt", country=False, casefold=False, problems=p)
    assert values == ["w1", "w2", "w3", "w#4"]
    assert not p


def test_country_list_values_are_checked_with_file_and_line() -> None:
    p = Problems("r")
    values = parse_list_text(
        "ir\nKP\nIRAN\n", source="c.txt", country=True, casefold=False, problems=p
    )
    assert values == ["IR", "KP"]
    assert [str(e) for e in p.field_errors()] == [
        "c.txt:3: 'IRAN' is not an ISO 3166-1 alpha-2 country code (two upper-case letters, e.g. 'IR')"
    ]


def test_list_file_errors_fail_the_load(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as ei:
        load(tmp_path, "c: {kind: high_risk, file: c.txt}\n", {"c.txt": "IR\nXXX\n"})
    assert [str(e) for e in ei.value.errors] == [
        f"{tmp_path / 'c.txt'}:2: 'XXX' is not an ISO 3166-1 alpha-2 country code "
        "(two upper-case letters, e.g. 'IR')"
    ]


def test_missing_list_file_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as ei:
        load(tmp_path, "w:\n  kind: block\n  fields: device_id\n  file: nope.txt\n")
    assert [str(e) for e in ei.value.errors] == [
        f"{tmp_path / 'rules.yaml'}:6: list 'w': file not found: {tmp_path / 'nope.txt'}"
    ]


def test_yaml_values_are_taken_as_written(tmp_path: Path) -> None:
    # YAML 1.1 reads 0x1F as 31 and NO (Norway) as false; a list must not
    rs = load(
        tmp_path,
        "w: {kind: block, fields: recipient_wallet_address, values: [0x1F, 0755, 1e3]}\n"
        "c: {kind: high_risk, values: [NO, 'on']}\n",
    )
    assert rs.lists["w"].values == {"0x1F", "0755", "1e3"}
    assert rs.lists["c"].values == {"NO", "ON"}


def test_inline_and_file_values_merge(tmp_path: Path) -> None:
    rs = load(
        tmp_path,
        "w: {kind: block, fields: device_id, values: [d1], files: [a.txt, b.txt]}\n",
        {"a.txt": "d2\n", "b.txt": "d3\n"},
    )
    assert rs.lists["w"].values == {"d1", "d2", "d3"}
    assert len(rs.lists["w"].sources) == 2


@pytest.mark.parametrize(
    ("yaml_text", "needle"),
    [
        ("w: {kind: block, fields: amount, values: [x]}\n", "'amount' is not a text event field"),
        ("w: {kind: block, fields: nope, values: [x]}\n", "'nope' is not a text event field"),
        ("w: {kind: sanctions, fields: device_id, values: [IR]}\n", "not a country field"),
        (
            "w: {kind: reference, fields: device_id, values: [x]}\n",
            "a reference list has no fields",
        ),
        ("w: {kind: block, fields: device_id}\n", "needs values: or file:"),
        ("w: {kind: block, fields: device_id, values: x}\n", "values must be a YAML list"),
        ("w: {kind: block, fields: device_id, values: [[a]]}\n", "list values must be text"),
        ("w: {kind: block, fields: device_id, values: ['']}\n", "empty list value"),
        ("w: {kind: block, values: [x], colour: red}\n", "unknown key 'colour'"),
        ("w: {kind: block, values: [x], score: 2}\n", "score must be a number in -1..1"),
        ("w: {kind: block, values: [x], case_insensitive: 1}\n", "case_insensitive must be"),
        ("w: {kind: block, values: [x], reason: ''}\n", "reason must be non-empty"),
        ("w: [a, b]\n", "must be a mapping"),
        ("W1: {kind: block, values: [x]}\n", "bad list name"),
    ],
)
def test_rejects_bad_list_definitions(tmp_path: Path, yaml_text: str, needle: str) -> None:
    with pytest.raises(ValidationError) as ei:
        load(tmp_path, yaml_text)
    assert any(needle in str(e) for e in ei.value.errors), ei.value.errors


def test_kinds_and_their_effects(tmp_path: Path) -> None:
    rs = load(
        tmp_path,
        """
        sanctioned: {kind: sanctions, values: [IR, CU]}
        risky: {kind: high_risk, values: [NG]}
        blocked_devices: {kind: block, fields: device_id, values: [dev-bad]}
        watch_ips: {kind: review, fields: ip, values: [203.0.113.9]}
        trusted: {kind: allow, fields: merchant_id, values: [m-good], score: -0.1}
        refs: {kind: reference, values: [acc-2]}
        """,
    )
    assert rs.lists["refs"].kind is ListKind.REFERENCE

    def hits(**over: object) -> list[tuple[str, str, bool]]:
        return [(h.rule_id, h.effect, h.overridable) for h in rs.evaluate(event(**over), {})]

    assert hits() == []  # FR -> DE, reference list has no automatic check
    assert hits(sender={"account_id": "a", "country": "IR"}) == [
        ("sanctioned", "force_reject", False)
    ]
    both = hits(
        sender={"account_id": "a", "country": "CU"}, recipient={"account_id": "b", "country": "IR"}
    )
    assert both == [("sanctioned", "force_reject", False)] * 2
    assert hits(recipient={"country": "NG"}) == [("risky", "force_review", False)]
    assert hits(device_id="dev-bad") == [("blocked_devices", "force_reject", False)]
    assert hits(ip="203.0.113.9") == [("watch_ips", "force_review", True)]
    assert hits(merchant_id="m-good") == [("trusted", "allow", True)]
    assert hits(device_id="dev-BAD") == []  # exact match unless case_insensitive
    h = rs.evaluate(event(recipient={"country": "IR"}), {})[0]
    assert h.kind == "list" and h.reason == "sanctioned jurisdiction: recipient_country IR"
    (d,) = rs.evaluate(event(device_id="dev-bad"), {})
    assert d.reason == "on the block list (device_id)"  # values other than countries not echoed
    assert rs.evaluate(event(merchant_id="m-good"), {})[0].score_delta == -0.1


def test_case_insensitive_list(tmp_path: Path) -> None:
    rs = load(
        tmp_path,
        "w: {kind: block, fields: recipient_wallet_address, values: [0xAbCd], case_insensitive: true}\n",
    )
    assert len(rs.evaluate(event(recipient={"wallet_address": "0XABCD"}), {})) == 1
    assert "0xabcd" in rs.lists["w"]


def test_in_list_from_a_rule(tmp_path: Path) -> None:
    (tmp_path / "m.txt").write_text("acc-2\n")
    p = tmp_path / "rules.yaml"
    p.write_text(
        textwrap.dedent(
            """
            version: "1"
            lists:
              mules: {kind: reference, file: m.txt}
            rules:
              - id: pay_mule
                when: in_list("mules", recipient_account_id) and amount_usd > 50
                action: force_review
                reason: payment to a suspected mule
            """
        )
    )
    rs = RuleSet.load(p, known_features=[])
    assert [h.rule_id for h in rs.evaluate(event(), {})] == ["pay_mule"]
    assert rs.evaluate(event(amount=10.0), {}) == []
    assert rs.evaluate(event(recipient={"account_id": "acc-3"}), {}) == []
