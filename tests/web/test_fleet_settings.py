"""The fleet page's window settings card in Chromium (issue 19): each window's status in
a word (applied, refused with the terminal's reason, pending, not sent with the broker's,
none), the pushes with their scope and fields in words; a district admin's push with a
value out of range shows the server's 422 naming the field next to the form, a good one
goes out over the broker and shows pending, and a withdrawal with a reason marks it
withdrawn; the fleet table's settings column marks the refusing terminal; a centre
manager sees the statuses but no form and no withdraw button; no sideways scroll at 1440
or 390 px, in Chinese and English."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlalchemy import func, select

from agent import protocol as p
from agent.localbroker import MosquittoBroker, free_port, wait_port
from agent.protocol import Channel
from server.api.app import ServerSettings, create_app
from server.bundles import generate_key, load_private_key
from server.ingest import IngestSettings
from server.settings_push import SettingsPublisher, record_push, withdraw_push
from server.store.schema import settings_pushes
from tests.conftest import EXAMPLE_SITE
from tests.waiting import wait_until
from tests.web.conftest import LiveServer
from tests.web.test_dashboard import login, shots_dir
from tests.web.test_outbound_card import overflow

ADMIN_PW = "Settings-admin-2026"
MANAGER_PW = "Settings-manager-2026"
HOUR = 3_600_000


@dataclass
class Centre:
    url: str
    app: Any
    serials: dict[str, int]


def seed(app: Any, key_path: Path) -> dict[str, int]:
    """Three pushes (one withdrawn) and four windows' publications: w01 applied, w02
    refused by its terminal, w03 sent and not reported yet, w04 not taken by the broker."""
    engine, now = app.state.store.engine, int(time.time() * 1000)
    with engine.begin() as conn:
        fields = {"rules.greet_within_s": 6.0, "camera.idle_fps": 1.5}
        record_push(conn, "district:青浦区", fields, "全区统一微笑时限", "qp-admin", now - 3 * HOUR)
        trial = {"rules.smile_threshold": 0.95}
        record_push(conn, "window:qingpu/w02", trial, "2号窗口试点", "qp-admin", now - 2 * HOUR)
        label = {"label": "临时窗口"}
        gone = record_push(conn, "site:qingpu", label, "误操作", "qp-admin", now - HOUR)
        withdraw_push(conn, gone, "qp-admin", "名称不对", now - HOUR + 60_000)
    ingest = app.state.ingest

    def send(site: str, window: str, data: bytes) -> str | None:
        if window == "w04":
            return "not sent: the client is not currently connected."
        error: str | None = ingest.publish_retained(site, window, Channel.SETTINGS, data)
        return error

    publisher = SettingsPublisher(engine, load_private_key(key_path), send)
    pubs = publisher.publish([("qingpu", w) for w in ("w01", "w02", "w03", "w04")], by="qp-admin")
    serials = {pub.window: pub.serial for pub in pubs}
    assert [pub.published for pub in pubs] == [True, True, True, False]
    refusal = f"serial {serials['w02']} check: rules: too_broad_threshold must be above"
    for window, applied, error in (("w01", serials["w01"], None), ("w02", None, refusal)):
        health = p.Health(site="qingpu", window=window, ts_ms=now, uptime_s=7200, fps=2.0,
                          inference_ms=40.0, outbox_depth=0, model_version="2026.11",
                          config_version=f"{window}-7", settings_serial=applied,
                          settings_error=error)  # fmt: skip
        app.state.store.set_health(health, now)
    for window in ("w01", "w02", "w03", "w04"):
        app.state.store.set_availability("qingpu", window, True, now - 60_000)
    return serials


@pytest.fixture
def centre(broker: MosquittoBroker, tmp_path: Path) -> Iterator[Centre]:
    """A live server that can push: a signing key and a link to a real Mosquitto."""
    key = tmp_path / "signing" / "bundle-signing.key"
    generate_key(key)
    app = create_app(
        ServerSettings(
            db_url=f"sqlite:///{tmp_path / 'web.db'}",
            sites=[EXAMPLE_SITE],
            mqtt=IngestSettings(port=broker.port, client_id="ww-web-settings"),
            bundle_signing_key=key,
        )
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_port("127.0.0.1", port, timeout=20)
    app.state.ingest.wait_connected()
    accounts = app.state.accounts
    accounts.add_user("qp-admin", ADMIN_PW, "district_admin", "district:青浦区", "区管理员")
    accounts.add_user("meg", MANAGER_PW, "centre_manager", "site:qingpu", "中心负责人")
    try:
        yield Centre(f"http://127.0.0.1:{port}", app, seed(app, key))
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def open_fleet(page: Any) -> None:
    page.goto(page.url.split("#")[0] + "#/fleet")
    page.locator("#window-settings").wait_for()


def window_row(page: Any, window: str) -> Any:
    return page.locator(f'#ws-windows tr[data-window="{window}"]')


def test_window_settings_card(centre: Centre, browser: Any, tmp_path: Path) -> None:
    shots = shots_dir(tmp_path)
    serials = centre.serials
    desk = browser.new_context(viewport={"width": 1440, "height": 900})
    page = desk.new_page()
    errors: list[str] = []  # script errors and CSP refusals: none
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if "Content Security" in m.text else None)
    login(page, centre.url, "qp-admin", ADMIN_PW)
    open_fleet(page)

    # each window's status in a word, with the terminal's or the broker's reason
    expect = dict(w01="已生效", w02="终端拒绝", w03="待终端确认", w04="未发出", w05="未下发")
    for window, word in expect.items():
        assert window_row(page, window).locator(".ws-status").inner_text() == word
    assert page.locator("#ws-windows tbody tr").count() == 12
    w02 = window_row(page, "w02")
    assert "too_broad_threshold must be above" in w02.locator(".ws-detail").inner_text()
    assert "not currently connected" in window_row(page, "w04").locator(".ws-detail").inner_text()
    cells = window_row(page, "w01").locator("td").all_inner_texts()
    assert cells[2] == cells[4] == str(serials["w01"])  # sent and applied: the same serial
    assert window_row(page, "w04").locator(".ws-republish-btn").count() == 1

    # the pushes, newest first, their scope and fields in words
    pushes = page.locator("#ws-pushes tbody tr")
    assert pushes.count() == 3
    district = page.locator('#ws-pushes tr[data-push="1"]')
    assert district.locator(".ws-scope").inner_text() == "青浦区（全区）"
    fields = district.locator(".ws-fields").inner_text()
    assert "叫号后微笑时限(秒) rules.greet_within_s = 6" in fields
    assert "camera.idle_fps = 1.5" in fields
    scope2 = page.locator('#ws-pushes tr[data-push="2"] .ws-scope').inner_text()
    assert scope2 == "青浦区行政服务中心 2号窗口 (综合窗口)"
    withdrawn = page.locator('#ws-pushes tr[data-push="3"] .ws-state').inner_text()
    assert "已撤回" in withdrawn and "名称不对" in withdrawn
    assert page.locator(".ws-withdraw-btn").count() == 2  # the two in force

    # the fleet table's settings column: the applied serial, the refusing terminal marked
    fleet_w01 = page.locator('#fleet tr[data-window="w01"] .fleet-settings')
    assert fleet_w01.inner_text() == str(serials["w01"])
    refusing = page.locator('#fleet tr[data-window="w02"]')
    assert "settings-error" in (refusing.get_attribute("class") or "")
    assert "终端拒绝" in refusing.locator(".fleet-settings").inner_text()
    assert page.locator("#fleet tr.settings-error").count() == 1

    # a value out of range: the server's 422 names the field next to the form
    form = page.locator("#ws-push")
    form.locator("select[name=field1]").select_option("rules.greet_within_s")
    form.locator("input[name=value1]").fill("-1")
    form.locator("input[name=note]").fill("收紧微笑时限")
    form.locator("button[type=submit]").click()
    error = form.locator(".error")
    wait_until(lambda: error.inner_text() != "", timeout=10)
    message = error.inner_text()
    print(f"\n422 shown: {message}")
    assert message.startswith("参数不合规: rules.greet_within_s")
    assert "greater than 0" in message
    got = overflow(page)
    print(f"1440 px: scrollWidth {got['page']}, widest card overflow {got['card']}")
    assert got["page"] <= 1440 and got["card"] == 0
    # the whole page in one picture: a viewport as tall as the page (a full-page capture
    # fires the page's media-query listener and catches it drawing itself afresh)
    tall = page.evaluate("() => document.documentElement.scrollHeight")
    page.set_viewport_size({"width": 1440, "height": tall})
    page.screenshot(path=str(shots / "fleet-settings-1440.png"))
    assert error.inner_text() == message  # still the same form

    # a good value for one window of the centre goes out over the broker: pending
    form.locator('select[name=window] option[value="w05"]').wait_for(state="attached")
    form.locator("select[name=window]").select_option("w05")
    form.locator("select[name=field1]").select_option("rules.greet_within_s")
    form.locator("input[name=value1]").fill("6.5")
    form.locator("select[name=field2]").select_option("camera.active_fps")
    form.locator("input[name=value2]").fill("8")
    form.locator("input[name=note]").fill("5号窗口试点：微笑时限6.5秒")
    form.locator("button[type=submit]").click()
    page.locator("#ws-pushed").wait_for()
    assert page.locator("#ws-pushed").inner_text() == "已下发 #4: 1 个窗口"
    assert window_row(page, "w05").locator(".ws-status").inner_text() == "待终端确认"
    new = page.locator('#ws-pushes tr[data-push="4"]')
    assert new.locator(".ws-scope").inner_text() == "青浦区行政服务中心 5号窗口 (综合窗口)"
    assert "rules.greet_within_s = 6.5" in new.locator(".ws-fields").inner_text()
    assert "camera.active_fps = 8" in new.locator(".ws-fields").inner_text()

    # withdraw it: without a reason nothing happens; with one, it is withdrawn
    new.locator(".ws-withdraw-btn").click()
    assert new.locator(".ws-reason").evaluate("(el) => el === document.activeElement")
    new.locator(".ws-reason").fill("试点结束")
    new.locator(".ws-withdraw-btn").click()
    wait_until(lambda: "已撤回" in new.locator(".ws-state").inner_text(), timeout=10)
    assert "试点结束" in new.locator(".ws-state").inner_text()
    assert errors == []
    desk.close()

    # a phone, in Chinese then English: everything stacks, nothing scrolls sideways
    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = phone.new_page()
    login(page, centre.url, "qp-admin", ADMIN_PW)
    open_fleet(page)
    got = overflow(page)
    print(f"390 px zh: scrollWidth {got['page']}, widest card overflow {got['card']}")
    assert got["page"] <= 390 and got["card"] == 0
    page.locator("#window-settings").screenshot(path=str(shots / "fleet-settings-390.png"))
    page.click("#lang")
    wait_until(lambda: "Window settings" in page.locator("#window-settings").inner_text())
    card = page.locator("#window-settings").inner_text()
    assert "applied" in card and "refused" in card and "pending" in card and "not sent" in card
    assert "smile within (s) rules.greet_within_s = 6" in card
    got = overflow(page)
    print(f"390 px en: scrollWidth {got['page']}, widest card overflow {got['card']}")
    assert got["page"] <= 390 and got["card"] == 0
    page.locator("#window-settings").screenshot(path=str(tmp_path / "fleet-settings-390-en.png"))
    phone.close()

    # a centre manager sees the statuses and the pushes, but cannot push or withdraw
    desk = browser.new_context(viewport={"width": 1440, "height": 900})
    page = desk.new_page()
    login(page, centre.url, "meg", MANAGER_PW)
    open_fleet(page)
    assert window_row(page, "w02").locator(".ws-status").inner_text() == "终端拒绝"
    assert page.locator("#ws-pushes tbody tr").count() == 4
    assert page.locator("#ws-push").count() == 0
    assert page.locator(".ws-withdraw-btn").count() == 0
    assert page.locator(".ws-republish-btn").count() == 0
    desk.close()

    # the admin sends w04's settings again, the broker up: it waits for its terminal
    desk = browser.new_context(viewport={"width": 1440, "height": 900})
    page = desk.new_page()
    login(page, centre.url, "qp-admin", ADMIN_PW)
    open_fleet(page)
    window_row(page, "w04").locator(".ws-republish-btn").click()
    status = window_row(page, "w04").locator(".ws-status")
    wait_until(lambda: status.inner_text() == "待终端确认", timeout=10)
    assert int(window_row(page, "w04").locator("td").nth(2).inner_text()) > serials["w04"]
    desk.close()


def test_a_server_that_cannot_push_says_why_next_to_the_form(
    live: LiveServer, browser: Any
) -> None:
    """The test server of the other web tests has no signing key: a good push is refused
    (409) before anything is recorded, and the form says what the server lacks."""
    live.app.state.accounts.add_user(
        "qp-admin", ADMIN_PW, "district_admin", "district:青浦区", "区管理员"
    )
    ctx = browser.new_context(viewport={"width": 1440, "height": 900})
    page = ctx.new_page()
    login(page, live.url, "qp-admin", ADMIN_PW)
    open_fleet(page)
    assert page.locator("#ws-no-pushes").inner_text() == "尚未下发任何参数"
    form = page.locator("#ws-push")
    form.locator("select[name=field1]").select_option("camera.idle_fps")
    form.locator("input[name=value1]").fill("1")
    form.locator("input[name=note]").fill("降低空闲帧率")
    form.locator("button[type=submit]").click()
    error = form.locator(".error")
    wait_until(lambda: error.inner_text() != "", timeout=10)
    print(f"\n409 shown: {error.inner_text()}")
    assert error.inner_text() == (
        "本服务器不能下发: this server has no settings signing key (WW_BUNDLE_SIGNING_KEY_FILE)"
    )
    with live.app.state.store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(settings_pushes)).scalar() == 0
    ctx.close()
