"""Prometheus metrics of the scoring service.

One :class:`Metrics` per app, each with its own ``CollectorRegistry`` (no process-global state:
several apps in one test process do not collide). It implements the pipeline's observer port,
caching labelled children so the hot path costs a dict lookup and an ``inc``/``observe``.
Labels never carry PII: actions, risk levels, model versions, stage names, status codes.

With several uvicorn workers, ``txguard serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` (a fresh
directory under the data home) before the workers start: every process then writes its values
to memory-mapped files and ``render`` sums them, so ``/metrics`` answers for the whole service
whichever worker serves the scrape — see docs/operations.md.
"""

from __future__ import annotations

import asyncio
import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

# 50 µs .. 2.5 s: the pipeline's stages live in the sub-millisecond range
_FAST_BUCKETS = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)


class Metrics:
    """The service's metrics; ``render()`` returns the exposition text and its content type."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.decisions = Counter(
            "txguard_decisions",
            "Decisions made, by action, risk level and model version ('none' in safe mode)",
            ["action", "risk_level", "model_version"],
            registry=r,
        )
        self.replays = Counter(
            "txguard_idempotent_replays",
            "Requests answered with an earlier decision for the same transaction id",
            registry=r,
        )
        self.stage_seconds = Histogram(
            "txguard_stage_seconds",
            "Time per pipeline stage (features, model, rules, policy, explain, audit)",
            ["stage"],
            buckets=_FAST_BUCKETS,
            registry=r,
        )
        self.state_store_seconds = Histogram(
            "txguard_state_store_seconds",
            "Feature state store round trip (read + update) per transaction",
            buckets=_FAST_BUCKETS,
            registry=r,
        )
        self.audit_commit_seconds = Histogram(
            "txguard_audit_commit_seconds",
            "Wait for the audit log's group commit per decision",
            buckets=_FAST_BUCKETS,
            registry=r,
        )
        self.request_seconds = Histogram(
            "txguard_request_seconds",
            "HTTP request latency by route template",
            ["route"],
            buckets=_FAST_BUCKETS,
            registry=r,
        )
        self.errors = Counter(
            "txguard_http_errors", "Error responses by status code", ["status"], registry=r
        )
        self.degraded_total = Counter(
            "txguard_degraded_decisions",
            "Decisions made without a dependency (e.g. state_store)",
            ["dependency"],
            registry=r,
        )
        # with several workers (multiprocess mode) a gauge reports the max over live workers:
        # safe mode if any worker is in it, every version some worker has loaded
        self.safe_mode = Gauge(
            "txguard_safe_mode",
            "1 when no valid model is loaded (rules-only decisions)",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.model_info = Gauge(
            "txguard_model_info",
            "The loaded champion model version (value 1)",
            ["version"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.reloads = Counter(
            "txguard_runtime_swaps",
            "Model/rules runtime swaps by operation",
            ["operation"],
            registry=r,
        )
        self.loop_lag_seconds = Histogram(
            "txguard_event_loop_lag_seconds",
            "How late the event loop ran a timer due every 10 ms: every request in flight "
            "waits at least this long (a stall, a long callback, CPU taken by other processes)",
            buckets=_FAST_BUCKETS,
            registry=r,
        )
        self._decided: dict[tuple[str, str, str], Counter] = {}
        self._stages: dict[str, Histogram] = {}
        self._routes: dict[str, Histogram] = {}
        self._versions: set[tuple[str]] = set()

    # ---------------------------------------------------------------- PipelineObserver

    def stage(self, name: str, seconds: float) -> None:
        h = self._stages.get(name)
        if h is None:
            h = self._stages[name] = self.stage_seconds.labels(name)
        h.observe(seconds)
        if name == "features":
            self.state_store_seconds.observe(seconds)
        elif name == "audit":
            self.audit_commit_seconds.observe(seconds)

    def decided(
        self, *, action: str, risk_level: str, model_version: str | None, replayed: bool
    ) -> None:
        if replayed:
            self.replays.inc()
            return
        key = (action, risk_level, model_version or "none")
        c = self._decided.get(key)
        if c is None:
            c = self._decided[key] = self.decisions.labels(*key)
        c.inc()

    def degraded(self, what: str) -> None:
        self.degraded_total.labels(what).inc()

    # ---------------------------------------------------------------- service-level

    def request(self, route: str, seconds: float) -> None:
        h = self._routes.get(route)
        if h is None:
            h = self._routes[route] = self.request_seconds.labels(route)
        h.observe(seconds)

    async def watch_event_loop(self, interval_s: float = 0.01) -> None:
        """Until cancelled: sleep ``interval_s`` on the running loop and observe how late it
        woke (``txguard_event_loop_lag_seconds``); ~100 timer wake-ups a second."""
        loop = asyncio.get_running_loop()
        observe = self.loop_lag_seconds.observe
        while True:
            due = loop.time() + interval_s
            await asyncio.sleep(interval_s)
            observe(max(0.0, loop.time() - due))

    def error(self, status: int) -> None:
        self.errors.labels(str(status)).inc()

    def set_runtime(self, *, model_version: str | None, operation: str) -> None:
        self.safe_mode.set(0 if model_version else 1)
        for labels in list(self._versions):  # zeroed first: multiprocess files keep values
            self.model_info.labels(*labels).set(0)
        self._versions.clear()
        self.model_info.clear()
        if model_version:
            self.model_info.labels(model_version).set(1)
            self._versions.add((model_version,))
        self.reloads.labels(operation).inc()

    def exposition_registry(self) -> CollectorRegistry:
        """What a scrape reads: this process's registry, or with several workers
        (``PROMETHEUS_MULTIPROC_DIR`` set) every worker's values summed from their files."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            reg = CollectorRegistry()
            multiprocess.MultiProcessCollector(reg)  # type: ignore[no-untyped-call]
            return reg
        return self.registry

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.exposition_registry()), CONTENT_TYPE_LATEST
