"""``warmwindow demo``: broker + aggregator + the example site's windows on one machine.

Everything runs for real (MQTT broker, agent outboxes and transports, the ONNX vision
pipeline, ingest, SQLite, the live page) except what a laptop cannot have: GPIO pins are
gpiozero MockFactory pins driven by a scenario, and the camera is a renderer that draws
what a scripted clerk does using two public-domain face photographs. The page and this
command say so.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import threading
import time
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import uvicorn

from agent.config import Site, load_site
from agent.localbroker import local_broker, wait_port
from agent.protocol import now_ms
from server.accounts import Accounts, check_password
from server.api.app import ServerSettings, create_app
from server.ingest import IngestSettings
from server.metrics.periods import next_month, period_bounds, previous_month
from server.policy.shifts import ShiftConflict

if TYPE_CHECKING:
    from agent.sim import OpenDay, SimulatedFleet


def _quiet_first_hold(record: logging.LogRecord) -> bool:
    """A window that starts with a backlog holds its first ``clerk_at_terminal`` (a
    version 2 kind) until the ingest's retained announcement of the versions it accepts
    arrives, a few milliseconds after connecting: not news in the demo (a hold that
    lasted would show as events waiting in outboxes on the progress line)."""
    return not str(record.msg).startswith("event %d held")


def opening_time_today(tz: str) -> int:
    """The hall's last opening in the centre's time zone: 09:00 today, or yesterday's
    before 09:00 (a demo started at night simulates a day gone by, never one to come:
    its sign-ins and sessions would lie in the future)."""
    from datetime import datetime, timedelta
    from datetime import time as day_time
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(tz)
    now = datetime.now(zone)
    nine = datetime.combine(now.date(), day_time(9, 0), zone)
    if nine > now:
        nine = datetime.combine(now.date() - timedelta(days=1), day_time(9, 0), zone)
    return int(nine.timestamp() * 1000)


def demo_users(accounts: Accounts, site: str, district: str) -> tuple[list[str], dict[str, str]]:
    """Fresh random passwords each run: a demo must not teach default passwords. The
    lines to print, and the passwords by user name."""
    lines, passwords = [], {}
    for username, role, scope in (
        ("admin", "district_admin", f"district:{district}"),
        ("manager", "centre_manager", f"site:{site}"),
        ("inspector", "inspector", f"district:{district}"),
        ("viewer", "readonly", f"site:{site}"),
    ):
        password = secrets.token_urlsafe(12)  # 16 characters: passes the password policy
        check_password(password, username)
        accounts.add_user(username, password, role, scope)  # type: ignore[arg-type]
        passwords[username] = password
        lines.append(f"  login {username:9s} password {password}   ({role})")
    return ["demo accounts (new passwords every run):", *lines], passwords


#: The demo's clerks (invented names), one per window in order, and a relief clerk.
DEMO_CLERKS = (
    "李敏",
    "王芳",
    "张伟",
    "刘洋",
    "陈静",
    "杨帆",
    "赵磊",
    "黄丽",
    "周杰",
    "吴婷",
    "徐强",
    "孙悦",
)
RELIEF = ("c-relief", "郑佳")


class ShiftChange:
    """The demo's one shift change: the relief clerk takes over the first bell window after
    ``after_s`` real seconds, through the same sign-in rule as every source."""

    def __init__(self, store: Any, site: str, window: str, after_s: float) -> None:
        self.store, self.site, self.window, self.after_s = store, site, window, after_s
        self.done = False
        self.note = f"{RELIEF[1]} ({RELIEF[0]}) takes over {window} after {after_s:.0f} s"

    def due(self, elapsed_s: float, now_ms: int) -> None:
        if self.done or elapsed_s < self.after_s:
            return
        self.done = True
        try:
            self.store.sign_in(RELIEF[0], self.site, self.window, now_ms, source="demo")
        except ShiftConflict as exc:  # a database kept from an earlier demo run
            print(f"shift change skipped: {exc}", flush=True)
            return
        print(f"shift change: {self.note.split(' after')[0]} now", flush=True)


def register_demo_clerks(store: Any, site: Site) -> list[str]:
    """The demo's clerks, one per window in window order (and the relief clerk); their
    ids in that order."""
    code = site.site.site
    ids = []
    for i, _window in enumerate(sorted(w.window for w in site.windows)):
        clerk = f"c-{code}-{i + 1:02d}"
        store.add_clerk(clerk, DEMO_CLERKS[i % len(DEMO_CLERKS)], code)
        ids.append(clerk)
    store.add_clerk(RELIEF[0], RELIEF[1], code)
    return ids


def sign_in_demo_clerks(
    store: Any, site: Site, clerks: list[str], at_ms: int, after_s: float = 40.0
) -> ShiftChange:
    """Sign the demo's clerks in at every window from the demo's start, so per-clerk
    verdicts and the smile-star ranking have rows from the first sessions."""
    code = site.site.site
    for clerk, window in zip(clerks, sorted(w.window for w in site.windows), strict=True):
        try:
            store.sign_in(clerk, code, window, at_ms, source="demo")
        except ShiftConflict as exc:  # a database kept from an earlier demo run
            print(f"{clerk} keeps the shifts recorded before: {exc}")
    # the shift change at the first window with a bell (a front desk has none)
    bell = next(
        w.window for w in sorted(site.windows, key=lambda w: w.window) if w.role != "front_desk"
    )
    return ShiftChange(store, code, bell, after_s)


def open_days(site: Site, month: str) -> list[OpenDay]:
    """The month's days the centre was open: official working days (adjusted weekends
    included, holidays not) where the calendar knows the year, else the site's weekdays;
    the site's opening hours."""
    from datetime import date, datetime, timedelta
    from zoneinfo import ZoneInfo

    from agent.sim import OpenDay
    from server.workdays import default_calendar

    zone, hours, calendar = ZoneInfo(site.site.timezone), site.site.hours, default_calendar()
    y, m = (int(x) for x in month.split("-"))
    day, out = date(y, m, 1), []
    while day.month == m:
        known = calendar.is_workday(day)
        if known or (known is None and day.isoweekday() in hours.days):
            at = [
                int(datetime.combine(day, h, zone).timestamp() * 1000)
                for h in (hours.open, hours.close)
            ]
            out.append(OpenDay(at[0], at[1]))
        day += timedelta(days=1)
    return out


