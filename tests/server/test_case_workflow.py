"""The bad-review case workflow (issue 17, item 4): assign to a user of the centre, the
call-back to the citizen, the rectification, close (only with both), reopen with a
reason; the 15-working-day clock; every step on the record; a clerk reads its own.

One centre (qingpu) with two clerks: c-li at w03 with two bad reviews (one in November
2026, long overdue; one a minute ago), c-peer at w10 with one. zhujiajiao is another
centre of the same district.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from server.api.app import ServerSettings, create_app
from server.policy.casework import CaseState, clock, missing_to_close, refusal
from server.store.cases import case_history, case_row, take_step
from server.store.db import StoredEvent
from server.store.schema import audit_log
from server.sweep import run_once
from server.workdays import WorkCalendar
from tests.server.test_access_matrix import NOV, PASSWORD, SITES, SiteEvents, make_site

SH = ZoneInfo("Asia/Shanghai")


@dataclass
class Hall:
    client: TestClient
    app: Any
    old: str  # c-li's November case (overdue)
    fresh: str  # c-li's case of a minute ago
    peer: str  # c-peer's case

    def as_user(self, username: str) -> TestClient:
        c = self.client
        c.cookies.clear()
        c.headers.pop("X-CSRF-Token", None)
        r = c.post("/api/login", json={"username": username, "password": PASSWORD})
        assert r.status_code == 200, r.text
        c.headers["X-CSRF-Token"] = r.json()["csrf"]
        return c


@pytest.fixture(params=["sqlite", "postgresql"])
def hall(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Hall]:
    """On SQLite and on PostgreSQL."""
    sites = [make_site(tmp_path / "sites", s, d) for s, d in SITES.items()]
    url = (
        f"sqlite:///{tmp_path / 'c.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    app = create_app(ServerSettings(db_url=url, sites=sites, mqtt=None))
    with TestClient(app) as c:
        store, accounts = app.state.store, app.state.accounts
        accounts.add_user("qp", PASSWORD, "centre_manager", "site:qingpu", "青浦经理")
        accounts.add_user("qp2", PASSWORD, "centre_manager", "site:qingpu", "青浦副经理")
        accounts.add_user("gone", PASSWORD, "centre_manager", "site:qingpu")
        accounts.set_disabled("gone", True, "seed")
        accounts.add_user("insp", PASSWORD, "inspector", "district:青浦区", "区督查")
        accounts.add_user("view", PASSWORD, "readonly", "site:qingpu")
        accounts.add_user("zjj", PASSWORD, "centre_manager", "site:zhujiajiao")
        store.add_clerk("c-li", "李敏", "qingpu")
        store.add_clerk("c-peer", "王芳", "qingpu")
        accounts.add_user("li", PASSWORD, "clerk", "site:qingpu", "李敏", clerk_id="c-li")
        store.sign_in("c-li", "qingpu", "w03", NOV - 86_400_000)
        store.sign_in("c-peer", "qingpu", "w10", NOV - 86_400_000)
        now = int(time.time() * 1000)
        li, peer = SiteEvents("qingpu", "w03"), SiteEvents("qingpu", "w10")
        old, fresh = li.bad_review(NOV), li.bad_review(now - 60_000)
        peer_case = peer.bad_review(NOV + 600_000)
        store.insert_events([StoredEvent(e, e.ts_ms) for e in li.events + peer.events])
        yield Hall(c, app, old, fresh, peer_case)


def post(c: TestClient, case_id: str, step: str, body: dict[str, Any]) -> Any:
    return c.post(f"/api/cases/{case_id}/{step}", json=body)


def detail(c: TestClient, case_id: str) -> dict[str, Any]:
    r = c.get(f"/api/cases/{case_id}")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_a_case_from_assignment_to_close_and_reopened(hall: Hall) -> None:
    c = hall.as_user("qp")
    case = hall.old
    d = detail(c, case)
    assert d["status"] == "open" and d["actions"] == [] and d["reopened"] == 0
    assert d["missing_to_close"] == ["callback", "rectification"]
    # the centre's own first, then the district's; never the disabled, the read-only,
    # another centre's or a clerk
    assert [u["username"] for u in d["assignable"]] == ["qp", "qp2", "insp"]

    # a close with nothing recorded says what is missing
    r = post(c, case, "close", {"note": "done"})
    assert r.status_code == 409
    assert r.json()["detail"] == "record the call-back to the citizen and the rectification first"

    for who in ("zjj", "view", "gone", "li", "nobody"):
        r = post(c, case, "assign", {"assigned_to": who})
        assert r.status_code == 422, (who, r.text)
    r = post(c, case, "assign", {"assigned_to": "qp2", "note": "please call today"})
    assert r.status_code == 200, r.text
    assert r.json()["action"] == "assign"

    day = NOV + 86_400_000
    assert (
        post(c, case, "callback", {"at_ms": NOV - 1, "outcome": "unreachable"}).status_code == 422
    )
    future = int(time.time() * 1000) + 3_600_000
    assert post(c, case, "callback", {"at_ms": future, "outcome": "unreachable"}).status_code == 422
    assert post(c, case, "callback", {"at_ms": day, "outcome": "maybe"}).status_code == 422
    assert post(c, case, "callback", {"at_ms": day, "outcome": "unreachable"}).status_code == 200
    r = post(
        c,
        case,
        "callback",
        {"at_ms": day + 3_600_000, "outcome": "reached_not_satisfied", "note": "waited 40 min"},
    )
    assert r.status_code == 200, r.text

    r = post(c, case, "close", {"note": "done"})
    assert (r.status_code, r.json()["detail"]) == (409, "record the rectification first")
    assert post(c, case, "rectification", {"note": ""}).status_code == 422
    r = post(c, case, "rectification", {"note": "加开一个窗口，班前会讲评"})
    assert r.status_code == 200, r.text
    before = int(time.time() * 1000)
    assert post(c, case, "close", {"note": "市民已接受", "at_ms": 1}).status_code == 422
    assert post(c, case, "close", {"note": "市民已接受"}).json() == {"closed": True}
    after = int(time.time() * 1000)
    d = detail(c, case)
    assert d["status"] == "closed" and d["closed_by"] == "qp"
    assert before <= d["closed_ms"] <= after
    assert d["assigned_to"] == "qp2"
    assert (d["callback_ms"], d["callback_outcome"]) == (day + 3_600_000, "reached_not_satisfied")
    assert d["callback_note"] == "waited 40 min"
    assert d["rectification"] == "加开一个窗口，班前会讲评" and d["missing_to_close"] == []
    assert d["working_days_left"] is None and d["overdue"] is False

    # a closed case takes no step but a reopening
    for step, body in (
        ("assign", {"assigned_to": "qp"}),
        ("callback", {"at_ms": day, "outcome": "unreachable"}),
        ("rectification", {"note": "x"}),
        ("close", {"note": "x"}),
    ):
        r = post(c, case, step, body)
        assert (r.status_code, r.json()["detail"]) == (409, "the case is closed: reopen it first")
    assert post(c, case, "reopen", {"reason": ""}).status_code == 422
    assert post(c, case, "reopen", {"reason": "市民再次投诉"}).status_code == 200
    r = post(c, case, "reopen", {"reason": "again"})
    assert (r.status_code, r.json()["detail"]) == (
        409,
        "the case is open: only a closed case reopens",
    )
    d = detail(c, case)
    assert (d["status"], d["reopened"], d["closed_ms"], d["closed_by"]) == ("open", 1, None, None)
    # the reopening says the rectification was not enough: it is recorded again
    assert d["rectification"] is None and d["missing_to_close"] == ["rectification"]
    assert d["callback_outcome"] == "reached_not_satisfied"
    r = post(c, case, "close", {"note": "x"})
    assert (r.status_code, r.json()["detail"]) == (409, "record the rectification first")
    c2 = hall.as_user("qp2")
    assert post(c2, case, "rectification", {"note": "窗口调整到一楼"}).status_code == 200
    assert post(c2, case, "close", {"note": "再次回访满意"}).status_code == 200

    d = detail(c2, case)
    steps = [(a["action"], a["by"]) for a in d["actions"]]
    assert steps == [
        ("assign", "qp"),
        ("callback", "qp"),
        ("callback", "qp"),
        ("rectify", "qp"),
        ("close", "qp"),
        ("reopen", "qp"),
        ("rectify", "qp2"),
        ("close", "qp2"),
    ]
    assert d["actions"][0]["detail"] == {"assigned_to": "qp2"}
    assert d["actions"][0]["note"] == "please call today"
    assert d["actions"][2]["detail"] == {
        "called_ms": day + 3_600_000,
        "outcome": "reached_not_satisfied",
    }
    assert d["actions"][3]["note"] == "加开一个窗口，班前会讲评"  # the first rectification stays
    assert d["actions"][5]["note"] == "市民再次投诉"
    ats = [a["at_ms"] for a in d["actions"]]
    assert ats == sorted(ats) and before - 60_000 <= ats[0] <= ats[-1] <= int(time.time() * 1000)
    assert d["rectification"] == "窗口调整到一楼" and d["reopened"] == 1

    # every step audited, with the centre it concerns
    with hall.app.state.store.engine.connect() as conn:
        audited = [
            (r.action, r.username, r.site)
            for r in conn.execute(
                select(audit_log).where(audit_log.c.target == case).order_by(audit_log.c.id)
            )
        ]
    assert [a for a, _, _ in audited] == [f"case_{s}" for s, _ in steps]
    assert {site for _, _, site in audited} == {"qingpu"}


def test_the_clock_the_filters_and_the_overdue_alert(hall: Hall) -> None:
    c = hall.as_user("qp")
    rows = {r["case_id"]: r for r in c.get("/api/cases").json()}
    assert set(rows) == {hall.old, hall.fresh, hall.peer}
    fresh, old = rows[hall.fresh], rows[hall.old]
    # opened today: its due day is the 15th working day after today
    assert (fresh["working_days_left"], fresh["overdue"]) == (15, False)
    assert old["due_day"] == "2026-11-23" and old["overdue"] is True
    assert old["working_days_left"] < 0
    due = datetime.fromtimestamp(old["due_ms"] / 1000, SH)
    assert (due.date().isoformat(), due.hour, due.minute) == ("2026-11-23", 23, 59)

    def ids(status: str) -> set[str]:
        r = c.get("/api/cases", params={"status": status})
        assert r.status_code == 200, r.text
        return {x["case_id"] for x in r.json()}

    assert ids("overdue") == {hall.old, hall.peer}
    assert ids("open") == {hall.old, hall.fresh, hall.peer}
    assert c.get("/api/cases", params={"status": "late"}).status_code == 422

    # the peer's case closed: no longer overdue; the clock's sweep alerts the overdue
    # open ones (once), not the closed one
    post(c, hall.peer, "callback", {"at_ms": NOV + 86_400_000, "outcome": "reached_satisfied"})
    post(c, hall.peer, "rectification", {"note": "道歉并讲评"})
    assert post(c, hall.peer, "close", {"note": "ok"}).status_code == 200
    assert ids("overdue") == {hall.old} and ids("closed") == {hall.peer}
    store = hall.app.state.store
    now = int(time.time() * 1000)
    raised = run_once(store, now)
    overdue = [a for a in raised if a["kind"] == "case_overdue"]
    assert [a["detail"]["case_id"] for a in overdue] == [hall.old]
    assert run_once(store, now) == []
    # reopened past its due time: overdue again, and alerted
    assert post(c, hall.peer, "reopen", {"reason": "投诉未解决"}).status_code == 200
    assert ids("overdue") == {hall.old, hall.peer}
    raised = run_once(store, now + 1)
    assert [a["detail"]["case_id"] for a in raised if a["kind"] == "case_overdue"] == [hall.peer]


def test_a_clerk_reads_its_own_cases_only(hall: Hall) -> None:
    c = hall.as_user("li")
    listed = {r["case_id"] for r in c.get("/api/cases").json()}
    assert listed == {hall.old, hall.fresh}
    d = detail(c, hall.old)
    assert d["assignable"] == []  # a clerk does not work cases
    assert c.get(f"/api/cases/{hall.peer}").status_code == 404
    for case in (hall.old, hall.peer):
        assert post(c, case, "rectification", {"note": "x"}).status_code == 403
        assert post(c, case, "assign", {"assigned_to": "qp"}).status_code == 403
    # another centre's manager: as if the case did not exist
    z = hall.as_user("zjj")
    assert z.get(f"/api/cases/{hall.old}").status_code == 404
    assert post(z, hall.old, "rectification", {"note": "x"}).status_code == 404
    assert z.get("/api/cases").json() == []
    v = hall.as_user("view")
    assert detail(v, hall.old)["assignable"] == []
    assert post(v, hall.old, "rectification", {"note": "x"}).status_code == 403


def test_two_closes_at_once_one_wins(hall: Hall) -> None:
    """The step holds only while the case is as it was read: a close on a stale read
    (someone closed it meanwhile) writes nothing, not even its history entry."""
    c = hall.as_user("qp")
    post(c, hall.fresh, "callback", {"at_ms": int(time.time() * 1000), "outcome": "unreachable"})
    post(c, hall.fresh, "rectification", {"note": "讲评"})
    engine = hall.app.state.store.engine
    with engine.connect() as conn:
        stale = case_row(conn, hall.fresh)
    assert stale is not None
    assert post(c, hall.fresh, "close", {"note": "first"}).status_code == 200
    values = {"status": "closed", "closed_ms": 1, "closed_by": "late", "note": "second"}
    with engine.begin() as conn:
        assert not take_step(conn, stale, "close", values, "late", 1, "second")
    with engine.connect() as conn:
        row = case_row(conn, hall.fresh)
        history = case_history(conn, hall.fresh)
    assert row is not None and (row["closed_by"], row["note"]) == ("qp", "first")
    assert [a["action"] for a in history] == ["callback", "rectify", "close"]


def test_the_cases_export_carries_the_workflow(hall: Hall) -> None:
    c = hall.as_user("qp")
    post(c, hall.old, "assign", {"assigned_to": "qp2"})
    post(c, hall.old, "callback", {"at_ms": NOV + 86_400_000, "outcome": "reached_satisfied"})
    post(c, hall.old, "rectification", {"note": "=1+1 讲评"})
    r = c.get("/api/export/cases.csv", params={"period": "2026-11", "site": "qingpu"})
    assert r.status_code == 200, r.text
    rows = {x["case_id"]: x for x in csv.DictReader(io.StringIO(r.content.decode()[1:]))}
    assert set(rows) == {hall.old, hall.peer}  # opened in November
    old = rows[hall.old]
    assert old["assigned_to"] == "qp2" and old["callback_outcome"] == "reached_satisfied"
    assert old["rectification"] == "'=1+1 讲评"  # a formula neutralised
    assert (old["due_day"], old["overdue"]) == ("2026-11-23", "True")
    assert int(old["working_days_left"]) < 0 and old["reopened"] == "0"


# ------------------------------------------------------------------ the rules, by value


def test_the_rules_of_the_steps() -> None:
    s = CaseState("open", None, None)
    assert missing_to_close(s) == ["callback", "rectification"]
    assert refusal(s, "assign") is None and refusal(s, "callback") is None
    assert refusal(CaseState("open", 5, None), "close") == "record the rectification first"
    assert refusal(CaseState("open", None, "x"), "close") == (
        "record the call-back to the citizen first"
    )
    assert refusal(CaseState("open", 5, ""), "close") == "record the rectification first"
    assert refusal(CaseState("closed", 5, "x"), "reopen") is None


def at(y: int, mo: int, d: int, hh: int = 0, mi: int = 0, ss: int = 0, us: int = 0) -> int:
    return int(datetime(y, mo, d, hh, mi, ss, us, tzinfo=SH).timestamp() * 1000)


def test_working_days_left_over_national_day() -> None:
    """2026: 1-7 October off, Saturday 10 October a working day (调休); the library's."""
    cal = WorkCalendar()
    due = at(2026, 10, 14, 23, 59, 59, 999_000)  # a Wednesday
    tz = "Asia/Shanghai"
    # from Tuesday 29 September: 30 Sep, 8, 9, 10 (Sat), 12, 13, 14 October
    assert clock(at(2026, 9, 29, 15), "open", due, tz, cal).working_days_left == 7
    assert clock(at(2026, 10, 14, 9), "open", due, tz, cal) == ("2026-10-14", 0, False)
    assert clock(at(2026, 10, 14, 23, 59, 59, 999_000), "open", due, tz, cal).overdue is False
    assert clock(at(2026, 10, 15, 0), "open", due, tz, cal).working_days_left == -1
    assert clock(at(2026, 10, 15, 0), "open", due, tz, cal).overdue is True
    # Saturday 17 October, overdue by the two working days 15 and 16 October
    assert clock(at(2026, 10, 17, 12), "open", due, tz, cal).working_days_left == -2
    assert clock(at(2026, 10, 17, 12), "closed", due, tz, cal) == ("2026-10-14", None, False)


def test_the_bodies_fit_the_store() -> None:
    """No string of a step's body can hold NUL, no time overflows its column."""
    from server.api import case_schemas as cs
    from tests.test_protocol import _unstorable

    problems: list[str] = []
    for body in (cs.CaseAssign, cs.CaseCallback, cs.CaseRectification, cs.CaseCloseIn):
        _unstorable(body.model_json_schema(), body.__name__, problems)
    _unstorable(cs.CaseReopen.model_json_schema(), "CaseReopen", problems)
    assert problems == []
