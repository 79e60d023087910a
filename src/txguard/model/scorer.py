"""A loaded model version: calibrated single-row scoring on the hot path, TreeSHAP on demand.

``Booster.predict`` spends ~135 µs per row on validation and array conversion; LightGBM's C API
has a *single-row fast* path (``LGBM_BoosterPredictForMatSingleRowFastInit`` once, then
``…SingleRowFast`` per row) that skips it. The bundle sets that up once at load and calls it
through ctypes; a test checks it equals ``Booster.predict``. Calibration is Platt scaling on the raw
log-odds (``p = 1 / (1 + exp(-(a * raw + b)))``): strictly monotonic, so ranking metrics are
those of the raw model, and it is two floats to apply.
"""

from __future__ import annotations

import ctypes
import functools
import math
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from txguard.domain.errors import ConfigurationError, FieldError, ValidationError
from txguard.model.policy import Policy

_C_API_PREDICT_RAW_SCORE = 1
_C_API_PREDICT_CONTRIB = 3
_C_API_DTYPE_FLOAT64 = 1


@dataclass(frozen=True, slots=True)
class Calibration:
    """Platt scaling of raw log-odds; ``a=1, b=0`` is the identity (plain sigmoid)."""

    a: float = 1.0
    b: float = 0.0

    def apply(self, raw: NDArray[np.float64]) -> NDArray[np.float64]:
        z = np.clip(self.a * raw + self.b, -500.0, 500.0)
        out: NDArray[np.float64] = 1.0 / (1.0 + np.exp(-z))
        return out

    def apply_one(self, raw: float) -> float:
        z = self.a * raw + self.b
        if z < -500.0:
            return 0.0
        return 1.0 / (1.0 + math.exp(-z))

    def to_dict(self) -> dict[str, Any]:
        return {"method": "platt", "a": self.a, "b": self.b}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        if d.get("method") != "platt":
            raise ConfigurationError(f"unknown calibration method {d.get('method')!r}")
        return cls(a=float(d["a"]), b=float(d["b"]))

    @classmethod
    def fit(cls, raw: NDArray[np.float64], labels: NDArray[Any]) -> Calibration:
        """Logistic regression of the label on the raw score (validation period only)."""
        from sklearn.linear_model import LogisticRegression

        y = np.asarray(labels).astype(int)
        if y.min(initial=0) == y.max(initial=0):
            return cls()
        lr = LogisticRegression(C=1e6, max_iter=1000)
        lr.fit(np.asarray(raw, dtype=np.float64).reshape(-1, 1), y)
        a = float(lr.coef_[0, 0])
        if a <= 0:  # a model that ranks backwards on validation: keep the plain sigmoid
            return cls()
        return cls(a=a, b=float(lr.intercept_[0]))


@functools.cache
def _single_row_fast(path: str) -> tuple[Any, Any]:
    """``LGBM_BoosterPredictForMatSingleRowFast`` of LightGBM's library (the one already
    loaded: dlopen hands back the same handle) twice: through ctypes.PyDLL, whose calls keep
    the GIL, and through a CDLL, whose calls release it. A released GIL must be taken back
    after the call: for a short prediction on a busy server that waited for whichever thread
    (feature round trips, audit writer) took it meanwhile, up to a switch interval. Function
    objects of our own, not LightGBM's: the argtypes set here change nothing of LightGBM's
    calls, and let a row's address go in as a plain int."""
    fns = (
        ctypes.PyDLL(path).LGBM_BoosterPredictForMatSingleRowFast,
        ctypes.CDLL(path).LGBM_BoosterPredictForMatSingleRowFast,
    )
    for fn in fns:
        fn.argtypes = [
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.POINTER(ctypes.c_int64),
            ctypes.POINTER(ctypes.c_double),
        ]
        fn.restype = ctypes.c_int
    return fns


