"""Model and rules lifecycle without downtime (admin, signed requests).

Each operation loads and verifies the new model/rules OFF the request path (a worker thread),
then swaps the immutable runtime snapshot by one reference assignment: in-flight requests finish
on the old snapshot, the next ones use the new one, none fails. A version that does not verify
is refused (409) and the current one keeps serving.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path, Request
from starlette.responses import Response

from txguard.api.deps import protected
from txguard.api.schemas import MODELS_SCHEMA, RUNTIME_SCHEMA, json_content, problems
from txguard.domain.events import format_timestamp
from txguard.security.roles import Role

_JSON = "application/json"
Endpoint = Callable[..., Any]
Version = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]


def _plain(v: Any) -> Any:
    if isinstance(v, datetime):
        return format_timestamp(v)
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {f.name: _plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if hasattr(v, "to_dict"):
        return _plain(v.to_dict())
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    if isinstance(v, str | int | float | bool) or v is None:
        return v
    return str(v)


def _runtime_body(services: Any) -> dict[str, Any]:
    rt = services.holder.current
    return {
        "serving": rt.champion.version if rt.champion is not None else None,
        "safe_mode": rt.safe_mode,
        "rules_version": str(getattr(rt.rules.current, "version", "")) or None,
    }


def build_router() -> APIRouter:
    router = APIRouter(tags=["admin"])
    admin_errors = problems(401, 403, 404, 409, 422, 429, 503)

    @router.get(
        "/v1/models",
        summary="Registered model versions and what is serving",
        response_class=Response,
        responses={200: json_content(MODELS_SCHEMA), **admin_errors},
        **protected(Role.ADMIN),
    )
    async def models(request: Request) -> Response:
        services = request.app.state.services
        rt = services.holder.current
        reg = services.registry
        versions = await asyncio.to_thread(reg.list) if reg is not None else []
        production = await asyncio.to_thread(reg.production) if reg is not None else None
        body = {
            "production": production,
            "serving": rt.champion.version if rt.champion is not None else None,
            "challenger": rt.challenger.version if rt.challenger is not None else None,
            "safe_mode": rt.safe_mode,
            "safe_mode_reason": rt.safe_mode_reason,
            "external_features": list(rt.engine.spec.external),
            "versions": [_plain(v) for v in versions],
        }
        return Response(orjson.dumps(body), media_type=_JSON)

    def lifecycle(path: str, summary: str) -> Callable[[Endpoint], Endpoint]:
        """What every lifecycle operation declares alike: POST, admin only, answering with
        what serves once it is done (:func:`_runtime_body`)."""
        return router.post(
            path,
            summary=summary,
            response_class=Response,
            responses={200: json_content(RUNTIME_SCHEMA), **admin_errors},
            **protected(Role.ADMIN),
        )

    async def _op(request: Request, fn: Any, *args: Any) -> Response:
        services = request.app.state.services
        await asyncio.to_thread(fn, *args)
        return Response(orjson.dumps(_runtime_body(services)), media_type=_JSON)

    @lifecycle("/v1/models/{version}/promote", "Verify, load and serve a version")
    async def promote(request: Request, version: Version) -> Response:
        return await _op(request, request.app.state.services.promote, version)

    @lifecycle("/v1/models/rollback", "Serve the previous production version")
    async def rollback(request: Request) -> Response:
        return await _op(request, request.app.state.services.rollback)

    @lifecycle("/v1/models/reload", "Reload the registry's production version")
    async def reload_model(request: Request) -> Response:
        return await _op(request, request.app.state.services.reload_model)

    @lifecycle(
        "/v1/rules/reload",
        "Reload the rules file (invalid rules are refused; the old set keeps serving)",
    )
    async def reload_rules(request: Request) -> Response:
        return await _op(request, request.app.state.services.reload_rules)

    return router
