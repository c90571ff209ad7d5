"""The header's period in headless Chromium: the month picked, its quarter or its year,
for every page's measures; a month's verdicts stay that month's; labels in both
languages."""

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


def test_the_period_picker_shows_a_month_its_quarter_or_its_year(
    live: LiveServer, browser: Any, tmp_path: Path
) -> None:
    store, accounts = live.app.state.store, live.app.state.accounts
    accounts.add_user("insp", "insp-pass-1", "inspector", "district:青浦区", "王检查")
    now = datetime.now(SH)
    f = Fleet()
    this_month = int(now.replace(day=1, hour=9, minute=0).timestamp() * 1000)
    january = int(now.replace(month=1, day=15, hour=9, minute=0).timestamp() * 1000)
    for k in range(3):
        f.session("w03", this_month + k * 600_000)
    f.session("w04", january)
    store.insert_events([StoredEvent(e, int(time.time() * 1000)) for e in f.events])
    month = now.strftime("%Y-%m")
    quarter = f"{now.year}-Q{(now.month + 2) // 3}"
    expected = {
        "month": (month, 3 + (now.month == 1)),
        "quarter": (quarter, 3 + (now.month <= 3)),
        "year": (str(now.year), 4),
    }

    ctx = browser.new_context(viewport={"width": 1440, "height": 900})
    page = ctx.new_page()
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url))
    login(page, live.url, "insp", "insp-pass-1")
    assert page.input_value("#period") == month and page.input_value("#period-kind") == "month"
    options = page.locator("#period-kind option")
    assert options.all_inner_texts() == ["按月", "按季度", "按年"]
    page.goto(f"{live.url}/#/units")

    def sessions() -> str:
        cells = page.locator("#units tbody tr td:nth-child(3)")
        return cells.first.inner_text() if cells.count() else ""

    for kind, (period, n) in expected.items():
        page.select_option("#period-kind", kind)
        wait_until(lambda: sessions() == str(n), what=f"{kind}: {n} sessions")  # noqa: B023
        assert f"period={period}&" in next(u for u in reversed(asked) if "/units/compare" in u)
    page.screenshot(path=str(shots_dir(tmp_path) / "period-year.png"), full_page=True)

    # the assessment's verdicts and report are the month picked, whatever the span
    page.goto(f"{live.url}/#/assessment")
    page.wait_for_selector("#verdicts")
    assert f"month={month}" in next(u for u in reversed(asked) if "/api/assessments" in u)
    assert f"period={now.year}&" in next(u for u in reversed(asked) if "/api/ranking" in u)
    assert (page.get_attribute("#report-link", "href") or "").endswith(f"/{month}")
    assert page.locator("main .bad").count() == 0

    page.click("#lang")
    wait_until(lambda: options.all_inner_texts() == ["Month", "Quarter", "Year"], what="English")
    page.reload()  # the span chosen is kept
    page.wait_for_selector("body[data-ready]")
    assert page.input_value("#period-kind") == "year"
    ctx.close()
