"""The assessment people work with (issue 17): thresholds versions, inspectors' findings,
verdict sign-off, probation decisions, and a clerk's appeal upheld by the manager.

One clerk (c-li) at qingpu with 22 sessions in November 2026: 20 stood on call, 2 did
not (stand-on-call 0.909, the default threshold 0.90 passes it).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from agent import protocol as wire
from server.api.app import ServerSettings, create_app
from server.store.db import StoredEvent
from tests.server.test_access_matrix import NOV, PASSWORD, SITES, make_site

MONTH = "2026-11"


@dataclass
class Hall:
    client: TestClient
    app: Any
    not_stood: list[str]  # the sessions where c-li did not stand
    stood: list[str]

    def as_user(self, username: str) -> TestClient:
        c = self.client
        c.cookies.clear()
        r = c.post("/api/login", json={"username": username, "password": PASSWORD})
        assert r.status_code == 200, r.text
        c.headers["X-CSRF-Token"] = r.json()["csrf"]
        return c


def sessions(site: str, n: int, not_stood: set[int]) -> tuple[list[wire.EventHeader], list[str]]:
    boot = uuid.uuid4()
    evs: list[wire.EventHeader] = []
    ids: list[str] = []
    for i in range(n):
        sid = uuid.uuid4()
        opened = NOV + i * 900_000
        head = {"site": site, "window": "w03", "boot_id": boot, "session_id": sid}
        evs.append(
            wire.Evaluated(
                event_id=uuid.uuid4(),
                seq=2 * i + 1,
                ts_ms=opened + 280_000,
                rating=wire.Rating.VERY_SATISFIED,
                **head,
            )
        )
        evs.append(
            wire.SessionSummary(
                event_id=uuid.uuid4(),
                seq=2 * i + 2,
                ts_ms=opened + 300_000,
                opened_ms=opened,
                closed_ms=opened + 280_000,
                closed_by="evaluation",
                stood_on_call=i not in not_stood,
                smiled_at_greeting=True,
                stood_at_farewell=True,
                see_off_ms=4000,
                rating=wire.Rating.VERY_SATISFIED,
                **head,
            )
        )
        ids.append(str(sid))
    return evs, ids


@pytest.fixture(params=["sqlite", "postgresql"])
def hall(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Hall]:
    """On SQLite and on PostgreSQL."""
    sites = [make_site(tmp_path / "sites", s, d) for s, d in SITES.items()]
    url = (
        f"sqlite:///{tmp_path / 'a.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    app = create_app(ServerSettings(db_url=url, sites=sites, mqtt=None))
    with TestClient(app) as c:
        store, accounts = app.state.store, app.state.accounts
        accounts.add_user("insp", PASSWORD, "inspector", "district:青浦区")
        accounts.add_user("insp_xh", PASSWORD, "inspector", "site:xuhui")
        accounts.add_user("qp", PASSWORD, "centre_manager", "site:qingpu")
        accounts.add_user("zjj", PASSWORD, "centre_manager", "site:zhujiajiao")
        accounts.add_user("qp_admin", PASSWORD, "district_admin", "district:青浦区")
        accounts.add_user("xh_admin", PASSWORD, "district_admin", "district:徐汇区")
        store.add_clerk("c-li", "李敏", "qingpu")
        store.add_clerk("c-wang", "王芳", "qingpu")
        store.sign_in("c-li", "qingpu", "w03", NOV - 86_400_000)
        accounts.add_user("li", PASSWORD, "clerk", "site:qingpu", "李敏", clerk_id="c-li")
        accounts.add_user("wang", PASSWORD, "clerk", "site:qingpu", "王芳", clerk_id="c-wang")
        evs, ids = sessions("qingpu", 22, {3, 17})
        store.insert_events([StoredEvent(e, e.ts_ms) for e in evs])
        yield Hall(c, app, [ids[3], ids[17]], [i for k, i in enumerate(ids) if k not in (3, 17)])


def verdict(c: TestClient, clerk: str = "c-li") -> dict[str, Any]:
    r = c.get(f"/api/assessment/{clerk}", params={"month": MONTH})
    assert r.status_code == 200, r.text
    return dict(r.json())


def criterion(v: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in v["criteria"] if c["criterion"] == name)


def test_thresholds_are_versioned_per_district_with_centre_overrides(hall: Hall) -> None:
    c = hall.as_user("qp_admin")
    v = verdict(c)
    assert v["result"] == "pass" and v["thresholds_version"] == {
        "versions": [],
        "source": dict.fromkeys(v["thresholds"]),
    }
    body = {
        "scope": "district:青浦区",
        "from_month": MONTH,
        "values": {"stand_on_call_rate": 0.95},
        "reason": "区窗口办 2026 年第 3 号通知",
    }
    r = c.post("/api/thresholds", json=body)
    assert r.status_code == 201, r.text
    district_v = r.json()["version"]
    v = verdict(c)
    assert v["result"] == "fail" and v["thresholds"]["stand_on_call_rate"] == 0.95
    assert v["thresholds_version"]["versions"] == [district_v]
    assert v["thresholds_version"]["source"]["stand_on_call_rate"] == district_v
    # the centre's override wins over the district's; a later month's version does not apply
    site_body = body | {"scope": "site:qingpu", "values": {"stand_on_call_rate": 0.9}}
    site_v = c.post("/api/thresholds", json=site_body).json()["version"]
    later = body | {"from_month": "2026-12", "values": {"stand_on_call_rate": 0.99}}
    assert c.post("/api/thresholds", json=later).status_code == 201
    v = verdict(c)
    assert v["result"] == "pass" and v["thresholds_version"]["versions"] == [district_v, site_v]
    t = c.get("/api/thresholds", params={"site": "qingpu", "month": MONTH}).json()
    assert t["thresholds"]["stand_on_call_rate"] == 0.9 and len(t["history"]) == 3
    assert t["source"]["stand_on_call_rate"] == site_v and t["source"]["min_sessions"] is None
    # a bad value names the field; only a district administrator covering the scope saves
    bad = body | {"values": {"stand_on_call_rate": 1.5}}
    r = c.post("/api/thresholds", json=bad)
    assert r.status_code == 422 and "values.stand_on_call_rate" in r.text
    r = c.post("/api/thresholds", json=body | {"values": {"smile_quota": 3}})
    assert r.status_code == 422 and "values.smile_quota" in r.text
    assert hall.as_user("xh_admin").post("/api/thresholds", json=body).status_code == 403
    assert hall.as_user("insp").post("/api/thresholds", json=body).status_code == 403
    assert hall.as_user("qp").post("/api/thresholds", json=site_body).status_code == 403
    audit = hall.as_user("qp_admin").get("/api/audit", params={"limit": 50}).json()
    assert [e["target"] for e in audit if e["action"] == "thresholds"] == [
        "district:青浦区",
        "site:qingpu",
        "district:青浦区",
    ]


def test_a_finding_counts_in_the_verdict_and_a_withdrawn_one_does_not(hall: Hall) -> None:
    c = hall.as_user("insp")
    body = {
        "clerk_id": "c-li",
        "kind": "video_check",
        "criterion": "W-CALL",
        "outcome": "not_complied",
        "note": "叫号后未起立，双录 09:45 处可见",
        "session_id": hall.stood[0],
        "video_ms": 12_000,
        "attachments": ["shuanglu:QP-2026-11-02-w03#0945"],
    }
    r = c.post("/api/findings", json=body)
    assert r.status_code == 201, r.text
    finding = r.json()
    assert finding["observed_ms"] == NOV + 12_000 and finding["recorded_by"] == "insp"
    v = verdict(c)
    f = criterion(v, "inspector_findings")
    assert (v["result"], f["status"], f["value"], f["findings"]) == ("fail", "fail", 1, 1)
    assert v["failures"][-1]["evidence"] == [finding["finding_id"]]
    # the thresholds say whether findings count
    admin = hall.as_user("qp_admin")
    off = {"scope": "site:qingpu", "from_month": MONTH, "values": {"findings_count": False}}
    assert admin.post("/api/thresholds", json=off | {"reason": "试行期"}).status_code == 201
    v = verdict(admin)
    assert v["result"] == "pass" and criterion(v, "inspector_findings")["status"] == "not_counted"
    on = off | {"values": {"findings_count": True}, "reason": "试行结束"}
    assert admin.post("/api/thresholds", json=on).status_code == 201
    c = hall.as_user("insp")
    r = c.post(f"/api/findings/{finding['finding_id']}/withdraw", json={"reason": "看错窗口"})
    assert r.status_code == 200 and r.json()["withdrawn_by"] == "insp"
    v = verdict(c)
    f = criterion(v, "inspector_findings")
    assert (v["result"], f["status"], f["findings"], f["withdrawn"]) == ("pass", "no_data", 0, 1)
    assert [x["withdrawn_reason"] for x in v["findings"]] == ["看错窗口"]
    again = c.post(f"/api/findings/{finding['finding_id']}/withdraw", json={"reason": "again"})
    assert again.status_code == 409
    # what a finding must carry, and who may record one
    no_session = {k: x for k, x in body.items() if k not in ("session_id", "video_ms")}
    assert c.post("/api/findings", json=no_session).status_code == 422
    image = body | {"attachments": ["data:image/png;base64,iVBORw0KGgo="]}
    assert c.post("/api/findings", json=image).status_code == 422
    past_end = body | {"video_ms": 3_600_000}
    assert c.post("/api/findings", json=past_end).status_code == 422
    other = body | {"session_id": str(uuid.uuid4())}
    assert c.post("/api/findings", json=other).status_code == 404
    patrol = {k: x for k, x in no_session.items()} | {"kind": "patrol", "criterion": "G-DRESS"}
    assert hall.as_user("insp_xh").post("/api/findings", json=patrol).status_code == 404
    assert hall.as_user("qp").post("/api/findings", json=patrol).status_code == 403
    assert hall.as_user("li").post("/api/findings", json=patrol).status_code == 403


def test_an_inspector_confirms_or_overrides_a_verdict_on_the_record(hall: Hall) -> None:
    c = hall.as_user("insp")
    assert verdict(c)["standing"]["sign_off"] == "provisional"
    r = c.post(
        f"/api/assessment/c-li/{MONTH}/decision", json={"action": "confirm", "reason": "核对无误"}
    )
    assert r.status_code == 200, r.text
    st = r.json()["standing"]
    assert (st["result"], st["sign_off"]) == ("pass", "confirmed")
    r = c.post(
        f"/api/assessment/c-li/{MONTH}/decision",
        json={"action": "override", "result": "fail", "reason": "暗访两次未起立"},
    )
    st = r.json()["standing"]
    assert (st["result"], st["computed_result"], st["sign_off"]) == ("fail", "pass", "overridden")
    assert [d["action"] for d in st["decisions"]] == ["confirm", "override"]
    rows = {x["clerk_id"]: x for x in c.get("/api/assessments", params={"month": MONTH}).json()}
    assert (rows["c-li"]["result"], rows["c-li"]["sign_off"]) == ("fail", "overridden")
    no_result = {"action": "override", "reason": "no result"}
    assert c.post(f"/api/assessment/c-li/{MONTH}/decision", json=no_result).status_code == 422
    # a month not over cannot be signed off; a manager does not sign off
    early = c.post(
        "/api/assessment/c-li/2026-12/decision", json={"action": "confirm", "reason": "x" * 3}
    )
    assert early.status_code == 409
    mgr = hall.as_user("qp")
    r = mgr.post(
        f"/api/assessment/c-li/{MONTH}/decision", json={"action": "confirm", "reason": "ok!"}
    )
    assert r.status_code == 403
    # probation is a decision: it starts after a failed month, and ends with an outcome
    insp = hall.as_user("insp")
    start = {"action": "start", "reason": "11 月考核不合格"}
    r = insp.post("/api/probation/c-li/2026-12/decision", json=start)
    assert r.status_code == 200, r.text
    p = r.json()
    assert p["status"] == "on_probation" and p["decided"]["started_by"] == "insp"
    assert p["decided"]["outcome"] is None
    assert insp.post("/api/probation/c-li/2026-12/decision", json=start).status_code == 409
    end = {"action": "end", "outcome": "passed", "reason": "12 月合格"}
    assert insp.post("/api/probation/c-li/2026-12/decision", json=end).status_code == 409
    # c-wang's November did not fail (no sessions): nothing to start
    r = insp.post("/api/probation/c-wang/2026-12/decision", json=start)
    assert r.status_code == 409 and "did not fail" in r.text
    audit = hall.as_user("qp_admin").get("/api/audit", params={"limit": 50}).json()
    actions = [e["action"] for e in audit]
    assert {"verdict_confirm", "verdict_override", "probation_start"} <= set(actions)


def test_a_clerk_appeals_a_session_and_the_manager_upholds_it(hall: Hall) -> None:
    admin = hall.as_user("qp_admin")
    strict = {
        "scope": "site:qingpu",
        "from_month": MONTH,
        "values": {"stand_on_call_rate": 0.95},
        "reason": "本中心标准",
    }
    assert admin.post("/api/thresholds", json=strict).status_code == 201
    insp = hall.as_user("insp")
    confirm = {"action": "confirm", "reason": "核对无误"}
    assert insp.post(f"/api/assessment/c-li/{MONTH}/decision", json=confirm).status_code == 200
    li = hall.as_user("li")
    v = verdict(li)
    assert (v["result"], v["standing"]["sign_off"]) == ("fail", "confirmed")
    assert criterion(v, "stand_on_call_rate")["value"] == pytest.approx(20 / 22, abs=1e-4)
    body = {
        "session_id": hall.not_stood[0],
        "criterion": "stood_on_call",
        "note": "我起立了，当时摄像头被挡",
    }
    r = li.post("/api/appeals", json=body)
    assert r.status_code == 201, r.text
    appeal = r.json()
    assert appeal["status"] == "open" and appeal["before"] == {
        "result": "fail",
        "sign_off": "confirmed",
    }
    assert [e["kind"] for e in appeal["events"]] == ["evaluated", "session_summary"]
    assert li.post("/api/appeals", json=body).status_code == 409  # one open appeal on it
    complied = body | {"session_id": hall.stood[0]}  # nothing against the clerk there
    r = li.post("/api/appeals", json=complied)
    assert r.status_code == 409 and "not a failure" in r.text
    # another clerk's session, another clerk, another centre: as if none existed
    assert li.post("/api/appeals", json=body | {"session_id": str(uuid.uuid4())}).status_code == 404
    wang = hall.as_user("wang")
    assert wang.get(f"/api/appeals/{appeal['appeal_id']}").status_code == 404
    assert wang.get("/api/appeals").json() == []
    assert wang.post("/api/appeals", json=body | {"note": "not mine"}).status_code == 404
    assert hall.as_user("zjj").get(f"/api/appeals/{appeal['appeal_id']}").status_code == 404
    resolve = {"upheld": True, "resolution": "corrected", "note": "双录可见已起立"}
    url = f"/api/appeals/{appeal['appeal_id']}/resolve"
    assert hall.as_user("zjj").post(url, json=resolve).status_code == 404
    assert hall.as_user("li").post(url, json=resolve).status_code == 403  # not its own judge
    assert hall.as_user("insp").post(url, json=resolve).status_code == 403
    mgr = hall.as_user("qp")
    assert [a["appeal_id"] for a in mgr.get("/api/appeals", params={"status": "open"}).json()] == [
        appeal["appeal_id"]
    ]
    r = mgr.post(url, json=resolve)
    assert r.status_code == 200, r.text
    done = r.json()
    assert (done["status"], done["resolution"], done["resolved_by"]) == (
        "upheld",
        "corrected",
        "qp",
    )
    assert done["after"] == {"result": "pass", "sign_off": "recomputed"}
    assert [(x["column"], x["before"], x["after"]) for x in done["corrections"]] == [
        ("stood_on_call", False, True)
    ]
    assert mgr.post(url, json=resolve).status_code == 409
    # the month is recomputed everywhere: verdict, measures (read from the rollups), and
    # the old result stays visible beside the new
    v = verdict(mgr)
    st = v["standing"]
    assert (v["result"], st["result"], st["sign_off"]) == ("pass", "pass", "recomputed")
    assert st["decisions"][-1]["computed_result"] == "fail"
    assert criterion(v, "stand_on_call_rate")["value"] == pytest.approx(21 / 22, abs=1e-4)
    m = mgr.get("/api/measures", params={"period": MONTH, "clerk_id": "c-li"}).json()
    assert m["groups"]["all"]["stand_on_call_rate"] == pytest.approx(21 / 22, abs=1e-4)
    # not counted: the session leaves every measure
    li = hall.as_user("li")
    other = body | {"session_id": hall.not_stood[1], "note": "那位群众是来问路的，不是办件"}
    second = li.post("/api/appeals", json=other).json()
    mgr = hall.as_user("qp")
    r = mgr.post(
        f"/api/appeals/{second['appeal_id']}/resolve",
        json={"upheld": True, "resolution": "not_counted", "note": "问询，不计入"},
    )
    assert r.status_code == 200, r.text
    v = verdict(mgr)
    assert v["measures"]["sessions"] == 21
    assert criterion(v, "stand_on_call_rate")["value"] == pytest.approx(1.0)
    m = mgr.get("/api/measures", params={"period": MONTH, "clerk_id": "c-li"}).json()
    assert m["groups"]["all"]["sessions"] == 21
    # a rejected appeal changes nothing
    li = hall.as_user("li")
    third = li.post("/api/appeals", json={"month": MONTH, "note": "本月评价太严"}).json()
    mgr = hall.as_user("qp")
    r = mgr.post(
        f"/api/appeals/{third['appeal_id']}/resolve", json={"upheld": False, "note": "标准如此"}
    )
    assert r.json()["status"] == "rejected" and r.json()["after"] == r.json()["before"]


def test_a_clerk_sees_its_own_records_and_no_one_elses(hall: Hall) -> None:
    store = hall.app.state.store
    store.sign_in("c-wang", "qingpu", "w04", NOV - 86_400_000)
    li = hall.as_user("li")
    me = li.get("/api/me").json()
    assert (me["role"], me["clerk_id"]) == ("clerk", "c-li")
    assert {s["clerk_id"] for s in li.get("/api/timeline", params={"period": MONTH}).json()} == {
        "c-li"
    }
    assert [r["clerk_id"] for r in li.get("/api/assessments", params={"month": MONTH}).json()] == [
        "c-li"
    ]
    ranking = li.get("/api/ranking", params={"period": MONTH, "min_sessions": 1}).json()
    assert [r["clerk_id"] for r in ranking] == ["c-li"] and ranking[0]["rank"] == 1
    for url, params in (
        ("/api/assessment/c-wang", {"month": MONTH}),
        ("/api/probation/c-wang", {"month": MONTH}),
        ("/api/findings", {"clerk_id": "c-wang", "period": MONTH}),
        ("/api/timeline", {"period": MONTH, "clerk_id": "c-wang"}),
    ):
        assert li.get(url, params=params).status_code == 404, url
    for url in ("/api/hall/qingpu", "/api/alerts", "/api/fleet", "/api/events"):
        assert li.get(url).status_code == 403, url
    # a clerk account belongs to its own centre's clerk
    accounts = hall.app.state.accounts
    with pytest.raises(ValueError, match="clerk_id"):
        accounts.add_user("bad", PASSWORD, "clerk", "site:zhujiajiao", clerk_id="c-li")
    with pytest.raises(ValueError, match="clerk_id"):
        accounts.add_user("bad", PASSWORD, "readonly", "site:qingpu", clerk_id="c-li")
    admin = hall.as_user("qp_admin")
    r = admin.post(
        "/api/users",
        json={
            "username": "wang2",
            "password": "Clerk-pass-2026!",
            "role": "clerk",
            "scope": "site:qingpu",
            "clerk_id": "c-wang",
        },
    )
    assert r.status_code == 201 and r.json()["clerk_id"] == "c-wang"


def test_a_clerk_account_moves_with_its_clerk(hall: Hall) -> None:
    li = hall.as_user("li")
    cookie = li.cookies.get("ww_session")
    admin = hall.as_user("qp_admin")
    r = admin.post("/api/clerks/c-li/transfer", json={"site": "zhujiajiao"})
    assert r.status_code == 200, r.text
    accounts = hall.app.state.accounts
    user = accounts.get_user("li")
    assert user is not None and (user.scope, user.clerk_id) == ("site:zhujiajiao", "c-li")
    c = hall.client
    c.cookies.clear()
    c.cookies.set("ww_session", str(cookie))
    assert c.get("/api/me").status_code == 401  # its session carried the old scope
    li = hall.as_user("li")
    assert li.get("/api/me").json()["sites"] == ["zhujiajiao"]
    assert verdict(li)["clerk_id"] == "c-li"


def test_a_verdict_is_a_months_and_a_clerk_a_known_centres(hall: Hall) -> None:
    """Found by the fuzzer: a quarter's verdicts answered 500, and a clerk registered at
    a centre that does not exist broke its report."""
    c = hall.as_user("qp_admin")
    for month in ("2026-Q4", "2026", "2026-11-02"):
        r = c.get("/api/assessments", params={"month": month})
        assert r.status_code == 422 and "YYYY-MM" in r.text, (month, r.text)
        assert c.get("/api/assessment/c-li", params={"month": month}).status_code == 422
    admin = hall.as_user("qp_admin")
    r = admin.post("/api/clerks", json={"clerk_id": "c-ghost", "name": "x", "site": "nowhere"})
    assert r.status_code in (403, 404), r.text
    city = hall.app.state.accounts
    city.add_user("city", PASSWORD, "district_admin", "all")
    r = hall.as_user("city").post(
        "/api/clerks", json={"clerk_id": "c-ghost", "name": "x", "site": "nowhere"}
    )
    assert r.status_code == 404 and "no such unit" in r.text
