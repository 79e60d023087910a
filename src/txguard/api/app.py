"""The FastAPI application factory.

``create_app(settings)`` builds the app; the services (stores, audit log, model runtime, security
gate) are wired by ``txguard.bootstrap`` in the app's lifespan — or passed in ready-made
(``services=``), as tests and the demo do. ``app_from_env()`` is the factory uvicorn workers call
(``txguard serve`` runs ``uvicorn txguard.api.app:app_from_env --factory``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse
from starlette.types import Receive, Scope, Send

from txguard.api import errors
from txguard.api.deps import BodyLimitMiddleware, LeanRoute, open_route, serve_lean
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


class TxguardAPI(FastAPI):
    """FastAPI with a direct dispatch for the hot path: a request whose method and path are
    exactly those of a lean route (``api.deps.LeanRoute`` with a handler: ``/v1/score``,
    ``/v1/score/batch``, ``/v1/labels``) is served by ``api.deps.serve_lean`` before the
    middleware stack and the router; everything else, and every request under a ``root_path``,
    takes the normal way. Both ways run the same handler, role check, body limit and error
    mapping (tests run the hot routes both ways). Off when OpenTelemetry is on, so that its
    middleware sees every request."""

    lean_routes: dict[tuple[str, str], LeanRoute]
    lean_max_body: int

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            route = self.lean_routes.get((scope["method"], scope["path"]))
            if route is not None:
                await serve_lean(
                    route,
                    self.state,
                    scope,
                    receive,
                    send,
                    max_body=self.lean_max_body,
                    on_error=self.count_error,
                )
                return
        await super().__call__(scope, receive, send)

    def count_error(self, status: int) -> None:
        svc = self.state.services
        if svc is not None:
            svc.metrics.error(status)


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
            # everything built so far (modules, model, engine, stores) lives as long as the
            # process: out of the cyclic GC's generations, so its full collections stop
            # re-scanning it on the request path
            gc.collect()
            gc.freeze()
        lag = asyncio.create_task(svc.metrics.watch_event_loop())
        try:
            yield
        finally:
            lag.cancel()
            if owned:
                await asyncio.to_thread(svc.close)

    app = TxguardAPI(
        title="txguard",
        version=_pkg_version,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # FastAPI's own page loads Swagger UI from a CDN: _install_docs serves it
        redoc_url=None,
        openapi_url="/openapi.json",
        telemetry=None
        if settings.opentelemetry
        else {"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    _install_docs(app, DOCS_URL)
    app.state.services = services
    app.state.authorizer = authorizer or (services.authorizer if services else None)
    app.state.settings = settings

    errors.install(app, on_error=app.count_error)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    for router in (
        score.build_router(settings),
        decisions.build_router(),
        admin.build_router(),
        ops.build_router(metrics_on_main_port=settings.metrics_port is None),
    ):
        _mount(app, router)
    app.lean_max_body = settings.max_body_bytes
    app.lean_routes = (
        {}
        if settings.opentelemetry
        else {
            (method, route.path): route
            for route in app.routes
            if isinstance(route, LeanRoute) and route.handler is not None
            for method in route.methods or ()
        }
    )
    return app


DOCS_URL = "/docs"
# Swagger UI's files as shipped in the fastapi-offline wheel (swagger-ui-dist 5): the docs page
# must render on networks without internet, so nothing is fetched from a CDN, at run time or ever.
_DOCS_ASSETS_DIR = Path(str(files("fastapi_offline") / "static"))
_DOCS_ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon.png": "image/png",
}


def _install_docs(app: FastAPI, docs_url: str) -> None:
    """``/docs`` (Swagger UI), its OAuth2 redirect page and ``/docs/assets/{name}``, all open.

    The assets are one route over a fixed allow-list of file names (not a StaticFiles mount), so
    ``app.routes`` stays a flat list of routes that each declare their role, and no request path
    reaches the file system."""
    app.docs_url = docs_url  # for readers of app.docs_url; the page itself is registered here
    assets = f"{docs_url}/assets"
    redirect_url = app.swagger_ui_oauth2_redirect_url

    @app.get(docs_url, include_in_schema=False, **open_route())
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=root + (app.openapi_url or ""),
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{assets}/swagger-ui.css",
            swagger_favicon_url=f"{root}{assets}/favicon.png",
            oauth2_redirect_url=root + redirect_url if redirect_url else None,
            init_oauth=app.swagger_ui_init_oauth,
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    if redirect_url:

        @app.get(redirect_url, include_in_schema=False, **open_route())
        async def swagger_ui_redirect() -> HTMLResponse:
            return get_swagger_ui_oauth2_redirect_html()

    @app.get(assets + "/{name}", include_in_schema=False, **open_route())
    async def swagger_ui_asset(name: str) -> FileResponse:
        media_type = _DOCS_ASSETS.get(name)
        if media_type is None:
            raise HTTPException(status_code=404, detail=f"no docs asset {name!r}")
        return FileResponse(_DOCS_ASSETS_DIR / name, media_type=media_type)


def _mount(app: FastAPI, router: APIRouter) -> None:
    """Add the router's routes to the app itself, flat: ``app.routes`` then lists every route
    (the security matrix test walks it; ``include_router`` would nest them lazily)."""
    app.router.routes.extend(router.routes)
    mark = getattr(app.router, "_mark_routes_changed", None)
    if mark is not None:
        mark()


def _serve_metrics(svc: Services, settings: Settings) -> None:
    """/metrics without auth on its own port (keep that port off the public network)."""
    from prometheus_client import start_http_server

    try:
        start_http_server(
            settings.metrics_port or 0,
            addr=settings.host,
            registry=svc.metrics.exposition_registry(),
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
