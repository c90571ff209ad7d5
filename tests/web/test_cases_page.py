"""The bad-review cases page (#/cases) in Chromium: a manager assigns a case, records the
call-back and the rectification, closes it and reopens it at 1440 px; on a phone (390 px)
the other manager records the rectification again and closes it; the page never pushes
the body sideways; a clerk reads its own cases without the forms."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from agent import protocol as wire
from server.policy.casework import clock
from server.store.db import StoredEvent
from tests.server.test_access_matrix import SiteEvents
from tests.waiting import wait_until
from tests.web.conftest import LiveServer
from tests.web.test_dashboard import login, shots_dir

DAY = 86_400_000
RAW = ("reached_not_satisfied", "reached_satisfied", "unreachable", "very_dissatisfied")


def seed(live: LiveServer) -> tuple[str, str]:
    """c-li's bad review of a few minutes ago and one of 30 days ago (overdue)."""
    store, accounts = live.app.state.store, live.app.state.accounts
    accounts.add_user("mgr", "mgr-pass-1", "centre_manager", "site:qingpu", "张经理")
    accounts.add_user("mgr2", "mgr2-pass-1", "centre_manager", "site:qingpu", "李副经理")
    store.add_clerk("c-li", "李敏", "qingpu")
    accounts.add_user("li", "li-pass-12", "clerk", "site:qingpu", "李敏", clerk_id="c-li")
    now = int(time.time() * 1000)
    store.sign_in("c-li", "qingpu", "w03", now - 40 * DAY)
    se = SiteEvents("qingpu", "w03")
    fresh = se.bad_review(now - 60_000)
    old = se.bad_review(now - 30 * DAY)
    evs: list[wire.EventHeader] = se.events
    store.insert_events([StoredEvent(e, e.ts_ms) for e in evs])
    return fresh, old


def no_sideways(page: Any, width: int, where: str) -> None:
    sw = page.evaluate("document.documentElement.scrollWidth")
    print(f"{where}: scrollWidth {sw} px")
    assert sw <= width, f"{where}: the page is {sw} px wide at {width} px"


def open_route(page: Any, url: str, route: str) -> None:
    page.evaluate("delete document.body.dataset.ready")
    page.goto(f"{url}/{route}")
    page.wait_for_selector(f'body[data-ready="{route}"]')


def steps(page: Any) -> list[str]:
    rows = page.locator("#case-history tbody tr")
    return [rows.nth(i).get_attribute("data-action") for i in range(rows.count())]


def take(page: Any, step: str, n: int) -> None:
    """Submit a step's form and wait for the history to hold ``n`` entries."""
    page.click(f"#case-{step} button[type=submit]")
    wait_until(lambda: len(steps(page)) == n, what=f"the {step} in the history")


