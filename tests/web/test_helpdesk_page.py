"""The help desk's H-ONLINE page (#/helpdesk) in Chromium: a manager reads November's
figures per window and day against the standard, with the month's totals, in Chinese and
English, at 1440 px and on a 390 px phone (the table stacks into labelled rows; nothing
scrolls sideways); a clerk's account has no link to it and the API refuses it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.waiting import wait_until
from tests.web.conftest import LiveServer
from tests.web.test_dashboard import login, shots_dir

MONTH = "2026-11"
#: (window, day, requests, answered within a minute, resolved)
FIGURES = [
    ("w11", "2026-11-02", 20, 20, 19),  # met
    ("w11", "2026-11-03", 30, 28, 26),  # two answered late, 87 % resolved: not met
    ("w12", "2026-11-02", 10, 10, 10),  # met
    ("w11", "2026-10-31", 99, 0, 0),  # October: not this month's
]


def seed(live: LiveServer) -> None:
    store, accounts = live.app.state.store, live.app.state.accounts
    accounts.add_user("mgr", "mgr-pass-1", "centre_manager", "site:qingpu", "张经理")
    store.add_clerk("c-li", "李敏", "qingpu")
    accounts.add_user("li", "li-pass-12", "clerk", "site:qingpu", "李敏", clerk_id="c-li")
    for window, day, n, fast, resolved in FIGURES:
        store.put_helpdesk_kpis("qingpu", window, day, n, fast, resolved)


def no_sideways_scroll(page: Any, width: int) -> None:
    """Neither the page nor a card scrolls sideways."""
    sw = page.evaluate("document.documentElement.scrollWidth")
    cards = page.evaluate(
        "[...document.querySelectorAll('section.card')]"
        ".map((c) => [c.id, c.scrollWidth, c.clientWidth])"
    )
    print(f"{width} px: page scrollWidth {sw}, cards {cards}")
    assert sw <= width, f"the page is {sw} px wide at {width} px"
    assert cards and all(s <= c for _, s, c in cards), cards


def open_month(page: Any, url: str) -> None:
    page.goto(f"{url}/#/helpdesk")
    page.wait_for_selector("#helpdesk")
    page.fill("#period", MONTH)
    page.dispatch_event("#period", "change")
    wait_until(lambda: MONTH in page.locator("#helpdesk h2").inner_text(), 10, "November")


def rows(page: Any) -> list[list[str]]:
    trs = page.locator("#helpdesk-days tbody tr")
    return [
        [c.strip() for c in trs.nth(i).locator("td").all_inner_texts()] for i in range(trs.count())
    ]


def test_helpdesk_page_at_a_desk_and_on_a_phone(
    live: LiveServer, browser: Any, tmp_path: Path
) -> None:
    seed(live)
    shots = shots_dir(tmp_path)
    ctx = browser.new_context(viewport={"width": 1440, "height": 900})
    page = ctx.new_page()
    login(page, live.url, "mgr", "mgr-pass-1")
    assert page.locator('header nav a[href="#/helpdesk"]').inner_text() == "帮办"
    open_month(page, live.url)
    assert rows(page) == [
        ["2026-11-02", "w11", "20", "20/20 · 100%", "19/20 · 95%", "达标"],
        ["2026-11-03", "w11", "30", "28/30 · 93%", "26/30 · 87%", "未达标"],
        ["2026-11-02", "w12", "10", "10/10 · 100%", "10/10 · 100%", "达标"],
        ["本月合计", "全部窗口", "60", "58/60 · 97%", "55/60 · 92%", "未达标"],
    ]
    bad = page.locator('#helpdesk-days tr[data-day="2026-11-03"]')
    assert bad.get_attribute("class") == "bad"
    assert bad.locator("td.bad").count() == 2  # the late answers and the resolved share
    month = page.locator("#helpdesk-month").inner_text()
    assert "60" in month and "97%" in month and "92%" in month and "未达标" in month, month
    assert "90%" in page.locator("#helpdesk-standard").inner_text()
    no_sideways_scroll(page, 1440)
    page.screenshot(path=str(shots / "helpdesk-1440.png"), full_page=True)

    page.click("#lang")
    wait_until(
        lambda: (
            "H-ONLINE" in page.locator("#helpdesk h2").inner_text()
            and "Help desk online" in page.locator("#helpdesk h2").inner_text()
        ),
        10,
        "English",
    )
    en = rows(page)
    assert en[1][-1] == "not met" and en[0][-1] == "met", en
    assert en[3][:2] == ["Month total", "all windows"], en
    assert page.locator('header nav a[href="#/helpdesk"]').inner_text() == "Help desk"
    no_sideways_scroll(page, 1440)
    ctx.close()

    phone = browser.new_context(viewport={"width": 390, "height": 844})
    page = phone.new_page()
    login(page, live.url, "mgr", "mgr-pass-1")
    open_month(page, live.url)
    table = page.locator("#helpdesk-days")
    assert "stack" in (table.get_attribute("class") or "")
    first = table.locator("tbody tr").first
    labels = [first.locator("td").nth(i).get_attribute("data-label") for i in range(6)]
    assert labels == ["日期", "窗口", "咨询量", "1 分钟内首次响应", "办结", "是否达标"]
    assert first.bounding_box()["width"] <= 390
    no_sideways_scroll(page, 390)
    page.screenshot(path=str(shots / "helpdesk-390.png"), full_page=True)
    phone.close()


def test_a_clerk_has_no_helpdesk_page(live: LiveServer, browser: Any) -> None:
    seed(live)
    ctx = browser.new_context(viewport={"width": 390, "height": 844})
    page = ctx.new_page()
    login(page, live.url, "li", "li-pass-12")
    assert page.locator('header nav a[href="#/helpdesk"]').is_hidden()
    page.goto(f"{live.url}/#/helpdesk")
    page.wait_for_selector('body[data-ready="#/helpdesk"]')
    assert "403" in page.locator("#view p.bad").inner_text()
    assert page.locator("#helpdesk-days").count() == 0
    ctx.close()
