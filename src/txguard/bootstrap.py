"""The one place that wires ports to adapters from Settings.

Embedded default (no servers): MemoryStore feature state (snapshotted under ``$TXGUARD_HOME``),
SQLite audit log and keys. ``TXGUARD_REDIS_URL`` switches feature state (and rate limits, replay
cache) to Redis; ``TXGUARD_DATABASE_URL`` switches the audit log and keys to PostgreSQL.

Start-up never crash-loops on a bad model: if the production version is missing or does not
verify, the service starts in SAFE MODE (rules-only) and says so in ``/ready``, in every
response, in a metric and in a log line. Bad *configuration* (unreadable rules file, unreachable
database) does refuse to start: that is for the operator to fix, not to paper over.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any, cast

from txguard.domain.clock import Clock, SystemClock
from txguard.domain.decision import Action
from txguard.domain.errors import ConfigurationError, DependencyError, NotFoundError
from txguard.io.redis import connect_redis
from txguard.monitor.metrics import Metrics
from txguard.scoring.pipeline import Pipeline, PipelineConfig
from txguard.scoring.runtime import Runtime, RuntimeHolder
from txguard.settings import Settings

log = logging.getLogger("txguard.service")


def pipeline_config(settings: Settings) -> PipelineConfig:
    """The pipeline's knobs, from the one Settings object."""
    in_thread = settings.features_in_thread
    if in_thread is None:
        in_thread = settings.redis_url is not None
    on_loop = settings.features_async
    if on_loop is None:  # RedisStore's event-loop link; MemoryStore is called inline anyway
        on_loop = settings.redis_url is not None
    return PipelineConfig(
        features_in_thread=in_thread,
        features_async=on_loop,
        state_store_failure=settings.state_store_failure,
        safe_mode_review_above_usd=settings.safe_mode_review_above_usd,
        safe_mode_default_action=Action(settings.safe_mode_default_action),
        explain_top_k=settings.explain_top_k,
        idempotency_wait_s=settings.idempotency_wait_s,
    )


class _StaticRules:
    """A rule 'engine' with a fixed set (no rules file configured)."""

    def __init__(self, ruleset: Any) -> None:
        self.current = ruleset
        self.path = None

    def reload(self) -> Any:
        return self.current


