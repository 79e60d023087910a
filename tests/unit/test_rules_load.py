"""Loading rules files: every problem is reported with file:line; signatures are enforced."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from txguard.domain.errors import ConfigurationError, IntegrityError, ValidationError
from txguard.rules.rules import RuleSet
from txguard.rules.signing import sig_path, sign_file

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "rules.yaml"
# the feature names examples/rules.yaml uses, all in the default feature spec
EXAMPLE_FEATURES = [
    "sender_sum_amount_usd_1d",
    "sender_sum_amount_below_10k_7d",
    "wallet_distinct_sender_account_id_1d",
    "recipient_distinct_sender_account_id_1d",
    "sender_count_1h",
    "device_distinct_sender_account_id_1d",
]


def write(tmp_path: Path, text: str, name: str = "rules.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text).lstrip("\n"))
    return p


def problems(path: Path, features: list[str] | None = None) -> list[str]:
    with pytest.raises(ValidationError) as ei:
        RuleSet.load(path, known_features=features or [])
    return [str(e) for e in ei.value.errors]


def test_the_issue_example_message(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        """
        version: "1"
        rules:
          - id: ok_rule
            when: amount_usd > 1
            action: add_score
            score: 0.1
            reason: fine
          - id: big_new_account
            when: amout_usd > 10000 and sender_account_age_days < 7
            action: force_review
            reason: Large amount from a new account
        """,
    )
    assert problems(p) == [
        f"{p}:9: unknown field 'amout_usd' in condition of rule 'big_new_account' "
        "(did you mean 'amount_usd'?)"
    ]


def test_reports_every_problem_sorted_by_line(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        """
        version: "1"
        colour: red
        lists:
          bad list: {kind: block, values: [x]}
          countries: {kind: sanctions, values: [IR, Iran]}
          wallets: {kind: blok, values: [w]}
        rules:
          - id: a
            when: type == "crad"
            action: force_rejet
            reason: x
          - id: a
            when: amount > 1
            action: add_score
            reason: y
          - id: c
            when: |
              amount > 1
              and device == "d"
            action: force_review
            reason: z
            severity: high
          - id: d
            when: amount > 1
            action: allow
        """,
    )
    got = problems(p)
    assert got == [
        f"{p}:2: unknown key 'colour'; allowed: description, lists, rules, version",
        f"{p}:4: bad list name 'bad list': use lower_case letters, digits, _",
        f"{p}:5: 'IRAN' is not an ISO 3166-1 alpha-2 country code (two upper-case letters, e.g. 'IR')",
        f"{p}:6: list 'wallets': unknown kind 'blok'; one of: block, sanctions, review, high_risk, allow, reference",
        f"{p}:9: unknown value 'crad' for field 'type' in condition of rule 'a' "
        "(one of: card, transfer, payment, cash_in, cash_out, debit, salary, crypto_to_fiat, "
        "fiat_to_crypto, crypto_transfer)",
        f"{p}:10: rule 'a': action must be one of force_review, force_reject, add_score, allow "
        "(got 'force_rejet')",
        f"{p}:12: rule 'a': add_score needs a non-zero score",
        f"{p}:19: unknown field 'device' in condition of rule 'c' (did you mean 'device_id'?)",
        f"{p}:22: unknown key 'severity' in rule 'c'; allowed: action, description, enabled, id, reason, score, when",
        f"{p}:23: rule 'd': reason is required: plain text for the analyst, up to 300 characters",
    ]


def test_duplicate_rule_ids_and_yaml_keys(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        """
        version: "1"
        rules:
          - {id: r1, when: amount > 1, action: force_review, reason: a}
          - {id: r1, when: amount > 2, action: force_review, reason: b}
        """,
    )
    assert problems(p) == [f"{p}:4: duplicate rule id 'r1' (first at line 3)"]
    p = write(tmp_path, 'version: "1"\nrules: []\nversion: "2"\n')
    assert problems(p) == [f"{p}:3: duplicate key 'version' (first at line 1)"]


def test_yaml_syntax_error_has_a_line(tmp_path: Path) -> None:
    p = write(tmp_path, 'version: "1"\nrules:\n  - id: a\n    when: [unclosed\n')
    (msg,) = problems(p)
    assert msg.startswith(f"{p}:") and "YAML syntax error" in msg


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "a rules file is a mapping"),
        ("- 1\n- 2\n", "a rules file is a mapping"),
        ("rules: []\n", "version is required"),
        ('version: "1"\nrules: {a: 1}\n', "'rules' must be a list"),
        ('version: "1"\nrules: [5]\n', "each rule is a mapping"),
        ('version: "1"\nlists: [a]\n', "'lists' must be a mapping"),
        (
            'version: "1"\nrules:\n  - {id: a, action: allow, reason: r}\n',
            "'when' (the condition) is required",
        ),
        (
            'version: "1"\nrules:\n  - {id: A-1, when: amount > 1, action: allow, reason: r}\n',
            "rule id must be",
        ),
        (
            'version: "1"\nrules:\n  - {id: a, when: amount > 1, action: allow, reason: r, score: 3}\n',
            "score must be a number in -1..1",
        ),
        (
            'version: "1"\nrules:\n  - {id: a, when: amount > 1, action: allow, reason: r, enabled: 1}\n',
            "enabled must be true or false",
        ),
        (
            'version: "1"\nrules:\n  - {id: a, when: "amount >", action: allow, reason: r}\n',
            "syntax error",
        ),
        (
            'version: "1"\nrules:\n  - {id: a, when: x > 1, action: allow, reason: r}\n',
            "unknown field 'x'",
        ),
        ("version: 1\nrules: !!python/object:os.system {}\n", "unsupported tag"),
        ("version: 1\nrules:\n  - !!python/name:os.system x\n", "bad value"),
    ],
)
def test_rejects(tmp_path: Path, text: str, needle: str) -> None:
    p = tmp_path / "rules.yaml"
    p.write_text(text)
    got = problems(p)
    assert any(needle in m for m in got), got


def test_features_are_names_only_when_known(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        """
        version: "1"
        rules:
          - {id: burst, when: sender_count_1h >= 10, action: force_review, reason: burst}
        """,
    )
    assert "unknown field 'sender_count_1h'" in problems(p)[0]
    rs = RuleSet.load(p, known_features=["sender_count_1h"])
    assert [r.id for r in rs.rules] == ["burst"]


def test_disabled_rules_are_checked_but_not_run(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        """
        version: "1"
        rules:
          - {id: off, when: amount > 1, action: force_review, reason: r, enabled: false}
        """,
    )
    assert RuleSet.load(p, known_features=[]).rules == ()
    p.write_text(p.read_text().replace("amount > 1", "amont > 1"))
    assert "unknown field 'amont'" in problems(p)[0]


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    assert problems(tmp_path / "nope.yaml") == [f"{tmp_path / 'nope.yaml'}: file not found"]


def test_version_is_declared_version_plus_content_hash(tmp_path: Path) -> None:
    p = write(tmp_path, 'version: "2026.1"\nrules: []\n')
    v1 = RuleSet.load(p, known_features=[]).version
    assert v1.startswith("2026.1+") and len(v1) == len("2026.1+") + 12
    assert RuleSet.load(p, known_features=[]).version == v1
    p.write_text('version: "2026.1"\nrules: []\n# edited\n')
    assert RuleSet.load(p, known_features=[]).version != v1


def test_version_changes_when_a_list_file_changes(tmp_path: Path) -> None:
    (tmp_path / "w.txt").write_text("w1\n")
    p = write(
        tmp_path, 'version: "1"\nlists:\n  w: {kind: block, fields: device_id, file: w.txt}\n'
    )
    v1 = RuleSet.load(p, known_features=[]).version
    (tmp_path / "w.txt").write_text("w1\nw2\n")
    assert RuleSet.load(p, known_features=[]).version != v1


def test_the_example_uses_features_of_the_default_spec() -> None:
    from txguard.features.spec import default_spec

    assert set(EXAMPLE_FEATURES) <= set(default_spec().names)
    RuleSet.load(EXAMPLE, known_features=default_spec().names)


def test_the_example_file_loads() -> None:
    rs = RuleSet.load(EXAMPLE, known_features=EXAMPLE_FEATURES)
    assert rs.version.startswith("2026.11.1+")
    assert len(rs.rules) >= 8
    assert {
        "sanctioned_countries",
        "blocked_wallets",
        "high_risk_countries",
        "trusted_merchants",
    } <= set(rs.lists)
    assert rs.lists["sanctioned_countries"].values == {"CU", "IR", "KP", "SY"}
    assert "0x7f367cc41522ce07553e823bf3be79a889debe1b" in rs.lists["blocked_wallets"]
    assert "0x7F367CC41522CE07553E823BF3BE79A889DEBE1B" in rs.lists["blocked_wallets"]


# ---------------------------------------------------------------- signatures


def _signed(tmp_path: Path, key: str) -> Path:
    (tmp_path / "w.txt").write_text("w1\n")
    p = write(
        tmp_path, 'version: "1"\nlists:\n  w: {kind: block, fields: device_id, file: w.txt}\n'
    )
    sign_file(p, key)
    sign_file(tmp_path / "w.txt", key)
    return p


def test_signed_files_load_with_the_key(tmp_path: Path) -> None:
    p = _signed(tmp_path, "k1")
    assert RuleSet.load(p, known_features=[], signing_key="k1").lists["w"].values == {"w1"}
    assert sig_path(p).read_text().strip() == sig_path(p).read_text().strip().lower()


def test_wrong_key_is_refused(tmp_path: Path) -> None:
    p = _signed(tmp_path, "k1")
    with pytest.raises(IntegrityError, match="signature does not match"):
        RuleSet.load(p, known_features=[], signing_key="k2")


def test_edited_rules_file_is_refused(tmp_path: Path) -> None:
    p = _signed(tmp_path, "k1")
    p.write_text(p.read_text() + "rules: []\n")
    with pytest.raises(IntegrityError, match=r"rules\.yaml: signature does not match"):
        RuleSet.load(p, known_features=[], signing_key="k1")


def test_edited_list_file_is_refused(tmp_path: Path) -> None:
    p = _signed(tmp_path, "k1")
    (tmp_path / "w.txt").write_text("")  # someone empties the block list
    with pytest.raises(IntegrityError, match=r"w\.txt: signature does not match"):
        RuleSet.load(p, known_features=[], signing_key="k1")


def test_missing_signature_is_refused_when_a_key_is_required(tmp_path: Path) -> None:
    p = _signed(tmp_path, "k1")
    sig_path(p).unlink()
    with pytest.raises(IntegrityError, match=r"rules\.yaml\.sig missing"):
        RuleSet.load(p, known_features=[], signing_key="k1")
    # without a key the signature is not checked
    assert RuleSet.load(p, known_features=[]).lists["w"].values == {"w1"}


def test_empty_key_is_a_configuration_error(tmp_path: Path) -> None:
    p = _signed(tmp_path, "k1")
    with pytest.raises(ConfigurationError):
        RuleSet.load(p, known_features=[], signing_key="")


@pytest.mark.parametrize(
    "module", ["_yaml", "expr", "lists", "outcome", "rules", "signing"], ids=str
)
def test_docstring_examples_run(module: str) -> None:
    import doctest
    import importlib

    mod = importlib.import_module(f"txguard.rules.{module}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


def test_alias_bomb_is_refused(tmp_path: Path) -> None:
    lines = ['version: "1"', "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    p = tmp_path / "rules.yaml"
    p.write_text("\n".join(lines) + "\n")
    assert any("values (with aliases expanded)" in m for m in problems(p))
