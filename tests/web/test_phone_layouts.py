"""The manager's pages on a phone (390 x 844, an iPhone 12-15) and on a desk (1440 x 900),
in headless Chromium over a realistic hall: terminals online and offline, a session the
camera could not see, alerts of every kind, faults, shifts and health reports.

On the phone nothing pushes the page sideways and no card hides a part of its table
(tables stack into labelled rows), buttons are at least 40 px high, the menu collapses
behind one button, and an alert is acknowledged with a note; in both languages no label
is a raw code (an event kind, an alert kind, a criterion, a fault code, a status)."""

from __future__ import annotations

import re
import time
import uuid
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from agent import protocol as p
from server.policy.clock import (
    OpenCase,
    Terminal,
    WindowView,
    overdue_cases,
    silent_terminals,
    unobserved_windows,
)
from server.policy.events import offline_alert
from server.store.db import StoredEvent
from tests.server.test_measures import Fleet
from tests.server.test_observability import v3
from tests.waiting import wait_until
from tests.web.conftest import LiveServer
from tests.web.test_dashboard import login, shots_dir

SH = ZoneInfo("Asia/Shanghai")
PHONE = {"width": 390, "height": 844}
DESK = {"width": 1440, "height": 900}
# what each page shows once drawn (the hall's events, the alerts' rows, ...)
PAGES = {
    "#/hall": "#latest tr",
    "#/alerts": "#alerts tbody tr",
    "#/fleet": "#fleet tbody tr",
    "#/units": "#units tbody tr",
    "#/roster": "#shifts tbody tr",
    "#/window/qingpu/w03": "#timeline li",
    "#/clerk/c-li": "#timeline li",
}
# Codes a person must never read: event kinds, alert kinds, the misses a conduct alert
# names, criteria, fault codes, statuses, ratings, phases, perception and shift sources,
# clause ids. In English only those that are not English words themselves.
RAW = (
    *("session_opened", "stood_up", "session_summary", "sign_while_present"),
    *("clerk_at_terminal", "away_without_sign", "bad_review", "case_overdue"),
    *("terminal_silent", "not_observed", "stand_on_call", "smile_at_greeting"),
    *("stand_at_farewell", "stand_on_call_rate", "smile_at_greeting_rate"),
    *("farewell_stand_rate", "camera_dead", "camera_frozen", "model_error"),
    *("outbox_full", "gpio_error", "very_satisfied", "basically_satisfied"),
    *("very_dissatisfied", "in_session", "W-CALL", "W-AWAY-SIGN", "G-SMILE", "F-RECEIVE"),
    *("smiled", "evaluated", "away", "fault", "conduct", "offline", "online", "open"),
    *("closed", "satisfied", "dissatisfied", "greeting", "farewell", "scripted"),
    *("camera", "manager", "badge", "queue", "min", "Acknowledge", "note"),
)
ENGLISH_WORDS = {
    *("smiled", "evaluated", "away", "fault", "offline", "online", "open", "closed"),
    *("satisfied", "dissatisfied", "greeting", "farewell", "scripted", "camera"),
    *("manager", "badge", "queue", "min", "Acknowledge", "note", "conduct"),
}


def raw_codes(text: str, lang: str) -> list[str]:
    """The raw codes in ``text`` (whole words: ``w03`` or ``c-li`` are data, not codes)."""
    codes = [c for c in RAW if lang == "zh" or c not in ENGLISH_WORDS]
    return [c for c in codes if re.search(rf"(?<![\w-]){re.escape(c)}(?![\w-])", text, re.A)]