#: A case of the backfilled month opened before its last this many days has been
#: followed up and closed by the centre's manager; the later ones are still open.
OPEN_CASES_FROM_LAST_DAYS = 7


def backfill_previous_month(
    app: Any,
    fleet: SimulatedFleet,
    site: Site,
    clerks: list[str],
    month: str,
    manager_password: str,
    stop: threading.Event,
    timeout_s: float = 120.0,
) -> str:
    """The previous month, so that verdicts, the ranking and cases have content from the
    first minute: every window's days gone by run through its real rules into its real
    outbox (``SimulatedFleet.backfill``); the windows start and send them over the broker
    to the ingest as a terminal sends what it kept offline; the manager then closes the
    month's bad-review cases but the last week's (through ``Access``, audited).

    Starts the windows' agents (not their day: see ``SimClock``); ``stop`` cuts it short.
    A month already in the database (an earlier run's) is kept as it is. Returns the
    line to print."""
    from sqlalchemy import and_, func, or_, select

    from server.metrics.periods import period_bounds
    from server.store.schema import events, sessions

    store, code = app.state.store, site.site.site
    start_ms, end_ms = period_bounds(month, site.site.timezone)
    with store.engine.connect() as conn:
        kept = conn.execute(
            select(func.count())
            .select_from(sessions)
            .where(
                sessions.c.site == code,
                sessions.c.opened_ms >= start_ms,
                sessions.c.opened_ms < end_ms,
            )
        ).scalar_one()
    if kept:
        fleet.start_agents()
        return f"previous month {month}: {kept} sessions kept from an earlier run"
    began = time.monotonic()
    days = open_days(site, month)
    done = fleet.backfill(days, clerks, stop)
    written = time.monotonic() - began
    fleet.start_agents()
    made = sum(b.events for b in done)
    sent = or_(
        *(
            and_(events.c.window == b.window, events.c.seq.between(b.first_seq, b.last_seq))
            for b in done
            if b.events
        )
    )
    count = select(func.count()).select_from(events).where(events.c.site == code, sent)
    stored = 0
    while time.monotonic() - began < timeout_s:
        with store.engine.connect() as conn:
            stored = conn.execute(count).scalar_one()
        if stored >= made or stop.wait(0.2):
            break
    if stop.is_set():
        return f"previous month {month}: stopped ({stored} of {made} events stored)"
    cutoff = end_ms - OPEN_CASES_FROM_LAST_DAYS * DAY_MS
    closed, still_open = _close_cases(app, code, start_ms, cutoff, manager_password)
    return (
        f"previous month {month} ({len(days)} open days): {sum(b.sessions for b in done)} "
        f"sessions, {made} events from the windows' rules in {written:.1f} s, {stored} stored "
        f"through the broker and ingest after {time.monotonic() - began:.1f} s; the manager "
        f"closed {closed} bad-review cases, {still_open} of the last week stay open"
    )