class _FastRowPredictor:
    """LightGBM's C API single-row fast path over one booster (thread-safe via a lock): raw
    score (one number) or TreeSHAP contributions (``n_features + 1`` numbers, bias last).

    ``keep_gil``: keep the GIL during the call (see :func:`_single_row_fast`), or release the GIL during the call
    (other threads run meanwhile, and this one waits to take it back: worth it for long calls
    only). None: decided by timing a call at start-up — kept when a call is shorter than the
    interpreter's switch interval, the most a release could cost in waiting. The raw score
    (~7 µs) always keeps it; TreeSHAP (~30 µs on a small model, milliseconds on a big one) is
    measured. Either way the same C function computes the same numbers."""

    def __init__(
        self,
        booster: Any,
        n_features: int,
        predict_type: int = _C_API_PREDICT_RAW_SCORE,
        *,
        keep_gil: bool | None = None,
    ) -> None:
        from lightgbm.basic import _LIB, _c_str, _safe_call  # type: ignore[attr-defined]

        self._lib = _LIB
        self._booster = booster  # keep the handle alive as long as the config
        self._handle = ctypes.c_void_p()
        _safe_call(
            _LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                booster._handle,
                ctypes.c_int(predict_type),
                ctypes.c_int(0),
                ctypes.c_int(-1),
                ctypes.c_int(_C_API_DTYPE_FLOAT64),
                ctypes.c_int32(n_features),
                _c_str("num_threads=1"),
                ctypes.byref(self._handle),
            )
        )
        self._safe_call = _safe_call
        keeping, releasing = _single_row_fast(_LIB._name)
        self._out_len = ctypes.c_int64(0)
        self._out = np.zeros(
            n_features + 1 if predict_type == _C_API_PREDICT_CONTRIB else 1, dtype=np.float64
        )
        self._out_ptr = self._out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
        self._lock = threading.Lock()
        self._fn = releasing
        if keep_gil is None:
            row = np.full(n_features, np.nan)
            took = []
            for _ in range(5):
                t = time.perf_counter()
                self._call(row)
                took.append(time.perf_counter() - t)
            keep_gil = min(took) < sys.getswitchinterval()
        self.keeps_gil = keep_gil
        self._fn = keeping if keep_gil else releasing

    def raw(self, row: NDArray[np.float64]) -> float:
        with self._lock:
            self._call(row)
            return float(self._out[0])

    def values(self, row: NDArray[np.float64]) -> list[float]:
        with self._lock:
            self._call(row)
            out: list[float] = self._out.tolist()
            return out

    def _call(self, row: NDArray[np.float64]) -> None:
        rc = self._fn(self._handle, row.ctypes.data, ctypes.byref(self._out_len), self._out_ptr)
        if rc != 0:
            self._safe_call(rc)

    def __del__(self) -> None:
        handle = getattr(self, "_handle", None)
        if handle is not None and handle.value:
            self._lib.LGBM_FastConfigFree(handle)
            handle.value = None


class ModelBundle:
    """A verified registry version ready to score: model, calibration, feature spec, policy."""

    def __init__(
        self,
        *,
        version: str,
        model_text: str,
        feature_names: tuple[str, ...],
        spec: Any,
        policy: Policy,
        calibration: Calibration,
        metrics: dict[str, Any] | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        import lightgbm as lgb

        self.version = version
        self.feature_names = feature_names
        self.spec = spec
        self.policy = policy
        self.calibration = calibration
        self.metrics = metrics or {}
        self.meta = meta or {}
        self.booster = lgb.Booster(model_str=model_text)
        n = self.booster.num_feature()
        if n != len(feature_names):
            raise ConfigurationError(
                f"model {version}: booster has {n} features, manifest lists {len(feature_names)}"
            )
        self._n = n
        self._fast = _FastRowPredictor(self.booster, n, keep_gil=True)
        self._fast_contrib = _FastRowPredictor(self.booster, n, _C_API_PREDICT_CONTRIB)

    def _row(self, row: NDArray[np.float64]) -> NDArray[np.float64]:
        r = np.ascontiguousarray(row, dtype=np.float64)
        if r.shape != (self._n,):
            raise ValidationError(
                [FieldError("row", f"expected {self._n} features, got shape {r.shape}")]
            )
        return r

    def predict_raw(self, row: NDArray[np.float64]) -> float:
        """Raw log-odds of one row (before calibration)."""
        return self._fast.raw(self._row(row))

    def predict(self, row: NDArray[np.float64]) -> float:
        """Calibrated fraud probability of one row (float64, in ``feature_names`` order)."""
        return self.calibration.apply_one(self._fast.raw(self._row(row)))

    def predict_raw_batch(self, rows: NDArray[np.float64]) -> NDArray[np.float64]:
        x = np.ascontiguousarray(rows, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self._n:
            raise ValidationError(
                [FieldError("rows", f"expected (n, {self._n}) features, got shape {x.shape}")]
            )
        out: NDArray[np.float64] = np.asarray(
            self.booster.predict(x, raw_score=True, num_threads=1), dtype=np.float64
        )
        return out

    def predict_batch(self, rows: NDArray[np.float64]) -> NDArray[np.float64]:
        """Calibrated probabilities for many rows."""
        return self.calibration.apply(self.predict_raw_batch(rows))

    def contributions(self, row: NDArray[np.float64]) -> dict[str, float]:
        """TreeSHAP contributions in log-odds per feature, plus ``"__bias__"`` (they sum to the
        raw score). Through the C API's single-row fast path (the same TreeSHAP as
        ``Booster.predict(pred_contrib=True)``, without its per-call set-up); the cost is the
        tree walk: call it for flagged decisions or on demand."""
        c = self._fast_contrib.values(self._row(row))
        out = dict(zip(self.feature_names, c, strict=False))  # the names end before the bias
        out["__bias__"] = c[-1]
        return out
