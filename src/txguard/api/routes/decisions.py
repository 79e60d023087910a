"""Reading decisions: one decision, its exact explanation, and the audit log with filters."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from txguard.api.deps import protected
from txguard.api.schemas import (
    AUDIT_PAGE_SCHEMA,
    EXPLANATION_SCHEMA,
    RECORD_SCHEMA,
    json_content,
    problems,
    record_view,
)
from txguard.domain.errors import ConflictError, FieldError, NotFoundError, ValidationError
from txguard.security.roles import Role

_JSON = "application/json"
DecisionId = Annotated[str, Path(min_length=1, max_length=128)]


def build_router() -> APIRouter:
    router = APIRouter(tags=["decisions"])

    async def _record(request: Request, decision_id: str) -> object:
        rec = await asyncio.to_thread(request.app.state.services.audit.get, decision_id)
        if rec is None:
            raise NotFoundError(f"no decision {decision_id!r}")
        return rec

    @router.get(
        "/v1/decisions/{decision_id}",
        summary="A stored decision",
        response_class=Response,
        responses={200: json_content(RECORD_SCHEMA), **problems(401, 403, 404, 422, 429, 503)},
        **protected(Role.ANALYST),
    )
    async def get_decision(request: Request, decision_id: DecisionId) -> Response:
        rec = await _record(request, decision_id)
        return Response(orjson.dumps(record_view(rec)), media_type=_JSON)

    @router.get(
        "/v1/decisions/{decision_id}/explanation",
        summary="Exact TreeSHAP contributions of a decision",
        response_class=Response,
        responses={
            200: json_content(EXPLANATION_SCHEMA),
            **problems(401, 403, 404, 409, 422, 429, 503),
        },
        **protected(Role.ANALYST),
    )
    async def explain(request: Request, decision_id: DecisionId) -> Response:
        """Recomputed from the stored feature vector with the model version that decided."""
        services = request.app.state.services
        rec = await _record(request, decision_id)
        version = getattr(rec, "model_version", None)
        if not version:
            raise ConflictError("decided in SAFE MODE (rules only): there is no model to explain")
        model = await asyncio.to_thread(services.model, version)
        body = await asyncio.to_thread(services.pipeline.explain, rec, model)
        return Response(orjson.dumps(body), media_type=_JSON)

    @router.get(
        "/v1/audit",
        summary="Query the audit log",
        response_class=Response,
        responses={200: json_content(AUDIT_PAGE_SCHEMA), **problems(401, 403, 422, 429, 503)},
        **protected(Role.AUDITOR),
    )
    async def audit(
        request: Request,
        *,
        since: Annotated[
            datetime | None, Query(description="decided at or after (RFC 3339)")
        ] = None,
        until: Annotated[datetime | None, Query(description="decided before (RFC 3339)")] = None,
        action: Annotated[Literal["APPROVE", "REVIEW", "REJECT"] | None, Query()] = None,
        entity: Annotated[str | None, Query(max_length=128, description="sender account")] = None,
        model_version: Annotated[str | None, Query(max_length=128)] = None,
        cursor: Annotated[str | None, Query(max_length=256)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Response:
        """Records in log order, `limit` per page; pass `next_cursor` back for the next page."""
        for name, ts in (("since", since), ("until", until)):
            if ts is not None and ts.tzinfo is None:
                raise ValidationError([FieldError(f"query.{name}", "timestamp needs a time zone")])
        records, next_cursor = await asyncio.to_thread(
            request.app.state.services.audit.query,
            since=since,
            until=until,
            action=action,
            entity=entity,
            model_version=model_version,
            cursor=cursor,
            limit=limit,
        )
        body = {"records": [record_view(r) for r in records], "next_cursor": next_cursor}
        return Response(orjson.dumps(body), media_type=_JSON)

    return router