DAY_MS = 86_400_000
#: The manager calls the citizen of a bad review back the next day.
CALLBACK_AFTER_MS = 26 * 3_600_000


def _close_cases(
    app: Any, site: str, from_ms: int, before_ms: int, password: str
) -> tuple[int, int]:
    """The manager signs in and closes the open cases opened in [from_ms, before_ms)
    (each with its call-back and rectification);
    how many were closed, and how many of those opened later are still open."""
    from server.api.access import Access

    accounts: Accounts = app.state.accounts
    token = accounts.login("manager", password)
    principal = accounts.principal(token) if token is not None else None
    if token is None or principal is None:
        return 0, 0
    try:
        access = Access(principal, app.state.store, accounts, app.state.settings)
        open_cases = [c for c in access.cases("open", site) if c["opened_ms"] >= from_ms]
        due = [c for c in open_cases if c["opened_ms"] < before_ms]
        for case in due:
            # the centre's workflow: call the citizen back, record what was done, close
            called = min(case["opened_ms"] + CALLBACK_AFTER_MS, now_ms())
            access.record_callback(case["case_id"], called, "reached_satisfied", None)
            access.record_rectification(case["case_id"], "已约谈窗口人员，复盘服务流程（演示数据）")
            access.close_case(case["case_id"], "已回访市民并整改（演示数据）")
        return len(due), len(open_cases) - len(due)
    finally:
        accounts.logout(token)


def _principal(accounts: Accounts, username: str, password: str) -> tuple[Any, str] | None:
    token = accounts.login(username, password)
    principal = accounts.principal(token) if token is not None else None
    return None if token is None or principal is None else (principal, token)


