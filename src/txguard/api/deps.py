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
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from fastapi import Depends, Request
from fastapi.routing import APIRoute
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from txguard.api.errors import error_problem, problem_body, problem_response
from txguard.domain.errors import FieldError, PayloadTooLargeError
from txguard.security.roles import Identity, Role

ROLE_EXTENSION = "x-txguard-role"
OPEN = "open"


async def authenticate(request: Request, role: Role) -> Identity:
    """Authenticate ``request`` for ``role`` with the app's authorizer; the identity is kept in
    ``request.state.identity``."""
    result = await check_caller(
        request.app.state.authorizer, request.scope, await request.body(), role
    )
    request.state.identity = result
    return result


async def check_caller(authorizer: Any, scope: Scope, body: bytes, role: Role) -> Identity:
    """The caller of one request (its ASGI ``scope`` and raw ``body``) authenticated for
    ``role`` by ``authorizer`` (a :class:`~txguard.security.gate.SecurityGate` or a test's
    stand-in, sync or async)."""
    # ASGI header names arrive lower-cased; the gate normalises whatever its callers pass
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    client = scope.get("client")
    query = scope.get("query_string", b"")
    path = scope["path"] + ("?" + query.decode("latin-1") if query else "")
    result = authorizer.authenticate(
        method=scope["method"],
        path=path,  # what a signed request covers: the path and its query
        headers=headers,
        body=body,
        client_ip=client[0] if client else None,
        role=role,
    )
    if inspect.isawaitable(result):
        result = await result
    return result  # type: ignore[no-any-return]


def requires(role: Role) -> Any:
    """A FastAPI dependency that authenticates the caller and checks ``role``."""

    async def _authenticate(request: Request) -> Identity:
        return await authenticate(request, role)

    return Depends(_authenticate)


# The body of a lean route: (the app's services, the raw request body, the request path) → the
# JSON bytes of its 200 answer; a failure raises a TxguardError (mapped by ``api.errors``).
LeanHandler = Callable[[Any, bytes, str], Awaitable[bytes]]
JSON = "application/json"


def lean_endpoint(handler: LeanHandler) -> Callable[[Request], Coroutine[Any, Any, Response]]:
    """The Request endpoint a :class:`LeanRoute` registers for ``handler`` (same name and
    docstring, so the OpenAPI operation is the handler's). Requests that Starlette routes (a
    mounted router, a ``root_path``) run it; :func:`serve_lean` runs the same handler straight
    from ASGI messages."""

    async def endpoint(request: Request) -> Response:
        body = await request.body()
        out = await handler(request.app.state.services, body, request.url.path)
        return Response(out, media_type=JSON)

    endpoint.__name__ = handler.__name__
    endpoint.__qualname__ = handler.__qualname__
    endpoint.__doc__ = handler.__doc__
    endpoint.lean_handler = handler  # type: ignore[attr-defined]
    return endpoint


class LeanRoute(APIRoute):
    """An APIRoute for the hot path (``/v1/score``): FastAPI's dependency solver is skipped.

    Its endpoint must take the ``Request`` only and its only dependency must be the role check
    of ``protected()``; that check then runs directly. The solver's generic work (query and
    cookie parsing, dependency cache keys, ~10 % of a decision's event-loop time measured under
    load) buys nothing for such a route. OpenAPI, the role extension and the error mapping are
    those of any APIRoute. A route that does not fit is refused when it is declared.

    An endpoint made by :func:`lean_endpoint` also gives the route a ``handler``: the app then
    serves the route's exact method and path with :func:`serve_lean`, before Starlette's
    middleware stack and router (see ``api.app.TxguardAPI``)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        self.handler: LeanHandler | None = getattr(endpoint, "lean_handler", None)
        self.role = route_role(self)

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


async def serve_lean(
    route: LeanRoute,
    state: Any,
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    max_body: int,
    on_error: Callable[[int], None],
) -> None:
    """One request of a lean route served from its ASGI messages: the body limit of
    :class:`BodyLimitMiddleware`, the role check of ``authenticate``, the route's handler, the
    answer — or the problem+json ``api.errors`` gives for the same failure. What it skips is
    per-request framework work (the middleware stack, the router's path matching, Request and
    Response objects: ~100–150 µs a request measured on this machine)."""
    path = scope["path"]
    handler = route.handler
    assert handler is not None
    try:
        refusal = length_refusal(scope, max_body)
        if refusal is not None:  # as BodyLimitMiddleware answers it
            await refusal(scope, _drain, send)
            return
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away: nobody to answer
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > max_body:
                raise body_over(max_body)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if route.role is not None:
            await check_caller(state.authorizer, scope, body, route.role)
        out = await handler(state.services, body, path)
    except Exception as e:
        status, problem, headers = error_problem(e, path)
        on_error(status)
        await problem_response(status, problem, headers)(scope, receive, send)
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-length", b"%d" % len(out)),
                (b"content-type", b"application/json"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": out})


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
        refusal = length_refusal(scope, limit)
        if refusal is not None:
            await refusal(scope, _drain, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise body_over(limit)
            return message

        await self.app(scope, limited, send)


def body_over(limit: int) -> PayloadTooLargeError:
    """The error for a streamed body that has crossed ``limit`` bytes (413 in ``api.errors``)."""
    return PayloadTooLargeError([FieldError("$", f"body over {limit} bytes")], "payload too large")


def length_refusal(scope: Scope, limit: int) -> Response | None:
    """The 413 (or 400 for an unreadable value) for a request whose declared Content-Length is
    over ``limit``, before its body is read; None when there is no such header or it is within."""
    for k, v in scope["headers"]:
        if k == b"content-length":
            try:
                declared = int(v)
            except ValueError:
                declared = -1
            if 0 <= declared <= limit:
                return None
            detail = (
                f"body of {declared} bytes is over the limit of {limit} bytes"
                if declared >= 0
                else "invalid Content-Length"
            )
            status = 413 if declared >= 0 else 400
            return problem_response(
                status,
                problem_body(
                    status,
                    slug="payload-too-large" if status == 413 else "http-400",
                    detail=detail,
                    instance=scope.get("path", ""),
                ),
            )
    return None


async def _drain() -> Message:
    return {"type": "http.disconnect"}
