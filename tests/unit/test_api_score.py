"""The HTTP layer over fake ports: status codes, problem+json, limits, roles, OpenAPI."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from test_pipeline_fakes import Model, SyncClient, make_services, tx

from txguard.api.app import create_app
from txguard.api.deps import route_role
from txguard.security.roles import Role

SCORER = {"Authorization": "Bearer key-scorer"}
ANALYST = {"Authorization": "Bearer key-analyst"}
AUDITOR = {"Authorization": "Bearer key-auditor"}


@pytest.fixture(params=["direct", "router"])
def client(request: pytest.FixtureRequest) -> Any:
    """Every test here runs both ways a hot route is served: the app's direct dispatch
    (``api.deps.serve_lean``) and Starlette's middleware stack and router."""
    svc, _, _ = make_services(model=Model(), max_batch=5, max_body_bytes=4096)
    app = create_app(services=svc)
    assert set(app.lean_routes) == {
        ("POST", "/v1/score"),
        ("POST", "/v1/score/batch"),
        ("POST", "/v1/labels"),
    }
    if request.param == "router":
        app.lean_routes = {}
    return SyncClient(app)


def test_hot_routes_skip_the_middleware_stack_and_the_rest_do_not() -> None:
    """The direct dispatch really is taken for the lean routes' exact method and path, and
    only for those (a middleware sees everything else)."""
    svc, _, _ = make_services(model=Model())
    app = create_app(services=svc)
    seen: list[str] = []

    class Spy:
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            seen.append(f"{scope.get('method')} {scope['path']}")
            await self.app(scope, receive, send)

    app.add_middleware(Spy)
    c = SyncClient(app)
    assert c.post("/v1/score", content=orjson.dumps(tx()), headers=SCORER).status_code == 200
    assert c.post("/v1/labels", content=b'{"labels": []}', headers=SCORER).status_code == 422
    assert c.get("/v1/score", headers=SCORER).status_code == 405
    assert c.get("/health").status_code == 200
    assert seen == ["GET /v1/score", "GET /health"]
    app.lean_routes = {}
    assert c.post("/v1/score", content=orjson.dumps(tx("t2")), headers=SCORER).status_code == 200
    assert seen[-1] == "POST /v1/score"


def test_score_returns_a_decision(client: SyncClient) -> None:
    r = client.post("/v1/score", content=orjson.dumps(tx(amount=6000)), headers=SCORER)
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["action"] == "REVIEW"
    assert d["transaction_id"] == "t1"
    assert d["model_version"] == "m1"
    assert d["replayed"] is False
    assert any(x["kind"] == "feature" for x in d["reasons"])
    again = client.post("/v1/score", content=orjson.dumps(tx(amount=6000)), headers=SCORER).json()
    assert again["decision_id"] == d["decision_id"]
    assert again["replayed"] is True


@pytest.mark.parametrize(
    ("body", "status", "loc"),
    [
        (b"{not json", 422, "$"),
        (b"", 422, "$"),
        (b"[1, 2]", 422, "$"),
        (orjson.dumps({**tx(), "amount": "12"}), 422, "amount"),
        (orjson.dumps({**tx(), "sender": {"account_id": "x" * 500}}), 422, "sender.account_id"),
        (orjson.dumps({**tx(), "extra": {"a": {"b": [1]}}}), 422, "extra"),
    ],
)
def test_bad_input_is_problem_json(client: SyncClient, body: bytes, status: int, loc: str) -> None:
    r = client.post("/v1/score", content=body, headers=SCORER)
    assert r.status_code == status
    assert r.headers["content-type"] == "application/problem+json"
    p = r.json()
    assert p["status"] == status
    assert p["instance"] == "/v1/score"
    assert loc in {e["loc"] for e in p["errors"]}


def test_oversized_body_is_413(client: SyncClient) -> None:
    big = orjson.dumps({**tx(), "metadata": {f"k{i}": "x" * 200 for i in range(30)}})
    r = client.post("/v1/score", content=big, headers=SCORER)
    assert r.status_code == 413
    assert r.headers["content-type"] == "application/problem+json"

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(10):
            yield b" " * 1000

    r = client.post("/v1/score", content=chunks(), headers=SCORER)
    assert r.status_code == 413


@pytest.mark.parametrize("way", ["direct", "router"])
def test_an_unexpected_failure_is_a_500_problem_that_tells_nothing(
    way: str, caplog: pytest.LogCaptureFixture
) -> None:
    svc, _, _ = make_services(model=Model())
    app = create_app(services=svc)
    if way == "router":
        app.lean_routes = {}

    async def broken(raw: Any) -> Any:
        raise RuntimeError("secret internals")

    svc.pipeline.score = broken  # type: ignore[method-assign]
    client = SyncClient(app, raise_app_exceptions=False)
    r = client.post("/v1/score", content=orjson.dumps(tx()), headers=SCORER)
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"] == "internal error; see the server log"
    assert "secret" not in r.text
    assert "secret internals" in caplog.text  # but the server log has it


