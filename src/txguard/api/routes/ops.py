"""Operational routes: liveness, readiness, Prometheus metrics."""

from __future__ import annotations

import asyncio

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from txguard.api.deps import open_route, protected
from txguard.api.schemas import HEALTH_SCHEMA, READY_SCHEMA, json_content, problems
from txguard.security.roles import Role

_JSON = "application/json"


def build_router(*, metrics_on_main_port: bool) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get(
        "/health",
        summary="Liveness: the process answers",
        response_class=Response,
        responses={200: json_content(HEALTH_SCHEMA)},
        **open_route(),
    )
    async def health() -> Response:
        return Response(b'{"status":"ok"}', media_type=_JSON)

    @router.get(
        "/ready",
        summary="Readiness: model loaded (or SAFE MODE), stores reachable",
        response_class=Response,
        responses={200: json_content(READY_SCHEMA), 503: json_content(READY_SCHEMA)},
        **open_route(),
    )
    async def ready(request: Request) -> Response:
        """200 when the service can decide (SAFE MODE counts: it decides, rules-only, and says
        so); 503 when the audit log (or, fail-closed, the state store) is unreachable."""
        checks = await asyncio.to_thread(request.app.state.services.readiness)
        return Response(
            orjson.dumps(checks), status_code=200 if checks["ready"] else 503, media_type=_JSON
        )

    if metrics_on_main_port:

        @router.get(
            "/metrics",
            summary="Prometheus metrics",
            response_class=Response,
            responses={
                200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
                **problems(401, 403, 429),
            },
            **protected(Role.ADMIN),
        )
        async def metrics(request: Request) -> Response:
            body, ctype = request.app.state.services.metrics.render()
            return Response(body, media_type=ctype)

    return router
