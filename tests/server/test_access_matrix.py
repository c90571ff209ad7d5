"""Every route of the app x every kind of principal: the expected status, and for reads
the proof that nothing of a unit outside the principal's scope appears.

The route list is the application's own route table (so the live stream, /metrics, the
report and the exports are in it, not only what OpenAPI lists): a route added without an
entry in ``ROUTES`` fails ``test_every_route_has_an_entry``.

Three centres: qingpu and zhujiajiao in 青浦区, xuhui in 徐汇区. Requests target qingpu
("own"); principals sit at qingpu, zhujiajiao, the district, the other district, the city.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from starlette.routing import Mount, Route

from agent import protocol as wire
from server.api.app import ServerSettings, create_app
from server.api.deps import get_store
from server.settings_push import record_push
from server.store.db import Store, StoredEvent
from tests.conftest import EXAMPLE_SITE
from tests.server.test_measures import ms

SITES = {"qingpu": "青浦区", "zhujiajiao": "青浦区", "xuhui": "徐汇区"}
OWN = "qingpu"
NOV = ms(2026, 11, 2, 9, 0)
PASSWORD = "Matrix-pass-2026!"
#: Per site, strings that appear only in that site's rows.
MARKERS = {s: (s, f"c-{s}", f"clerk of {s}") for s in SITES}


def make_site(root: Path, slug: str, district: str) -> Path:
    d = root / slug
    shutil.copytree(EXAMPLE_SITE, d)
    toml = (d / "site.toml").read_text(encoding="utf-8")
    toml = toml.replace('site = "qingpu"', f'site = "{slug}"')
    toml = toml.replace('name = "青浦区行政服务中心"', f'name = "unit {slug}"')
    toml = toml.replace('district = "青浦区"', f'district = "{district}"')
    (d / "site.toml").write_text(toml, encoding="utf-8")
    return d


class SiteEvents:
    """Sessions, bad reviews (cases + alerts), a fault and an away period at one site."""

    def __init__(self, site: str, window: str = "w03") -> None:
        self.site = site
        self.window = window
        self.seq = 0
        self.events: list[wire.EventHeader] = []
        self.boot = uuid.uuid4()

    def header(self, ts: int, session: uuid.UUID | None = None) -> dict[str, Any]:
        self.seq += 1
        return {
            "event_id": uuid.uuid4(),
            "site": self.site,
            "window": self.window,
            "seq": self.seq,
            "boot_id": self.boot,
            "ts_ms": ts,
            "session_id": session,
        }

    def bad_review(self, ts: int) -> str:
        sid = uuid.uuid4()
        ev = wire.Evaluated(**self.header(ts, sid), rating=wire.Rating.DISSATISFIED)
        self.events.append(ev)
        self.events.append(
            wire.SessionSummary(
                **self.header(ts + 1000, sid),
                opened_ms=ts - 300_000,
                closed_ms=ts,
                closed_by="evaluation",
                stood_on_call=False,
                smiled_at_greeting=True,
                stood_at_farewell=False,
                rating=wire.Rating.DISSATISFIED,
            )
        )
        return str(ev.event_id)

    def fault(self, ts: int) -> None:
        self.events.append(wire.Fault(**self.header(ts), code="camera_frozen", detail="x"))


@dataclass
class World:
    client: TestClient
    app: Any
    cases: dict[str, list[str]] = field(default_factory=dict)  # site -> open case ids
    alerts: dict[str, list[str]] = field(default_factory=dict)  # site -> open alert ids
    sessions: list[str] = field(default_factory=list)  # the own clerk's session ids
    findings: list[str] = field(default_factory=list)  # at the own centre, one per row
    appeals: list[str] = field(default_factory=list)  # open, at the own centre, one per row
    auth: dict[str, dict[str, Any]] = field(default_factory=dict)  # principal -> headers etc.
    victim_tokens: dict[int, str] = field(default_factory=dict)  # row -> token id to revoke
    dead: dict[str, list[int]] = field(default_factory=dict)  # site -> dead delivery ids
    settings_pushes: list[int] = field(default_factory=list)  # live, the own centre's, per row


@dataclass(frozen=True)
class Who:
    """A kind of principal and what it reaches."""

    name: str
    sites: frozenset[str] | None  # None: every site; empty: nothing (not signed in)
    kind: str  # "anon", "user", "token"
    role: str = ""
    grants: frozenset[str] = frozenset()
    csrf: str = "ok"  # "ok", "missing", "wrong"

    def sees(self, site: str) -> bool:
        return self.sites is None or site in self.sites

    def can(self, action: str) -> bool:
        if self.kind == "token":
            return action in self.grants
        return self.role in ACTIONS.get(action, set())


ACTIONS = {
    "acknowledge": {"district_admin", "centre_manager", "inspector"},
    "close_case": {"district_admin", "centre_manager", "inspector"},
    "roster": {"district_admin", "centre_manager"},
    "kpis": {"district_admin", "centre_manager"},
    "users": {"district_admin"},
    "finding": {"district_admin", "inspector"},
    "sign_off": {"district_admin", "inspector"},
    "probation": {"district_admin", "inspector"},
    "thresholds": {"district_admin"},
    "appeal": {"clerk"},
    "resolve_appeal": {"district_admin", "centre_manager"},
    "outbound": {"district_admin"},
    "window_settings": {"district_admin"},
}
#: A clerk account (role clerk, bound to c-qingpu) must never see its peer's records.
PEER_MARKERS = ("c-peer", "peer clerk")
QP_DISTRICT = frozenset({"qingpu", "zhujiajiao"})
WHO = [
    Who("anonymous", frozenset(), "anon"),
    Who("revoked_session", frozenset(), "anon"),
    Who("revoked_token", frozenset(), "anon"),
    Who("manager_own", frozenset({OWN}), "user", "centre_manager"),
    Who("manager_own_no_csrf", frozenset({OWN}), "user", "centre_manager", csrf="missing"),
    Who("manager_own_wrong_csrf", frozenset({OWN}), "user", "centre_manager", csrf="wrong"),
    Who("inspector_own", frozenset({OWN}), "user", "inspector"),
    Who("readonly_own", frozenset({OWN}), "user", "readonly"),
    Who("clerk_own", frozenset({OWN}), "user", "clerk"),
    Who("manager_other_site", frozenset({"zhujiajiao"}), "user", "centre_manager"),
    Who("admin_own_district", QP_DISTRICT, "user", "district_admin"),
    Who("admin_other_district", frozenset({"xuhui"}), "user", "district_admin"),
    Who("admin_all", None, "user", "district_admin"),
    Who("token_read_own", frozenset({OWN}), "token", grants=frozenset({"read"})),
    Who("token_kpis_own", frozenset({OWN}), "token", grants=frozenset({"kpis"})),
    Who("token_kpis_other", frozenset({"xuhui"}), "token", grants=frozenset({"kpis", "read"})),
    Who("token_metrics", None, "token", grants=frozenset({"metrics"})),
    Who("token_queue_own", frozenset({OWN}), "token", grants=frozenset({"queue"})),
    Who("token_queue_other", frozenset({"xuhui"}), "token", grants=frozenset({"queue"})),
]
USERS = {
    "manager_own": ("centre_manager", f"site:{OWN}"),
    "inspector_own": ("inspector", f"site:{OWN}"),
    "readonly_own": ("readonly", f"site:{OWN}"),
    "clerk_own": ("clerk", f"site:{OWN}"),
    "manager_other_site": ("centre_manager", "site:zhujiajiao"),
    "admin_own_district": ("district_admin", "district:青浦区"),
    "admin_other_district": ("district_admin", "district:徐汇区"),
    "admin_all": ("district_admin", "all"),
}


# ---------------------------------------------------------------- the route table

Request = tuple[str, dict[str, Any]]  # url, {"json": ..., "params": ...}


@dataclass(frozen=True)
class Entry:
    """How to call one route at the own centre, and what it should answer.

    ``kind``: "public" (anyone), "read" (signed in, scoped), "change" (needs ``action``).
    ``target``: how the own centre is named: "site" (explicit site, outside -> 403),
    "object" (an id, outside -> 404) or "none" (the principal's own units).
    """

    kind: str
    build: Callable[[World, Who, int], Request]
    target: str = "none"
    action: str = ""
    ok: int = 200
    # a read that refuses principals bound to no unit or tokens, etc.
    expect: Callable[[Who], int] | None = None
    # what a clerk account gets from a read (its own records only, or 403 for a whole
    # unit's view: hall, alerts, fleet)
    clerk: int = 200


def get(url: str, **params: Any) -> Callable[[World, Who, int], Request]:
    return lambda w, who, i: (url, {"params": params})


def _case_as(w: World, i: int, **values: Any) -> str:
    """Row ``i``'s own case, put in the state a step needs (the steps' own rules are
    tests/server/test_case_workflow.py's)."""
    from sqlalchemy import update

    from server.store.schema import cases

    case_id = w.cases[OWN][i]
    with w.app.state.store.engine.begin() as conn:
        conn.execute(update(cases).where(cases.c.case_id == case_id).values(**values))
    return case_id


def _dead_deliveries(store: Store, site: str) -> list[int]:
    """N dead outbound deliveries of ``site`` (issue 18), one per row."""
    from server.outbound import queue as oq

    rows = [
        oq.delivery_row(
            target="province", key=f"{site}-{i}", kind="evaluation", body={}, at_ms=NOV, site=site
        )
        | {"status": "dead"}
        for i in range(N)
    ]
    with store.engine.begin() as conn:
        oq.enqueue_many(conn, rows)
        got = oq.dead_rows(conn, frozenset({site}))
    return sorted(int(r["id"]) for r in got)


def _resend(w: World, who: Who, i: int) -> Request:
    """Row ``i``'s own dead delivery, dead again (an earlier row may have resent it)."""
    from sqlalchemy import update

    from server.store.schema import outbound_deliveries as od

    delivery_id = w.dead[OWN][i]
    with w.app.state.store.engine.begin() as conn:
        conn.execute(update(od).where(od.c.id == delivery_id).values(status="dead"))
    return (f"/api/outbound/deliveries/{delivery_id}/resend", {})


def _switch(w: World, who: Who, i: int) -> Request:
    """Switch the configured target off or on (by row) for the own centre (issue 18)."""
    body = {"site": OWN, "enabled": i % 2 == 1, "reason": f"row {i}"}
    return ("/api/outbound/targets/province/switch", {"json": body})


def _settings_push(w: World, who: Who, i: int) -> Request:
    body = {"scope": f"site:{OWN}", "fields": {"rules.see_off_s": 2.0 + i}, "note": "matrix"}
    return ("/api/window-settings", {"json": body})


def _settings_withdraw(w: World, who: Who, i: int) -> Request:
    return (f"/api/window-settings/{w.settings_pushes[i]}/withdraw", {"json": {"reason": "m"}})


def _settings_republish(w: World, who: Who, i: int) -> Request:
    return ("/api/window-settings/republish", {"json": {"scope": f"site:{OWN}"}})


def _outbound_file(root: Path) -> Path:
    """One configured target, switched off in the file so nothing is sent."""
    path = root / "outbound.toml"
    path.write_text(
        'allow_hosts = ["127.0.0.1"]\n[[target]]\nname = "province"\ntype = "http"\n'
        'url = "http://127.0.0.1:9/in"\nkinds = ["evaluation"]\nenabled = false\n',
        encoding="utf-8",
    )
    return path


def _case(w: World, who: Who, i: int) -> Request:
    case_id = _case_as(w, i, status="open", callback_ms=NOV + 60_000, rectification="fixed")
    return (f"/api/cases/{case_id}/close", {"json": {"note": "called back"}})


def _case_step(step: str, body: dict[str, Any]) -> Callable[[World, Who, int], Request]:
    def build(w: World, who: Who, i: int) -> Request:
        if step == "reopen":
            case_id = _case_as(w, i, status="closed", closed_ms=NOV + 120_000)
        else:
            case_id = _case_as(w, i, status="open")
        return (f"/api/cases/{case_id}/{step}", {"json": body})

    return build


def _ack(w: World, who: Who, i: int) -> Request:
    return (f"/api/alerts/{w.alerts[OWN][i]}/ack", {"json": {"note": "seen"}})


def _clerk(w: World, who: Who, i: int) -> Request:
    return ("/api/clerks", {"json": {"clerk_id": f"new-{i}", "name": "新人", "site": OWN}})


def _transfer(w: World, who: Who, i: int) -> Request:
    return (f"/api/clerks/c-mv-{i}/transfer", {"json": {"site": "zhujiajiao"}})


def _roster(w: World, who: Who, i: int) -> Request:
    # a clerk who served nowhere else: the rule has nothing to refuse
    body = {"clerk_id": "c-ros", "site": OWN, "window": "w04", "start_ms": NOV + i}
    return ("/api/roster", {"json": body})


def _sign_out(w: World, who: Who, i: int) -> Request:
    # someone to sign out: the same clerk signed in again after each success
    w.app.state.store.sign_in("c-so", OWN, "w05", NOV + i * 60_000)
    return (
        "/api/roster/sign-out",
        {"json": {"site": OWN, "window": "w05", "at_ms": NOV + i * 60_000 + 1000}},
    )


def _plan(w: World, who: Who, i: int) -> Request:
    body = {
        "clerk_id": f"c-{OWN}",
        "site": OWN,
        "window": "w04",
        "from_ms": NOV,
        "to_ms": NOV + i + 1,
    }
    return ("/api/roster/plan", {"json": body})


def _queue_call(w: World, who: Who, i: int) -> Request:
    body = {
        "call_id": f"call-{i}",
        "site": OWN,
        "window": "w06",
        "ticket": f"A{i:03d}",
        "called_ms": NOV + i * 60_000,
        "matter_name": "居住证办理",
        "priority_category": "elderly",
        "clerk_id": "c-q",
    }
    return ("/api/queue/v1/calls", {"json": body})


def _queue_sign_in(w: World, who: Who, i: int) -> Request:
    body = {"site": OWN, "window": "w07", "clerk_id": "c-qs", "at_ms": NOV + i * 60_000}
    return ("/api/queue/v1/sign-in", {"json": body})


def _queue_sign_out(w: World, who: Who, i: int) -> Request:
    w.app.state.store.sign_in("c-qo", OWN, "w08", NOV + i * 60_000)
    body = {"site": OWN, "window": "w08", "at_ms": NOV + i * 60_000 + 1000}
    return ("/api/queue/v1/sign-out", {"json": body})


def _credentials(w: World, who: Who, i: int) -> Request:
    return (f"/api/clerks/c-{OWN}/credentials", {"json": {"badges": [f"B{i:04d}"]}})


def _kpis(w: World, who: Who, i: int) -> Request:
    body = {
        "site": OWN,
        "window": "w11",
        "day": "2026-11-03",
        "requests": 10,
        "first_response_within_1min": 9,
        "resolved": 9,
    }
    return ("/api/helpdesk/kpis", {"json": body})


def _user_add(w: World, who: Who, i: int) -> Request:
    body = {
        "username": f"new-user-{i}",
        "password": PASSWORD,
        "role": "readonly",
        "scope": f"site:{OWN}",
        "display_name": "new",
    }
    return ("/api/users", {"json": body})


def _user(verb: str, body: dict[str, Any] | None = None) -> Callable[[World, Who, int], Request]:
    return lambda w, who, i: (f"/api/users/target-{i}/{verb}", {"json": body or {}})


def _token_add(w: World, who: Who, i: int) -> Request:
    return ("/api/tokens", {"json": {"name": f"t{i}", "scope": f"site:{OWN}", "grants": ["read"]}})


def _token_revoke(w: World, who: Who, i: int) -> Request:
    return (f"/api/tokens/{w.victim_tokens[i]}/revoke", {"json": {}})


def _assessment_records(w: World, store: Any, t_ms: int) -> None:
    """Findings and open appeals at the own centre to act on (one per principal), and
    clerks whose November failed by a finding, to start a probation for."""
    from sqlalchemy import select

    from server.store.assessment import add_appeal, add_finding
    from server.store.schema import sessions

    for i in range(N):
        store.add_clerk(f"c-pr-{i}", "on probation", OWN)
    with store.engine.begin() as conn:
        w.sessions = [
            r[0]
            for r in conn.execute(
                select(sessions.c.session_id)
                .where(sessions.c.clerk_id == f"c-{OWN}")
                .order_by(sessions.c.opened_ms)
            )
        ]
        for _ in range(N):
            w.settings_pushes.append(
                record_push(conn, f"site:{OWN}", {"rules.see_off_s": 2.0}, "seed", "seed", NOV)
            )
        for i in range(N):
            for clerk, out in ((f"c-{OWN}", w.findings), (f"c-pr-{i}", [])):
                fid = str(uuid.uuid4())
                add_finding(
                    conn,
                    {
                        "finding_id": fid,
                        "site": OWN,
                        "clerk_id": clerk,
                        "kind": "patrol",
                        "criterion": "G-DRESS",
                        "outcome": "not_complied",
                        "observed_ms": t_ms,
                        "note": "seed",
                        "attachments": [],
                        "recorded_by": "seed",
                        "recorded_ms": t_ms,
                    },
                )
                out.append(fid)
            aid = str(uuid.uuid4())
            add_appeal(
                conn,
                {
                    "appeal_id": aid,
                    "site": OWN,
                    "clerk_id": f"c-{OWN}",
                    "month": PERIOD,
                    "session_id": None,
                    "criterion": None,
                    "note": "seed",
                    "filed_by": "seed",
                    "filed_ms": t_ms,
                },
            )
            w.appeals.append(aid)


def _threshold(w: World, who: Who, i: int) -> Request:
    body = {
        "scope": f"site:{OWN}",
        "from_month": "2027-01",
        "values": {"min_sessions": 20 + i},
        "reason": "matrix",
    }
    return ("/api/thresholds", {"json": body})


def _finding(w: World, who: Who, i: int) -> Request:
    body = {
        "clerk_id": f"c-{OWN}",
        "kind": "patrol",
        "criterion": "G-VOICE",
        "outcome": "complied",
        "note": f"row {i}",
        "observed_ms": NOV + i,
    }
    return ("/api/findings", {"json": body})


def _withdraw(w: World, who: Who, i: int) -> Request:
    return (f"/api/findings/{w.findings[i]}/withdraw", {"json": {"reason": "matrix"}})


def _sign_off(w: World, who: Who, i: int) -> Request:
    body = {"action": "confirm", "reason": "matrix"}
    return (f"/api/assessment/c-{OWN}/{PERIOD}/decision", {"json": body})


def _probation(w: World, who: Who, i: int) -> Request:
    body = {"action": "start", "reason": "matrix"}
    return (f"/api/probation/c-pr-{i}/2026-12/decision", {"json": body})


def _appeal(w: World, who: Who, i: int) -> Request:
    body = {"session_id": w.sessions[i], "criterion": "stood_on_call", "note": "matrix"}
    return ("/api/appeals", {"json": body})


def _resolve(w: World, who: Who, i: int) -> Request:
    body = {"upheld": False, "note": "matrix"}
    return (f"/api/appeals/{w.appeals[i]}/resolve", {"json": body})


def _signed_in(who: Who) -> bool:
    return who.kind in ("user", "token")


def _me(who: Who) -> int:
    return 200 if _signed_in(who) else 401


def _metrics(who: Who) -> int:
    return 200 if who.kind == "token" and "metrics" in who.grants else 401


def _page(who: Who) -> int:
    return 200 if who.kind == "user" else 307  # others go to the login page


def _users_read(who: Who) -> int:
    if not _signed_in(who):
        return 401
    return 200 if who.kind == "user" and who.can("users") else 403


PERIOD = "2026-11"
QUIET = "2026-10"  # a month with nothing in it
ROUTES: dict[tuple[str, str], Entry] = {
    # public
    ("GET", "/login"): Entry("public", get("/login")),
    ("GET", "/healthz"): Entry("public", get("/healthz")),
    ("GET", "/openapi.json"): Entry("public", get("/openapi.json")),
    ("GET", "/docs"): Entry("public", get("/docs")),
    ("GET", "/docs/oauth2-redirect"): Entry("public", get("/docs/oauth2-redirect")),
    ("GET", "/redoc"): Entry("public", get("/redoc")),
    ("GET", "/static"): Entry("public", get("/static/app.js")),
    ("GET", "/"): Entry("read", get("/"), expect=_page),
    ("POST", "/api/login"): Entry(
        "public",
        lambda w, who, i: ("/api/login", {"json": {"username": f"nobody-{i}", "password": "no"}}),
        ok=401,
    ),
    ("GET", "/metrics"): Entry("read", get("/metrics"), expect=_metrics),
    # session
    ("GET", "/api/me"): Entry("read", get("/api/me"), expect=_me),
    ("POST", "/api/logout"): Entry("read", lambda w, who, i: ("/api/logout", {}), expect=_me),
    # reads
    ("GET", "/api/meta"): Entry("read", get("/api/meta"), target="none"),
    ("GET", "/api/units"): Entry("read", get("/api/units")),
    ("GET", "/api/hall/{site}"): Entry("read", get(f"/api/hall/{OWN}"), target="site", clerk=403),
    ("GET", "/api/windows"): Entry("read", get("/api/windows", site=OWN), target="site"),
    ("GET", "/api/events"): Entry("read", get("/api/events", limit=500), clerk=403),
    ("GET", "/api/stats"): Entry("read", get("/api/stats"), clerk=403),
    ("GET", "/api/fleet"): Entry("read", get("/api/fleet"), clerk=403),
    ("GET", "/api/roster"): Entry(
        "read", get("/api/roster", site=OWN, day="2026-11-02"), target="site", clerk=403
    ),
    ("GET", "/api/gaps"): Entry("read", get("/api/gaps"), clerk=403),
    ("GET", "/api/alerts"): Entry("read", get("/api/alerts", limit=1000), clerk=403),
    ("GET", "/api/stream"): Entry("read", get("/api/stream"), clerk=403),
    ("GET", "/api/measures"): Entry(
        "read", get("/api/measures", period=PERIOD, site=OWN, group_by="window"), target="site"
    ),
    ("GET", "/api/timeline"): Entry(
        "read", get("/api/timeline", period=PERIOD, site=OWN), target="site"
    ),
    ("GET", "/api/trend"): Entry("read", get("/api/trend", period=PERIOD, site=OWN), target="site"),
    ("GET", "/api/heatmap"): Entry(
        "read", get("/api/heatmap", period=PERIOD, site=OWN), target="site"
    ),
    ("GET", "/api/assessment/{clerk_id}"): Entry(
        "read", get(f"/api/assessment/c-{OWN}", month=PERIOD), target="object"
    ),
    ("GET", "/api/assessments"): Entry(
        "read", get("/api/assessments", month=PERIOD, site=OWN), target="site"
    ),
    ("GET", "/api/probation/{clerk_id}"): Entry(
        "read", get(f"/api/probation/c-{OWN}", month=PERIOD), target="object"
    ),
    ("GET", "/api/ranking"): Entry(
        "read", get("/api/ranking", period=PERIOD, min_sessions=1), target="none"
    ),
    ("GET", "/api/units/compare"): Entry("read", get("/api/units/compare", period=PERIOD)),
    ("GET", "/api/cases"): Entry("read", get("/api/cases")),
    ("GET", "/api/cases/{case_id}"): Entry(
        "read", lambda w, who, i: (f"/api/cases/{w.cases[OWN][0]}", {}), target="object"
    ),
    ("GET", "/api/clerks"): Entry("read", get("/api/clerks")),
    ("GET", "/api/helpdesk"): Entry(
        "read", get("/api/helpdesk", first_day="2026-11-01", last_day="2026-11-30"), clerk=403
    ),
    ("GET", "/api/audit"): Entry("read", get("/api/audit", limit=1000), expect=_users_read),
    ("GET", "/api/export/{name}.{fmt}"): Entry(
        "read", get("/api/export/sessions.csv", period=PERIOD, site=OWN), target="site"
    ),
    ("GET", "/report/{site}/{month}"): Entry(
        "read", get(f"/report/{OWN}/{PERIOD}"), target="site", clerk=403
    ),
    ("GET", "/report/{site}/{month}.pdf"): Entry(
        # the PDF of a quiet month: the same scope check as the HTML route (which reads
        # the full month's markers) at a fraction of the rendering
        "read",
        get(f"/report/{OWN}/{QUIET}.pdf"),
        target="site",
        clerk=403,
    ),
    # the clerk account is c-qingpu's: its own report (a peer's is 404, test_reports.py)
    ("GET", "/report/clerk/{clerk_id}/{month}"): Entry(
        "read", get(f"/report/clerk/c-{OWN}/{PERIOD}"), target="object"
    ),
    ("GET", "/report/clerk/{clerk_id}/{month}.pdf"): Entry(
        "read", get(f"/report/clerk/c-{OWN}/{QUIET}.pdf"), target="object"
    ),
    ("GET", "/api/thresholds"): Entry(
        "read", get("/api/thresholds", site=OWN, month=PERIOD), target="site"
    ),
    ("GET", "/api/findings"): Entry(
        "read", get("/api/findings", clerk_id=f"c-{OWN}", period=PERIOD), target="object"
    ),
    ("GET", "/api/appeals"): Entry("read", get("/api/appeals")),
    ("GET", "/api/appeals/{appeal_id}"): Entry(
        "read", lambda w, who, i: (f"/api/appeals/{w.appeals[0]}", {}), target="object"
    ),
    ("GET", "/api/users"): Entry("read", get("/api/users"), expect=_users_read),
    ("GET", "/api/tokens"): Entry("read", get("/api/tokens"), expect=_users_read),
    # changes
    ("POST", "/api/alerts/{alert_id}/ack"): Entry("change", _ack, "object", "acknowledge"),
    ("POST", "/api/cases/{case_id}/close"): Entry("change", _case, "object", "close_case"),
    ("POST", "/api/cases/{case_id}/assign"): Entry(
        "change", _case_step("assign", {"assigned_to": "manager_own"}), "object", "close_case"
    ),
    ("POST", "/api/cases/{case_id}/callback"): Entry(
        "change",
        _case_step("callback", {"at_ms": NOV + 86_400_000, "outcome": "reached_satisfied"}),
        "object",
        "close_case",
    ),
    ("POST", "/api/cases/{case_id}/rectification"): Entry(
        "change", _case_step("rectification", {"note": "retrained"}), "object", "close_case"
    ),
    ("POST", "/api/cases/{case_id}/reopen"): Entry(
        "change", _case_step("reopen", {"reason": "citizen called again"}), "object", "close_case"
    ),
    ("POST", "/api/clerks"): Entry("change", _clerk, "site", "roster", ok=201),
    ("POST", "/api/clerks/{clerk_id}/transfer"): Entry("change", _transfer, "transfer", "roster"),
    ("POST", "/api/roster"): Entry("change", _roster, "site", "roster", ok=201),
    ("POST", "/api/roster/sign-out"): Entry("change", _sign_out, "site", "roster"),
    ("POST", "/api/clerks/{clerk_id}/credentials"): Entry(
        "change", _credentials, "object", "roster"
    ),
    ("POST", "/api/roster/plan"): Entry("change", _plan, "site", "roster", ok=201),
    ("POST", "/api/helpdesk/kpis"): Entry("change", _kpis, "site", "kpis", ok=201),
    ("POST", "/api/queue/v1/calls"): Entry("change", _queue_call, "site", "queue", ok=201),
    ("POST", "/api/queue/v1/sign-in"): Entry("change", _queue_sign_in, "site", "queue", ok=201),
    ("POST", "/api/queue/v1/sign-out"): Entry("change", _queue_sign_out, "site", "queue"),
    ("POST", "/api/users"): Entry("change", _user_add, "site", "users", ok=201),
    ("POST", "/api/users/{username}/disable"): Entry("change", _user("disable"), "object", "users"),
    ("POST", "/api/users/{username}/enable"): Entry("change", _user("enable"), "object", "users"),
    ("POST", "/api/users/{username}/password"): Entry(
        "change", _user("password", {"password": "Another-pass-2026?"}), "object", "users"
    ),
    ("POST", "/api/users/{username}/role"): Entry(
        "change",
        _user("role", {"role": "inspector", "scope": f"site:{OWN}"}),
        "object",
        "users",
    ),
    ("POST", "/api/thresholds"): Entry("change", _threshold, "site", "thresholds", ok=201),
    ("POST", "/api/findings"): Entry("change", _finding, "object", "finding", ok=201),
    ("POST", "/api/findings/{finding_id}/withdraw"): Entry(
        "change", _withdraw, "object", "finding"
    ),
    ("POST", "/api/assessment/{clerk_id}/{month}/decision"): Entry(
        "change", _sign_off, "object", "sign_off"
    ),
    ("POST", "/api/probation/{clerk_id}/{month}/decision"): Entry(
        "change", _probation, "object", "probation"
    ),
    ("POST", "/api/appeals"): Entry("change", _appeal, "none", "appeal", ok=201),
    ("POST", "/api/appeals/{appeal_id}/resolve"): Entry(
        "change", _resolve, "object", "resolve_appeal"
    ),
    ("POST", "/api/tokens"): Entry("change", _token_add, "site", "users", ok=201),
    ("POST", "/api/tokens/{token_id}/revoke"): Entry("change", _token_revoke, "object", "users"),
    # outbound (issue 18)
    ("GET", "/api/outbound"): Entry("read", get("/api/outbound"), clerk=403),
    ("POST", "/api/outbound/deliveries/{delivery_id}/resend"): Entry(
        "change", _resend, "object", "outbound"
    ),
    ("POST", "/api/outbound/targets/{name}/switch"): Entry("change", _switch, "site", "outbound"),
    # window settings over the air (issue 19); this server has no broker link, so a
    # permitted caller gets past the scope check to "not set up" (409), nothing recorded
    ("GET", "/api/window-settings"): Entry("read", get("/api/window-settings"), clerk=403),
    ("POST", "/api/window-settings"): Entry(
        "change", _settings_push, "site", "window_settings", ok=409
    ),
    ("POST", "/api/window-settings/{push_id}/withdraw"): Entry(
        "change", _settings_withdraw, "object", "window_settings", ok=409
    ),
    ("POST", "/api/window-settings/republish"): Entry(
        "change", _settings_republish, "site", "window_settings", ok=409
    ),
}
#: Account administration is for people only: a token never manages users or tokens.
PEOPLE_ONLY = {"users"}


def expected(entry: Entry, who: Who) -> int:
    if entry.kind == "public":
        return entry.ok
    if entry.expect is not None:
        return entry.expect(who)
    if not _signed_in(who):
        return 401
    if entry.kind == "read":
        if who.kind == "token" and "read" not in who.grants:
            return 403
        if entry.target == "site" and not who.sees(OWN):
            return 403
        if entry.target == "object" and not who.sees(OWN):
            return 404
        if who.role == "clerk":
            return entry.clerk
        return entry.ok
    # a change
    if entry.action in PEOPLE_ONLY and who.kind == "token":
        return 403
    if not who.can(entry.action):
        return 403
    if who.kind == "user" and who.csrf != "ok":
        return 403
    if entry.target == "transfer":
        # the clerk must be visible (404), then the destination too (403)
        if not who.sees(OWN):
            return 404
        return entry.ok if who.sees("zhujiajiao") else 403
    if not who.sees(OWN):
        return 403 if entry.target == "site" else 404
    return entry.ok


# ---------------------------------------------------------------- the world


def _login(c: TestClient, username: str) -> tuple[str, str]:
    r = c.post("/api/login", json={"username": username, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return r.cookies["ww_session"], r.json()["csrf"]


N = len(WHO)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("matrix")
    sites = [make_site(root / "sites", s, d) for s, d in SITES.items()]
    app = create_app(
        ServerSettings(
            db_url=f"sqlite:///{root / 'm.db'}",
            sites=sites,
            mqtt=None,
            outbound_file=_outbound_file(root),
        )
    )
    with TestClient(app) as c:
        store = app.state.store
        accounts = app.state.accounts
        tokens = app.state.tokens
        w = World(c, app)
        for site in SITES:
            store.add_clerk(f"c-{site}", f"clerk of {site}", site)
        store.add_clerk("c-peer", "peer clerk", OWN)
        for name, (role, scope) in USERS.items():
            clerk = f"c-{OWN}" if role == "clerk" else None
            accounts.add_user(name, PASSWORD, role, scope, clerk_id=clerk)
        for i in range(N):  # accounts the user routes act on, one per principal
            accounts.add_user(f"target-{i}", PASSWORD, "readonly", f"site:{OWN}")
        evs: list[wire.EventHeader] = []
        for site in SITES:
            store.sign_in(f"c-{site}", site, "w03", NOV - 86_400_000)
            store.put_helpdesk_kpis(site, "w11", "2026-11-02", 20, 20, 19)
            se = SiteEvents(site)
            for i in range(N):
                se.bad_review(NOV + i * 600_000)
            se.fault(NOV + 3_600_000)
            evs += se.events
        for i in range(N):
            store.add_clerk(f"c-mv-{i}", "to move", OWN)
        store.add_clerk("c-so", "signs out", OWN)
        store.add_clerk("c-ros", "signs in", OWN)
        for clerk in ("c-q", "c-qs", "c-qo"):
            store.add_clerk(clerk, "queue system's", OWN)
        store.sign_in("c-peer", OWN, "w10", NOV - 86_400_000)
        peer = SiteEvents(OWN, "w10")
        for i in range(3):
            peer.bad_review(NOV + i * 600_000)
        evs += peer.events
        store.insert_events([StoredEvent(e, e.ts_ms) for e in evs])
        _assessment_records(w, store, NOV)
        for site in SITES:
            w.cases[site] = [
                x["case_id"] for x in store.list_cases("open", site) if x["clerk_id"] != "c-peer"
            ]
            w.alerts[site] = [
                a["alert_id"]
                for a in store.list_alerts(frozenset({site}), limit=1000)
                if a["kind"] == "bad_review" and a["window"] == "w03"
            ]
            assert len(w.cases[site]) == N and len(w.alerts[site]) == N
            w.dead[site] = _dead_deliveries(store, site)
            # something in every unit's audit log
            accounts.audit("seed", "seed", site, {"marker": site}, site=site)
        w.victim_tokens = {
            i: tokens.create(f"victim-{i}", f"site:{OWN}", ["read"], "seed")[0] for i in range(N)
        }
        for who in WHO:
            if who.name in USERS or who.name.startswith("manager_own_"):
                user = "manager_own" if who.name.startswith("manager_own") else who.name
                cookie, csrf = _login(c, user)
                headers = {"X-CSRF-Token": {"ok": csrf, "missing": "", "wrong": "x" * 32}[who.csrf]}
                if who.csrf == "missing":
                    headers = {}
                w.auth[who.name] = {"cookies": {"ww_session": cookie}, "headers": headers}
            elif who.kind == "token":
                scope = "all" if who.sites is None else f"site:{sorted(who.sites)[0]}"
                _, value = tokens.create(who.name, scope, sorted(who.grants), "seed")
                w.auth[who.name] = {"headers": {"Authorization": f"Bearer {value}"}}
            elif who.name == "revoked_session":
                accounts.add_user("leaver", PASSWORD, "district_admin", "all")
                cookie, csrf = _login(c, "leaver")
                r = c.post("/api/logout", cookies={"ww_session": cookie})
                assert r.status_code == 200
                w.auth[who.name] = {
                    "cookies": {"ww_session": cookie},
                    "headers": {"X-CSRF-Token": csrf},
                }
            elif who.name == "revoked_token":
                tid, value = tokens.create("revoked", "all", sorted(tokens_grants()), "seed")
                assert tokens.revoke(tid, "seed")
                w.auth[who.name] = {"headers": {"Authorization": f"Bearer {value}"}}
            else:
                w.auth[who.name] = {}
            c.cookies.clear()
        yield w


def tokens_grants() -> list[str]:
    from server.tokens import GRANTS

    return list(GRANTS)


def app_routes(app: Any) -> list[Any]:
    """Every route the app serves, included routers flattened."""
    return [rc.original_route for rc in iter_route_contexts(app.routes)]


def route_keys(app: Any) -> set[tuple[str, str]]:
    keys: set[tuple[str, str]] = set()
    for r in app_routes(app):
        if isinstance(r, Mount):
            keys.add(("GET", r.path))
        elif isinstance(r, APIRoute | Route):
            for m in r.methods or ():
                if m != "HEAD":
                    keys.add((m, r.path))
        else:
            keys.add(("?", repr(r)))  # a kind of route this test does not know yet
    return keys


def call(w: World, who: Who, entry: Entry, i: int, method: str) -> Any:
    url, kwargs = entry.build(w, who, i)
    auth = w.auth[who.name]
    w.client.cookies.clear()
    for k, v in auth.get("cookies", {}).items():
        w.client.cookies.set(k, v)
    headers = dict(auth.get("headers", {}))
    if url == "/api/stream":
        return _stream_status(w, headers)
    r = w.client.request(method, url, headers=headers, follow_redirects=False, **kwargs)
    w.client.cookies.clear()
    return r


def _stream_status(w: World, headers: dict[str, str]) -> Any:
    """The SSE stream never ends: read its status and first bytes only."""
    with w.client.stream("GET", "/api/stream", headers=headers) as r:
        if r.status_code == 200:
            first = next(r.iter_text())
            assert first.startswith("retry:")
        return r


# ---------------------------------------------------------------- tests


def test_every_route_has_an_entry(world: World) -> None:
    keys = route_keys(world.app)
    missing = sorted(keys - ROUTES.keys())
    stale = sorted(ROUTES.keys() - keys)
    assert not missing, f"routes without an entry in the access matrix: {missing}"
    assert not stale, f"matrix entries for routes that do not exist: {stale}"


def test_no_route_is_handed_the_bare_store(world: World) -> None:
    """Routes reach data only through ``Access`` (server/api/access.py)."""

    def calls(dep: Any) -> Iterator[Any]:
        for d in dep.dependencies:
            yield d.call
            yield from calls(d)

    offenders = [
        r.path
        for r in app_routes(world.app)
        if isinstance(r, APIRoute) and any(c is get_store for c in calls(r.dependant))
    ]
    assert offenders == []


def _reads_first() -> list[tuple[str, str]]:
    order = sorted(ROUTES, key=lambda k: (ROUTES[k].kind == "change", k == ("POST", "/api/logout")))
    return order


@pytest.mark.parametrize("key", _reads_first(), ids=lambda k: f"{k[0]} {k[1]}")
def test_route_against_every_principal(world: World, key: tuple[str, str]) -> None:
    entry = ROUTES[key]
    method = key[0]
    wrong: list[str] = []
    for i, who in enumerate(WHO):
        if key == ("POST", "/api/logout") and who.kind == "user":
            continue  # would end the session the other rows use; covered by revoked_session
        r = call(world, who, entry, i, method)
        want = expected(entry, who)
        if r.status_code != want:
            wrong.append(f"{who.name}: {r.status_code} (want {want}) {r.text[:120]!r}")
            continue
        if r.status_code == 200 and entry.kind == "read" and key[1] != "/api/stream":
            text = r.content.decode("utf-8", "replace")
            for site, marks in MARKERS.items():
                if who.sees(site) or not _signed_in(who):
                    continue
                leaked = [m for m in marks if m in text]
                if leaked:
                    wrong.append(f"{who.name}: sees {site} rows ({leaked})")
            if who.role == "clerk" and (leaked := [m for m in PEER_MARKERS if m in text]):
                wrong.append(f"{who.name}: sees another clerk's records ({leaked})")
    assert not wrong, "\n".join(wrong)


def test_matrix_size(world: World) -> None:
    n = len(ROUTES) * len(WHO)
    print(f"access matrix: {len(ROUTES)} routes x {len(WHO)} principals = {n} requests")
    assert len(ROUTES) >= 50 and len(WHO) >= 16
