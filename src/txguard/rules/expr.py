"""The condition language: a safe, typed subset of Python expressions, compiled once to closures.

Conditions are written by analysts and loaded into the scoring service, so they must never be
able to run code: the text is parsed with :func:`ast.parse` (``mode="eval"``) and only the node
kinds below are accepted; anything else (attributes, subscripts, lambdas, comprehensions, calls
to anything but our own functions...) is an error naming the construct. The accepted tree is
then type-checked and turned into a tree of small closures, so evaluating a rule per request
walks no AST and does no name lookups beyond one dict access per field.

Grammar (Python syntax and precedence)::

    cond   := cond and cond | cond or cond | not cond | (cond) | cmp | call
    cmp    := value OP value [OP value ...]      OP: == != < <= > >=   (chains like 9000 <= x < 10000)
            | value in [const, ...] | value not in [const, ...]
    value  := NAME | number | "text" | true/false | -value | value (+ - * /) value | call
    call   := in_list("list_name", value) | missing(NAME) | abs(value) | min(a, b) | max(a, b)

Missing values (an absent event field, a feature that is ``NaN``): **any comparison involving a
missing value is false** — ``==``, ``!=``, ``<``, ``in`` and ``not in`` alike — and arithmetic
with a missing value (or a division by zero) is missing. ``not`` negates the boolean result, so
``not amount_usd > 100`` is *true* when ``amount_usd`` is missing; use ``missing(x)`` to test
for absence explicitly.

>>> from txguard.rules.fields import name_catalog
>>> c = compile_condition("amount_usd > 10000 and sender_country in ['IR', 'KP']",
...                       names=name_catalog([]), lists={})
>>> c.fn({"amount_usd": 12000.0, "sender_country": "IR"}), sorted(c.names)
(True, ['amount_usd', 'sender_country'])
>>> c.fn({"amount_usd": None, "sender_country": "IR"})
False
"""

from __future__ import annotations

import ast
import difflib
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from txguard.rules._closures import (
    FLIPPED,
    Fn,
    Values,
    all_of,
    any_of,
    compare_any,
    field_vs_constant,
)
from txguard.rules.fields import FieldInfo, ValueType

MAX_CONDITION_CHARS = 4000
MAX_NODES = 400
MAX_DEPTH = 40
MAX_LIST_LITERAL = 10_000


class ExprError(Exception):
    """A condition problem; ``offset`` is the 0-based character position, when known."""

    def __init__(self, message: str, offset: int | None = None, *, hint: str = "") -> None:
        self.message = message
        self.offset = offset
        self.hint = hint  # e.g. "did you mean 'amount_usd'?"
        super().__init__(f"{message} ({hint})" if hint else message)


@dataclass(frozen=True, slots=True)
class LookupSet:
    """What ``in_list`` needs from a named list: its values and how to normalise a probe."""

    values: frozenset[str]
    casefold: bool = False


@dataclass(frozen=True, slots=True)
class Condition:
    fn: Callable[[Values], bool]
    names: frozenset[str]  # every field/feature the condition reads
    lists: frozenset[str] = field(default_factory=frozenset)  # named lists it uses


_NO_CONST = object()


@dataclass(frozen=True, slots=True)
class _C:
    fn: Fn
    type: ValueType | str  # "num" | "str" | "bool" | "list:<type>"
    const: Any = _NO_CONST
    name: str | None = None  # set when the node is a bare field name
    offset: int | None = None


_TYPE_WORDS = {"num": "a number", "str": "text", "bool": "true/false"}

_CMP: dict[type[ast.cmpop], tuple[str, Callable[[Any, Any], bool]]] = {
    ast.Eq: ("==", operator.eq),
    ast.NotEq: ("!=", operator.ne),
    ast.Lt: ("<", operator.lt),
    ast.LtE: ("<=", operator.le),
    ast.Gt: (">", operator.gt),
    ast.GtE: (">=", operator.ge),
}
_ARITH: dict[type[ast.operator], tuple[str, Callable[[Any, Any], Any]]] = {
    ast.Add: ("+", operator.add),
    ast.Sub: ("-", operator.sub),
    ast.Mult: ("*", operator.mul),
    ast.Div: ("/", operator.truediv),
}
_FUNCTIONS = ("in_list", "missing", "abs", "min", "max")

