"""The HTTP API over a known scenario (no broker: events go straight to the store)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from server.api.app import ServerSettings, create_app
from server.store.db import StoredEvent
from tests.conftest import EXAMPLE_SITE
from tests.server.test_measures import ms, scenario


def sign_in(c: TestClient, username: str, password: str) -> str:
    r = c.post("/api/login", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    csrf = r.json()["csrf"]
    c.headers["X-CSRF-Token"] = csrf
    return str(csrf)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(
        ServerSettings(db_url=f"sqlite:///{tmp_path / 'api.db'}", sites=[EXAMPLE_SITE], mqtt=None)
    )
    with TestClient(app) as c:
        accounts = app.state.accounts
        accounts.add_user("admin", "admin-pass-1", "district_admin", "district:青浦区")
        accounts.add_user("viewer", "viewer-pass-1", "readonly", "site:qingpu")
        accounts.add_user("other", "other-pass-1", "centre_manager", "site:zhujiajiao")
        sign_in(c, "admin", "admin-pass-1")
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
    case_url = f"/api/cases/{cases[0]['case_id']}/close"
    # the close time is the server's: a caller cannot back-date (or post-date) it
    assert client.post(case_url, json={"note": "x", "at_ms": 1}).status_code == 422
    # a close needs the call-back and the rectification recorded first
    assert client.post(case_url, json={"note": "called back"}).status_code == 409
    case_id = cases[0]["case_id"]
    called = {"at_ms": cases[0]["opened_ms"] + 60_000, "outcome": "reached_satisfied"}
    assert client.post(f"/api/cases/{case_id}/callback", json=called).status_code == 200
    fixed = {"note": "briefed the window"}
    assert client.post(f"/api/cases/{case_id}/rectification", json=fixed).status_code == 200
    before = int(time.time() * 1000)
    closed = client.post(case_url, json={"note": "called back"})
    assert closed.json() == {"closed": True}
    after = int(time.time() * 1000)
    (done,) = client.get("/api/cases", params={"status": "closed"}).json()
    assert before <= done["closed_ms"] <= after
    assert (
        client.post(f"/api/cases/{cases[0]['case_id']}/close", json={"note": "x"}).status_code
        == 409  # already closed; an unknown or out-of-scope id is 404
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
        "days": [kpi | {"first_response_rate": 1.0, "resolved_rate": 0.95, "meets_standard": True}],
    }

    assert client.get("/api/gaps").json() == []
    spec = client.get("/openapi.json").json()
    assert {"/api/measures", "/api/ranking", "/api/cases", "/api/helpdesk/kpis"} <= set(
        spec["paths"]
    )


def test_auth_roles_scope_and_csrf(client: TestClient) -> None:
    store = client.app.state.store  # type: ignore[attr-defined]
    f, _ = scenario()
    store.insert_events([StoredEvent(e, e.ts_ms) for e in f.events])
    alert_id = next(
        a["alert_id"] for a in client.get("/api/alerts").json() if a["kind"] == "bad_review"
    )
    # CSRF: a state change without the session's token is refused
    token = client.headers.pop("X-CSRF-Token")
    assert client.post(f"/api/alerts/{alert_id}/ack", json={"note": "x"}).status_code == 403
    client.headers["X-CSRF-Token"] = token
    assert (
        client.post(f"/api/alerts/{alert_id}/ack", json={"note": "called the citizen"}).status_code
        == 200
    )
    assert client.post(f"/api/alerts/{alert_id}/ack", json={"note": "again"}).status_code == 409
    audit = client.get("/api/audit").json()
    assert [a["action"] for a in audit][:2] == ["ack_alert", "login"]
    # a read-only user sees but cannot acknowledge
    sign_in(client, "viewer", "viewer-pass-1")
    other = next(a["alert_id"] for a in client.get("/api/alerts?open_only=true").json())
    r = client.post(f"/api/alerts/{other}/ack", json={"note": "x"})
    assert r.status_code == 403 and "readonly" in r.text
    assert client.get("/api/audit").status_code == 403
    # a manager of another centre sees nothing of Qingpu
    sign_in(client, "other", "other-pass-1")
    assert client.get("/api/hall/qingpu").status_code == 403
    assert client.get("/api/alerts").json() == []
    assert (
        client.get("/api/measures", params={"period": "2026-11", "site": "qingpu"}).status_code
        == 403
    )
    # wrong password, logout, and no cookie at all
    assert (
        client.post("/api/login", json={"username": "admin", "password": "nope"}).status_code == 401
    )
    client.post("/api/logout")
    client.cookies.clear()
    assert client.get("/api/me").status_code == 401
    assert client.get("/", follow_redirects=False).status_code in (302, 307)


def test_exports_and_report(client: TestClient) -> None:
    store = client.app.state.store  # type: ignore[attr-defined]
    store.add_clerk("c-li", "李敏", "qingpu")
    store.sign_in("c-li", "qingpu", "w03", ms(2026, 11, 1, 0, 0))
    f, _ = scenario()
    store.insert_events([StoredEvent(e, e.ts_ms) for e in f.events])
    r = client.get("/api/export/sessions.csv", params={"period": "2026-11", "site": "qingpu"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    lines = r.content.decode("utf-8-sig").strip().splitlines()
    assert len(lines) == 1 + 43 and lines[0].startswith("session_id,")
    x = client.get(
        "/api/export/measures_by_window.xlsx", params={"period": "2026-11", "site": "qingpu"}
    )
    from io import BytesIO

    from openpyxl import load_workbook

    ws = load_workbook(BytesIO(x.content)).active
    assert ws is not None
    assert [c.value for c in ws[1]][:2] == ["group", "sessions"]
    assert {row[0].value: row[1].value for row in ws.iter_rows(min_row=2)} == {
        "qingpu/w03": 10,
        "qingpu/w04": 3,
        "qingpu/w05": 30,
    }
    assert client.get("/api/export/nothing.csv", params={"period": "2026-11"}).status_code == 404
    report = client.get("/report/qingpu/2026-11").text
    assert "青浦区行政服务中心" in report and "李敏" in report and "微笑之星" in report
