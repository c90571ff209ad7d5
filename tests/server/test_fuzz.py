"""Schemathesis against the app's own /openapi.json, signed in: no request gives a 500,
and every answer matches the response schema the document gives for its status code.

Bounded: ``WW_FUZZ_EXAMPLES`` examples per operation (default 40), on one store per
database (SQLite and PostgreSQL) shared by every operation.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok

from server.api.app import ServerSettings, create_app
from tests.conftest import EXAMPLE_SITE

EXAMPLES = int(os.environ.get("WW_FUZZ_EXAMPLES", "40"))
PASSWORD = "Fuzz-pass-2026!x"
CALLS: Counter[str] = Counter()


#: No 5xx; every answer, refusals included, is one the document declares for the
#: operation, with a body that matches its schema.
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


@pytest.fixture(params=["sqlite", "postgresql"])
def signed_in(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Any, dict[str, str]]]:
    url = (
        f"sqlite:///{tmp_path / 'f.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    CALLS.clear()
    app = create_app(ServerSettings(db_url=url, sites=[EXAMPLE_SITE], mqtt=None))
    with TestClient(app) as c:  # runs the lifespan: migrations, the site
        app.state.accounts.add_user("fuzz", PASSWORD, "district_admin", "all")
        r = c.post("/api/login", json={"username": "fuzz", "password": PASSWORD})
        assert r.status_code == 200
        auth = {"Cookie": f"ww_session={r.cookies['ww_session']}", "X-CSRF-Token": r.json()["csrf"]}
        yield app, auth
    total = sum(CALLS.values())
    print(f"\nschemathesis ({request.param}): {len(CALLS)} operations, {total} examples")


def fuzz(op: Any, label: str, auth: dict[str, str]) -> Any:
    """A Hypothesis test of one operation: ``EXAMPLES`` generated requests, none a 5xx,
    each answer valid against the schema documented for its status code."""

    @given(case=op.as_strategy())
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def run(case: Any) -> None:
        CALLS[label] += 1
        case.call_and_validate(headers=auth, checks=CHECKS)

    return run


def test_no_server_error(signed_in: tuple[Any, dict[str, str]]) -> None:
    app, auth = signed_in
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: list[str] = []
    loaded = list(schema.get_all_operations())
    assert all(isinstance(r, Ok) for r in loaded), [r for r in loaded if not isinstance(r, Ok)]
    operations = [r.ok() for r in loaded if isinstance(r, Ok)]
    assert len(operations) >= 40

    for op in operations:
        label = f"{op.method.upper()} {op.path}"
        if op.path == "/api/logout":
            continue  # would end the session every other operation uses
        if op.path.endswith(".pdf"):
            continue  # the HTML report's parameters and Access method, then WeasyPrint

        try:
            fuzz(op, label, auth)()
        except (Exception, FailureGroup) as exc:  # a FailureGroup is a BaseExceptionGroup
            failures.append(f"{label}: {str(exc)[:600]}")
    assert not failures, "\n".join(failures)
