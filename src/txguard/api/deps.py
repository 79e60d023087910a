"""Authentication and authorisation of HTTP routes, and request-level limits.

**How a route declares its role** (the security matrix test reads this): every route that is not
open is registered with ``**protected(Role.X)``, which adds the dependency ``requires(Role.X)``
AND records the role in the route's OpenAPI extension ``x-txguard-role``. ``route_role(route)``
returns that :class:`Role`, or None for an open route (``/health``, ``/ready``, ``/docs``,
``/openapi.json``, and ``/metrics`` when it is served on its own port). Open routes we define
carry ``x-txguard-role: open``.

``requires(role)`` calls ``request.app.state.authorizer.authenticate(method=, path=, headers=,
body=, client_ip=, role=)`` — ``path`` with ``?query`` when there is one, headers lower-cased,
body the raw bytes (signed requests cover them) — and stores the :class:`Identity` in ``request.state.identity``. Its errors
(AuthenticationError 401, PermissionDeniedError 403, RateLimitedError 429) become problem+json
in ``api.errors``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Depends, Request
from fastapi.routing import APIRoute
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from txguard.api.errors import problem_body, problem_response
from txguard.domain.errors import FieldError, PayloadTooLargeError
from txguard.security.roles import Identity, Role

ROLE_EXTENSION = "x-txguard-role"
OPEN = "open"


async def authenticate(request: Request, role: Role) -> Identity:
    """Authenticate ``request`` for ``role`` with the app's authorizer; the identity is kept in
    ``request.state.identity``."""
    scope = request.scope
    # ASGI header names arrive lower-cased; the gate normalises whatever its callers pass
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    body = await request.body()
    client = scope.get("client")
    query = scope.get("query_string", b"")
    path = scope["path"] + ("?" + query.decode("latin-1") if query else "")
    result = request.app.state.authorizer.authenticate(
        method=scope["method"],
        path=path,  # what a signed request covers: the path and its query
        headers=headers,
        body=body,
        client_ip=client[0] if client else None,
        role=role,
    )
    if inspect.isawaitable(result):
        result = await result
    request.state.identity = result
    return result  # type: ignore[no-any-return]


def requires(role: Role) -> Any:
    """A FastAPI dependency that authenticates the caller and checks ``role``."""

    async def _authenticate(request: Request) -> Identity:
        return await authenticate(request, role)

    return Depends(_authenticate)


class LeanRoute(APIRoute):
    """An APIRoute for the hot path (``/v1/score``): FastAPI's dependency solver is skipped.

    Its endpoint must take the ``Request`` only and its only dependency must be the role check
    of ``protected()``; that check then runs directly. The solver's generic work (query and
    cookie parsing, dependency cache keys, ~10 % of a decision's event-loop time measured under
    load) buys nothing for such a route. OpenAPI, the role extension and the error mapping are
    those of any APIRoute. A route that does not fit is refused when it is declared."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        params = list(inspect.signature(self.endpoint).parameters.values())
        if (
            len(params) != 1
            or self.dependant.path_params
            or self.dependant.query_params
            or self.dependant.body_params
            or len(self.dependencies) > 1
        ):
            raise TypeError(f"LeanRoute {self.path}: the endpoint must take only the Request")
        endpoint = self.endpoint
        role = route_role(self)

        async def handler(request: Request) -> Response:
            if role is not None:
                await authenticate(request, role)
            response: Response = await endpoint(request)
            return response

        return handler


def protected(role: Role, openapi_extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Route keyword arguments for a route that needs ``role``."""
    extra = dict(openapi_extra or {})
    extra[ROLE_EXTENSION] = role.value
    return {"dependencies": [requires(role)], "openapi_extra": extra}


def open_route(openapi_extra: dict[str, Any] | None = None) -> dict[str, Any]:
    extra = dict(openapi_extra or {})
    extra[ROLE_EXTENSION] = OPEN
    return {"openapi_extra": extra}


def route_role(route: BaseRoute) -> Role | None:
    """The role a route requires, None when it is open."""
    extra = getattr(route, "openapi_extra", None) or {}
    value = extra.get(ROLE_EXTENSION)
    if value is None or value == OPEN:
        return None
    return Role(value)


class BodyLimitMiddleware:
    """Refuse bodies over ``max_bytes`` with 413 before the app reads them into memory.

    A declared Content-Length over the limit is refused at once; a chunked body is counted as
    it streams and refused when it crosses the limit (the route's ``request.body()`` raises
    PayloadTooLargeError, which ``api.errors`` maps to 413).
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        for k, v in scope["headers"]:
            if k == b"content-length":
                try:
                    declared = int(v)
                except ValueError:
                    declared = -1
                if declared > limit or declared < 0:
                    await self._refuse(scope, send, declared)
                    return
                break
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise PayloadTooLargeError(
                        [FieldError("$", f"body over {limit} bytes")], "payload too large"
                    )
            return message

        await self.app(scope, limited, send)

    async def _refuse(self, scope: Scope, send: Send, declared: int) -> None:
        detail = (
            f"body of {declared} bytes is over the limit of {self.max_bytes} bytes"
            if declared >= 0
            else "invalid Content-Length"
        )
        status = 413 if declared >= 0 else 400
        resp = problem_response(
            status,
            problem_body(
                status,
                slug="payload-too-large" if status == 413 else "http-400",
                detail=detail,
                instance=scope.get("path", ""),
            ),
        )
        await resp(scope, _drain, send)


async def _drain() -> Message:
    return {"type": "http.disconnect"}
