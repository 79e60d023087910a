"""Named lists: blocked wallets and accounts, sanctioned and high-risk countries, allow-lists.

A list is a set of text values, given inline in the rules file (``values:``), in text files
(``file:``, one value per line, ``#`` starts a comment), or both. Its **kind** says what a hit
does on its own, for every event field named in ``fields``:

============  ===========================  =====================================================
kind          a hit                        notes
============  ===========================  =====================================================
block         force REJECT                 blocked wallets, accounts, devices, merchants
sanctions     force REJECT                 country codes; checks sender_country and
                                           recipient_country unless ``fields`` says otherwise
review        force REVIEW                 an allow hit can cancel it
high_risk     force REVIEW                 country codes, same default fields as sanctions;
                                           an allow hit can NOT cancel it (enhanced due
                                           diligence is an obligation, not a fraud guess)
allow         allow                        cancels REVIEW from rules, review lists and the
                                           model; never a REJECT, never sanctions/high_risk
reference     nothing                      only used by rules through ``in_list("name", f)``
============  ===========================  =====================================================

Every list can be used in a rule condition with ``in_list("name", field)``. Matching is exact
(after stripping spaces); ``case_insensitive: true`` folds case on both sides (Ethereum
addresses, e-mail domains). Country lists are upper-cased and must be ISO 3166-1 alpha-2.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from txguard.rules._yaml import LineDict, LineList, Problems
from txguard.rules.expr import LookupSet
from txguard.rules.fields import EVENT_FIELDS, check_country

MAX_VALUE_CHARS = 256
_COMMENT = re.compile(r"(^|\s)#.*$")
MAX_LIST_VALUES = 5_000_000


class ListKind(StrEnum):
    BLOCK = "block"
    SANCTIONS = "sanctions"
    REVIEW = "review"
    HIGH_RISK = "high_risk"
    ALLOW = "allow"
    REFERENCE = "reference"

    @property
    def is_country(self) -> bool:
        return self in (ListKind.SANCTIONS, ListKind.HIGH_RISK)


COUNTRY_FIELDS = ("sender_country", "recipient_country")

_DEFAULT_REASON = {
    ListKind.BLOCK: "on the block list",
    ListKind.SANCTIONS: "sanctioned jurisdiction",
    ListKind.REVIEW: "on a review list",
    ListKind.HIGH_RISK: "high-risk jurisdiction",
    ListKind.ALLOW: "on an allow-list",
    ListKind.REFERENCE: "on a reference list",
}


@dataclass(frozen=True, slots=True)
class NamedList:
    name: str
    kind: ListKind
    values: frozenset[str]  # normalised: stripped; casefolded / upper-cased as the list says
    fields: tuple[str, ...]  # event fields checked automatically (empty: only via in_list)
    reason: str
    casefold: bool = False
    score: float = 0.0
    sources: tuple[str, ...] = ()  # files it was read from

    def normalise(self, value: str) -> str:
        return value.casefold() if self.casefold else value

    def __contains__(self, value: object) -> bool:
        return isinstance(value, str) and self.normalise(value.strip()) in self.values


_LIST_KEYS = frozenset(
    ["kind", "values", "file", "files", "fields", "reason", "case_insensitive", "score"]
)


def parse_list_text(
    text: str, *, source: str, country: bool, casefold: bool, problems: Problems
) -> list[str]:
    """Values of a list file: one per line; blank lines and ``#`` comments ignored.

    >>> p = Problems("x")
    >>> parse_list_text("# OFAC\\nIR\\n kp  # North Korea\\n", source="c.txt", country=True,
    ...                 casefold=False, problems=p)
    ['IR', 'KP']
    """
    out: list[str] = []
    for i, raw in enumerate(text.splitlines(), start=1):
        line = _COMMENT.sub("", raw).strip()  # "# whole line" or "value  # trailing comment"
        if not line:
            continue
        value = _normalise(
            line, country=country, casefold=casefold, source=source, line=i, problems=problems
        )
        if value is not None:
            out.append(value)
    return out


def _normalise(
    raw: Any, *, country: bool, casefold: bool, source: str, line: int, problems: Problems
) -> str | None:
    if not isinstance(raw, str):
        problems.add(line, f"list values must be text, got {type(raw).__name__}", source=source)
        return None
    value = str(raw).strip()
    if not value:
        problems.add(line, "empty list value", source=source)
        return None
    if len(value) > MAX_VALUE_CHARS or not value.isprintable():
        problems.add(
            line, f"bad list value {value[:40]!r}: too long or not printable", source=source
        )
        return None
    if country:
        value = value.upper()
        if (why := check_country(value)) is not None:
            problems.add(line, f"{why[0]} ({why[1]})", source=source)
            return None
    return value.casefold() if casefold else value


def parse_lists(
    doc: Any,
    *,
    base_dir: Path,
    read: Callable[[Path], bytes],
    problems: Problems,
) -> dict[str, NamedList]:
    """The ``lists:`` section of a rules file; file paths are relative to the rules file."""
    out: dict[str, NamedList] = {}
    if doc is None:
        return out
    if not isinstance(doc, LineDict):
        problems.add(getattr(doc, "line", 1), "'lists' must be a mapping of list name to list")
        return out
    for name, spec in doc.items():
        line = doc.key_lines[name]
        if not _valid_name(name):
            problems.add(line, f"bad list name {name!r}: use lower_case letters, digits, _")
            continue
        parsed = _parse_one(name, spec, line, base_dir=base_dir, read=read, problems=problems)
        if parsed is not None:
            out[name] = parsed
    return out


def _valid_name(name: str) -> bool:
    return (
        isinstance(name, str)
        and 0 < len(name) <= 64
        and name[0].isalpha()
        and all(c.islower() or c.isdigit() or c == "_" for c in name)
    )


def _parse_one(
    name: str,
    spec: Any,
    line: int,
    *,
    base_dir: Path,
    read: Callable[[Path], bytes],
    problems: Problems,
) -> NamedList | None:
    if not isinstance(spec, LineDict):
        problems.add(line, f"list {name!r} must be a mapping with kind and values or file")
        return None
    n_before = len(problems.items)
    for key in spec:
        if key not in _LIST_KEYS:
            problems.add(
                spec.key_lines[key],
                f"unknown key {key!r} in list {name!r}; allowed: {', '.join(sorted(_LIST_KEYS))}",
            )
    kind_raw = spec.get("kind", "reference")
    try:
        kind = ListKind(kind_raw)
    except ValueError:
        problems.add(
            spec.lines.get("kind", line),
            f"list {name!r}: unknown kind {kind_raw!r}; one of: {', '.join(k.value for k in ListKind)}",
        )
        return None
    casefold = spec.get("case_insensitive", False)
    if not isinstance(casefold, bool):
        problems.add(
            spec.lines["case_insensitive"], f"list {name!r}: case_insensitive must be true or false"
        )
        casefold = False
    score = _score(spec, name, problems)
    reason = spec.get("reason", _DEFAULT_REASON[kind])
    if not isinstance(reason, str) or not reason.strip():
        problems.add(
            spec.lines.get("reason", line), f"list {name!r}: reason must be non-empty text"
        )
        reason = _DEFAULT_REASON[kind]
    fields = _fields(spec, name, kind, line, problems)

    values: set[str] = set()
    inline = spec.get("values")
    if inline is not None:
        if not isinstance(inline, LineList):
            problems.add(spec.lines["values"], f"list {name!r}: values must be a YAML list")
        else:
            for item, item_text, item_line in zip(inline, inline.texts, inline.lines, strict=True):
                v = _normalise(
                    item if item_text is None else item_text,  # as written: 0x12 is text
                    country=kind.is_country,
                    casefold=casefold,
                    source=problems.source,
                    line=item_line,
                    problems=problems,
                )
                if v is not None:
                    values.add(v)
    files = _file_names(spec, name, problems)
    sources: list[str] = []
    for rel, rel_line in files:
        path = (base_dir / rel) if not Path(rel).is_absolute() else Path(rel)
        try:
            data = read(path)
        except FileNotFoundError:
            problems.add(rel_line, f"list {name!r}: file not found: {path}")
            continue
        except OSError as e:
            problems.add(rel_line, f"list {name!r}: cannot read {path}: {e.strerror or e}")
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            problems.add(rel_line, f"list {name!r}: {path} is not UTF-8 text (byte {e.start})")
            continue
        values.update(
            parse_list_text(
                text,
                source=str(path),
                country=kind.is_country,
                casefold=casefold,
                problems=problems,
            )
        )
        sources.append(str(path))
    if inline is None and not files:
        problems.add(line, f"list {name!r} needs values: or file:")
    if len(values) > MAX_LIST_VALUES:
        problems.add(line, f"list {name!r} has {len(values)} values, at most {MAX_LIST_VALUES}")
    if len(problems.items) > n_before:
        return None
    return NamedList(
        name=name,
        kind=kind,
        values=frozenset(values),
        fields=fields,
        reason=reason.strip(),
        casefold=casefold,
        score=score,
        sources=tuple(sources),
    )


def _score(spec: LineDict, name: str, problems: Problems) -> float:
    raw = spec.get("score", 0.0)
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not -1.0 <= raw <= 1.0:
        problems.add(
            spec.lines["score"], f"list {name!r}: score must be a number in -1..1, got {raw!r}"
        )
        return 0.0
    return float(raw)


def _fields(
    spec: LineDict, name: str, kind: ListKind, line: int, problems: Problems
) -> tuple[str, ...]:
    raw = spec.get("fields")
    if raw is None:
        return COUNTRY_FIELDS if kind.is_country else ()
    if kind is ListKind.REFERENCE:
        problems.add(
            spec.lines["fields"],
            f"list {name!r}: a reference list has no fields (use in_list in a rule, or another kind)",
        )
        return ()
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list):
        problems.add(
            spec.lines["fields"], f"list {name!r}: fields must be a field name or a list of them"
        )
        return ()
    out: list[str] = []
    for f in items:
        info = EVENT_FIELDS.get(f) if isinstance(f, str) else None
        if info is None or info.type != "str":
            text_fields = ", ".join(n for n, i in EVENT_FIELDS.items() if i.type == "str")
            problems.add(
                spec.lines["fields"],
                f"list {name!r}: {f!r} is not a text event field; one of: {text_fields}",
            )
            continue
        if kind.is_country and info.check is not check_country and f != "jurisdiction":
            problems.add(
                spec.lines["fields"],
                f"list {name!r}: a {kind.value} list holds country codes; {f!r} is not a country field",
            )
            continue
        out.append(f)
    return tuple(out)


def _file_names(spec: LineDict, name: str, problems: Problems) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    for key in ("file", "files"):
        raw = spec.get(key)
        if raw is None:
            continue
        items = [raw] if isinstance(raw, str) else raw
        if not isinstance(items, list) or not all(isinstance(x, str) and x for x in items):
            problems.add(spec.lines[key], f"list {name!r}: {key} must be a path or a list of paths")
            continue
        out.extend((x, spec.lines[key]) for x in items)
    return out


def lookup_sets(lists: Mapping[str, NamedList]) -> dict[str, LookupSet]:
    """What the condition compiler needs to resolve ``in_list("name", ...)``."""
    return {n: LookupSet(lst.values, lst.casefold) for n, lst in lists.items()}