def test_a_case_worked_through_on_desktop_and_phone(
    live: LiveServer, browser: Any, tmp_path: Path
) -> None:
    fresh, old = seed(live)
    shots = shots_dir(tmp_path)

    ctx = browser.new_context(viewport={"width": 1440, "height": 900})
    page = ctx.new_page()
    login(page, live.url, "mgr", "mgr-pass-1")
    open_route(page, live.url, "#/cases")
    rows = page.locator("#case-list tbody tr")
    assert rows.count() == 2
    assert "bad" in (page.locator(f'#case-list tr[data-case="{old}"]').get_attribute("class") or "")
    assert "逾期" in page.locator(f'#case-list tr[data-case="{old}"]').inner_text()
    # opened today (in Shanghai): 15 working days left; opened late yesterday: as counted
    (row,) = [c for c in live.app.state.store.list_cases("open") if c["case_id"] == fresh]
    left = clock(int(time.time() * 1000), "open", row["due_ms"], "Asia/Shanghai")
    shown = page.locator(f'#case-list tr[data-case="{fresh}"]').inner_text()
    assert f"剩余 {left.working_days_left} 个工作日" in shown, shown
    page.click('.case-filters a[data-filter="overdue"]')
    page.wait_for_selector('body[data-ready="#/cases/overdue"]')
    assert page.locator("#case-list tbody tr").count() == 1

    open_route(page, live.url, f"#/cases/{fresh}")
    # nothing recorded yet: the close says what is missing, and cannot be pressed
    needs = page.locator("#case-needs").inner_text()
    assert needs == "办结前请先记录：回访市民、整改情况", needs
    assert page.locator("#case-close button[type=submit]").is_disabled()

    page.select_option("#case-assign select[name=who]", "mgr2")
    page.fill("#case-assign input[name=note]", "今天内回访")
    take(page, "assign", 1)
    page.select_option("#case-callback select[name=outcome]", "reached_not_satisfied")
    page.fill("#case-callback input[name=note]", "等候时间过长")
    take(page, "callback", 2)
    assert page.locator("#case-needs").inner_text() == "办结前请先记录：整改情况"
    page.fill("#case-rectify textarea[name=note]", "增开一个综合窗口，班前会讲评")
    take(page, "rectify", 3)
    assert "可以办结" in page.locator("#case-needs").inner_text()
    page.fill("#case-close input[name=note]", "市民表示理解")
    take(page, "close", 4)
    assert page.locator("#case").get_attribute("data-status") == "closed"
    page.fill("#case-reopen textarea[name=reason]", "市民再次来电投诉")
    take(page, "reopen", 5)
    assert page.locator("#case").get_attribute("data-status") == "open"
    text = page.locator("#view").inner_text()
    assert "重新打开 1 次" in text and "请重新记录整改情况" in text
    assert "已联系，仍不满意" in text
    assert not any(raw in text for raw in RAW), text
    assert steps(page) == ["assign", "callback", "rectify", "close", "reopen"]
    history = page.locator("#case-history").inner_text()
    assert "mgr2" in history and "市民再次来电投诉" in history
    no_sideways(page, 1440, "case at 1440")
    page.screenshot(path=str(shots / "cases.png"), full_page=True)
    # the same page in English: every label translated, no code shown
    page.click("#lang")  # renders again: wait for the English page, not the Chinese one
    view = page.locator("#view")
    wait_until(lambda: "History" in view.inner_text(), what="the page in English")
    en = view.inner_text()
    assert "Call-back" in en and "reached, not satisfied" in en and "reopened 1×" in en, en
    assert not any(raw in en for raw in RAW), en
    ctx.close()

    # a phone: the other manager records the rectification again and closes
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = ctx.new_page()
    login(page, live.url, "mgr2", "mgr2-pass-1")
    open_route(page, live.url, "#/cases")
    no_sideways(page, 390, "list at 390")
    assert page.locator("#case-list tbody tr").count() == 2
    page.click(f'#case-list tr[data-case="{fresh}"] a')
    page.wait_for_selector(f'body[data-ready="#/cases/{fresh}"]')
    no_sideways(page, 390, "case at 390")
    assert page.locator("#case-close button[type=submit]").is_disabled()
    page.fill("#case-rectify textarea[name=note]", "调整窗口到一楼")
    take(page, "rectify", 6)
    page.fill("#case-close input[name=note]", "再次回访满意")
    take(page, "close", 7)
    assert page.locator("#case").get_attribute("data-status") == "closed"
    no_sideways(page, 390, "closed case at 390")
    open_route(page, live.url, "#/cases/closed")
    assert page.locator("#case-list tbody tr").count() == 1
    no_sideways(page, 390, "closed list at 390")
    open_route(page, live.url, f"#/cases/{fresh}")
    page.screenshot(path=str(shots / "cases-phone.png"), full_page=True)
    ctx.close()

    # the clerk reads its own cases, without a form
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = ctx.new_page()
    login(page, live.url, "li", "li-pass-12")
    open_route(page, live.url, "#/cases/all")
    assert page.locator("#case-list tbody tr").count() == 2
    open_route(page, live.url, f"#/cases/{fresh}")
    assert page.locator(".case-step").count() == 0
    assert "仅供查看" in page.locator("#view").inner_text()
    assert steps(page) == ["assign", "callback", "rectify", "close", "reopen", "rectify", "close"]
    no_sideways(page, 390, "clerk's case at 390")
    ctx.close()
