"""Each access defect found by hand (issue 13), as a test that failed before its fix.

Two centres of one district (qingpu, zhujiajiao) and one of another (xuhui).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from server.api.app import ServerSettings, create_app
from server.store.db import StoredEvent
from tests.server.test_access_matrix import NOV, PASSWORD, SITES, SiteEvents, make_site


@dataclass
class Hall:
    client: TestClient
    app: Any
    cases: dict[str, list[str]]

    def as_user(self, username: str) -> TestClient:
        c = self.client
        c.cookies.clear()
        c.headers.pop("Authorization", None)
        r = c.post("/api/login", json={"username": username, "password": PASSWORD})
        assert r.status_code == 200, r.text
        c.headers["X-CSRF-Token"] = r.json()["csrf"]
        return c

    def as_token(self, value: str) -> TestClient:
        c = self.client
        c.cookies.clear()
        c.headers.pop("X-CSRF-Token", None)
        c.headers["Authorization"] = f"Bearer {value}"
        return c


@pytest.fixture
def hall(tmp_path: Path) -> Iterator[Hall]:
    sites = [make_site(tmp_path / "sites", s, d) for s, d in SITES.items()]
    app = create_app(
        ServerSettings(db_url=f"sqlite:///{tmp_path / 'd.db'}", sites=sites, mqtt=None)
    )
    with TestClient(app) as c:
        store, accounts = app.state.store, app.state.accounts
        accounts.add_user("qp", PASSWORD, "centre_manager", "site:qingpu")
        accounts.add_user("zjj", PASSWORD, "centre_manager", "site:zhujiajiao")
        accounts.add_user("qp_district", PASSWORD, "district_admin", "district:青浦区")
        accounts.add_user("xh_admin", PASSWORD, "district_admin", "district:徐汇区")
        accounts.add_user("xh_inspector", PASSWORD, "inspector", "site:xuhui")
        cases: dict[str, list[str]] = {}
        evs = []
        for site in SITES:
            store.add_clerk(f"c-{site}", f"clerk of {site}", site)
            store.put_helpdesk_kpis(site, "w11", "2026-11-02", 10, 10, 10)
            se = SiteEvents(site)
            for i in range(25):
                se.bad_review(NOV + i * 600_000)
            evs += se.events
        store.insert_events([StoredEvent(e, e.ts_ms) for e in evs])
        for site in SITES:
            cases[site] = [x["case_id"] for x in store.list_cases("open", site)]
        yield Hall(c, app, cases)


def test_another_centre_cannot_close_this_centres_case(hall: Hall) -> None:
    case = hall.cases["qingpu"][0]
    for user in ("zjj", "xh_admin", "xh_inspector"):
        c = hall.as_user(user)
        r = c.post(f"/api/cases/{case}/close", json={"note": "not mine"})
        assert r.status_code == 404, (user, r.text)  # as if it did not exist
    c = hall.as_user("qp")
    (row,) = [x for x in c.get("/api/cases").json() if x["case_id"] == case]
    assert row["status"] == "open" and row["note"] is None
    called = {"at_ms": row["opened_ms"] + 60_000, "outcome": "reached_satisfied"}
    assert c.post(f"/api/cases/{case}/callback", json=called).status_code == 200
    assert c.post(f"/api/cases/{case}/rectification", json={"note": "fixed"}).status_code == 200
    assert c.post(f"/api/cases/{case}/close", json={"note": "fixed"}).status_code == 200


def test_a_clerk_id_cannot_be_taken_over_by_another_centre(hall: Hall) -> None:
    c = hall.as_user("zjj")
    r = c.post("/api/clerks", json={"clerk_id": "c-qingpu", "name": "moved", "site": "zhujiajiao"})
    assert r.status_code == 409
    assert c.get("/api/assessment/c-qingpu", params={"month": "2026-11"}).status_code == 404
    c = hall.as_user("qp")
    clerk = c.get("/api/clerks").json()
    assert [(x["clerk_id"], x["site"], x["name"]) for x in clerk] == [
        ("c-qingpu", "qingpu", "clerk of qingpu")
    ]
    assert c.get("/api/assessment/c-qingpu", params={"month": "2026-11"}).status_code == 200


def test_moving_a_clerk_is_an_explicit_audited_transfer(hall: Hall) -> None:
    c = hall.as_user("qp")  # sees only qingpu: cannot move a clerk out of it
    r = c.post("/api/clerks/c-qingpu/transfer", json={"site": "zhujiajiao"})
    assert r.status_code == 403
    c = hall.as_user("qp_district")
    r = c.post("/api/clerks/c-qingpu/transfer", json={"site": "zhujiajiao"})
    assert r.json() == {"clerk_id": "c-qingpu", "from": "qingpu", "to": "zhujiajiao"}
    for site in ("qingpu", "zhujiajiao"):
        entries = c.get("/api/audit", params={"site": site}).json()
        assert any(e["action"] == "transfer_clerk" and e["site"] == site for e in entries)
    c = hall.as_user("zjj")
    assert c.get("/api/assessment/c-qingpu", params={"month": "2026-11"}).status_code == 200


def test_roster_refuses_another_centres_clerk(hall: Hall) -> None:
    c = hall.as_user("qp")
    verdict = c.get("/api/assessment/c-qingpu", params={"month": "2026-11"}).json()
    c = hall.as_user("zjj")
    body = {"clerk_id": "c-qingpu", "site": "zhujiajiao", "window": "w03", "start_ms": 0}
    assert c.post("/api/roster", json=body).status_code == 404
    # a clerk of one's own centre onto a window one's centre does not have
    body = {"clerk_id": "c-zhujiajiao", "site": "zhujiajiao", "window": "w99", "start_ms": 0}
    assert c.post("/api/roster", json=body).status_code == 404
    c = hall.as_user("qp")
    assert c.get("/api/assessment/c-qingpu", params={"month": "2026-11"}).json() == verdict
    # a district admin who sees both centres still cannot roster across centres
    c = hall.as_user("qp_district")
    body = {"clerk_id": "c-qingpu", "site": "zhujiajiao", "window": "w03", "start_ms": 0}
    assert c.post("/api/roster", json=body).status_code == 409


def test_stats_helpdesk_and_audit_keep_to_the_readers_units(hall: Hall) -> None:
    hall.app.state.store.count_rejects({"unknown_device": 3})
    c = hall.as_user("qp_district")  # writes audit entries in both of its centres
    for site in ("qingpu", "zhujiajiao"):
        kpi = {
            "site": site,
            "window": "w11",
            "day": "2026-11-03",
            "requests": 1,
            "first_response_within_1min": 1,
            "resolved": 1,
        }
        assert c.post("/api/helpdesk/kpis", json=kpi).status_code == 201
    c = hall.as_user("qp")
    stats = c.get("/api/stats").json()
    assert stats == {"events": 50, "rejected": None}  # 25 reviews x 2 events, own centre
    h = c.get("/api/helpdesk", params={"first_day": "2026-11-01", "last_day": "2026-11-30"})
    assert h.json()["requests"] == 11  # own 10 + 1, not the other centres' 21
    c = hall.as_user("qp_district")
    entries = c.get("/api/audit").json()
    assert {e["site"] for e in entries} <= {"qingpu", "zhujiajiao", None}
    c = hall.as_user("xh_admin")
    assert c.get("/api/stats").json()["events"] == 50
    assert all(e["site"] in ("xuhui", None) for e in c.get("/api/audit").json())
    others = [e for e in c.get("/api/audit").json() if e["site"] is None]
    assert all(e["username"] == "xh_admin" for e in others)  # its own sign-ins only


def test_logout_revokes_the_session_server_side(hall: Hall) -> None:
    c = hall.as_user("qp")
    cookie = c.cookies["ww_session"]
    assert c.post("/api/logout").status_code == 200
    c.cookies.clear()
    c.cookies.set("ww_session", cookie)
    assert c.get("/api/me").status_code == 401


def test_service_token_pushes_helpdesk_kpis_within_its_grant(hall: Hall) -> None:
    """The help-desk feed pushes with a token; a revoked token gets 401; a token for one
    site cannot write another; a token without ``read`` cannot read; each use is audited."""
    tokens = hall.app.state.tokens
    tid, value = tokens.create("helpdesk-feed", "site:qingpu", ["kpis"], "test")
    kpi = {
        "site": "qingpu",
        "window": "w11",
        "day": "2026-11-04",
        "requests": 8,
        "first_response_within_1min": 8,
        "resolved": 8,
    }
    c = hall.as_token(value)
    assert c.post("/api/helpdesk/kpis", json=kpi).status_code == 201  # no cookie, no CSRF
    assert c.post("/api/helpdesk/kpis", json=kpi | {"site": "zhujiajiao"}).status_code == 403
    assert c.get("/api/cases").status_code == 403  # not granted read
    assert (
        c.post(f"/api/cases/{hall.cases['qingpu'][0]}/close", json={"note": "x"}).status_code == 403
    )
    # a token and a cookie: the token alone decides
    tokens.revoke(tid, "test")
    r = c.post("/api/helpdesk/kpis", json=kpi)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert c.get("/api/me").status_code == 401
    c.headers.pop("Authorization")
    c = hall.as_user("qp")
    h = c.get("/api/helpdesk", params={"first_day": "2026-11-04", "last_day": "2026-11-04"})
    assert h.json()["requests"] == 8
    hall.as_user("qp_district")  # city-wide entries: ask as an all-scope reader
    hall.app.state.accounts.add_user("city", PASSWORD, "district_admin", "all")
    c = hall.as_user("city")
    uses = [e for e in c.get("/api/audit").json() if e["username"] == f"token:{tid}"]
    assert [e["action"] for e in uses].count("token_use") == 4  # the 4 accepted calls
    pushed = [e for e in c.get("/api/audit").json() if e["action"] == "helpdesk_kpis"]
    assert pushed[0]["username"] == f"token:{tid}" and pushed[0]["site"] == "qingpu"


def test_token_reads_only_its_units_and_never_through_a_cookie_form(hall: Hall) -> None:
    tokens = hall.app.state.tokens
    _, value = tokens.create("reader", "site:xuhui", ["read"], "test")
    c = hall.as_token(value)
    assert c.get("/api/hall/qingpu").status_code == 403
    assert all(x["site"] == "xuhui" for x in c.get("/api/cases").json())
    assert c.get("/api/cases").json() and c.get("/api/units").json()[0]["site"] == "xuhui"
    c.headers["Authorization"] = value.replace("wwt_", "wwx_")
    assert c.get("/api/units").status_code == 401
    c.headers["Authorization"] = "Bearer " + value[:-1] + ("A" if value[-1] != "A" else "B")
    assert c.get("/api/units").status_code == 401


def test_a_principal_bound_to_a_clerk_reads_only_that_clerks_records(hall: Hall) -> None:
    """The narrowing the clerk role (issue "assessment") builds on: users.clerk_id."""
    from sqlalchemy import update

    from server.store.schema import users

    store, accounts = hall.app.state.store, hall.app.state.accounts
    store.add_clerk("c-two", "second clerk", "qingpu")
    store.sign_in("c-qingpu", "qingpu", "w03", NOV - 86_400_000, NOV + 6 * 600_000)
    store.sign_in("c-two", "qingpu", "w03", NOV + 6 * 600_000)
    accounts.add_user("me", PASSWORD, "readonly", "site:qingpu")
    with store.engine.begin() as conn:
        conn.execute(update(users).where(users.c.username == "me").values(clerk_id="c-qingpu"))
    c = hall.as_user("me")
    month = {"period": "2026-11"}
    sessions = c.get("/api/timeline", params=month).json()
    assert len(sessions) == 7 and {s["clerk_id"] for s in sessions} == {"c-qingpu"}
    # asking for the window or the other clerk does not widen it
    assert len(c.get("/api/timeline", params=month | {"window": "w03"}).json()) == 7
    assert c.get("/api/timeline", params=month | {"clerk_id": "c-two"}).status_code == 404
    assert c.get("/api/assessment/c-two", params={"month": "2026-11"}).status_code == 404
    assert c.get("/api/assessment/c-qingpu", params={"month": "2026-11"}).status_code == 200
    assert [x["clerk_id"] for x in c.get("/api/clerks").json()] == ["c-qingpu"]
    assert {x["clerk_id"] for x in c.get("/api/cases").json()} == {"c-qingpu"}
    m = c.get("/api/measures", params=month).json()
    assert m["groups"]["all"]["sessions"] == 7
    for whole_unit in ("/api/hall/qingpu", "/api/alerts", "/api/fleet", "/api/events"):
        assert c.get(whole_unit).status_code == 403, whole_unit
    assert c.get("/report/qingpu/2026-11").status_code == 403


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_control_characters_in_a_url_are_refused_before_any_query(
    db: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A %00 in an id or a site= reached PostgreSQL as a 500 on every route it touched."""
    url = f"sqlite:///{tmp_path / 'n.db'}" if db == "sqlite" else request.getfixturevalue("pg_url")
    app = create_app(
        ServerSettings(db_url=url, sites=[make_site(tmp_path, "qingpu", "青浦区")], mqtt=None)
    )
    with TestClient(app, raise_server_exceptions=False) as c:
        app.state.accounts.add_user("city", PASSWORD, "district_admin", "all")
        r = c.post("/api/login", json={"username": "city", "password": PASSWORD})
        c.headers["X-CSRF-Token"] = r.json()["csrf"]
        for path in (
            "/api/assessment/a%00b?month=2026-11",
            "/api/windows?site=a%00",
            "/api/hall/x%00",
            "/api/timeline?period=2026-11&clerk_id=%00",
            "/api/cases?site=%0a",
            "/api/measures?period=2026-11&district=%00",
        ):
            assert c.get(path).status_code == 400, path
        for path in ("/api/alerts/a%00/ack", "/api/cases/a%00/close", "/api/clerks/a%1f/transfer"):
            assert c.post(path, json={}).status_code == 400, path
        assert c.get("/api/windows", params={"site": "qingpu"}).status_code == 200