def seed_hall(live: LiveServer) -> None:
    """Today at a centre of 12 windows: three online, one gone offline, the rest never
    heard; two clerks signed in; sessions with misses and bad reviews, one the camera
    could not see, an absence without the sign, a fault, a sign shown while present; and
    the alerts the clock raises (an overdue case, a silent terminal, a window whose
    camera sees too little)."""
    store, accounts = live.app.state.store, live.app.state.accounts
    accounts.add_user("mgr", "mgr-pass-1", "centre_manager", "site:qingpu", "张经理")
    now = int(time.time() * 1000)
    midnight = datetime.fromtimestamp(now / 1000, SH).replace(hour=0, minute=0, second=0)
    start = int(midnight.timestamp() * 1000)
    for clerk, name, window in (("c-li", "李敏", "w03"), ("c-wang", "王芳", "w04")):
        store.add_clerk(clerk, name, "qingpu")
        store.sign_in(clerk, "qingpu", window, start + 60_000)
    store.plan_roster("qingpu", "w05", "c-wang", start + 3_600_000, start + 36_000_000, "t")
    f = Fleet()
    ratings = [p.Rating.VERY_SATISFIED, p.Rating.DISSATISFIED, None, p.Rating.SATISFIED]
    for k in range(6):
        at = start + 120_000 + k * 400_000
        f.session("w03", at, stood=k != 1, smiled=k != 2, rating=ratings[k % 4])
        v3(f, "w04", at + 30_000, smiled=False, unseen=("smiled_at_greeting",) * (k < 4))
    sid = uuid.uuid4()
    f.events += [
        p.StoodUp(**f.header("w03", start + 100_000, sid), phase="greeting", on_time=True,
                  after_ms=1500, clauses=(p.Clause.W_CALL, p.Clause.W_TWO_STANDS)),
        p.Away(**f.header("w03", start + 9_000_000, None), started_ms=start + 8_000_000,
               ended_ms=start + 9_000_000, with_sign=False, violation=True,
               clauses=(p.Clause.W_AWAY_SIGN,)),
        p.Fault(**f.header("w04", start + 9_500_000, None), code="camera_frozen",
                detail="no new frame for 12 s"),
        p.SignWhilePresent(**f.header("w03", start + 9_600_000, None),
                           started_ms=start + 9_000_000, duration_ms=600_000),
        p.Evaluated(**f.header("w03", start + 9_700_000, None), rating=p.Rating.SATISFIED,
                    suspect=True, suspect_reason="no_session"),
    ]  # fmt: skip
    store.insert_events([StoredEvent(e, now) for e in f.events])
    for window in ("w03", "w04", "w06"):
        store.set_availability("qingpu", window, True, now - 5_000)
    store.set_availability("qingpu", "w05", False, now - 600_000)
    for window, here, standing, sign in (("w03", True, True, False), ("w04", False, False, True)):
        state = p.WindowState(site="qingpu", window=window, ts_ms=now, present=here,
                              standing=standing, in_session=here, sign_up=sign,
                              perception="camera")  # fmt: skip
        store.set_state(state, now)
        health = p.Health(site="qingpu", window=window, ts_ms=now, uptime_s=36_000, fps=2.0,
                          inference_ms=41.5, cpu_temp_c=58.0, outbox_depth=0,
                          model_version="2026.11", config_version="qingpu-7")  # fmt: skip
        store.set_health(health, now)
    store.raise_alerts([offline_alert("qingpu", "w05", now - 600_000)])
    store.raise_alerts(clock_alerts(now))


def clock_alerts(now: int) -> list[Any]:
    """What the clock raises: an overdue case, a silent terminal, a blind camera."""
    case = OpenCase(case_id="case-1", site="qingpu", window="w03", clerk_id="c-li",
                    rating="dissatisfied", status="open", due_ms=now - 86_400_000)  # fmt: skip
    silent = Terminal(site="qingpu", window="w06", online=True, last_seen_ms=now - 3_600_000)
    view = WindowView(site="qingpu", window="w04", sessions=12, not_observed=5)
    return [
        *overdue_cases(now, [case]),
        *silent_terminals(now, [silent]),
        *unobserved_windows(now, [view]),
    ]


