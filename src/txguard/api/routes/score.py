"""The hot path: ``POST /v1/score``, ``POST /v1/score/batch``, ``POST /v1/labels``.

Bodies are decoded with orjson and validated by the domain parser (not pydantic: ~20 µs instead
of hundreds); responses are orjson bytes. The OpenAPI still declares both shapes exactly (see
``api.schemas``). Each route is a lean handler (services, body, path) → bytes: the app serves it
straight from ASGI messages (``api.deps.serve_lean``), and the same handler behind Starlette's
router when a request goes that way.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import orjson
from fastapi import APIRouter
from starlette.responses import Response

from txguard.api.deps import LeanRoute, lean_endpoint, protected
from txguard.api.errors import problem_for
from txguard.api.schemas import (
    BATCH_RESPONSE_SCHEMA,
    DECISION_SCHEMA,
    LABELS_RESPONSE_SCHEMA,
    batch_request_schema,
    json_content,
    labels_request_schema,
    problems,
    request_body,
    score_request_schema,
)
from txguard.domain.errors import FieldError, PayloadTooLargeError, TxguardError, ValidationError
from txguard.scoring.pipeline import Scored
from txguard.scoring.request import decision_view
from txguard.security.roles import Role
from txguard.settings import Settings

_ERRORS = (401, 403, 413, 422, 429, 503)


def decode_json(body: bytes) -> Any:
    """Bytes → JSON value; malformed or empty input is a 422 naming the problem."""
    if not body:
        raise ValidationError(
            [FieldError("$", "empty body: expected a JSON object")], "invalid JSON"
        )
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise ValidationError([FieldError("$", f"malformed JSON: {e}")], "malformed JSON") from None


def _items(data: Any, key: str, max_items: int) -> list[Any]:
    if not isinstance(data, dict):
        raise ValidationError([FieldError("$", f"expected an object with {key!r}")])
    extra = [k for k in data if k != key]
    if extra:
        raise ValidationError([FieldError(str(k), "unknown field") for k in extra])
    items = data.get(key)
    if not isinstance(items, list):
        raise ValidationError([FieldError(key, "expected an array")])
    if not items:
        raise ValidationError([FieldError(key, "must not be empty")])
    if len(items) > max_items:
        raise PayloadTooLargeError(
            [FieldError(key, f"{len(items)} items; at most {max_items} per request")],
            "batch too large",
        )
    return items


def build_router(settings: Settings) -> APIRouter:
    router = APIRouter(tags=["scoring"], route_class=LeanRoute)
    max_batch = settings.max_batch

    async def score(services: Any, body: bytes, path: str) -> bytes:
        """A TransactionEvent (plus optional external `features`) → a Decision, durably in the
        audit log before this response is sent. The same `transaction_id` again returns the
        first decision (`replayed: true`) and is not counted twice."""
        t0 = time.perf_counter()
        scored = await services.pipeline.score(decode_json(body))
        out = orjson.dumps(decision_view(scored))
        services.metrics.request("/v1/score", time.perf_counter() - t0)
        return out

    async def score_batch(services: Any, body: bytes, path: str) -> bytes:
        """`{"events": [...]}` → one result per event, in order: a decision (status 200) or a
        problem (its own 4xx/5xx). Never all-or-nothing."""
        t0 = time.perf_counter()
        events = _items(decode_json(body), "events", max_batch)
        results = await services.pipeline.score_many(events)
        out: list[dict[str, Any]] = []
        summary: Counter[str] = Counter()
        for i, r in enumerate(results):
            if isinstance(r, Scored):
                out.append({"index": i, "status": 200, "decision": decision_view(r)})
                summary[r.record.action] += 1
            elif isinstance(r, TxguardError):
                status, problem, _ = problem_for(r, path)
                out.append({"index": i, "status": status, "error": problem})
                summary["errors"] += 1
            else:
                raise r
        services.metrics.request("/v1/score/batch", time.perf_counter() - t0)
        return orjson.dumps({"results": out, "summary": dict(summary)})

    async def labels(services: Any, body: bytes, path: str) -> bytes:
        """`{"labels": [...]}`: each applied to the feature state (label-derived risk rates);
        bad items are reported by index, the good ones are applied."""
        items = _items(decode_json(body), "labels", max_batch)

        def apply_all() -> tuple[int, list[dict[str, Any]]]:
            accepted = 0
            errors: list[dict[str, Any]] = []
            for i, raw in enumerate(items):
                try:
                    services.pipeline.label(raw)
                    accepted += 1
                except TxguardError as e:
                    _, problem, _ = problem_for(e, path)
                    problem["index"] = i
                    errors.append(problem)
            return accepted, errors

        # the labels' state-store calls block: off the event loop that serves the decisions
        accepted, errors = await asyncio.to_thread(apply_all)
        return orjson.dumps({"accepted": accepted, "errors": errors})

    for path, summary, answer, request, handler in (
        ("/v1/score", "Score one transaction", DECISION_SCHEMA, score_request_schema(), score),
        (
            "/v1/score/batch",
            "Score up to max_batch transactions",
            BATCH_RESPONSE_SCHEMA,
            batch_request_schema(max_batch),
            score_batch,
        ),
        (
            "/v1/labels",
            "Send verdicts (LabelEvents)",
            LABELS_RESPONSE_SCHEMA,
            labels_request_schema(max_batch),
            labels,
        ),
    ):
        router.post(
            path,
            summary=summary,
            response_class=Response,
            responses={200: json_content(answer), **problems(*_ERRORS)},
            **protected(Role.SCORER, request_body(request)),
        )(lean_endpoint(handler))
    return router