_FRIENDLY = {
    "Attribute": "attribute access (x.y); fields are flat names such as sender_country",
    "Subscript": "indexing (x[...])",
    "Lambda": "lambda",
    "IfExp": "conditional expression (a if b else c)",
    "ListComp": "comprehension",
    "GeneratorExp": "comprehension",
    "SetComp": "comprehension",
    "DictComp": "comprehension",
    "Dict": "dict literal",
    "Set": "set literal (use a list: [a, b])",
    "JoinedStr": "f-string",
    "NamedExpr": "assignment (:=)",
    "Await": "await",
    "Starred": "starred expression",
}


def compile_condition(
    text: str, *, names: Mapping[str, FieldInfo], lists: Mapping[str, LookupSet]
) -> Condition:
    """Parse, check and compile ``text``; raise :class:`ExprError` on the first problem."""
    if not isinstance(text, str) or not text.strip():
        raise ExprError("condition is empty")
    if len(text) > MAX_CONDITION_CHARS:
        raise ExprError(
            f"condition too long: {len(text)} characters, at most {MAX_CONDITION_CHARS}"
        )
    joined = text.replace("\n", " ")  # YAML block text: one logical line, same offsets
    body = joined.lstrip()
    lead = len(joined) - len(body)
    try:
        c, compiler = _compile(body.rstrip(), names, lists)
    except ExprError as e:
        if e.offset is not None:
            e.offset += lead
        raise
    fn = c.fn
    if c.const is not _NO_CONST:
        value = bool(c.const)
        fn = (lambda v: True) if value else (lambda v: False)
    return Condition(fn, frozenset(compiler.used), frozenset(compiler.used_lists))


def _compile(
    source: str, names: Mapping[str, FieldInfo], lists: Mapping[str, LookupSet]
) -> tuple[_C, _Compiler]:
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as e:
        offset = (e.offset - 1) if e.offset else None
        raise ExprError(f"syntax error: {e.msg}", offset) from None
    except (RecursionError, MemoryError, ValueError):
        raise ExprError("condition nested too deeply or malformed") from None
    count = sum(1 for _ in ast.walk(tree))
    if count > MAX_NODES:
        raise ExprError(f"condition too complex: {count} syntax nodes, at most {MAX_NODES}")
    compiler = _Compiler(names, lists)
    c = compiler.expr(tree.body, 0)
    if c.type != "bool":
        raise ExprError(
            f"a condition must be true/false, this one is {_TYPE_WORDS.get(c.type, c.type)}",
            c.offset,
        )
    return c, compiler