def visit(page: Any, url: str, route: str) -> None:
    page.goto(f"{url}/{route}")
    page.wait_for_selector(f'body[data-ready="{route}"]')
    page.wait_for_selector(PAGES[route])


def shown_text(page: Any) -> str:
    """What a person reads: the header (with its menu) and the page."""
    return str(page.locator("header").inner_text() + "\n" + page.locator("#view").inner_text())


def sideways(page: Any) -> dict[str, int]:
    """The page's width, and the widest card's part hidden by its own scrolling."""
    return dict(
        page.evaluate(
            """() => ({
              page: document.documentElement.scrollWidth,
              card: Math.max(0, ...[...document.querySelectorAll('#view .card')]
                .map((c) => c.scrollWidth - c.clientWidth)),
            })"""
        )
    )


def middle(page: Any, selector: str) -> float:
    """The height of an element's middle on the page."""
    box = page.locator(selector).bounding_box()
    return float(box["y"] + box["height"] / 2)


def shows(page: Any, selector: str, text: str) -> bool:
    return bool(page.locator(selector).inner_text() == text)


def small_targets(page: Any) -> list[str]:
    """Buttons and header controls a finger hardly hits (under 40 px high)."""
    return list(
        page.evaluate(
            """() => [...document.querySelectorAll('header button, header select, '
                + 'header input, #view button, #view input, #view select')]
              .filter((el) => el.getClientRects().length > 0)
              .map((el) => [el, el.getBoundingClientRect().height])
              .filter(([, height]) => height < 40)
              .map(([el, height]) => `${el.tagName} ${el.id || el.className} ${height}`)"""
        )
    )


