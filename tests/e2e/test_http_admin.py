"""Admin routes end to end through the REAL security gate: signed requests promote, roll back and
reload while the service keeps scoring; unsigned ones are refused."""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from test_service_support import make_key, register_model, tx

from txguard.api.app import create_app
from txguard.bootstrap import build_services
from txguard.security.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_request
from txguard.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def signed(key: str, secret: str, method: str, path: str, body: bytes = b"") -> dict[str, str]:
    ts = int(time.time())
    return {
        "Authorization": f"Bearer {key}",
        TIMESTAMP_HEADER: str(ts),
        SIGNATURE_HEADER: sign_request(secret, method=method, path=path, timestamp=ts, body=body),
    }


def test_signed_admin_lifecycle(tmp_path: Path) -> None:
    shutil.copytree(REPO / "examples", tmp_path / "rules")
    settings = Settings(home=tmp_path / "home")
    v1 = register_model(settings, seed=1)
    v2 = register_model(settings, seed=2, promote=False)
    admin, secret = make_key(settings, "admin", require_signature=True)
    scorer, _ = make_key(settings, "scorer")
    svc = build_services(
        settings.model_copy(update={"rules_path": tmp_path / "rules" / "rules.yaml"})
    )

    async def go() -> None:
        transport = httpx.ASGITransport(app=create_app(services=svc))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:

            async def admin_call(method: str, path: str) -> Any:
                return await c.request(method, path, headers=signed(admin, secret, method, path))

            unsigned = await c.post(
                f"/v1/models/{v2}/promote", headers={"Authorization": f"Bearer {admin}"}
            )
            assert unsigned.status_code == 401
            assert unsigned.headers["content-type"] == "application/problem+json"
            listing = (await admin_call("GET", "/v1/models")).json()
            assert {v["version"] for v in listing["versions"]} == {v1, v2}
            assert (listing["production"], listing["serving"]) == (v1, v1)

            r = await admin_call("POST", f"/v1/models/{v2}/promote")
            assert r.status_code == 200, r.text
            assert r.json()["serving"] == v2
            d = await c.post(
                "/v1/score",
                content=orjson.dumps(tx("a", 20)),
                headers={"Authorization": f"Bearer {scorer}"},
            )
            assert d.json()["model_version"] == v2
            assert (await admin_call("POST", "/v1/models/rollback")).json()["serving"] == v1
            assert (await admin_call("POST", "/v1/models/reload")).json()["serving"] == v1
            rules = await admin_call("POST", "/v1/rules/reload")
            assert rules.status_code == 200
            assert rules.json()["rules_version"]
            missing = await admin_call("POST", "/v1/models/v0-nope/promote")
            assert missing.status_code == 404
            metrics = await admin_call("GET", "/metrics")
            assert 'txguard_runtime_swaps_total{operation="promote"} 1.0' in metrics.text
            # the scorer key cannot touch admin routes even when it signs nothing
            forbidden = await c.post(
                "/v1/models/rollback", headers={"Authorization": f"Bearer {scorer}"}
            )
            assert forbidden.status_code == 403

    try:
        asyncio.run(go())
    finally:
        svc.close()
