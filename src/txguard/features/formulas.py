"""Aggregate numbers -> feature values, once per value (online) and once per column (offline).

The two versions are written side by side on purpose: the same IEEE operations in the same order,
so the online engine and the offline build agree bit for bit (the parity tests check it).
Inputs: ``n`` events in the window, ``k`` known-fraud among them, ``tmin``/``tmax`` earliest and
latest event time (µs), and per numeric field ``c`` values present, ``s`` sum, ``q`` sum of
squares, ``m`` max. ``x`` is the current event's value of the field, ``t`` its time (µs).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
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


def _count(d: Mapping[str, float], x: float, t: int) -> float:
    return float(d["n"])


def _sum(d: Mapping[str, float], x: float, t: int) -> float:
    return float(d["s"])


def _mean(d: Mapping[str, float], x: float, t: int) -> float:
    c = d["c"]
    return d["s"] / c if c > 0 else NAN


def _stdf(d: Mapping[str, float], x: float, t: int) -> float:
    c = d["c"]
    return _std(c, d["s"], d["q"]) if c > 0 else NAN


def _max(d: Mapping[str, float], x: float, t: int) -> float:
    return float(d["m"]) if d["c"] > 0 else NAN


def _ratio_mean(d: Mapping[str, float], x: float, t: int) -> float:
    c = d["c"]
    if c > 0:
        mean = d["s"] / c
        if mean > 0:
            return x / mean
    return NAN


def _zscore(d: Mapping[str, float], x: float, t: int) -> float:
    c = d["c"]
    if c > 0:
        sd = _std(c, d["s"], d["q"])
        if sd > 0:
            return (x - d["s"] / c) / sd
    return NAN


def _since_last(d: Mapping[str, float], x: float, t: int) -> float:
    return (t - d["tmax"]) / 1e6 if d["n"] > 0 else NAN


def _first_seen(d: Mapping[str, float], x: float, t: int) -> float:
    return (t - d["tmin"]) / 1e6 if d["n"] > 0 else NAN


def _fraud_count(d: Mapping[str, float], x: float, t: int) -> float:
    return float(d["k"])


def _fraud_rate(d: Mapping[str, float], x: float, t: int) -> float:
    n = d["n"]
    return d["k"] / n if n > 0 else NAN


SCALAR: dict[str, Callable[[Mapping[str, float], float, int], float]] = {
    "count": _count,
    "sum": _sum,
    "mean": _mean,
    "std": _stdf,
    "max": _max,
    "ratio_mean": _ratio_mean,
    "zscore": _zscore,
    "time_since_last": _since_last,
    "first_seen": _first_seen,
    "fraud_count": _fraud_count,
    "fraud_rate": _fraud_rate,
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
    """Column version of :data:`SCALAR` (NaN where the scalar returns NaN)."""
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