def test_the_managers_pages_fit_a_phone(live: LiveServer, browser: Any, tmp_path: Path) -> None:
    seed_hall(live)
    shots = shots_dir(tmp_path)
    ctx = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    page = ctx.new_page()
    login(page, live.url, "mgr", "mgr-pass-1")
    # the header: brand, the live badge, language and a menu button on one line; the
    # menu's links only once it is opened, and it closes on the way to a page
    nav = page.locator("header nav")
    assert not nav.is_visible() and page.locator("#menu").is_visible()
    assert abs(middle(page, "header h1") - middle(page, "#menu")) < 2  # one line
    assert abs(middle(page, "#lang") - middle(page, "#menu")) < 2
    page.click("#menu")
    assert nav.is_visible() and page.locator("#menu").get_attribute("aria-expanded") == "true"
    assert min(a.bounding_box()["height"] for a in nav.locator("a:visible").all()) >= 40
    page.click('header nav a[href="#/alerts"]')
    page.wait_for_selector('body[data-ready="#/alerts"]')
    assert not nav.is_visible() and "告警" in page.locator("#menu").inner_text()

    for lang in ("zh", "en"):
        for route in PAGES:
            visit(page, live.url, route)
            width = sideways(page)
            assert width["page"] <= PHONE["width"] and width["card"] <= 1, (lang, route, width)
            assert small_targets(page) == [], (lang, route)
            assert raw_codes(shown_text(page), lang) == [], (lang, route, shown_text(page))
            badge = {"zh": "实时", "en": "live"}[lang]
            wait_until(partial(shows, page, "#conn", badge), 5, "the live badge named")
            if lang == "zh" and route in ("#/hall", "#/fleet"):
                name = route[2:]
                page.screenshot(path=str(shots / f"phone-{name}.png"), full_page=True, scale="css")
        if lang == "zh":
            page.click("#lang")
            wait_until(lambda: page.locator("#lang").inner_text() == "中文", 10, "English")

    # English back to Chinese; the hall's tiles two to a row, its events stacked, and the
    # grey 'not observed' chip on one line
    page.click("#lang")
    visit(page, live.url, "#/hall")
    boxes = [t.bounding_box() for t in page.locator(".tile").all()[:2]]
    assert boxes[0]["y"] == boxes[1]["y"] and boxes[0]["width"] >= 150, boxes
    chips = page.locator("#latest .chip.unobserved")
    assert chips.count() >= 4 and chips.first.inner_text() == "未能观测"
    assert all(c.evaluate("el => el.getClientRects().length") == 1 for c in chips.all())
    assert chips.first.evaluate("el => getComputedStyle(el).color") == "rgb(95, 95, 95)"

    # an alert acknowledged with a note, on the phone
    visit(page, live.url, "#/alerts")
    kinds = {r.get_attribute("data-kind") for r in page.locator("#alerts tbody tr").all()}
    assert kinds >= {"bad_review", "conduct", "away_without_sign", "fault", "offline"}
    assert kinds >= {"sign_while_present", "case_overdue", "terminal_silent", "not_observed"}
    text = page.locator("#alerts").inner_text()
    assert "画面冻结" in text and "未叫号起立" in text and "整改期限" in text, text
    row = page.locator('#alerts tr[data-kind="bad_review"]').first
    alert_id = row.get_attribute("data-alert")
    row.locator("input.note").fill("已回访群众，当面致歉")
    assert row.locator("button.ack-btn").bounding_box()["height"] >= 40
    row.locator("button.ack-btn").click()
    done = page.locator(f'#alerts tr[data-alert="{alert_id}"] .ok')
    wait_until(lambda: done.count() == 1, 10, "the acknowledgement")
    assert "已回访群众，当面致歉" in done.inner_text()
    page.screenshot(path=str(shots / "phone-alerts.png"), full_page=True, scale="css")
    assert sideways(page)["page"] <= PHONE["width"]

    # the window's charts fit the phone's width
    visit(page, live.url, "#/window/qingpu/w03")
    for chart in ("#trend-chart", "#dist-chart"):
        box = page.locator(chart).bounding_box()
        assert 250 <= box["width"] <= PHONE["width"] - 32 and box["height"] >= 150, (chart, box)
    heat = page.locator("#heatmap").bounding_box()
    assert heat["x"] + heat["width"] <= PHONE["width"], heat
    tall = page.locator("#trend-chart").bounding_box()
    # turned sideways (844 px): past the phone's width, the desk's shape, redrawn
    page.set_viewport_size({"width": PHONE["height"], "height": PHONE["width"]})
    assert tall["width"] / tall["height"] < 1.2, tall

    def ratio() -> float:
        box = page.locator("#trend-chart").bounding_box()
        return float(box["width"] / box["height"]) if box else 0.0

    wait_until(lambda: abs(ratio() - 300 / 220) < 0.05, 10, "the desk's chart shape")
    ctx.close()


def test_the_desk_keeps_its_tables_and_menu(live: LiveServer, browser: Any, tmp_path: Path) -> None:
    seed_hall(live)
    ctx = browser.new_context(viewport=DESK)
    page = ctx.new_page()
    login(page, live.url, "mgr", "mgr-pass-1")
    assert page.locator("header nav").is_visible() and not page.locator("#menu").is_visible()
    # the menu's links each on one line (eleven of them: two short lines at most)
    links = [a.bounding_box()["height"] for a in page.locator("header nav a:visible").all()]
    assert len(links) >= 9 and max(links) < 30, links
    assert page.locator("header").bounding_box()["height"] < 75
    for route in PAGES:
        visit(page, live.url, route)
        assert sideways(page)["page"] <= DESK["width"], route
        assert raw_codes(shown_text(page), "zh") == [], (route, shown_text(page))
        heads = page.locator("#view thead")
        assert all(t.is_visible() for t in heads.all()), route  # a table, not stacked rows
    # the tiles as many to a row as before (190 px at least each)
    visit(page, live.url, "#/hall")
    boxes = [t.bounding_box() for t in page.locator(".tile").all()]
    assert len({b["y"] for b in boxes[:6]}) == 1 and boxes[0]["width"] >= 190
    ctx.close()
