"""A verdict the camera could not see, in headless Chromium: the window page's timeline
shows it "not observed" (grey, with what that means), never as a failure; its rate
leaves it out and says how many were not observed."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from server.store.db import StoredEvent
from tests.server.test_measures import Fleet
from tests.server.test_observability import v3
from tests.web.conftest import LiveServer
from tests.web.test_dashboard import login, shots_dir

SH = ZoneInfo("Asia/Shanghai")


def test_the_timeline_shows_a_masked_smile_as_not_observed(
    live: LiveServer, browser: Any, tmp_path: Path
) -> None:
    store, accounts = live.app.state.store, live.app.state.accounts
    accounts.add_user("insp", "insp-pass-1", "inspector", "district:青浦区", "王检查")
    now = int(time.time() * 1000)
    midnight = datetime.fromtimestamp(now / 1000, SH).replace(hour=0, minute=0, second=0)
    start = int(midnight.timestamp() * 1000)
    store.add_clerk("c-li", "李敏", "qingpu")
    store.sign_in("c-li", "qingpu", "w03", start)
    f = Fleet()
    masked = v3(f, "w03", start + 60_000, smiled=False, unseen=("smiled_at_greeting",))
    missed = v3(f, "w03", start + 120_000, smiled=False)  # seen not smiling: a real miss
    v3(f, "w03", start + 180_000)
    store.insert_events([StoredEvent(e, now) for e in f.events])

    ctx = browser.new_context(viewport={"width": 1440, "height": 900})
    page = ctx.new_page()
    login(page, live.url, "insp", "insp-pass-1")
    page.goto(f"{live.url}/#/window/qingpu/w03")
    page.wait_for_selector("#timeline li")
    smile = page.locator(f'#timeline li[data-session="{masked.session_id}"] [data-step="smiled"]')
    assert smile.inner_text() == "微笑 未能观测"
    assert smile.get_attribute("data-observed") == "0"
    assert "unobserved" in (smile.get_attribute("class") or "")
    assert "bad" not in (smile.get_attribute("class") or "").split()
    assert "口罩" in (smile.get_attribute("title") or "")  # what "not observed" means
    color = smile.evaluate("el => getComputedStyle(el).color")
    assert color == "rgb(95, 95, 95)"  # grey, not the failure's red
    real = page.locator(f'#timeline li[data-session="{missed.session_id}"] [data-step="smiled"]')
    assert real.inner_text() == "微笑 ✗" and "bad" in (real.get_attribute("class") or "")
    # the smile rate is of the observed sessions (1 of 2), the masked one counted beside
    kpis = page.locator("#kpis").inner_text()
    assert "50%" in kpis and "1 未能观测" in kpis
    page.screenshot(path=str(shots_dir(tmp_path) / "not-observed.png"), full_page=True)
    ctx.close()
