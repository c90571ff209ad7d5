"""The fleet page's outbound card in Chromium (issue 18): a configured target whose
receiver refuses, so a delivery goes dead; the district admin sees it, the receiver is
fixed, resend empties the backlog; the admin switches the target off for a unit with a
reason (audited); the card fits 1440 and 390 px without sideways scroll, in both
languages; a read-only user sees no resend button and no switches."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlalchemy import select

from agent.localbroker import free_port, wait_port
from server.api.app import ServerSettings, create_app
from server.outbound import queue as q
from server.store.schema import audit_log, outbound_deliveries, outbound_switches
from tests.conftest import EXAMPLE_SITE
from tests.waiting import wait_until
from tests.web.test_dashboard import login, shots_dir

ADMIN_PW = "Outbound-admin-2026"
VIEW_PW = "Outbound-view-2026"


class Receiver:
    """Refuses every post with 400 until ``accept`` is set."""

    def __init__(self) -> None:
        self.accept = False
        self.taken: list[str] = []
        recv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                if recv.accept:
                    recv.taken.append(self.headers["Idempotency-Key"])
                self.send_response(200 if recv.accept else 400)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/evaluations"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Any, Receiver]]:
    recv = Receiver()
    threading.Thread(target=recv.server.serve_forever, daemon=True).start()
    config = tmp_path / "outbound.toml"
    config.write_text(
        'allow_hosts = ["127.0.0.1"]\nbackoff_s = 0.05\nbackoff_cap_s = 0.1\npoll_s = 0.1\n'
        f'[[target]]\nname = "province"\ntype = "http"\nurl = "{recv.url}"\n'
        'kinds = ["evaluation"]\ndistricts = ["青浦区"]\ntimeout_s = 1\nmax_attempts = 3\n',
        encoding="utf-8",
    )
    settings = ServerSettings(
        db_url=f"sqlite:///{tmp_path / 'web.db'}",
        sites=[EXAMPLE_SITE],
        mqtt=None,
        outbound_file=config,
    )
    app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_port("127.0.0.1", port, timeout=20)
    app.state.accounts.add_user(
        "qp-admin", ADMIN_PW, "district_admin", "district:青浦区", "区管理员"
    )
    app.state.accounts.add_user("viewer", VIEW_PW, "readonly", "site:qingpu", "只读用户")
    try:
        yield f"http://127.0.0.1:{port}", app, recv
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        recv.server.shutdown()
        recv.server.server_close()


def status(app: Any) -> dict[str, str]:
    with app.state.store.engine.connect() as conn:
        rows = conn.execute(select(outbound_deliveries.c.key, outbound_deliveries.c.status))
        return {k: s for k, s in rows}


def overflow(page: Any) -> dict[str, int]:
    return dict(
        page.evaluate(
            """() => ({
              page: document.documentElement.scrollWidth,
              card: Math.max(0, ...[...document.querySelectorAll('section.card')]
                .map((c) => c.scrollWidth - c.clientWidth)),
            })"""
        )
    )


def open_fleet(page: Any) -> None:
    page.goto(page.url.split("#")[0] + "#/fleet")
    page.locator("#outbound").wait_for()


def test_outbound_card_resend_and_switch(
    served: tuple[str, Any, Receiver], browser: Any, tmp_path: Path
) -> None:
    url, app, recv = served
    shots = shots_dir(tmp_path)
    row = q.delivery_row(
        target="province",
        key="ev-1",
        kind="evaluation",
        body={"evaluation_id": "ev-1"},
        at_ms=int(time.time() * 1000),
        site="qingpu",
    )
    with app.state.store.engine.begin() as conn:
        q.enqueue_many(conn, [row])
    app.state.outbound.deliverer.wake()
    wait_until(lambda: status(app) == {"ev-1": "dead"}, timeout=10)

    # a phone first, in Chinese then English: the card stacks, nothing scrolls sideways
    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = phone.new_page()
    login(page, url, "qp-admin", ADMIN_PW)
    open_fleet(page)
    card = page.locator("#outbound")
    assert "外发对接" in card.inner_text() and "对方拒收" in card.inner_text()
    assert "—" not in page.locator("#outbound-dead td").first.inner_text()  # when it was queued
    assert page.locator("#outbound-dead tbody tr").count() == 1
    assert page.locator(".resend-btn").count() == 1
    got = overflow(page)
    print(f"\n390 px zh: scrollWidth {got['page']}, widest card overflow {got['card']}")
    assert got["page"] <= 390 and got["card"] == 0
    page.screenshot(path=str(shots / "outbound-390-zh.png"), full_page=True)
    page.click("#lang")
    wait_until(lambda: "Outbound" in page.locator("#outbound").inner_text())
    got = overflow(page)
    print(f"390 px en: scrollWidth {got['page']}, widest card overflow {got['card']}")
    assert got["page"] <= 390 and got["card"] == 0
    assert "evaluations" in card.inner_text() and "refused" in card.inner_text()
    page.screenshot(path=str(shots / "outbound-390-en.png"), full_page=True)
    phone.close()

    # a read-only user sees the dead delivery, but neither resend nor switches
    desk = browser.new_context(viewport={"width": 1440, "height": 900})
    page = desk.new_page()
    login(page, url, "viewer", VIEW_PW)
    open_fleet(page)
    assert page.locator("#outbound-dead tbody tr").count() == 1
    assert page.locator(".resend-btn").count() == 0
    assert page.locator("#outbound input[type=checkbox]").count() == 0
    desk.close()

    # at a desk the admin resends once the receiver accepts: the backlog empties
    desk = browser.new_context(viewport={"width": 1440, "height": 900})
    page = desk.new_page()
    login(page, url, "qp-admin", ADMIN_PW)
    open_fleet(page)
    got = overflow(page)
    print(f"1440 px: scrollWidth {got['page']}, widest card overflow {got['card']}")
    assert got["page"] <= 1440 and got["card"] == 0
    page.screenshot(path=str(shots / "outbound-1440-dead.png"), full_page=True)
    recv.accept = True
    page.click(".resend-btn")
    wait_until(lambda: status(app) == {"ev-1": "delivered"}, timeout=10)
    assert recv.taken == ["ev-1"]

    def settled() -> bool:  # the page as it is drawn afresh
        page.reload()
        page.locator("#outbound").wait_for()
        return page.locator("#outbound-targets .ob-backlog").inner_text() == "0"

    wait_until(settled, timeout=10)
    target = page.locator('#outbound-targets tr[data-target="province"]')
    assert page.locator("#outbound-no-dead").count() == 1
    assert target.locator(".ob-dead").inner_text() == "0"
    page.screenshot(path=str(shots / "outbound-1440.png"), full_page=True)

    # the switch: without a reason nothing changes; with one, qingpu is off, audited
    box = page.locator('#outbound input[type=checkbox][data-site="qingpu"]')
    assert box.is_checked()
    box.click()
    assert box.is_checked()
    page.fill(".ob-reason", "省平台维护")
    box.click()

    def switches() -> list[Any]:
        with app.state.store.engine.connect() as conn:
            return list(conn.execute(select(outbound_switches)).all())

    wait_until(lambda: len(switches()) == 1)
    page.reload()
    page.locator("#outbound").wait_for()
    assert not page.locator('#outbound input[data-site="qingpu"]').is_checked()
    (sw,) = switches()
    with app.state.store.engine.connect() as conn:
        actions = [r.action for r in conn.execute(select(audit_log.c.action))]
    assert (sw.target, sw.site, sw.enabled, sw.by) == ("province", "qingpu", False, "qp-admin")
    assert actions.count("outbound_resend") == 1 and actions.count("outbound_switch") == 1
    desk.close()
