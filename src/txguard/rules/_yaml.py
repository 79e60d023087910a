"""YAML with line numbers: every mapping and sequence remembers where each value came from.

PyYAML's ``safe_load`` throws the node marks away, and an operator fixing a rules file needs
``rules.yaml:14: ...`` rather than "somewhere in rule 7". So we compose the node graph (which
keeps ``start_mark``) and build plain Python values ourselves, recording the 1-based line of
every key's value. Duplicate keys, which PyYAML silently overwrites, are reported.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from txguard.domain.errors import FieldError


class LineDict(dict[str, Any]):
    """A YAML mapping; ``line`` is where it starts, ``lines[key]`` where the key's value is."""

    line: int
    lines: dict[str, int]
    key_lines: dict[str, int]
    texts: dict[str, str]  # plain-text scalars as written ("off" stays text, not False)


class LineList(list[Any]):
    """A YAML sequence; ``line`` is where it starts, ``lines[i]`` where item ``i`` is."""

    line: int
    lines: list[int]
    texts: list[str | None]  # each scalar item's text as written (0xAbc stays text, not 2748)


class YamlProblem(Exception):
    """A YAML syntax or structure problem at ``line`` (1-based)."""

    def __init__(self, line: int, message: str) -> None:
        self.line = line
        self.message = message
        super().__init__(f"line {line}: {message}")


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


def load_with_lines(text: str) -> Any:
    """Parse one YAML document into LineDict / LineList / scalars (safe tags only).

    >>> d = load_with_lines("a: 1\\nb:\\n  - x\\n  - y\\n")
    >>> d.key_lines["b"], d["b"].lines
    (2, [3, 4])
    """
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = int(mark.line) + 1 if mark is not None else 1
        raise YamlProblem(line, f"YAML syntax error: {e.problem or e.context}") from None
    except yaml.YAMLError as e:  # pragma: no cover - unmarked errors are rare (e.g. encoding)
        raise YamlProblem(1, f"YAML error: {e}") from None
    if node is None:
        return None
    return _build(node, SafeConstructor(), depth=0, budget=[_MAX_NODES])


_MAX_DEPTH = 32
_MAX_NODES = 200_000  # aliases are expanded: bounds "billion laughs" documents


def _build(node: Node, constructor: SafeConstructor, *, depth: int, budget: list[int]) -> Any:
    if depth > _MAX_DEPTH:
        raise YamlProblem(_line(node), f"nested deeper than {_MAX_DEPTH} levels")
    budget[0] -= 1
    if budget[0] < 0:
        raise YamlProblem(_line(node), f"more than {_MAX_NODES:,} values (with aliases expanded)")
    if isinstance(node, MappingNode):
        m = LineDict()
        m.line = _line(node)
        m.lines = {}
        m.key_lines = {}
        m.texts = {}
        if node.tag != "tag:yaml.org,2002:map":
            raise YamlProblem(_line(node), f"unsupported tag {node.tag}")
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                raise YamlProblem(_line(key_node), "mapping keys must be plain text")
            key = constructor.construct_object(key_node, deep=True)
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise YamlProblem(_line(key_node), "merge keys (<<) are not supported")
            key = str(key) if isinstance(key, int | float | bool) or key is None else key
            if key in m:
                raise YamlProblem(
                    _line(key_node), f"duplicate key {key!r} (first at line {m.lines[key]})"
                )
            m[key] = _build(value_node, constructor, depth=depth + 1, budget=budget)
            m.lines[key] = _line(value_node)
            m.key_lines[key] = _line(key_node)
            if isinstance(value_node, ScalarNode):
                m.texts[key] = str(value_node.value)
        return m
    if isinstance(node, SequenceNode):
        seq = LineList()
        seq.line = _line(node)
        seq.lines = []
        seq.texts = []
        if node.tag != "tag:yaml.org,2002:seq":
            raise YamlProblem(_line(node), f"unsupported tag {node.tag}")
        for item in node.value:
            seq.append(_build(item, constructor, depth=depth + 1, budget=budget))
            seq.lines.append(_line(item))
            seq.texts.append(str(item.value) if isinstance(item, ScalarNode) else None)
        return seq
    try:
        return constructor.construct_object(node, deep=True)
    except yaml.YAMLError as e:
        raise YamlProblem(_line(node), f"bad value: {e}") from None


class Problems:
    """Collects ``file:line: message`` problems so one load reports all of them at once."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[tuple[str, int, str]] = []

    def add(self, line: int, message: str, *, source: str | None = None) -> None:
        self.items.append((source or self.source, line, message))

    def __bool__(self) -> bool:
        return bool(self.items)

    def field_errors(self) -> list[FieldError]:
        """One FieldError each, ``loc`` being ``file:line`` so it prints as a compiler would."""
        ordered = sorted(self.items, key=lambda t: (t[0] != self.source, t[0], t[1]))
        return [FieldError(f"{src}:{line}", msg) for src, line, msg in ordered]
