"""Aggregate numbers -> feature values, once per value (online) and once per column (offline).

The two versions are written side by side on purpose: the same IEEE operations in the same order,
so the online engine and the offline build agree bit for bit (the parity tests check it).
Inputs: ``n`` events in the window, ``k`` known-fraud among them, ``tmin``/``tmax`` earliest and
latest event time (µs), and per numeric field ``c`` values present, ``s`` sum, ``q`` sum of
squares, ``m`` max. ``x`` is the current event's value of the field, ``t`` its time (µs).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

NAN = math.nan
STD_REL_FLOOR = 1e-12  # variance below this fraction of E[x^2] is rounding noise: report 0

Arr = npt.NDArray[np.float64]


def _std(c: float, s: float, q: float) -> float:
    mean = s / c
    var = q / c - mean * mean
    return math.sqrt(var) if var > STD_REL_FLOOR * (q / c) else 0.0


def mean(c: float, s: float) -> float:
    return s / c if c > 0 else NAN


def std(c: float, s: float, q: float) -> float:
    return _std(c, s, q) if c > 0 else NAN


def maximum(c: float, m: float) -> float:
    return float(m) if c > 0 else NAN


def ratio_mean(c: float, s: float, x: float) -> float:
    if c > 0:
        mu = s / c
        if mu > 0:
            return x / mu
    return NAN


def zscore(c: float, s: float, q: float, x: float) -> float:
    if c > 0:
        sd = _std(c, s, q)
        if sd > 0:
            return (x - s / c) / sd
    return NAN


def since(n: float, ref: float, t: int) -> float:
    """Seconds from ``ref`` (µs) to ``t`` (µs); NaN without events."""
    return (t - ref) / 1e6 if n > 0 else NAN


def rate(n: float, k: float) -> float:
    return k / n if n > 0 else NAN


def expression(agg: str, o: Mapping[str, int], x: str) -> str:
    """Python source of one feature read from a store result block: ``r`` is the result list,
    ``b`` the block's start, ``t`` the event time (µs) and ``x`` the source text of the current
    event's field value. The engine compiles these into one function per entity (no closure
    call per feature on the hot path); the scalar functions above do the arithmetic, so the
    online numbers stay the same IEEE operations as the vectorised twins below.

    >>> expression("zscore", {"c": 4, "s": 5, "q": 6}, "x")
    'zscore(r[b + 4], r[b + 5], r[b + 6], x)'
    """
    if agg in _PLAIN:
        return f"float(r[b + {o[_PLAIN[agg]]}])"
    if agg == "fraud_rate":
        return f"rate(r[b + {o['n']}], r[b + {o['k']}])"
    if agg in ("time_since_last", "first_seen"):
        ref = o["tmax"] if agg == "time_since_last" else o["tmin"]
        return f"since(r[b + {o['n']}], r[b + {ref}], t)"
    if agg == "max":
        return f"maximum(r[b + {o['c']}], r[b + {o['m']}])"
    if agg == "mean":
        return f"mean(r[b + {o['c']}], r[b + {o['s']}])"
    if agg == "ratio_mean":
        return f"ratio_mean(r[b + {o['c']}], r[b + {o['s']}], {x})"
    if agg == "std":
        return f"std(r[b + {o['c']}], r[b + {o['s']}], r[b + {o['q']}])"
    if agg == "zscore":
        return f"zscore(r[b + {o['c']}], r[b + {o['s']}], r[b + {o['q']}], {x})"
    raise ValueError(f"no formula for {agg}")


_PLAIN = {"count": "n", "sum": "s", "fraud_count": "k"}  # aggregates that are one number as is
# what the expressions above call: the namespace their compiled functions run in
SCALARS: dict[str, Any] = {
    "NAN": NAN,
    "rate": rate,
    "since": since,
    "maximum": maximum,
    "mean": mean,
    "ratio_mean": ratio_mean,
    "std": std,
    "zscore": zscore,
}


# --------------------------------------------------------------------------- vectorised twins


def _div(a: Arr, b: Arr) -> Arr:
    out = np.full(a.shape, np.nan)
    np.divide(a, b, out=out, where=b > 0)
    return out


def _vstd(c: Arr, s: Arr, q: Arr) -> Arr:
    mean = _div(s, c)
    ex2 = _div(q, c)
    var = ex2 - mean * mean
    ok = var > STD_REL_FLOOR * ex2
    out = np.where(ok, np.sqrt(np.where(ok, var, 0.0)), 0.0)
    out[~(c > 0)] = np.nan
    return out


def vector(agg: str, d: Mapping[str, Any], x: Arr, t: npt.NDArray[np.int64]) -> Arr:
    """Column version of the scalar readers (NaN where the scalar returns NaN)."""
    if agg == "count":
        return np.asarray(d["n"], np.float64)
    if agg == "sum":
        return np.asarray(d["s"], np.float64)
    if agg == "fraud_count":
        return np.asarray(d["k"], np.float64)
    if agg == "fraud_rate":
        return _div(np.asarray(d["k"], np.float64), np.asarray(d["n"], np.float64))
    if agg in ("time_since_last", "first_seen"):
        n = np.asarray(d["n"])
        ref = d["tmax"] if agg == "time_since_last" else d["tmin"]
        out = (t - ref) / 1e6
        return np.where(n > 0, out, np.nan)
    c = np.asarray(d["c"], np.float64)
    if agg == "max":
        return np.where(c > 0, d["m"], np.nan)
    mean = _div(d["s"], c)
    if agg == "mean":
        return mean
    if agg == "ratio_mean":
        out = np.full(x.shape, np.nan)
        np.divide(x, mean, out=out, where=mean > 0)
        return out
    sd = _vstd(c, d["s"], d["q"])
    if agg == "std":
        return sd
    if agg == "zscore":
        out = np.full(x.shape, np.nan)
        np.divide(x - mean, sd, out=out, where=sd > 0)
        return out
    raise ValueError(f"no vector formula for {agg}")
