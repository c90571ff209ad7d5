"""The HTTP API over a known scenario (no broker: events go straight to the store)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from server.api.app import ServerSettings, create_app
from server.store.db import StoredEvent
from tests.conftest import EXAMPLE_SITE
from tests.server.test_measures import ms, scenario


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(
        ServerSettings(db_url=f"sqlite:///{tmp_path / 'api.db'}", sites=[EXAMPLE_SITE], mqtt=None)
    )
    with TestClient(app) as c:
        yield c


def test_measures_ranking_cases_and_kpis(client: TestClient) -> None:
    nov1 = ms(2026, 11, 1, 0, 0)
    assert (
        client.post(
            "/api/clerks", json={"clerk_id": "c-li", "name": "李敏", "site": "qingpu"}
        ).status_code
        == 201
    )
    r = client.post(
        "/api/roster",
        json={"clerk_id": "c-li", "site": "qingpu", "window": "w03", "start_ms": nov1},
    )
    assert r.status_code == 201
    bad = client.post(
        "/api/roster",
        json={"clerk_id": "c-li", "site": "qingpu", "window": "w03", "start_ms": 5, "end_ms": 1},
    )
    assert bad.status_code == 422
    f, refs = scenario()
    store = client.app.state.store  # type: ignore[attr-defined]
    store.insert_events([StoredEvent(e, e.ts_ms) for e in f.events])

    m = client.get("/api/measures", params={"period": "2026-11", "window": "w03"}).json()
    assert m["groups"]["all"]["sessions"] == 10
    assert m["groups"]["all"]["good_review_rate"] == 0.875
    g = client.get("/api/measures", params={"period": "2026-11", "group_by": "window"}).json()
    assert set(g["groups"]) == {"qingpu/w03", "qingpu/w04", "qingpu/w05"}
    assert client.get("/api/measures", params={"period": "November"}).status_code == 422

    v = client.get("/api/assessment/c-li", params={"month": "2026-11"}).json()
    assert v["result"] == "insufficient_data"  # default threshold: 20 sessions

    ranking = client.get("/api/ranking", params={"period": "2026-11", "min_sessions": 1}).json()
    assert [r["clerk_id"] for r in ranking] == ["c-li"]

    cases = client.get("/api/cases", params={"status": "open"}).json()
    assert [c["case_id"] for c in cases] == [str(refs["bad_eval"].event_id)]
    closed = client.post(
        f"/api/cases/{cases[0]['case_id']}/close", json={"note": "called back", "at_ms": nov1}
    )
    assert closed.json() == {"closed": True}
    assert (
        client.post(
            f"/api/cases/{cases[0]['case_id']}/close", json={"note": "x", "at_ms": 1}
        ).status_code
        == 404
    )

    kpi = {
        "site": "qingpu",
        "window": "w11",
        "day": "2026-11-02",
        "requests": 20,
        "first_response_within_1min": 20,
        "resolved": 19,
    }
    assert client.post("/api/helpdesk/kpis", json=kpi).status_code == 201
    assert client.post("/api/helpdesk/kpis", json=kpi | {"resolved": 21}).status_code == 422
    h = client.get(
        "/api/helpdesk", params={"first_day": "2026-11-01", "last_day": "2026-11-30"}
    ).json()
    assert h == {
        "requests": 20,
        "first_response_rate": 1.0,
        "resolved_rate": 0.95,
        "meets_standard": True,
    }

    assert client.get("/api/gaps").json() == []
    spec = client.get("/openapi.json").json()
    assert {"/api/measures", "/api/ranking", "/api/cases", "/api/helpdesk/kpis"} <= set(
        spec["paths"]
    )
