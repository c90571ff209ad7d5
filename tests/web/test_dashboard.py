"""The dashboard in headless Chromium: log in, live tile, timeline, CSV export, roles."""

from __future__ import annotations

import csv
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt

from agent.protocol import Channel, Rating, WindowState, topic
from server.store.db import StoredEvent
from tests.conftest import REPO
from tests.server.test_measures import Fleet
from tests.web.conftest import LiveServer

SH = ZoneInfo("Asia/Shanghai")


def shots_dir(tmp_path: Path) -> Path:
    """docs/screenshots when asked (WW_SCREENSHOTS=1), else a temporary folder."""
    out = REPO / "docs" / "screenshots" if os.environ.get("WW_SCREENSHOTS") else tmp_path
    out.mkdir(parents=True, exist_ok=True)
    return out


def seed(live: LiveServer) -> list[Any]:
    store, accounts = live.app.state.store, live.app.state.accounts
    accounts.add_user("insp", "insp-pass-1", "inspector", "district:青浦区", "王检查")
    accounts.add_user("view", "view-pass-1", "readonly", "site:qingpu", "只读用户")
    now = int(time.time() * 1000)
    today = datetime.fromtimestamp(now / 1000, SH).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    start = int(today.timestamp() * 1000)
    store.add_clerk("c-li", "李敏", "qingpu")
    store.sign_in("c-li", "qingpu", "w03", start)
    f = Fleet()
    ratings = [Rating.VERY_SATISFIED, Rating.SATISFIED, Rating.DISSATISFIED, None]
    for k in range(8):
        opened = max(now - (k + 1) * 400_000, start + k * 1000) - 300_000
        opened = max(opened, start + k * 1000)
        f.session("w03", opened, stood=k != 5, smiled=k % 3 != 0, rating=ratings[k % 4])
    store.insert_events([StoredEvent(e, now) for e in f.events])
    return f.events


def login(page: Any, url: str, user: str, password: str) -> None:
    page.goto(url + "/")
    page.wait_for_url("**/login")
    page.fill("#username", user)
    page.fill("#password", password)
    page.click("#submit")
    page.wait_for_selector("body[data-ready]")


def test_dashboard_in_chromium(live: LiveServer, browser: Any, tmp_path: Path) -> None:
    seed(live)
    shots = shots_dir(tmp_path)
    ctx = browser.new_context(accept_downloads=True, viewport={"width": 1440, "height": 900})
    page = ctx.new_page()
    login(page, live.url, "insp", "insp-pass-1")
    tile = page.locator("#tile-qingpu-w03")
    tile.wait_for()
    assert page.locator(".tile").count() == 12
    assert "李敏" not in tile.inner_text() and "c-li" in tile.inner_text()  # roster id, no face
    assert tile.get_attribute("data-standing") == "0"

    # a simulated window publishes its state: the tile follows, live
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="sim-w03")
    pub.connect(live.broker.host, live.broker.port)
    pub.loop_start()
    state = WindowState(
        site="qingpu",
        window="w03",
        ts_ms=int(time.time() * 1000),
        present=True,
        standing=True,
        in_session=True,
        sign_up=False,
        perception="scripted",
    )
    pub.publish(topic("qingpu", "w03", Channel.STATE), state.model_dump_json(), qos=1, retain=True)
    page.wait_for_selector('#tile-qingpu-w03[data-standing="1"][data-in-session="1"]', timeout=5000)
    for w in ("w03", "w04"):
        pub.publish(topic("qingpu", w, Channel.AVAILABILITY), "online", qos=1, retain=True)
    page.wait_for_selector('#tile-qingpu-w04[data-online="1"]', timeout=5000)
    page.wait_for_selector('#tile-qingpu-w03[data-online="1"]', timeout=5000)
    pub.loop_stop()
    page.screenshot(path=str(shots / "hall.png"), full_page=True)

    # drill into the window's timeline
    tile.click()
    page.wait_for_selector("#timeline li")
    items = page.locator("#timeline li")
    assert items.count() == 8
    assert "起立" in items.first.inner_text() and "双录视频时间" in items.first.inner_text()
    assert page.locator("#trend-chart").is_visible() and page.locator("#heatmap div").count() > 24
    page.screenshot(path=str(shots / "window.png"), full_page=True)

    # export the sessions as CSV and check its rows
    with page.expect_download() as dl:
        page.click('a.export[data-name="sessions"][data-fmt="csv"]')
    path = dl.value.path()
    with open(path, encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 8
    assert {r["window"] for r in rows} == {"w03"} and {r["clerk_id"] for r in rows} == {"c-li"}
    assert sorted(r["rating"] for r in rows) == sorted(
        ["very_satisfied", "satisfied", "dissatisfied", ""] * 2
    )

    # acknowledge a bad review with a note
    page.goto(live.url + "/#/alerts")
    row = page.locator('tr[data-kind="bad_review"]').first
    row.wait_for()
    row.locator("input.note").fill("已回访群众")
    row.locator("button.ack-btn").click()
    page.wait_for_selector('tr[data-kind="bad_review"] .ok')
    page.screenshot(path=str(shots / "alerts.png"), full_page=True)
    for route, name in (("#/assessment", "assessment"), ("#/units", "units"), ("#/fleet", "fleet")):
        page.goto(f"{live.url}/{route}")
        page.wait_for_selector(f'body[data-ready="{route}"]')
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    page.click("#lang")
    page.wait_for_selector("text=Terminal fleet")
    ctx.close()

    # a read-only user can look but not acknowledge, not even by calling the API
    ro = browser.new_context()
    p2 = ro.new_page()
    login(p2, live.url, "view", "view-pass-1")
    p2.goto(live.url + "/#/alerts")
    p2.locator('tr[data-kind="conduct"]').first.wait_for()
    assert p2.locator("button.ack-btn").count() == 0
    alert_id = p2.locator('tr[data-kind="conduct"]').first.get_attribute("data-alert")
    status = p2.evaluate(
        """async (id) => {
            const me = await (await fetch('/api/me')).json();
            const r = await fetch(`/api/alerts/${id}/ack`, {method: 'POST',
              headers: {'Content-Type': 'application/json', 'X-CSRF-Token': me.csrf},
              body: JSON.stringify({note: 'sneaky'})});
            return r.status;
        }""",
        alert_id,
    )
    assert status == 403
    ro.close()