@dataclass
class Services:
    """Everything the API (or a stream worker) needs, built once per process."""

    settings: Settings
    clock: Clock
    holder: RuntimeHolder
    pipeline: Pipeline
    audit: Any
    metrics: Metrics
    authorizer: Any
    registry: Any | None = None
    store: Any | None = None
    redis: Any | None = None
    rules_engine: Any | None = None
    _bundles: dict[str, Any] = field(default_factory=dict)
    _closers: list[Any] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    # ---------------------------------------------------------------- model lifecycle

    def _runtime_for(self, champion: Any | None, *, reason: str | None = None) -> Runtime:
        from txguard.features.engine import FeatureEngine
        from txguard.features.spec import default_spec
        from txguard.rules.outcome import combine

        spec = champion.spec if champion is not None else default_spec()
        engine = FeatureEngine(spec, cast("Any", self.store))
        rules = self._rules_for(spec)
        challenger = None
        if self.settings.challenger_version and self.registry is not None and champion is not None:
            try:
                challenger = self.model(self.settings.challenger_version)
            except Exception as e:  # a broken challenger never blocks the champion
                log.error("challenger %s not loaded: %s", self.settings.challenger_version, e)
        return Runtime.build(
            engine=engine,
            rules=rules,
            combine=combine,
            champion=champion,
            challenger=challenger,
            safe_mode_reason=reason,
            loaded_at=self.clock.now(),
        )

    def _rules_for(self, spec: Any) -> Any:
        from txguard.rules.rules import RuleEngine, RuleSet

        path = self.settings.rules_path
        if path is None:
            return _StaticRules(RuleSet.empty())
        current = self.rules_engine
        if current is not None and getattr(current, "_known", None) == frozenset(spec.names):
            return current
        key = self.settings.rules_signing_key
        engine = RuleEngine(
            path,
            known_features=spec.names,
            signing_key=key.get_secret_value() if key is not None else None,
        )
        self.rules_engine = engine
        return engine

    def model(self, version: str) -> Any:
        """A verified registry version (cached; versions are immutable)."""
        if self.registry is None:
            raise NotFoundError("no model registry configured")
        b = self._bundles.get(version)
        if b is None:
            b = self._bundles[version] = self.registry.load(version)
        return b

    def _install(self, runtime: Runtime, operation: str) -> Runtime:
        self.holder.swap(runtime)
        v = runtime.champion.version if runtime.champion is not None else None
        self.metrics.set_runtime(model_version=v, operation=operation)
        if v is None:
            log.warning("SAFE MODE: %s; decisions are rules-only", runtime.safe_mode_reason)
        else:
            log.info("runtime %s: model %s", operation, v)
        return runtime

    def load_initial(self) -> Runtime:
        """The production model, or SAFE MODE with the reason (never raises for a bad model)."""
        champion = None
        reason = None
        if self.registry is None:
            reason = "no model registry"
        else:
            try:
                champion = self.registry.load_production()
                self._bundles[champion.version] = champion
            except Exception as e:
                reason = f"{type(e).__name__}: {e}"
        return self._install(self._runtime_for(champion, reason=reason), "start")

    def promote(self, version: str) -> Runtime:
        """Verify and load ``version``, mark it production, swap it in."""
        with self.holder.lock:
            bundle = self.model(version)
            runtime = self._runtime_for(bundle)
            assert self.registry is not None
            self.registry.promote(version)
            return self._install(runtime, "promote")

    def rollback(self) -> Runtime:
        with self.holder.lock:
            if self.registry is None:
                raise NotFoundError("no model registry configured")
            self.registry.rollback()
            bundle = self.registry.load_production()
            return self._install(self._runtime_for(bundle), "rollback")

    def reload_model(self) -> Runtime:
        """Re-read the registry's production pointer (another replica or the CLI moved it).
        A version that does not load leaves the current runtime serving and raises."""
        with self.holder.lock:
            if self.registry is None:
                raise NotFoundError("no model registry configured")
            self._bundles.clear()
            bundle = self.registry.load_production()
            self._bundles[bundle.version] = bundle
            return self._install(self._runtime_for(bundle), "reload")

    def reload_rules(self) -> str:
        with self.holder.lock:
            rules: Any = self.holder.current.rules
            new = rules.reload()
            self.metrics.reloads.labels("rules").inc()
            return str(getattr(new, "version", ""))

    # ---------------------------------------------------------------- health

    def readiness(self) -> dict[str, Any]:
        rt = self.holder.current
        checks: dict[str, Any] = {
            "model": rt.champion.version if rt.champion is not None else None,
            "safe_mode": rt.safe_mode,
            "safe_mode_reason": rt.safe_mode_reason,
        }
        ok = True
        if self.redis is not None:
            try:
                self.redis.ping()
                checks["state_store"] = "ok"
            except Exception as e:
                checks["state_store"] = f"unavailable: {type(e).__name__}"
                ok = self.settings.state_store_failure == "fail_open" and ok
        else:
            checks["state_store"] = "memory"
        try:
            self.audit.query(limit=1)
            checks["audit"] = "ok"
        except Exception as e:
            checks["audit"] = f"unavailable: {type(e).__name__}"
            ok = False
        checks["ready"] = ok
        return checks

    # ---------------------------------------------------------------- lifecycle

    def snapshot(self) -> None:
        """Persist in-process feature state (MemoryStore only)."""
        snap = getattr(self.store, "snapshot", None)
        if snap is not None and self.redis is None:
            path = self.settings.state_snapshot_path
            path.parent.mkdir(parents=True, exist_ok=True)
            snap(path)

    def _snapshot_loop(self) -> None:
        interval = self.settings.snapshot_interval_s
        while not self._stop.wait(interval):
            try:
                self.snapshot()
            except Exception as e:
                log.error("feature state snapshot failed: %s", e)

    def start_background(self) -> None:
        if self.redis is None and self.settings.snapshot_interval_s > 0 and self.store is not None:
            t = threading.Thread(target=self._snapshot_loop, name="txg-snapshot", daemon=True)
            t.start()

    def close(self) -> None:
        self._stop.set()
        try:
            self.snapshot()
        except Exception as e:
            log.error("final feature state snapshot failed: %s", e)
        self.pipeline.close()
        # the feature store's event-loop links (RedisStore.execute_many_async): closed from this
        # thread whatever their loop's state (the lifespan runs close() in a worker thread)
        close_links = getattr(self.store, "close_links", None)
        if close_links is not None:
            try:
                close_links()
            except Exception as e:
                log.error("closing the feature store's links: %s", e)
        for c in reversed(self._closers):
            try:
                c()
            except Exception as e:
                log.error("closing: %s", e)