def assessment_records(
    app: Any, site: str, month: str, passwords: dict[str, str], clerks: list[str]
) -> list[str]:
    """What people record about the month gone by, so the assessment pages have it from
    the first minute (all through ``Access``, audited, labelled as demo data): the
    inspector's dual-recording spot check on a failing clerk's session and a patrol on a
    passing one, the month's verdicts confirmed but one (left to sign off), probation
    started for the clerks who failed; a clerk account for the clerk who failed one
    criterion, with an appeal on one of its sessions for the manager to resolve. Lines
    to print."""
    from server.api.access import Access

    accounts: Accounts = app.state.accounts
    settings, store = app.state.settings, app.state.store
    got = _principal(accounts, "inspector", passwords["inspector"])
    if got is None:
        return []
    inspector, token = got
    try:
        a = Access(inspector, store, accounts, settings)
        if a.appeals(month=month) or any(a.findings(c, month) for c in clerks):
            return [f"assessment of {month}: kept from an earlier run"]
        verdicts = {c: a.judged(c, month) for c in clerks}
        failing = [c for c, v in verdicts.items() if v["result"] == "fail"]
        passing = [c for c, v in verdicts.items() if v["result"] == "pass"]
        found = 0
        for clerk in failing[:1]:
            missed = next((f for f in verdicts[clerk]["failures"] if f["evidence"]), None)
            session = _session_of(store, missed["evidence"][0]) if missed else None
            if session is not None:
                a.record_finding(
                    {
                        "clerk_id": clerk,
                        "kind": "video_check",
                        "criterion": "W-CALL",
                        "outcome": "not_complied",
                        "note": "双录抽查：叫号后未起立迎客（演示数据）",
                        "session_id": session,
                        "video_ms": 8_000,
                        "attachments": [f"shuanglu:{site}-{month}-{session[:8]}"],
                    }
                )
                found += 1
        for clerk in passing[:1]:
            a.record_finding(
                {
                    "clerk_id": clerk,
                    "kind": "patrol",
                    "criterion": "G-DRESS",
                    "outcome": "complied",
                    "note": "巡查：着装规范，微笑服务（演示数据）",
                    # the eleventh of the month, 10:00
                    "observed_ms": period_bounds(month, settings.timezone)[0]
                    + 10 * DAY_MS
                    + 10 * 3_600_000,
                    "attachments": [],
                }
            )
            found += 1
        confirmed = 0
        for clerk in clerks[:-1]:
            a.decide_verdict(clerk, month, "confirm", None, "逐一核对，确认系统结果（演示数据）")
            confirmed += 1
        current = next_month(month)
        started = 0
        for clerk in clerks[:-1]:
            if a.judged(clerk, month)["standing"]["result"] == "fail":
                a.decide_probation(clerk, current, "start", None, f"{month} 考核不合格（演示数据）")
                started += 1
    finally:
        accounts.logout(token)
    lines = [
        f"assessment of {month}: {found} inspectors' findings, {confirmed} verdicts confirmed "
        f"({len(clerks) - confirmed} awaiting sign-off), probation started for {started}"
    ]
    one_miss = [c for c in failing if len(verdicts[c]["failures"]) == 1] or failing
    if one_miss:
        lines += _clerk_appeal(app, site, month, one_miss[0], verdicts[one_miss[0]], passwords)
    return lines


def _clerk_appeal(
    app: Any,
    site: str,
    month: str,
    clerk: str,
    verdict: dict[str, Any],
    passwords: dict[str, str],
) -> list[str]:
    """A clerk account for ``clerk`` that appeals one of its failed sessions."""
    from server.api.access import Access

    accounts: Accounts = app.state.accounts
    password = secrets.token_urlsafe(12)
    check_password(password, "clerk")
    accounts.add_user("clerk", password, "clerk", f"site:{site}", clerk, clerk_id=clerk)
    passwords["clerk"] = password
    got = _principal(accounts, "clerk", password)
    if got is None:
        return []
    principal, token = got
    try:
        a = Access(principal, app.state.store, accounts, app.state.settings)
        column = {
            "stand_on_call_rate": "stood_on_call",
            "smile_at_greeting_rate": "smiled_at_greeting",
            "farewell_stand_rate": "stood_at_farewell",
        }
        failure = next((f for f in verdict["failures"] if f["criterion"] in column), None)
        session = (
            _session_of(app.state.store, failure["evidence"][0])
            if failure and failure["evidence"]
            else None
        )
        if failure is None or session is None:
            return [f"  login clerk     password {password}   (clerk {clerk}: its own records)"]
        a.file_appeal(
            "那位群众办完后又折返询问，我起身送别时已离开画面（演示数据）",
            session,
            column[failure["criterion"]],
        )
    finally:
        accounts.logout(token)
    return [
        f"  login clerk     password {password}   (clerk {clerk}: its own records; "
        "an appeal waits for the manager)"
    ]


