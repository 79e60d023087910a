"""The closures compiled conditions are made of, shaped for the hot path.

Each takes the per-event value dict (field or feature name -> value, ``None`` when missing) and
returns a value; boolean ones return a real ``bool``. Shapes that occur in almost every rule
(``field > 10000``) get a dedicated closure so that evaluating them is one dict access and one
comparison, without a further call.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

Values = dict[str, Any]
Fn = Callable[[Values], Any]
Op = Callable[[Any, Any], bool]

# a op b  <=>  b FLIPPED[op] a
FLIPPED: dict[Op, Op] = {
    operator.gt: operator.lt,
    operator.ge: operator.le,
    operator.lt: operator.gt,
    operator.le: operator.ge,
    operator.eq: operator.eq,
    operator.ne: operator.ne,
}


def all_of(fns: list[Fn]) -> Fn:
    """``and`` as nested two-operand closures: no generator or loop per evaluation. Every
    operand is a true/false closure, so ``a(v) and b(v)`` is already a bool."""
    if len(fns) == 1:
        return fns[0]
    a, b = fns[0], all_of(fns[1:])
    return lambda v: a(v) and b(v)


def any_of(fns: list[Fn]) -> Fn:
    """``or``, like :func:`all_of`."""
    if len(fns) == 1:
        return fns[0]
    a, b = fns[0], any_of(fns[1:])
    return lambda v: a(v) or b(v)


def field_vs_constant(op: Op, n: str, k: Any) -> Fn:
    """``v[n] op k``, false when the field is missing."""
    if op is operator.gt:
        return lambda v: (x := v[n]) is not None and x > k
    if op is operator.ge:
        return lambda v: (x := v[n]) is not None and x >= k
    if op is operator.lt:
        return lambda v: (x := v[n]) is not None and x < k
    if op is operator.le:
        return lambda v: (x := v[n]) is not None and x <= k
    if op is operator.eq:  # a constant is never None, so a missing value is simply unequal
        return lambda v: v[n] == k
    if op is operator.ne:
        return lambda v: (x := v[n]) is not None and x != k
    raise ValueError(f"not a comparison operator: {op!r}")


def compare_any(op: Op, lf: Fn, rf: Fn) -> Fn:
    """``lf(v) op rf(v)``, false when either side is missing."""
    return lambda v: (a := lf(v)) is not None and (b := rf(v)) is not None and bool(op(a, b))
