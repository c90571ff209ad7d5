"""Outbound in Prometheus (issue 18): per target, what this process delivered, retried
and gave up on, and from the queue the backlog, the dead deliveries and the last
success; and the district admin's switch of a target for one of its units, audited.

The server is ``create_app`` with an outbound file whose targets post to a receiver this
test starts on 127.0.0.1; its Deliverer runs in the app's lifespan.
"""

from __future__ import annotations

import http.server
import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from server.api.app import ServerSettings, create_app
from server.outbound import queue as q
from server.store.schema import audit_log, outbound_deliveries
from tests.conftest import EXAMPLE_SITE
from tests.waiting import wait_until

TOKEN = "metrics-" + "x" * 24
PASSWORD = "Outbound-pass-2026!"


class Receiver:
    """Answers each key from a script: a list of statuses, used up in turn (then 200)."""

    def __init__(self, script: dict[str, list[int]]) -> None:
        self.script = script
        self.seen: list[str] = []
        recv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                key = self.headers["Idempotency-Key"]
                recv.seen.append(key)
                todo = recv.script.get(key, [])
                status = todo.pop(0) if todo else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/in"

    def __enter__(self) -> Receiver:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def targets_file(tmp_path: Path, url: str) -> Path:
    """Two targets at one receiver: province (qingpu's district) and songjiang's."""
    path = tmp_path / "outbound.toml"
    path.write_text(
        "\n".join(
            [
                'allow_hosts = ["127.0.0.1"]',
                "backoff_s = 0.02",
                "backoff_cap_s = 0.05",
                "poll_s = 0.05",
                "[[target]]",
                'name = "province"',
                'type = "http"',
                f'url = "{url}"',
                'kinds = ["nothing-hooked"]',
                'districts = ["青浦区"]',
                "timeout_s = 1",
                "max_attempts = 5",
                "[[target]]",
                'name = "songjiang"',
                'type = "http"',
                f'url = "{url}"',
                'kinds = ["nothing-hooked"]',
                'sites = ["songjiang"]',
                "timeout_s = 1",
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    return path


def make_site(root: Path, slug: str, district: str) -> Path:
    d = root / slug
    shutil.copytree(EXAMPLE_SITE, d)
    toml = (d / "site.toml").read_text(encoding="utf-8")
    toml = toml.replace('site = "qingpu"', f'site = "{slug}"')
    toml = toml.replace('district = "青浦区"', f'district = "{district}"')
    (d / "site.toml").write_text(toml, encoding="utf-8")
    return d


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[TestClient, Any, Receiver]]:
    script = {"ok-1": [503, 503], "ok-2": [], "ok-3": [429], "bad-1": [400]}
    with Receiver(script) as recv:
        sites = [EXAMPLE_SITE, make_site(tmp_path, "songjiang", "松江区")]
        settings = ServerSettings(
            db_url=f"sqlite:///{tmp_path / 'o.db'}",
            sites=sites,
            mqtt=None,
            metrics_token=TOKEN,
            outbound_file=targets_file(tmp_path, recv.url),
        )
        app = create_app(settings)
        with TestClient(app) as c:
            accounts = app.state.accounts
            accounts.add_user("qp-admin", PASSWORD, "district_admin", "district:青浦区")
            accounts.add_user("sj-admin", PASSWORD, "district_admin", "district:松江区")
            accounts.add_user("qp-insp", PASSWORD, "inspector", "district:青浦区")
            yield c, app, recv


def enqueue(app: Any, keys: list[str], target: str = "province", site: str = "qingpu") -> None:
    rows = [
        q.delivery_row(target=target, key=k, kind="evaluation", body={"k": k}, at_ms=0, site=site)
        for k in keys
    ]
    with app.state.store.engine.begin() as conn:
        q.enqueue_many(conn, rows)
    app.state.outbound.deliverer.wake()


def statuses(app: Any) -> dict[str, str]:
    with app.state.store.engine.connect() as conn:
        rows = conn.execute(select(outbound_deliveries.c.key, outbound_deliveries.c.status))
        return {k: s for k, s in rows}


def samples(text: str) -> dict[str, float]:
    """``name{labels}`` -> value, from the exposition text."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def scrape(c: TestClient) -> str:
    r = c.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200
    return r.text


def sign_in(c: TestClient, user: str) -> dict[str, str]:
    c.cookies.clear()
    r = c.post("/api/login", json={"username": user, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"X-CSRF-Token": r.json()["csrf"]}


def test_metrics_count_deliveries_retries_and_the_dead_per_target(
    served: tuple[TestClient, Any, Receiver],
) -> None:
    c, app, recv = served
    before = samples(scrape(c))
    assert before['ww_outbound_backlog{target="province"}'] == 0
    assert before['ww_outbound_delivered_total{target="songjiang"}'] == 0
    assert not any(k.startswith("ww_outbound_last_success") for k in before)

    enqueue(app, ["ok-1", "ok-2", "ok-3", "bad-1"])
    wait_until(lambda: "pending" not in statuses(app).values(), timeout=10)
    assert statuses(app) == {"ok-1": "delivered", "ok-2": "delivered", "ok-3": "delivered"} | {
        "bad-1": "dead"
    }
    text = scrape(c)
    assert "# TYPE ww_outbound_delivered_total counter" in text
    assert "# TYPE ww_outbound_backlog gauge" in text
    got = samples(text)
    assert got['ww_outbound_delivered_total{target="province"}'] == 3
    assert got['ww_outbound_retried_total{target="province"}'] == 3  # 503, 503, 429
    assert got['ww_outbound_dead_total{target="province"}'] == 1  # the 400
    assert got['ww_outbound_backlog{target="province"}'] == 0
    assert got['ww_outbound_dead_deliveries{target="province"}'] == 1
    last = got['ww_outbound_last_success_timestamp_seconds{target="province"}']
    with app.state.store.engine.connect() as conn:
        newest = max(
            r.delivered_ms for r in conn.execute(select(outbound_deliveries)) if r.delivered_ms
        )
    assert last == newest / 1000
    assert got['ww_outbound_delivered_total{target="songjiang"}'] == 0
    assert 'ww_outbound_last_success_timestamp_seconds{target="songjiang"}' not in got
    print(f"\n{chr(10).join(ln for ln in text.splitlines() if ln.startswith('ww_outbound'))}")

    # switched off for qingpu, new deliveries wait: the backlog shows them
    h = sign_in(c, "qp-admin")
    body = {"site": "qingpu", "enabled": False, "reason": "provincial system down"}
    assert c.post("/api/outbound/targets/province/switch", json=body, headers=h).status_code == 200
    enqueue(app, ["later-1", "later-2"])
    wait_until(lambda: samples(scrape(c))['ww_outbound_backlog{target="province"}'] == 2)
    assert "later-1" not in recv.seen
    body["enabled"] = True
    assert c.post("/api/outbound/targets/province/switch", json=body, headers=h).status_code == 200
    wait_until(lambda: samples(scrape(c))['ww_outbound_backlog{target="province"}'] == 0)
    assert samples(scrape(c))['ww_outbound_delivered_total{target="province"}'] == 5


def test_the_switch_is_the_district_admins_for_its_units_and_audited(
    served: tuple[TestClient, Any, Receiver],
) -> None:
    c, app, _ = served
    url = "/api/outbound/targets/{}/switch"
    off = {"site": "qingpu", "enabled": False, "reason": "maintenance 14:00-15:00"}

    h = sign_in(c, "qp-insp")
    assert c.post(url.format("province"), json=off, headers=h).status_code == 403  # no right
    h = sign_in(c, "sj-admin")
    assert c.post(url.format("province"), json=off, headers=h).status_code == 403  # outside
    h = sign_in(c, "qp-admin")
    assert c.post(url.format("nowhere"), json=off, headers=h).status_code == 404
    # songjiang's target does not serve qingpu
    assert c.post(url.format("songjiang"), json=off, headers=h).status_code == 404
    # never a URL or host in the body
    sneaky = off | {"url": "http://169.254.169.254/latest"}
    assert c.post(url.format("province"), json=sneaky, headers=h).status_code == 422
    assert c.post(url.format("province"), json=off | {"reason": ""}, headers=h).status_code == 422

    r = c.post(url.format("province"), json=off, headers=h)
    assert r.status_code == 200 and r.json() == {"ok": True}
    view = c.get("/api/outbound").json()
    (province,) = view["targets"]  # songjiang's target serves none of qingpu's units
    assert province["name"] == "province"
    assert province["units"] == [
        {
            "site": "qingpu",
            "enabled": False,
            "by": "qp-admin",
            "at_ms": province["units"][0]["at_ms"],
        }
    ]
    assert json.dumps(view).count("127.0.0.1") == 1  # the host, never the URL's path
    assert "/in" not in json.dumps(view)

    with app.state.store.engine.connect() as conn:
        (entry,) = conn.execute(
            select(audit_log).where(audit_log.c.action == "outbound_switch")
        ).all()
    assert entry.username == "qp-admin" and entry.site == "qingpu"
    detail = entry.detail if isinstance(entry.detail, dict) else json.loads(entry.detail)
    assert detail == {
        "target": "province",
        "enabled": False,
        "was": True,
        "reason": "maintenance 14:00-15:00",
    }
    h = sign_in(c, "sj-admin")
    (sj,) = c.get("/api/outbound").json()["targets"]
    assert sj["name"] == "songjiang" and [u["enabled"] for u in sj["units"]] == [True]
