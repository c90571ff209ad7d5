"""Script payloads in every free-text field, in headless Chromium under the real CSP:
nothing runs, everything shows as text. And the admin page, used end to end.

Free text a user or a device can set, and where it reaches the page:

* unit name, district, window labels: the site configuration files (agent/config.py
  takes any string for them);
* clerk names (POST /api/clerks), alert ack notes, case close notes (the API);
* user display names (accounts), a token's district scope (tokens);
* a fault's detail text (a device event).

A token's *name* cannot carry a payload: server/tokens.py allows only letters, digits,
'.', '_' and '-' (checked below). Clerk ids, site and window slugs are patterns too.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import uvicorn

from agent import protocol as proto
from agent.localbroker import free_port, wait_port
from server.api.app import ServerSettings, create_app
from server.store.db import StoredEvent
from server.tokens import Tokens
from tests.conftest import EXAMPLE_SITE
from tests.server.test_measures import Fleet
from tests.web.conftest import LiveServer
from tests.web.test_dashboard import login, seed, shots_dir

SH = ZoneInfo("Asia/Shanghai")
IMG = '<img src=x onerror="window.__xss=1;alert(1)">'
SCRIPT = "<script>window.__xss=1</script>"
SVG = '"><svg onload=window.__xss=1>'
JS = "javascript:window.__xss=1"
PAYLOADS = (IMG, SCRIPT, SVG, JS)
FORMULA = '=HYPERLINK("http://x","y")'
ADMIN_PW = "Xss-Admin-Pass-2026"
# Collects what the CSP blocked; runs before any page script (not subject to the CSP).
WATCH_CSP = """
window.__csp = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}`));
"""


def set_key(text: str, key: str, value: str) -> str:
    """Replace a top-level TOML string ``key = "..."`` (JSON escapes are TOML's too)."""
    line = f"{key} = {json.dumps(value)}"
    out, n = re.subn(rf'(?m)^{key} = ".*"$', lambda _: line, text)
    assert n == 1, key
    return out


def payload_site(tmp_path: Path) -> Path:
    """The example site with payloads as unit name, district and window labels."""
    site = tmp_path / "site"
    shutil.copytree(EXAMPLE_SITE, site)
    toml = site / "site.toml"
    text = toml.read_text(encoding="utf-8")
    text = set_key(set_key(text, "name", IMG + " 中心"), "district", SVG)
    toml.write_text(text, encoding="utf-8")
    for i, payload in enumerate(PAYLOADS, start=1):
        w = site / "windows" / f"w{i:02d}.toml"
        w.write_text(set_key(w.read_text(encoding="utf-8"), "label", payload), encoding="utf-8")
    return site


@pytest.fixture
def xss_live(tmp_path: Path) -> Iterator[LiveServer]:
    """A real uvicorn serving the payload site (no broker: events go to the store)."""
    settings = ServerSettings(
        db_url=f"sqlite:///{tmp_path / 'xss.db'}", sites=[payload_site(tmp_path)], mqtt=None
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
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", app, None)  # type: ignore[arg-type]
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def call(page: Any, method: str, path: str, body: Any = None) -> Any:
    """An API call from the signed-in page, with its CSRF token; returns status and JSON."""
    return page.evaluate(
        """async ([method, path, body]) => {
            const me = await (await fetch('/api/me')).json();
            const r = await fetch(path, {method,
              headers: {'Content-Type': 'application/json', 'X-CSRF-Token': me.csrf || ''},
              body: body === null ? undefined : JSON.stringify(body)});
            let data = null; try { data = await r.json(); } catch (e) { data = null; }
            return {status: r.status, data};
        }""",
        [method, path, body],
    )


def seed_payloads(live: LiveServer, page: Any) -> None:
    store = live.app.state.store
    now = int(time.time() * 1000)
    # the local midnight an hour ago: just after midnight the sessions below would end,
    # and their cases be called back, in the future
    start = int(
        datetime.fromtimestamp((now - 3_600_000) / 1000, SH)
        .replace(hour=0, minute=0, second=0, microsecond=0)
        .timestamp()
        * 1000
    )
    for i, name in enumerate(PAYLOADS):
        r = call(
            page, "POST", "/api/clerks", {"clerk_id": f"c-{i}", "name": name, "site": "qingpu"}
        )
        assert r["status"] == 201, r
        store.sign_in(f"c-{i}", "qingpu", f"w{i + 1:02d}", start)
    f = Fleet()
    ratings = [proto.Rating.DISSATISFIED, proto.Rating.VERY_DISSATISFIED, proto.Rating.SATISFIED]
    for k in range(6):
        opened = max(start + k * 1000, now - (k + 2) * 400_000)
        f.session(f"w0{k % 4 + 1}", opened, stood=k % 2 == 0, rating=ratings[k % 3])

    def header(window: str, ts: int) -> dict[str, Any]:
        return f.header(window, ts, None) | {"event_id": uuid.uuid4()}

    f.events += [
        proto.Fault(**header("w01", now - 60_000), code="camera_frozen", detail=IMG),
        proto.SignWhilePresent(
            **header("w02", now - 50_000), started_ms=now - 400_000, duration_ms=350_000
        ),
        proto.Away(
            **header("w03", now - 40_000),
            started_ms=now - 900_000,
            ended_ms=now - 40_000,
            with_sign=False,
            violation=True,
        ),
    ]
    store.insert_events([StoredEvent(e, now) for e in f.events])
    store.set_availability("qingpu", "w04", False, now - 30_000)

    alerts = call(page, "GET", "/api/alerts?site=qingpu&limit=500")["data"]
    kinds = {a["kind"] for a in alerts}
    assert {"conduct", "bad_review", "fault", "sign_while_present", "away_without_sign"} <= kinds
    assert "offline" in kinds
    notes = [SCRIPT, SVG, JS, FORMULA]
    for a, note in zip(alerts, notes, strict=False):
        assert (
            call(page, "POST", f"/api/alerts/{a['alert_id']}/ack", {"note": note})["status"] == 200
        )
    cases = call(page, "GET", "/api/cases?site=qingpu")["data"]
    assert len(cases) == 4
    case = f"/api/cases/{cases[0]['case_id']}"
    called = {"at_ms": cases[0]["opened_ms"] + 1000, "outcome": "reached_satisfied", "note": JS}
    assert call(page, "POST", f"{case}/callback", called)["status"] == 200
    assert call(page, "POST", f"{case}/rectification", {"note": SCRIPT})["status"] == 200
    r = call(page, "POST", f"{case}/close", {"note": SVG})
    assert r["status"] == 200, r

    accounts = live.app.state.accounts
    for name, payload in (("u-script", SCRIPT), ("u-svg", SVG), ("u-js", JS)):
        accounts.add_user(name, "Some-User-Pass-1", "readonly", "site:qingpu", payload)
    tokens = Tokens(store.engine)
    tokens.create("feed", f"district:{SVG}", ["read"], "root")
    with pytest.raises(ValueError, match="name"):
        tokens.create(IMG, "site:qingpu", ["read"], "root")  # names are a pattern
    bad = call(page, "POST", "/api/tokens", {"name": IMG, "scope": "all", "grants": ["read"]})
    assert bad["status"] == 422, bad


def visit(page: Any, url: str, route: str) -> None:
    """Open a route and wait until it has rendered (not the previous page's marker)."""
    page.evaluate("delete document.body.dataset.ready")
    page.goto(f"{url}/{route}")
    page.wait_for_selector(f'body[data-ready="{route}"]')


def refused(text: str) -> bool:
    """A console line of a CSP refusal (failed fetches, e.g. the 422 above, are expected)."""
    return "Content Security Policy" in text or "Refused to" in text


def assert_clean(page: Any, dialogs: list[str], errors: list[str], where: str) -> None:
    assert page.evaluate("window.__xss") is None, where
    assert dialogs == [], where
    assert errors == [], (where, errors)
    assert page.evaluate("window.__csp") == [], where
    # the payloads never became elements
    assert page.locator("#view img, #view svg, #view script, header img, header svg").count() == 0


def test_script_payloads_never_run(xss_live: LiveServer, browser: Any, tmp_path: Path) -> None:
    live = xss_live
    live.app.state.accounts.add_user("root", ADMIN_PW, "district_admin", "all", IMG)
    ctx = browser.new_context(accept_downloads=True, viewport={"width": 1440, "height": 900})
    ctx.add_init_script(WATCH_CSP)
    page = ctx.new_page()
    dialogs: list[str] = []
    errors: list[str] = []

    def on_dialog(d: Any) -> None:
        dialogs.append(d.message)
        d.dismiss()

    page.on("dialog", on_dialog)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if refused(m.text) else None)
    login(page, live.url, "root", ADMIN_PW)
    seed_payloads(live, page)

    month = datetime.now(SH).strftime("%Y-%m")
    pages: dict[str, tuple[str, ...]] = {
        "#/hall": PAYLOADS,  # window labels; the fault's detail in the latest events
        "#/alerts": (SCRIPT, SVG, JS, IMG),  # ack notes; fault detail
        "#/window/qingpu/w02": (SCRIPT, IMG),  # window label, unit name in the title
        "#/clerk/c-2": (SVG,),  # clerk name in the title
        "#/assessment": PAYLOADS,  # clerk names; the case's close note (SVG)
        "#/units": (IMG, SVG),  # unit name, district
        "#/fleet": PAYLOADS,  # unit name and labels
        "#/admin": (IMG, SCRIPT, SVG, JS),  # display names, token scope, audit details
    }
    for route, shown in pages.items():
        visit(page, live.url, route)
        text = page.locator("#view").text_content() or ""
        # a page that failed to render shows the error as the view's own paragraph
        # (app.js render); a substring test read "401" in an audit entry's timestamp
        failed = page.locator("#view .view-body > p.bad")
        assert failed.count() == 0, (route, failed.all_inner_texts())
        for payload in shown:
            assert payload in text, (route, payload)
        assert IMG in page.locator("#who").inner_text()  # the display name, as text
        assert_clean(page, dialogs, errors, route)
        if route == "#/hall":
            assert page.locator(".tile .label", has_text=SCRIPT).count() == 1
            assert IMG in (page.locator("#site").text_content() or "")
            assert page.locator("#latest td", has_text=IMG).count() == 1  # fault detail
        if route == "#/window/qingpu/w02":
            page.wait_for_function("Chart.getChart('trend-chart') !== undefined")
        if route == "#/assessment":
            assert page.locator("#cases .case-note", has_text=SVG).count() == 1
        if route == "#/admin":
            assert page.locator("#users .display-name", has_text=JS).count() == 1
            assert page.locator("#tokens td", has_text=SVG).count() == 1
            assert page.locator("#audit .audit-detail", has_text=SCRIPT).count() >= 1

    # the case's page: the call-back's note, the rectification and the close note
    (closed,) = call(page, "GET", "/api/cases?site=qingpu&status=closed")["data"]
    route = f"#/cases/{closed['case_id']}"
    visit(page, live.url, route)
    assert page.locator("#case .case-note").all_inner_texts() == [JS, SCRIPT, SVG]
    assert_clean(page, dialogs, errors, route)

    # the alerts export downloaded by the browser: the formula note is neutralised
    visit(page, live.url, "#/alerts")
    with page.expect_download() as dl:
        page.click('a.export[data-name="alerts"][data-fmt="csv"]')
    with open(dl.value.path(), encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert "'" + FORMULA in [r["note"] for r in rows]
    assert not any(v.startswith("=") for r in rows for v in r.values())
    assert SCRIPT in [r["note"] for r in rows]  # text stays text, unchanged

    # the printable report: escaped by the server, shown as text, under the same CSP
    page.goto(f"{live.url}/report/qingpu/{month}")
    body = page.locator("body").inner_text()
    for payload in (IMG, SVG, SCRIPT, JS):  # unit name, district and a case note; clerks
        assert payload in body, payload
    assert page.locator("img, svg, script").count() == 0
    assert page.evaluate("getComputedStyle(document.body).marginTop") != "0px"  # report.css
    assert page.evaluate("window.__xss") is None and dialogs == []
    assert page.evaluate("window.__csp") == [] and errors == []
    ctx.close()


def bearer(url: str, token: str) -> int:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_admin_page(live: LiveServer, browser: Any, tmp_path: Path) -> None:
    seed(live)
    live.app.state.accounts.add_user(
        "admin", ADMIN_PW, "district_admin", "district:青浦区", "张管理"
    )
    shots = shots_dir(tmp_path)
    ctx = browser.new_context(viewport={"width": 1440, "height": 900})
    ctx.add_init_script(WATCH_CSP)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if refused(m.text) else None)
    login(page, live.url, "admin", ADMIN_PW)
    assert page.locator("#nav-admin").is_visible()
    page.click("#nav-admin")
    page.wait_for_selector('body[data-ready="#/admin"]')
    assert {"admin", "insp", "view"} <= set(
        page.locator("#users tr[data-user]").evaluate_all("rows => rows.map((r) => r.dataset.user)")
    )

    # add an account
    form = page.locator("#add-user")
    form.locator("[name=username]").fill("liu")
    form.locator("[name=displayName]").fill("前台刘")
    form.locator("[name=password]").fill("Front-Desk-Pass-26")
    form.locator("[name=role]").select_option("inspector")
    form.locator("[name=scope]").fill("site:qingpu")
    form.locator("button[type=submit]").click()
    row = page.locator('#users tr[data-user="liu"]')
    row.wait_for()
    assert "前台刘" in row.inner_text() and "督查员" in row.inner_text()
    # a weak password is refused, and the refusal is shown
    form = page.locator("#add-user")
    form.locator("[name=username]").fill("weak")
    form.locator("[name=password]").fill("abcdefghijkl")
    form.locator("button[type=submit]").click()
    page.wait_for_selector("#add-user .error:not(:empty)")
    assert page.locator('#users tr[data-user="weak"]').count() == 0

    # disable and enable: a disabled account cannot sign in
    page.locator('#users tr[data-user="view"] .disable-btn').click()
    page.wait_for_selector('#users tr[data-user="view"] .enable-btn')
    other = browser.new_context()
    probe = other.new_page()
    probe.goto(live.url + "/login")

    def can_login(user: str, pw: str) -> int:
        return int(
            probe.evaluate(
                """async ([u, p]) => (await fetch('/api/login', {method: 'POST',
                  headers: {'Content-Type': 'application/json'},
                  body: JSON.stringify({username: u, password: p})})).status""",
                [user, pw],
            )
        )

    assert can_login("view", "view-pass-1") == 401
    page.locator('#users tr[data-user="view"] .enable-btn').click()
    page.wait_for_selector('#users tr[data-user="view"] .disable-btn')
    assert can_login("view", "view-pass-1") == 200
    assert page.locator('#users tr[data-user="admin"] .disable-btn').is_disabled()  # not yourself

    # reset a password
    pw = page.locator('#users tr[data-user="insp"] form[id^="pw-"]')
    pw.locator("[name=newPassword]").fill("Checker-New-Pass-9")
    pw.locator("button[type=submit]").click()
    page.wait_for_selector('#users tr[data-user="insp"] form[id^="pw-"] .error.ok')
    assert can_login("insp", "insp-pass-1") == 401
    assert can_login("insp", "Checker-New-Pass-9") == 200

    # change role and scope
    role = page.locator('#users tr[data-user="liu"] form[id^="role-"]')
    role.locator("[name=role]").select_option("readonly")
    role.locator("[name=scope]").fill("site:qingpu")
    role.locator("button[type=submit]").click()
    page.wait_for_function(
        """() => document.querySelector('#users tr[data-user="liu"]')?.innerText.includes('只读')"""
    )

    # a service token: created, its value shown once and working, then revoked
    tf = page.locator("#add-token")
    tf.locator("[name=tokenName]").fill("queue-qingpu")
    tf.locator("[name=scope]").fill("site:qingpu")
    tf.locator("input[name=grant][value=queue]").check()
    tf.locator("button[type=submit]").click()
    page.wait_for_selector("#token-value")
    value = page.locator("#token-value").inner_text()
    assert value.startswith("wwt_")
    assert bearer(live.url + "/api/units", value) == 200
    trow = page.locator("#tokens tr", has_text="queue-qingpu")
    assert "site:qingpu" in trow.inner_text()
    page.screenshot(path=str(shots / "admin.png"), full_page=True)
    trow.locator(".revoke-btn").click()
    page.wait_for_function(
        """() => [...document.querySelectorAll('#tokens tr')].some((r) =>
              r.innerText.includes('queue-qingpu') && r.innerText.includes('已吊销'))"""
    )
    assert page.locator("#token-value").count() == 0  # shown once: gone after a reload
    assert bearer(live.url + "/api/units", value) == 401

    # the audit log shows what was done, filterable to the current unit
    audit = page.locator("#audit").inner_text()
    for action in ("token_create", "token_revoke"):
        assert action in audit, action
    page.check("#audit-site")
    page.wait_for_selector('body[data-ready="#/admin"] #audit-site:checked')
    assert page.evaluate("window.__csp") == [] and errors == []
    page.click("#lang")
    page.wait_for_selector("text=Service tokens")
    ctx.close()

    # an inspector has no admin page
    other.close()
    other = browser.new_context()
    insp = other.new_page()
    login(insp, live.url, "insp", "Checker-New-Pass-9")
    assert not insp.locator("#nav-admin").is_visible()
    insp.goto(live.url + "/#/admin")
    insp.wait_for_selector('body[data-ready="#/admin"]')
    assert "只有区管理员" in insp.locator("#view").inner_text()
    other.close()