def build_state_store(settings: Settings, redis_client: Any | None, *, prefix: str = "txg:") -> Any:
    if redis_client is not None:
        from txguard.features.stores.redis import RedisStore

        return RedisStore(redis_client, prefix=prefix)
    from txguard.features.stores.memory import MemoryStore

    return MemoryStore.load(settings.state_snapshot_path)


def audit_location(settings: Settings) -> str:
    if settings.database_url:
        return settings.database_url
    settings.home.mkdir(parents=True, exist_ok=True)
    return str(settings.sqlite_path)


def build_services(
    settings: Settings,
    *,
    clock: Clock | None = None,
    authorizer: Any | None = None,
    redis_client: Any | None = None,
) -> Services:
    """Wire every adapter from configuration and load the production model (or SAFE MODE)."""
    from txguard.audit.log import open_audit_log
    from txguard.audit.records import AuditRecord
    from txguard.model.registry import Registry

    clock = clock or SystemClock()
    closers: list[Any] = []
    if redis_client is None and settings.redis_url:
        redis_client = connect_redis(settings)
        closers.append(redis_client.close)
    try:
        store = build_state_store(settings, redis_client, prefix=settings.redis_prefix)
        audit = open_audit_log(
            audit_location(settings),
            timeout=settings.database_timeout,
            loop_writer=settings.audit_async,  # None: on for PostgreSQL (see audit.log)
        )
    except DependencyError as e:
        raise ConfigurationError(f"cannot start: {e}") from e
    closers.append(audit.close)
    if authorizer is None:
        from txguard.security.gate import build_security_gate

        authorizer = build_security_gate(
            settings,
            clock=clock,
            redis_client=redis_client,
            redis_prefix=settings.redis_prefix + "sec:",
        )
    registry = Registry(settings.registry_dir, settings.signing_key.get_secret_value())
    metrics = Metrics()
    # a placeholder runtime until load_initial() builds the real one
    holder = RuntimeHolder(_placeholder_runtime())
    pipeline = Pipeline(
        holder=holder,
        audit=audit,
        new_record=AuditRecord,
        clock=clock,
        config=pipeline_config(settings),
        observer=metrics,
    )
    services = Services(
        settings=settings,
        clock=clock,
        holder=holder,
        pipeline=pipeline,
        audit=audit,
        metrics=metrics,
        authorizer=authorizer,
        registry=registry,
        store=store,
        redis=redis_client,
        _closers=closers,
    )
    services.load_initial()
    return services


def _placeholder_runtime() -> Runtime:
    from txguard.features.engine import FeatureEngine
    from txguard.features.spec import default_spec
    from txguard.features.stores.memory import MemoryStore
    from txguard.rules.outcome import combine
    from txguard.rules.rules import RuleSet

    return Runtime.build(
        engine=FeatureEngine(default_spec(), MemoryStore()),
        rules=_StaticRules(RuleSet.empty()),
        combine=combine,
        champion=None,
        safe_mode_reason="starting",
    )