def _session_of(store: Any, summary_event_id: str) -> str | None:
    """The session a verdict's evidence (a session summary's event id) is about."""
    from sqlalchemy import select

    from server.store.schema import sessions

    with store.engine.connect() as conn:
        row = conn.execute(
            select(sessions.c.session_id).where(sessions.c.event_id == summary_event_id)
        ).first()
    return None if row is None else str(row.session_id)


def run_demo(
    site_dir: Path,
    http_port: int,
    workdir: Path,
    prefer_mosquitto: bool = True,
    duration_s: float | None = None,
    camera: bool = True,
    speed: float = 4.0,
    shift_change_after_s: float = 40.0,
) -> int:
    from agent.sim import SimClock, SimulatedFleet

    site = load_site(site_dir)
    zone = ZoneInfo(site.site.timezone)
    # 12 windows' connects, the embedded broker's state machine and the schema
    # migrations of a new demo database are not news.
    for noisy in ("agent.transport", "amqtt", "transitions", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("agent.transport.facade").addFilter(_quiet_first_hold)
    workdir.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()

    def _on_signal(_sig: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)

    broker = local_broker(workdir / "broker", prefer_mosquitto=prefer_mosquitto)
    broker.start()
    print(f"broker: {broker.name} on {broker.host}:{broker.port}")
    db = workdir / "warmwindow.db"
    outbound = os.environ.get("WW_OUTBOUND_FILE")  # the links, off unless given
    settings = ServerSettings(
        db_url=f"sqlite:///{db}",
        sites=[site_dir],
        mqtt=IngestSettings(host=broker.host, port=broker.port, client_id="ww-demo-server"),
        outbound_file=Path(outbound) if outbound else None,
    )
    app = create_app(settings)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=http_port,
            log_level="warning",
            timeout_graceful_shutdown=1,
        )
    )
    web = threading.Thread(target=server.run, name="uvicorn")
    web.start()
    accounts = Accounts(app.state.store.engine)
    fleet: SimulatedFleet | None = None
    try:
        wait_port("127.0.0.1", http_port, timeout=20)
        print(f"server: SQLite at {db}")
        print(f"live page: http://127.0.0.1:{http_port}/")
        lines, passwords = demo_users(accounts, site.site.site, site.site.district)
        for line in lines:
            print(line)
        clock = SimClock(opening_time_today(site.site.timezone), speed, running=False)
        clerks = register_demo_clerks(app.state.store, site)
        fleet = SimulatedFleet(
            site, broker.host, broker.port, workdir / "agents", clock=clock, camera=camera
        )
        month = previous_month(datetime.fromtimestamp(clock() / 1000, zone).strftime("%Y-%m"))
        print(
            backfill_previous_month(app, fleet, site, clerks, month, passwords["manager"], stop),
            flush=True,
        )
        if stop.is_set():  # Ctrl-C during the backfill
            return 0  # after the clean-up below
        for line in assessment_records(app, site.site.site, month, passwords, clerks):
            print(line, flush=True)
        shift_change = sign_in_demo_clerks(
            app.state.store, site, clerks, clock.start_ms, after_s=shift_change_after_s
        )
        print(f"clerks signed in at all {len(site.windows)} windows; {shift_change.note}")
        fleet.start_day()
        seen = (
            "rendered camera frames (two public-domain faces, scripted clerk behaviour) "
            "through the real ONNX face/smile/posture pipeline"
            if camera
            else "SCRIPTED perception (no frames, no models)"
        )
        print(
            f"{len(site.windows)} windows running the real agent code with MockFactory pins "
            f"and {seen}. Ctrl-C stops."
        )
        started = time.monotonic()
        while not stop.wait(5.0):
            print(fleet.progress_line(), flush=True)
            shift_change.due(time.monotonic() - started, clock())
            if duration_s is not None and time.monotonic() - started >= duration_s:
                break
    finally:
        print("stopping...", flush=True)
        if fleet is not None:
            fleet.stop()
        server.should_exit = True
        web.join(timeout=15)
        broker.stop()
        print("stopped.")
    return 0