class _Compiler:
    def __init__(self, names: Mapping[str, FieldInfo], lists: Mapping[str, LookupSet]) -> None:
        self.names = names
        self.lists = lists
        self.used: set[str] = set()
        self.used_lists: set[str] = set()

    def expr(self, node: ast.AST, depth: int) -> _C:
        if depth > MAX_DEPTH:
            raise ExprError(f"condition nested deeper than {MAX_DEPTH} levels", _off(node))
        method = getattr(self, "_" + type(node).__name__, None)
        if method is None:
            what = _FRIENDLY.get(type(node).__name__, type(node).__name__)
            raise ExprError(f"not allowed in a condition: {what}", _off(node))
        result: _C = method(node, depth + 1)
        return result

    # ------------------------------------------------------------------ leaves

    def _Name(self, node: ast.Name, depth: int) -> _C:
        info = self.names.get(node.id)
        if info is None and node.id in ("true", "false"):  # YAML's spelling, as in the docs
            return self._Constant(
                ast.Constant(node.id == "true", col_offset=node.col_offset), depth
            )
        if info is None:
            if node.id in _FUNCTIONS:
                raise ExprError(f"{node.id} is a function: call it as {node.id}(...)", _off(node))
            close = difflib.get_close_matches(node.id, list(self.names), n=1)
            hint = f"did you mean {close[0]!r}?" if close else ""
            raise ExprError(f"unknown field {node.id!r}", _off(node), hint=hint)
        self.used.add(node.id)
        name = node.id
        return _C(lambda v: v[name], info.type, name=name, offset=_off(node))

    def _Constant(self, node: ast.Constant, depth: int) -> _C:
        x = node.value
        if isinstance(x, bool):
            t: ValueType = "bool"
        elif isinstance(x, int | float):
            if not math.isfinite(x):
                raise ExprError("numbers must be finite", _off(node))
            t, x = "num", float(x) if isinstance(x, float) else x
        elif isinstance(x, str):
            t = "str"
        elif x is None:
            raise ExprError(
                "None is not a value here; use missing(field) to test absence", _off(node)
            )
        else:
            raise ExprError(f"constant of type {type(x).__name__} not allowed", _off(node))
        return _C(lambda v: x, t, const=x, offset=_off(node))

    def _List(self, node: ast.List | ast.Tuple, depth: int) -> _C:
        if len(node.elts) > MAX_LIST_LITERAL:
            raise ExprError(f"list literal longer than {MAX_LIST_LITERAL} items", _off(node))
        items = [self.expr(e, depth) for e in node.elts]
        types = {i.type for i in items}
        if any(i.const is _NO_CONST for i in items):
            raise ExprError("list items must be constants", _off(node))
        if len(types) > 1:
            raise ExprError("list items must all be numbers or all be text", _off(node))
        t = types.pop() if types else "str"
        values = frozenset(i.const for i in items)
        return _C(lambda v: values, f"list:{t}", const=values, offset=_off(node))

    _Tuple = _List

    # ------------------------------------------------------------------ operators

    def _BoolOp(self, node: ast.BoolOp, depth: int) -> _C:
        parts = [self._want(self.expr(x, depth), "bool", "and/or operands") for x in node.values]
        fold = all_of if isinstance(node.op, ast.And) else any_of
        return _C(fold([p.fn for p in parts]), "bool", offset=_off(node))

    def _UnaryOp(self, node: ast.UnaryOp, depth: int) -> _C:
        inner = self.expr(node.operand, depth)
        if isinstance(node.op, ast.Not):
            a = self._want(inner, "bool", "'not'").fn
            return _C(lambda v: not a(v), "bool", offset=_off(node))
        if isinstance(node.op, ast.USub | ast.UAdd):
            self._want(inner, "num", "unary minus")
            sign = -1 if isinstance(node.op, ast.USub) else 1
            if inner.const is not _NO_CONST:
                k = sign * inner.const
                return _C(lambda v: k, "num", const=k, offset=_off(node))
            f = inner.fn
            return _C(lambda v: None if (x := f(v)) is None else sign * x, "num", offset=_off(node))
        raise ExprError(f"operator {type(node.op).__name__} not allowed", _off(node))

    def _BinOp(self, node: ast.BinOp, depth: int) -> _C:
        spec = _ARITH.get(type(node.op))
        if spec is None:
            raise ExprError(
                f"operator {type(node.op).__name__} not allowed (use + - * /)", _off(node)
            )
        sym, op = spec
        left = self._want(self.expr(node.left, depth), "num", f"'{sym}'")
        right = self._want(self.expr(node.right, depth), "num", f"'{sym}'")
        lf, rf = left.fn, right.fn

        def arith(v: Values) -> Any:
            a = lf(v)
            b = rf(v)
            if a is None or b is None:
                return None
            try:
                return op(a, b)
            except ZeroDivisionError:
                return None

        return _C(arith, "num", offset=_off(node))

    def _Compare(self, node: ast.Compare, depth: int) -> _C:
        operands = [self.expr(node.left, depth)] + [self.expr(c, depth) for c in node.comparators]
        pairs = []
        for i, op in enumerate(node.ops):
            pairs.append(self._compare_pair(operands[i], op, operands[i + 1], node))
        if len(pairs) == 1:
            return pairs[0]
        return _C(all_of([p.fn for p in pairs]), "bool", offset=_off(node))

    def _compare_pair(self, left: _C, op: ast.cmpop, right: _C, node: ast.Compare) -> _C:
        off = left.offset if left.offset is not None else _off(node)
        if isinstance(op, ast.In | ast.NotIn):
            if not right.type.startswith("list:"):
                raise ExprError(
                    "the right side of 'in' must be a list of constants such as ['CU', 'IR'] "
                    '(for a named list use in_list("name", field))',
                    right.offset,
                )
            elem = right.type.split(":", 1)[1]
            if right.const and left.type != elem:
                raise ExprError(
                    f"cannot look up {_TYPE_WORDS.get(left.type, left.type)} in a list of "
                    f"{_TYPE_WORDS.get(elem, elem)}",
                    off,
                )
            self._check_constants(left, list(right.const), off)
            s: frozenset[Any] = right.const
            lf = left.fn
            if isinstance(op, ast.In) and left.name is not None:
                n = left.name  # None is never in a list of constants: no check needed
                return _C(lambda v: v[n] in s, "bool", offset=off)
            if isinstance(op, ast.In):
                return _C(lambda v: (x := lf(v)) is not None and x in s, "bool", offset=off)
            return _C(lambda v: (x := lf(v)) is not None and x not in s, "bool", offset=off)
        sym, fn = _CMP[type(op)]
        if left.type.startswith("list:") or right.type.startswith("list:"):
            raise ExprError(f"a list can only be used with 'in' / 'not in', not {sym}", off)
        if left.type != right.type:
            raise ExprError(
                f"cannot compare {_TYPE_WORDS.get(left.type, left.type)} with "
                f"{_TYPE_WORDS.get(right.type, right.type)} using {sym}",
                off,
            )
        if sym not in ("==", "!=") and left.type != "num":
            raise ExprError(f"{sym} compares numbers only, not {_TYPE_WORDS[left.type]}", off)
        if right.const is not _NO_CONST:
            self._check_constants(left, [right.const], off)
        if left.const is not _NO_CONST:
            self._check_constants(right, [left.const], off)
        return _C(_specialise(fn, left, right), "bool", offset=off)

    def _check_constants(self, target: _C, constants: list[Any], off: int | None) -> None:
        """Compare a field's constants with its allowed values (e.g. ``type == "crad"``)."""
        if target.name is None:
            return
        info = self.names[target.name]
        if info.check is None:
            return
        for c in constants:
            if isinstance(c, str) and (problem := info.check(c)) is not None:
                message, hint = problem
                raise ExprError(f"{message} for field {target.name!r}", off, hint=hint)

    # ------------------------------------------------------------------ functions

    def _Call(self, node: ast.Call, depth: int) -> _C:
        if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
            what = node.func.id if isinstance(node.func, ast.Name) else "this expression"
            raise ExprError(
                f"unknown function {what!r}; available: {', '.join(_FUNCTIONS)}", _off(node)
            )
        if node.keywords:
            raise ExprError(f"{node.func.id}() takes no keyword arguments", _off(node))
        name = node.func.id
        args = node.args
        want = {"in_list": 2, "missing": 1, "abs": 1, "min": 2, "max": 2}[name]
        if len(args) != want:
            raise ExprError(f"{name}() takes {want} argument(s), got {len(args)}", _off(node))
        if name == "in_list":
            return self._in_list(node)
        if name == "missing":
            if not isinstance(args[0], ast.Name):
                raise ExprError("missing() takes a field name", _off(args[0]))
            a = self.expr(args[0], depth).fn
            return _C(lambda v: a(v) is None, "bool", offset=_off(node))
        parts = [self._want(self.expr(x, depth), "num", f"{name}()") for x in args]
        if name == "abs":
            f = parts[0].fn
            return _C(lambda v: None if (x := f(v)) is None else abs(x), "num", offset=_off(node))
        pick = min if name == "min" else max
        fa, fb = parts[0].fn, parts[1].fn

        def minmax(v: Values) -> Any:
            a, b = fa(v), fb(v)
            return None if a is None or b is None else pick(a, b)

        return _C(minmax, "num", offset=_off(node))

    def _in_list(self, node: ast.Call) -> _C:
        first, second = node.args
        if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
            raise ExprError(
                'in_list() needs the list name as text: in_list("name", field)', _off(first)
            )
        lookup = self.lists.get(first.value)
        if lookup is None:
            close = difflib.get_close_matches(first.value, list(self.lists), n=1)
            hint = f"did you mean {close[0]!r}?" if close else ""
            raise ExprError(f"unknown list {first.value!r}", _off(first), hint=hint)
        self.used_lists.add(first.value)
        probe = self._want(self.expr(second, 0), "str", "in_list()").fn
        values = lookup.values
        if lookup.casefold:
            return _C(
                lambda v: (x := probe(v)) is not None and x.casefold() in values,
                "bool",
                offset=_off(node),
            )
        return _C(lambda v: (x := probe(v)) is not None and x in values, "bool", offset=_off(node))

    # ------------------------------------------------------------------ helpers

    def _want(self, c: _C, t: ValueType, where: str) -> _C:
        if c.type != t:
            raise ExprError(
                f"{where} needs {_TYPE_WORDS[t]}, got {_TYPE_WORDS.get(c.type, 'a list')}", c.offset
            )
        return c


def _off(node: ast.AST) -> int | None:
    off = getattr(node, "col_offset", None)
    return off if isinstance(off, int) else None


def _specialise(op: Callable[[Any, Any], bool], left: _C, right: _C) -> Fn:
    """The common shapes (field OP constant, constant OP field) get a closure without calls."""
    if left.name is not None and right.const is not _NO_CONST:
        return field_vs_constant(op, left.name, right.const)
    if right.name is not None and left.const is not _NO_CONST and op in FLIPPED:
        return field_vs_constant(FLIPPED[op], right.name, left.const)  # 9000 <= x: x >= 9000
    return compare_any(op, left.fn, right.fn)


__all__ = ["Condition", "ExprError", "LookupSet", "compile_condition"]
