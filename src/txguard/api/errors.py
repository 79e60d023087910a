"""The ONE place where txguard errors become HTTP: RFC 9457 ``application/problem+json``.

Every error response has ``type``, ``title``, ``status``, ``detail`` and ``instance`` (the request
path); validation errors add ``errors``: one ``{loc, message}`` per bad field, ``loc`` a dotted
path into the body (``sender.country``, ``events.3.amount``). Nothing answers 500 for bad input:
malformed JSON, wrong types, oversized bodies and unknown routes all get a 4xx here.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from txguard.domain.errors import (
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    DependencyError,
    FieldError,
    IntegrityError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitedError,
    TxguardError,
    ValidationError,
)

PROBLEM_JSON = "application/problem+json"
_TYPE_BASE = "https://txguard.dev/problems/"
log = logging.getLogger("txguard.api")

# most specific first: PayloadTooLargeError is a ValidationError
_STATUS: tuple[tuple[type[TxguardError], int, str], ...] = (
    (PayloadTooLargeError, 413, "payload-too-large"),
    (ValidationError, 422, "validation"),
    (NotFoundError, 404, "not-found"),
    (ConflictError, 409, "conflict"),
    (IntegrityError, 409, "integrity"),
    (AuthenticationError, 401, "unauthenticated"),
    (PermissionDeniedError, 403, "forbidden"),
    (RateLimitedError, 429, "rate-limited"),
    (DependencyError, 503, "dependency-unavailable"),
    (ConfigurationError, 500, "configuration"),
)
_TITLES = {
    400: "Bad request",
    401: "Authentication required",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Invalid input",
    429: "Too many requests",
    500: "Internal error",
    503: "Dependency unavailable",
}


def status_of(exc: TxguardError) -> tuple[int, str]:
    for cls, status, slug in _STATUS:
        if isinstance(exc, cls):
            return status, slug
    return 500, "internal"


def field_errors(errors: tuple[FieldError, ...] | list[FieldError]) -> list[dict[str, str]]:
    return [{"loc": e.loc, "message": e.message} for e in errors]


def problem_body(
    status: int,
    *,
    slug: str,
    detail: str,
    instance: str,
    title: str | None = None,
    errors: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": _TYPE_BASE + slug,
        "title": title or _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    if errors is not None:
        body["errors"] = errors
    return body


def problem_response(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(body), status_code=status, media_type=PROBLEM_JSON, headers=headers
    )


def problem_for(exc: TxguardError, instance: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    """The status, problem body and extra headers for a txguard error."""
    status, slug = status_of(exc)
    headers: dict[str, str] = {}
    errors = None
    title = None
    if isinstance(exc, ValidationError):
        errors = field_errors(exc.errors)
        title = exc.title[:1].upper() + exc.title[1:] if exc.title else None
    if isinstance(exc, RateLimitedError):
        headers["Retry-After"] = str(max(1, int(exc.retry_after + 0.999)))
    if isinstance(exc, AuthenticationError):
        headers["WWW-Authenticate"] = 'Bearer realm="txguard"'
    detail = str(exc) if status < 500 or status == 503 else "internal error; see the server log"
    return (
        status,
        problem_body(
            status, slug=slug, detail=detail, instance=instance, title=title, errors=errors
        ),
        headers,
    )


def error_problem(exc: Exception, instance: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    """:func:`problem_for` for any exception a route raised: a txguard error as mapped there,
    anything else a 500 that says no more than "see the server log". Server-side failures are
    logged with their traceback (a 503 is a dependency's state, not a bug: not logged here)."""
    if isinstance(exc, TxguardError):
        status, body, headers = problem_for(exc, instance)
        if status >= 500 and status != 503:
            log.error("request failed: %s", exc, exc_info=exc)
        return status, body, headers
    log.error("unhandled error on %s", instance, exc_info=exc)
    body = problem_body(
        500, slug="internal", detail="internal error; see the server log", instance=instance
    )
    return 500, body, {}


def _loc(parts: tuple[Any, ...] | list[Any]) -> str:
    # FastAPI locs start with the source ("body", "query", "path"); keep it, dotted
    return ".".join(str(p) for p in parts) or "$"


def install(app: FastAPI, on_error: Any = None) -> None:
    """Register the handlers. ``on_error(status)`` is called for metrics when given."""

    def _count(status: int) -> None:
        if on_error is not None:
            on_error(status)

    async def txguard_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, TxguardError)
        status, body, headers = error_problem(exc, request.url.path)
        _count(status)
        return problem_response(status, body, headers)

    async def request_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"loc": _loc(e.get("loc", ())), "message": str(e.get("msg", "invalid"))}
            for e in exc.errors()
        ]
        detail = "; ".join(f"{e['loc']}: {e['message']}" for e in errors[:5])
        _count(422)
        return problem_response(
            422,
            problem_body(
                422, slug="validation", detail=detail, instance=request.url.path, errors=errors
            ),
        )

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        _count(exc.status_code)
        return problem_response(
            exc.status_code,
            problem_body(
                exc.status_code,
                slug=f"http-{exc.status_code}",
                detail=str(exc.detail),
                instance=request.url.path,
            ),
            dict(exc.headers or {}),
        )

    async def unexpected(request: Request, exc: Exception) -> Response:
        status, body, headers = error_problem(exc, request.url.path)
        _count(status)
        return problem_response(status, body, headers)

    app.add_exception_handler(TxguardError, txguard_error)
    app.add_exception_handler(RequestValidationError, request_validation)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