def test_auth_errors(client: SyncClient) -> None:
    r = client.post("/v1/score", content=orjson.dumps(tx()))
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    r = client.post("/v1/score", content=orjson.dumps(tx()), headers=ANALYST)
    assert r.status_code == 403


def test_batch_has_per_item_results(client: SyncClient) -> None:
    body = {"events": [tx("a"), {**tx("b"), "amount": -1}, tx("c", amount=6000)]}
    r = client.post("/v1/score/batch", content=orjson.dumps(body), headers=SCORER)
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert [x["status"] for x in res] == [200, 422, 200]
    assert res[1]["error"]["errors"][0]["loc"] == "amount"
    assert r.json()["summary"] == {"APPROVE": 1, "REVIEW": 1, "errors": 1}
    too_many = {"events": [tx(f"x{i}") for i in range(6)]}
    r = client.post("/v1/score/batch", content=orjson.dumps(too_many), headers=SCORER)
    assert r.status_code == 413


def test_labels(client: SyncClient) -> None:
    good = {"transaction_id": "t1", "is_fraud": True, "known_at": "2026-03-02T00:00:00Z"}
    r = client.post(
        "/v1/labels",
        content=orjson.dumps({"labels": [good, {"transaction_id": "t2"}]}),
        headers=SCORER,
    )
    assert r.status_code == 200
    assert r.json()["accepted"] == 1
    assert r.json()["errors"][0]["index"] == 1


def test_decision_explanation_and_audit(client: SyncClient) -> None:
    d = client.post("/v1/score", content=orjson.dumps(tx(amount=6000)), headers=SCORER).json()
    r = client.get(f"/v1/decisions/{d['decision_id']}", headers=ANALYST)
    assert r.status_code == 200
    assert r.json()["event"]["amount"] == 6000
    ex = client.get(f"/v1/decisions/{d['decision_id']}/explanation", headers=ANALYST).json()
    assert ex["contributions"][0]["feature"] == "amount_usd"
    assert client.get("/v1/decisions/nope", headers=ANALYST).status_code == 404
    page = client.get("/v1/audit", params={"limit": 1}, headers=AUDITOR).json()
    assert [x["decision_id"] for x in page["records"]] == [d["decision_id"]]
    bad = client.get("/v1/audit", params={"limit": 0}, headers=AUDITOR)
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"


def test_unknown_route_and_method_are_problem_json(client: SyncClient) -> None:
    r = client.get("/v1/nothing")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert client.get("/v1/score", headers=SCORER).status_code == 405


def test_open_routes_and_metrics(client: SyncClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json()["ready"] is True
    client.post("/v1/score", content=orjson.dumps(tx()), headers=SCORER)
    assert client.get("/metrics").status_code == 401
    m = client.get("/metrics", headers={"Authorization": "Bearer key-admin"})
    assert m.status_code == 200
    assert (
        'txguard_decisions_total{action="APPROVE",model_version="m1",risk_level="LOW"} 1.0'
        in m.text
    )
    assert "txguard_event_loop_lag_seconds_count" in m.text


def test_every_route_declares_a_role() -> None:
    svc, _, _ = make_services(model=Model())
    app = create_app(services=svc)
    roles = {getattr(r, "path", ""): route_role(r) for r in app.routes}
    assert roles["/v1/score"] is Role.SCORER
    assert roles["/v1/labels"] is Role.SCORER
    assert roles["/v1/decisions/{decision_id}"] is Role.ANALYST
    assert roles["/v1/audit"] is Role.AUDITOR
    assert roles["/v1/models/{version}/promote"] is Role.ADMIN
    assert roles["/metrics"] is Role.ADMIN
    assert roles["/health"] is None
    assert roles["/docs"] is None


def test_openapi_declares_the_hot_path_schemas() -> None:
    svc, _, _ = make_services(model=Model())
    doc = SyncClient(create_app(services=svc)).get("/openapi.json").json()
    op = doc["paths"]["/v1/score"]["post"]
    req = op["requestBody"]["content"]["application/json"]["schema"]
    assert "transaction_id" in req["required"]
    assert "features" in req["properties"]
    resp = op["responses"]["200"]["content"]["application/json"]["schema"]
    assert "action" in resp["required"]
    assert op["x-txguard-role"] == "scorer"


def test_lean_route_refuses_an_endpoint_that_needs_the_dependency_solver() -> None:
    from fastapi import APIRouter, Request

    from txguard.api.deps import LeanRoute, protected
    from txguard.security.roles import Role

    router = APIRouter(route_class=LeanRoute)

    async def needs_query(request: Request, limit: int = 10) -> None: ...

    with pytest.raises(TypeError, match="only the Request"):
        router.post("/x", **protected(Role.SCORER))(needs_query)
