"""The FastAPI application factory.

``create_app(settings)`` builds the app; the services (stores, audit log, model runtime, security
gate) are wired by ``txguard.bootstrap`` in the app's lifespan — or passed in ready-made
(``services=``), as tests and the demo do. ``app_from_env()`` is the factory uvicorn workers call
(``txguard serve`` runs ``uvicorn txguard.api.app:app_from_env --factory``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import APIRouter, FastAPI

from txguard.api import errors
from txguard.api.deps import BodyLimitMiddleware
from txguard.api.routes import admin, decisions, ops, score
from txguard.bootstrap import Services, build_services
from txguard.domain.clock import Clock
from txguard.settings import Settings, load_settings

try:
    _pkg_version = version("txguard")
except PackageNotFoundError:  # running from a source tree without installation
    _pkg_version = "0+unknown"

DESCRIPTION = """Real-time transaction risk scoring for fraud and AML teams.

Every route except `/health`, `/ready` and these docs needs credentials
(`Authorization: Bearer txg_…` or `X-API-Key`) with the route's role (`x-txguard-role`);
admin routes also need a signed request. Errors are `application/problem+json`.
"""


def create_app(
    settings: Settings | None = None,
    *,
    services: Services | None = None,
    authorizer: Any | None = None,
    clock: Clock | None = None,
) -> FastAPI:
    """The app. Without ``services`` they are built from ``settings`` at start-up (lifespan)."""
    settings = settings or (services.settings if services else load_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = app.state.services is None
        if owned:
            app.state.services = await asyncio.to_thread(
                build_services, settings, clock=clock, authorizer=authorizer
            )
        svc: Services = app.state.services
        if app.state.authorizer is None:
            app.state.authorizer = svc.authorizer
        if owned:
            svc.start_background()
            if settings.metrics_port is not None:
                _serve_metrics(svc, settings)
        try:
            yield
        finally:
            if owned:
                await asyncio.to_thread(svc.close)

    app = FastAPI(
        title="txguard",
        version=_pkg_version,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.services = services
    app.state.authorizer = authorizer or (services.authorizer if services else None)
    app.state.settings = settings

    errors.install(app, on_error=lambda status: _count_error(app, status))
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    for router in (
        score.build_router(settings),
        decisions.build_router(),
        admin.build_router(),
        ops.build_router(metrics_on_main_port=settings.metrics_port is None),
    ):
        _mount(app, router)
    return app


def _mount(app: FastAPI, router: APIRouter) -> None:
    """Add the router's routes to the app itself, flat: ``app.routes`` then lists every route
    (the security matrix test walks it; ``include_router`` would nest them lazily)."""
    app.router.routes.extend(router.routes)
    mark = getattr(app.router, "_mark_routes_changed", None)
    if mark is not None:
        mark()


def _count_error(app: FastAPI, status: int) -> None:
    svc = app.state.services
    if svc is not None:
        svc.metrics.error(status)


def _serve_metrics(svc: Services, settings: Settings) -> None:
    """/metrics without auth on its own port (keep that port off the public network)."""
    from prometheus_client import start_http_server

    try:
        start_http_server(
            settings.metrics_port or 0, addr=settings.host, registry=svc.metrics.registry
        )
    except OSError as e:  # another worker already serves it
        logging.getLogger("txguard.api").warning("metrics port not bound: %s", e)


def app_from_env() -> FastAPI:
    """uvicorn factory: everything from ``TXGUARD_*`` environment variables. Being the server
    process's entry point, it also tunes the process (GIL switch interval)."""
    import sys

    from txguard.security.pii import install_pii_log_filter

    settings = load_settings()
    sys.setswitchinterval(settings.gil_switch_interval_s)
    install_pii_log_filter(settings)
    return create_app(settings)
