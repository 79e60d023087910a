"""Reading a rules file into compiled rules and lists, reporting every problem with its line.

File format (``examples/rules.yaml`` is a worked example; ``docs/rules.md`` the reference)::

    version: "2026.11.1"          # required; the RuleSet's version is this + a content hash
    description: ...              # optional
    lists:                        # optional; see txguard.rules.lists
      blocked_wallets: {kind: block, fields: [recipient_wallet_address], file: lists/x.txt}
    rules:
      - id: big_new_account       # unique; lower_case, digits, _
        when: amount_usd > 10000 and sender_account_age_days < 7
        action: force_review      # force_review | force_reject | add_score | allow
        score: 0.1                # optional (required, non-zero, for add_score); -1..1
        reason: Large amount from an account opened this week
        enabled: true             # optional
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from txguard.rules._yaml import LineDict, LineList, Problems, YamlProblem, load_with_lines
from txguard.rules.expr import Condition, ExprError, compile_condition
from txguard.rules.fields import name_catalog
from txguard.rules.lists import NamedList, lookup_sets, parse_lists
from txguard.rules.outcome import Effect, RuleHit

MAX_RULES = 2000
MAX_REASON_CHARS = 300

_TOP_KEYS = frozenset(["version", "description", "lists", "rules"])
_RULE_KEYS = frozenset(["id", "when", "action", "score", "reason", "enabled", "description"])


@dataclass(frozen=True, slots=True)
class CompiledRule:
    id: str
    condition: Condition
    hit: RuleHit  # the same immutable hit object every time the rule fires
    line: int
    text: str


@dataclass(frozen=True, slots=True)
class Parsed:
    declared_version: str
    rules: tuple[CompiledRule, ...]
    lists: dict[str, NamedList]


def parse_rules(
    data: bytes,
    *,
    source: str,
    base_dir: Path,
    known_features: Collection[str],
    read: Callable[[Path], bytes],
) -> tuple[Parsed | None, Problems]:
    """Parse and compile; returns (None, problems) when anything is wrong."""
    problems = Problems(source)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        problems.add(1, f"not UTF-8 text (byte {e.start})")
        return None, problems
    try:
        doc = load_with_lines(text)
    except YamlProblem as e:
        problems.add(e.line, e.message)
        return None, problems
    if not isinstance(doc, LineDict):
        problems.add(
            getattr(doc, "line", 1), "a rules file is a mapping with version, lists, rules"
        )
        return None, problems
    for key in doc:
        if key not in _TOP_KEYS:
            problems.add(
                doc.key_lines[key], f"unknown key {key!r}; allowed: {', '.join(sorted(_TOP_KEYS))}"
            )
    version = doc.texts.get("version")  # as written: 1.10 stays "1.10"
    if not version:
        problems.add(
            doc.lines.get("version", doc.line), "version is required (text, e.g. '2026.11.1')"
        )
        version = ""
    lists = parse_lists(doc.get("lists"), base_dir=base_dir, read=read, problems=problems)
    names = name_catalog(known_features)
    rules = _parse_rule_list(doc, names, lists, problems)
    if problems:
        return None, problems
    return Parsed(str(version), tuple(rules), lists), problems


def _parse_rule_list(
    doc: LineDict, names: dict[str, Any], lists: dict[str, NamedList], problems: Problems
) -> list[CompiledRule]:
    raw = doc.get("rules")
    if raw is None:
        return []
    if not isinstance(raw, LineList):
        problems.add(doc.lines["rules"], "'rules' must be a list of rules")
        return []
    if len(raw) > MAX_RULES:
        problems.add(doc.lines["rules"], f"{len(raw)} rules, at most {MAX_RULES}")
        return []
    lookups = lookup_sets(lists)
    out: list[CompiledRule] = []
    seen: dict[str, int] = {}
    for item, line in zip(raw, raw.lines, strict=True):
        rule = _parse_rule(item, line, names=names, lookups=lookups, lists=lists, problems=problems)
        if rule is None:
            continue
        if rule.id in seen:
            problems.add(line, f"duplicate rule id {rule.id!r} (first at line {seen[rule.id]})")
            continue
        seen[rule.id] = line
        out.append(rule)
    return out


def _parse_rule(
    item: Any,
    line: int,
    *,
    names: dict[str, Any],
    lookups: dict[str, Any],
    lists: dict[str, NamedList],
    problems: Problems,
) -> CompiledRule | None:
    if not isinstance(item, LineDict):
        problems.add(line, "each rule is a mapping with id, when, action, reason")
        return None
    n_before = len(problems.items)
    rid = item.texts.get("id")  # as written: "off" is a name, not YAML's False
    if not isinstance(rid, str) or not _valid_id(rid):
        problems.add(
            item.lines.get("id", line),
            f"rule id must be lower_case letters, digits, _ (got {rid!r})",
        )
        rid = f"#{line}"
    who = f"rule {rid!r}"
    for key in item:
        if key not in _RULE_KEYS:
            problems.add(
                item.key_lines[key],
                f"unknown key {key!r} in {who}; allowed: {', '.join(sorted(_RULE_KEYS))}",
            )
    if rid in lists:
        problems.add(
            item.lines.get("id", line), f"{who} has the name of a list; reasons would be ambiguous"
        )
    action_raw = item.get("action")
    try:
        effect: Effect | None = Effect(str(action_raw))
    except ValueError:
        problems.add(
            item.lines.get("action", line),
            f"{who}: action must be one of {', '.join(e.value for e in Effect)} (got {action_raw!r})",
        )
        effect = None
    score = item.get("score", 0.0)
    if (
        isinstance(score, bool)
        or not isinstance(score, int | float)
        or not math.isfinite(score)
        or not -1 <= score <= 1
    ):
        problems.add(
            item.lines.get("score", line), f"{who}: score must be a number in -1..1 (got {score!r})"
        )
        score = 0.0
    elif effect is Effect.ADD_SCORE and score == 0:
        problems.add(item.lines.get("score", line), f"{who}: add_score needs a non-zero score")
    reason = item.texts.get("reason")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON_CHARS:
        problems.add(
            item.lines.get("reason", line),
            f"{who}: reason is required: plain text for the analyst, up to {MAX_REASON_CHARS} characters",
        )
        reason = ""
    enabled = item.get("enabled", True)
    if not isinstance(enabled, bool):
        problems.add(item.lines["enabled"], f"{who}: enabled must be true or false")
    when = item.texts.get("when")
    condition = None
    if not isinstance(when, str):
        when = ""
        problems.add(
            item.lines.get("when", line), f"{who}: 'when' (the condition) is required text"
        )
    else:
        try:
            condition = compile_condition(when, names=names, lists=lookups)
        except ExprError as e:
            hint = f" ({e.hint})" if e.hint else ""
            problems.add(
                _expr_line(item.lines["when"], when, e.offset),
                f"{e.message} in condition of {who}{hint}",
            )
    if len(problems.items) > n_before or condition is None or effect is None or enabled is False:
        return None
    hit = RuleHit(rid, effect.value, float(score), reason.strip(), "rule")
    return CompiledRule(rid, condition, hit, line, when)


def _valid_id(rid: str) -> bool:
    return (
        0 < len(rid) <= 64
        and rid[0].isalpha()
        and all(c.islower() or c.isdigit() or c == "_" for c in rid)
    )


def _expr_line(value_line: int, text: str, offset: int | None) -> int:
    """The file line of a problem in a condition: block scalars (``when: |``) start on the line
    after the indicator; a folded or plain one is reported at its first line."""
    if "\n" not in text:
        return value_line
    before = text[: offset or 0]
    return value_line + 1 + before.count("\n")
