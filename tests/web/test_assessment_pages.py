"""The assessment people work with, in headless Chromium at desktop and phone widths:
an administrator saves a centre's thresholds, an inspector records a finding that
counts and overrides a verdict with a reason; a clerk appeals one of its sessions and
the centre's manager upholds it (the month recomputed, the old result still shown);
a clerk's pages show nobody else's records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from server.store.db import StoredEvent
from tests.server.test_assessment_workflow import MONTH, sessions
from tests.waiting import wait_until
from tests.web.conftest import LiveServer
from tests.web.test_dashboard import login, shots_dir

PASSWORD = "Assess-pass-2026!"
WIDTHS = [1440, 390]


def seed(live: LiveServer) -> list[str]:
    """c-li: 22 sessions in November 2026 (stood on call in 20); c-wang: 5."""
    store, accounts = live.app.state.store, live.app.state.accounts
    accounts.add_user("admin", PASSWORD, "district_admin", "district:青浦区", "区管理员甲")
    accounts.add_user("insp", PASSWORD, "inspector", "district:青浦区", "王检查")
    accounts.add_user("mgr", PASSWORD, "centre_manager", "site:qingpu", "赵主任")
    store.add_clerk("c-li", "李敏", "qingpu")
    store.add_clerk("c-wang", "王芳", "qingpu")
    accounts.add_user("li", PASSWORD, "clerk", "site:qingpu", "李敏", clerk_id="c-li")
    evs, ids = sessions("qingpu", 22, {3, 17})
    other, _ = sessions("qingpu", 5, {0})
    from tests.server.test_access_matrix import NOV

    store.sign_in("c-li", "qingpu", "w03", NOV - 86_400_000)
    for e in other:  # c-wang at w05, after c-li's sessions
        object.__setattr__(e, "window", "w05")
    store.sign_in("c-wang", "qingpu", "w05", NOV - 86_400_000)
    store.insert_events([StoredEvent(e, e.ts_ms) for e in evs + other])
    return ids


def no_sideways_scroll(page: Any, width: int) -> None:
    """Neither the page nor a card scrolls sideways (a card's table stacks on a phone)."""
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    hidden = page.evaluate(
        "[...document.querySelectorAll('section.card')]"
        ".map((c) => c.scrollWidth - c.clientWidth).filter((d) => d > 1)"
    )
    assert hidden == [], hidden


def pick_month(page: Any) -> None:
    page.fill("#period", MONTH)
    page.dispatch_event("#period", "change")


def cell(page: Any, criterion: str) -> str:
    loc = page.locator(f'#criteria tr[data-criterion="{criterion}"]')
    return loc.inner_text() if loc.count() else ""


@pytest.mark.parametrize("width", WIDTHS)
def test_thresholds_finding_and_override(
    live: LiveServer, browser: Any, tmp_path: Path, width: int
) -> None:
    seed(live)
    shots = shots_dir(tmp_path)
    ctx = browser.new_context(viewport={"width": width, "height": 900})
    page = ctx.new_page()
    login(page, live.url, "admin", PASSWORD)
    pick_month(page)
    page.goto(f"{live.url}/#/settings")
    page.wait_for_selector(".thresholds-form")
    page.fill('#thresholds input[name="stand_on_call_rate"]', "0.95")
    page.fill('.thresholds-form input[name="reason"]', "区窗口办 2026 年第 3 号通知")
    page.click(".thresholds-form button[type=submit]")
    wait_until(
        lambda: "v1" in page.locator("#threshold-history").inner_text(), what="version saved"
    )
    row = page.locator('#thresholds tr[data-field="stand_on_call_rate"]').inner_text()
    assert "95%" in row and "v1" in row
    no_sideways_scroll(page, width)
    ctx.close()

    ctx = browser.new_context(viewport={"width": width, "height": 900})
    page = ctx.new_page()
    login(page, live.url, "insp", PASSWORD)
    page.goto(f"{live.url}/#/verdict/c-li/{MONTH}")
    page.wait_for_selector("#criteria")
    assert "未达标" in cell(page, "stand_on_call_rate") and "91%" in cell(
        page, "stand_on_call_rate"
    )
    assert "v1" in page.inner_text("#thresholds-used")
    # a patrol finding that counts
    f = page.locator(".finding-form")
    f.locator('select[name="kind"]').select_option("patrol")
    f.locator('select[name="clause"]').select_option("G-DRESS")
    f.locator('input[name="note"]').fill("未按规定着装")
    f.locator('input[name="attachmentRef"]').fill("patrol:QP-1102-07")
    f.locator('input[name="observedAt"]').fill("2026-11-16T10:30")  # a patrol in November
    f.locator("button[type=submit]").click()
    wait_until(lambda: "未达标" in cell(page, "inspector_findings"), what="finding counted")
    assert "2026/11/16 10:30" in page.inner_text("#findings")
    assert "G-DRESS" in page.inner_text("#findings") and "patrol:QP-1102-07" in page.inner_text(
        "#findings"
    )
    # override the computed verdict with a reason
    d = page.locator(".decision-form")
    d.locator('select[name="action"]').select_option("override")
    d.locator('select[name="overrideResult"]').select_option("pass")
    d.locator('input[name="reason"]').fill("着装问题已当场整改，经科室会议改判")
    d.locator("button[type=submit]").click()
    wait_until(lambda: "已改判" in page.inner_text("#stands"), what="overridden")
    assert "合格" in page.inner_text("#stands") and "着装问题" in page.inner_text("#decisions")
    assert page.get_attribute(".clerk-report", "href") == f"/report/clerk/c-li/{MONTH}"
    page.screenshot(path=str(shots / f"verdict-{width}.png"), full_page=True)
    no_sideways_scroll(page, width)
    page.goto(f"{live.url}/#/assessment")
    pick_month(page)
    wait_until(lambda: "已改判" in page.locator('#verdicts tr[data-clerk="c-li"]').inner_text())
    assert page.locator("main p.bad").count() == 0
    no_sideways_scroll(page, width)
    page.screenshot(path=str(shots / f"assessment-{width}.png"), full_page=True)
    page.click("#lang")  # English labels are longer: still no sideways scroll
    wait_until(lambda: "overridden" in page.inner_text("#verdicts"), what="English")
    no_sideways_scroll(page, width)
    page.goto(f"{live.url}/#/verdict/c-li/{MONTH}")
    wait_until(lambda: "overridden" in page.inner_text("main"), what="English verdict")
    no_sideways_scroll(page, width)
    page.goto(f"{live.url}/#/settings")
    wait_until(lambda: page.locator("#thresholds").count() == 1, what="English settings")
    no_sideways_scroll(page, width)
    ctx.close()


@pytest.mark.parametrize("width", WIDTHS)
def test_a_clerk_appeals_and_the_manager_upholds(
    live: LiveServer, browser: Any, tmp_path: Path, width: int
) -> None:
    ids = seed(live)
    shots = shots_dir(tmp_path)
    ctx = browser.new_context(viewport={"width": width, "height": 900})
    page = ctx.new_page()
    login(page, live.url, "li", PASSWORD)
    assert page.evaluate("location.hash") in ("", "#/me") and page.locator("#my-verdict").count()
    pick_month(page)
    wait_until(lambda: page.locator("#my-sessions li").count() == 22, what="own sessions")
    body = page.inner_text("main")
    assert "王芳" not in body and "c-wang" not in body  # nobody else's records
    shown = page.locator("header nav a:visible").all_inner_texts()
    assert "我的考核" in shown and not {"大厅实时", "告警", "考核", "终端", "考核标准"} & set(shown)
    assert "第" not in page.inner_text("#my-rank") or "#1" in page.inner_text("#my-rank")
    session = page.locator(f'#my-sessions li[data-session="{ids[3]}"]')
    session.locator('input[name="appealNote"]').fill("我起立了，当时摄像头被文件夹挡住")
    session.locator("button[type=submit]").click()
    wait_until(lambda: page.locator('#appeals tr[data-status="open"]').count() == 1, what="filed")
    pdf = page.request.get(f"{live.url}/report/clerk/c-li/{MONTH}.pdf")  # its own report
    assert pdf.status == 200 and pdf.body().startswith(b"%PDF")
    assert page.request.get(f"{live.url}/report/clerk/c-wang/{MONTH}").status == 404
    page.screenshot(path=str(shots / f"clerk-{width}.png"), full_page=True)
    no_sideways_scroll(page, width)
    ctx.close()

    ctx = browser.new_context(viewport={"width": width, "height": 900})
    page = ctx.new_page()
    login(page, live.url, "mgr", PASSWORD)
    page.goto(f"{live.url}/#/appeals")
    page.wait_for_selector('#appeals tr[data-status="open"] a')
    page.click('#appeals tr[data-status="open"] a')
    page.wait_for_selector("#appeal-events")
    assert "服务小结" in page.inner_text("#appeal-events")  # the manager sees the events
    r = page.locator(".resolve-form")
    r.locator('select[name="resolution"]').select_option("corrected")
    r.locator('input[name="resolveNote"]').fill("双录可见已起立，更正")
    r.locator("button[type=submit]").click()
    wait_until(lambda: "已支持" in page.inner_text("#appeal"), what="upheld")
    assert "申诉前: 合格" in page.inner_text("#before-after")  # the default 90 % passes 20/22
    page.screenshot(path=str(shots / f"appeal-{width}.png"), full_page=True)
    no_sideways_scroll(page, width)
    page.goto(f"{live.url}/#/verdict/c-li/{MONTH}")
    page.wait_for_selector("#criteria")
    assert "95%" in cell(page, "stand_on_call_rate")  # 21/22 now
    ctx.close()
