"""Property-based fuzzing of the whole HTTP API from its own OpenAPI document (schemathesis):
no 5xx, every response (status, content type, body) as the document declares. Bounded examples.

The app runs with REAL adapters (MemoryStore, SQLite audit, signed model registry, rules) and a
permissive authorizer — authentication has its own matrix test (test_security_http.py); here the
point is what bad input does to every route.

Excluded check: ``positive_data_acceptance`` (a schema-valid body must get 2xx). The event schema
cannot say everything the domain parser enforces (printable text, years 1970..2200, only the
features the serving model declares external), so some schema-valid bodies are rightly refused
with 422 naming the field. Every other check runs: no 5xx, status codes, content types and
bodies as declared, negative data rejected.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from txguard.security.roles import Identity, Role

REPO = Path(__file__).resolve().parents[2]


class AllowAll:
    calls = 0

    def authenticate(self, **_: Any) -> Identity:
        AllowAll.calls += 1
        return Identity(subject="fuzz", roles=frozenset(Role), method="api_key")


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    import sys

    sys.path.insert(0, str(REPO / "tests" / "integration"))
    from test_service_support import register_model

    from txguard.api.app import create_app
    from txguard.bootstrap import build_services
    from txguard.settings import Settings

    tmp = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(REPO / "examples", tmp / "rules")
    s = Settings(home=tmp / "home", rules_path=tmp / "rules" / "rules.yaml", max_batch=20)
    register_model(s)
    svc = build_services(
        s,
        authorizer=AllowAll(),
    )
    try:
        yield schemathesis.openapi.from_asgi("/openapi.json", create_app(services=svc))
    finally:
        svc.close()


@pytest.mark.slow
def test_api_conforms_to_its_openapi(api_schema: Any) -> None:
    """Every operation, a bounded number of generated requests each (valid and invalid)."""
    from hypothesis import given

    ops = [r.ok() for r in api_schema.get_all_operations()]
    assert len(ops) >= 13
    failures: list[str] = []
    for op in ops:

        @given(case=op.as_strategy())
        @settings(
            max_examples=20,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def run(case: Any) -> None:
            case.call_and_validate(excluded_checks=[positive_data_acceptance])

        try:
            run()
        except Exception as e:  # collect every operation's failure, not just the first
            failures.append(f"{op.method.upper()} {op.path}: {e}")
    assert not failures, "\n\n".join(failures)
    assert AllowAll.calls >= 100  # the generated requests really reached the protected routes
