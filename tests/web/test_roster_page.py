"""The roster page in headless Chromium: a manager sees the day's shifts and the
unattributed sessions, signs a clerk in (a shift change) and out, on the record."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from server.store.db import StoredEvent
from tests.server.test_measures import Fleet
from tests.waiting import wait_until
from tests.web.conftest import LiveServer
from tests.web.test_dashboard import login, shots_dir

SH = ZoneInfo("Asia/Shanghai")


def test_a_manager_changes_the_shift_on_the_roster_page(
    live: LiveServer, browser: Any, tmp_path: Path
) -> None:
    store, accounts = live.app.state.store, live.app.state.accounts
    accounts.add_user("boss", "Boss-pass-2026!", "centre_manager", "site:qingpu", "中心主任")
    now = int(time.time() * 1000)
    midnight = datetime.fromtimestamp(now / 1000, SH).replace(hour=0, minute=0, second=0)
    start = int(midnight.timestamp() * 1000)
    # the morning fits in the part of today gone by: a run just after midnight has
    # minutes of it, and nothing may lie in the future
    hour = min(3_600_000, (now - start) // 4)
    for clerk, name in (("c-li", "李敏"), ("c-wang", "王芳")):
        store.add_clerk(clerk, name, "qingpu")
    f = Fleet()
    f.session("w03", start + hour // 60)  # nobody signed in yet: unattributed
    store.insert_events([StoredEvent(e, now) for e in f.events])
    store.sign_in("c-li", "qingpu", "w03", start + hour)
    store.plan_roster("qingpu", "w04", "c-wang", start + hour, start + hour + 9 * 3_600_000, "t")

    shots = shots_dir(tmp_path)
    for width in (1440, 390):
        ctx = browser.new_context(viewport={"width": width, "height": 900})
        page = ctx.new_page()
        login(page, live.url, "boss", "Boss-pass-2026!")
        page.goto(live.url + "/#/roster")
        page.wait_for_selector("#shifts")
        rows = page.locator("#shifts tbody tr")
        assert rows.count() == 1 and "李敏 (c-li)" in rows.first.inner_text()
        assert "在岗中" in rows.first.inner_text()
        assert page.locator("#unattributed tbody tr").first.inner_text().split() == ["w03", "1"]
        planned = page.locator("#planned tbody tr").first
        assert "王芳" in planned.inner_text() and "已排班未签到" in planned.inner_text()
        page.screenshot(path=str(shots / f"roster-{width}.png"), full_page=True)
        ctx.close()

    # Wang takes over w03 from the form: Li's shift ends, Wang's starts, on the record.
    ctx = browser.new_context(viewport={"width": 1440, "height": 900})
    page = ctx.new_page()
    login(page, live.url, "boss", "Boss-pass-2026!")
    page.goto(live.url + "/#/roster")
    page.wait_for_selector("#sign-in")
    page.select_option("#sign-in select[name=clerk]", "c-wang")
    page.select_option("#sign-in select[name=window]", "w03")
    page.click("#sign-in button[type=submit]")
    # (the page's CSP forbids eval, so the waits poll from here)
    wait_until(lambda: page.locator("#shifts tbody tr").count() == 2, 10, "two shifts")
    texts = [r.inner_text() for r in page.locator("#shifts tbody tr").all()]
    assert "c-li" in texts[0] and "在岗中" not in texts[0]
    assert "c-wang" in texts[1] and "在岗中" in texts[1] and "管理员" in texts[1]
    page.click("#shifts tbody tr >> nth=1 >> .sign-out-btn")
    on = lambda: "在岗中" in page.locator("#shifts tbody").inner_text()  # noqa: E731
    wait_until(lambda: not on(), 10, "signed out")
    page.screenshot(path=str(shots / "roster-after.png"), full_page=True)
    ctx.close()
    actions = [e["action"] for e in accounts.audit_entries(50)]
    assert actions.count("sign_in") == 1 and actions.count("sign_out") == 1
