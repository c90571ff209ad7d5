"""``warmwindow demo``: broker + aggregator + the example site's windows on one machine.

Everything runs for real (MQTT broker, agent outboxes and transports, the ONNX vision
pipeline, ingest, SQLite, the live page) except what a laptop cannot have: GPIO pins are
gpiozero MockFactory pins driven by a scenario, and the camera is a renderer that draws
what a scripted clerk does using two public-domain face photographs. The page and this
command say so.
"""

from __future__ import annotations

import logging
import secrets
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from agent.config import load_site
from agent.localbroker import local_broker, wait_port
from server.accounts import Accounts, check_password
from server.api.app import ServerSettings, create_app
from server.ingest import IngestSettings
from server.policy.shifts import ShiftConflict


def opening_time_today(tz: str) -> int:
    """09:00 today in the centre's time zone: the simulated day starts when the hall opens."""
    from datetime import datetime
    from datetime import time as day_time
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(tz)
    nine = datetime.combine(datetime.now(zone).date(), day_time(9, 0), zone)
    return int(nine.timestamp() * 1000)


def demo_users(accounts: Accounts, site: str, district: str) -> list[str]:
    """Fresh random passwords each run: a demo must not teach default passwords."""
    lines = []
    for username, role, scope in (
        ("admin", "district_admin", f"district:{district}"),
        ("manager", "centre_manager", f"site:{site}"),
        ("inspector", "inspector", f"district:{district}"),
        ("viewer", "readonly", f"site:{site}"),
    ):
        password = secrets.token_urlsafe(12)  # 16 characters: passes the password policy
        check_password(password, username)
        accounts.add_user(username, password, role, scope)  # type: ignore[arg-type]
        lines.append(f"  login {username:9s} password {password}   ({role})")
    return ["demo accounts (new passwords every run):", *lines]


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


def sign_in_demo_clerks(store: Any, site: Any, at_ms: int, after_s: float = 40.0) -> ShiftChange:
    """Register the demo's clerks and sign one in at every window from the demo's start,
    so per-clerk verdicts and the smile-star ranking have rows from the first sessions."""
    code = site.site.site
    windows = sorted(w.window for w in site.windows)
    for i, window in enumerate(windows):
        clerk = f"c-{code}-{i + 1:02d}"
        store.add_clerk(clerk, DEMO_CLERKS[i % len(DEMO_CLERKS)], code)
        try:
            store.sign_in(clerk, code, window, at_ms, source="demo")
        except ShiftConflict as exc:  # a database kept from an earlier demo run
            print(f"{clerk} keeps the shifts recorded before: {exc}")
    store.add_clerk(RELIEF[0], RELIEF[1], code)
    # the shift change at the first window with a bell (a front desk has none)
    bell = next(
        w.window for w in sorted(site.windows, key=lambda w: w.window) if w.role != "front_desk"
    )
    return ShiftChange(store, code, bell, after_s)


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
    # 12 windows' connects, the embedded broker's state machine and the schema
    # migrations of a new demo database are not news.
    for noisy in ("agent.transport", "amqtt", "transitions", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
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
    settings = ServerSettings(
        db_url=f"sqlite:///{db}",
        sites=[site_dir],
        mqtt=IngestSettings(host=broker.host, port=broker.port, client_id="ww-demo-server"),
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
        for line in demo_users(accounts, site.site.site, site.site.district):
            print(line)
        clock = SimClock(opening_time_today(site.site.timezone), speed)
        shift_change = sign_in_demo_clerks(
            app.state.store, site, clock(), after_s=shift_change_after_s
        )
        print(f"clerks signed in at all {len(site.windows)} windows; {shift_change.note}")
        fleet = SimulatedFleet(
            site, broker.host, broker.port, workdir / "agents", clock=clock, camera=camera
        )
        fleet.start()
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
