"""Alert push end to end (server/outbound/alerts.py): alerts raised by the sweep's and
the ingest's transactions are planned, queued and delivered by the outbound queue's
Deliverer to robots this test starts on 127.0.0.1, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import insert, select

from agent.protocol import Evaluated, Rating
from server.outbound import channels
from server.outbound.alerts import AlertPush, push_rules
from server.outbound.queue import Deliverer
from server.outbound.targets import OutboundConfig, OutboundConfigError, check
from server.policy.rows import AlertRow
from server.store.db import Store
from server.store.schema import alert_pushes, outbound_deliveries, units
from server.store.writes import Batch, StoredEvent

SECRET = "SECe2e-secret"


class Robots(http.server.BaseHTTPRequestHandler):
    """Every robot path on one server: ``/<name>``; DingTalk ones check 加签."""

    got: dict[str, list[dict[str, Any]]]

    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        name = parts.path.strip("/")
        query = parse_qs(parts.query)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        code = 0
        if name.startswith("ding"):
            ts = int(query["timestamp"][0])
            want = base64.b64encode(
                hmac.new(SECRET.encode(), f"{ts}\n{SECRET}".encode(), hashlib.sha256).digest()
            ).decode()
            fresh = abs(time.time() * 1000 - ts) <= 3_600_000
            code = 0 if fresh and query.get("sign") == [want] else 310000
        if code == 0:
            type(self).got.setdefault(name, []).append(body)
        out = json.dumps({"errcode": code, "errmsg": "ok" if code == 0 else "sign"}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def robots() -> Iterator[tuple[str, dict[str, list[dict[str, Any]]]]]:
    handler: type[Robots] = type("R", (Robots,), {"got": {}})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", handler.got
    srv.shutdown()
    srv.server_close()


def outbound(tmp_path: Path, base: str) -> OutboundConfig:
    (tmp_path / "ding.secret").write_text(SECRET + "\n")
    (tmp_path / "token").write_text("tok\n")
    common = {"token_file": str(tmp_path / "token"), "kinds": ["alert"]}
    limit = {"max_messages": 5, "per_minutes": 10, "dashboard_url": "https://ww.example/"}
    targets = [
        common
        | {
            "name": "qingpu-ding",
            "type": "dingtalk",
            "url": f"{base}/ding-qingpu",
            "secret_file": str(tmp_path / "ding.secret"),
            "districts": ["青浦区"],
            "options": limit,
        },
        common
        | {
            "name": "qingpu-wecom",
            "type": "wecom",
            "url": f"{base}/wecom-qingpu",
            "sites": ["qingpu"],
            "options": limit | {"msgtype": "text"},
        },
        common
        | {
            "name": "xuhui-wecom",
            "type": "wecom",
            "url": f"{base}/wecom-xuhui",
            "districts": ["徐汇区"],
        },
    ]
    data = {"allow_hosts": ["127.0.0.1"], "backoff_s": 0.01, "backoff_cap_s": 0.05}
    return check(tmp_path / "outbound.toml", data | {"target": targets})


def deliver_all(store: Store, cfg: OutboundConfig, clock: list[int]) -> None:
    d = Deliverer(store.engine, cfg, channels.senders(), clock=lambda: clock[0])
    while d.run_once():
        pass


def offline(i: int, site: str, at: int) -> AlertRow:
    return {
        "alert_id": f"offline-{site}-w{i:03}-{at}",
        "site": site,
        "window": f"w{i:03}",
        "kind": "offline",
        "ts_ms": at,
        "detail": {},
    }


def test_a_storm_of_200_sends_five_messages_per_target_and_routes_by_district(
    store: Store, tmp_path: Path, robots: tuple[str, dict[str, list[dict[str, Any]]]]
) -> None:
    base, got = robots
    with store.engine.begin() as conn:
        conn.execute(
            insert(units).values(
                site="xujiahui",
                name="徐汇区行政服务中心",
                district="徐汇区",
                unit_kind="district_centre",
                timezone="Asia/Shanghai",
            )
        )
    cfg = outbound(tmp_path, base)
    clock = [int(time.time() * 1000)]
    push = AlertPush(cfg, clock=lambda: clock[0])
    store.outbound_hooks = (push,)
    t0 = clock[0]
    storm = [offline(i, "qingpu", t0) for i in range(200)]
    raised = store.raise_alerts([*storm, *(offline(i, "xujiahui", t0) for i in range(3))])
    assert len(raised) == 203
    assert store.raise_alerts(storm) == []  # raised again: nothing new, nothing queued
    deliver_all(store, cfg, clock)
    clock[0] += 61_000  # the sweep's next minute: the folded storm is summarised
    store.raise_alerts([])
    deliver_all(store, cfg, clock)
    clock[0] += 61_000
    store.raise_alerts([])
    deliver_all(store, cfg, clock)

    ding = got["ding-qingpu"]
    assert len(ding) == 5 and [b["msgtype"] for b in ding] == ["markdown"] * 5
    assert "提醒汇总 196 条" in ding[-1]["markdown"]["title"]
    assert "终端离线 196" in ding[-1]["markdown"]["text"]
    wecom = [b["text"]["content"] for b in got["wecom-qingpu"]]
    assert len(wecom) == 5 and wecom[-1].startswith("【暖心窗口】提醒汇总 196 条")
    assert all("青浦区行政服务中心" in c for c in wecom)
    xuhui = [b["markdown"]["content"] for b in got["wecom-xuhui"]]
    assert len(xuhui) == 3 and all("徐汇区行政服务中心" in c for c in xuhui)
    assert not any("青浦" in c for c in xuhui)
    with store.engine.connect() as conn:
        kinds = conn.execute(select(outbound_deliveries.c.kind, outbound_deliveries.c.status)).all()
        states = conn.execute(select(alert_pushes.c.target, alert_pushes.c.state)).all()
    assert len(kinds) == 13 and {s for _, s in kinds} == {"delivered"}
    assert sorted(k for k, _ in kinds).count("alert_summary") == 2
    per_target = {t: sorted(s for tt, s in states if tt == t) for t, _ in states}
    assert per_target["qingpu-ding"] == ["sent"] * 4 + ["summarised"] * 196


def test_a_bad_review_and_a_last_will_from_the_ingest_reach_the_robots(
    store: Store, tmp_path: Path, robots: tuple[str, dict[str, list[dict[str, Any]]]]
) -> None:
    base, got = robots
    cfg = outbound(tmp_path, base)
    clock = [int(time.time() * 1000)]
    store.outbound_hooks = (AlertPush(cfg, clock=lambda: clock[0]),)
    review = Evaluated(
        event_id=uuid.uuid4(),
        site="qingpu",
        window="w03",
        seq=1,
        boot_id=uuid.UUID(int=7),
        ts_ms=clock[0] - 5_000,
        rating=Rating.VERY_DISSATISFIED,
    )
    store.write_batch(Batch(events=[StoredEvent(review, clock[0])]))
    store.write_batch(Batch(events=[StoredEvent(review, clock[0])]))  # a replay: once
    store.set_availability("qingpu", "w05", False, clock[0])
    deliver_all(store, cfg, clock)
    ding = [b["markdown"] for b in got["ding-qingpu"]]
    titles = [m["title"].split(" · ")[0] for m in ding]
    assert titles == ["【暖心窗口】差评", "【暖心窗口】终端离线"]
    assert f"https://ww.example/#/cases/{review.event_id}" in ding[0]["text"]
    assert "非常不满意" in ding[0]["text"]
    assert len(got["wecom-qingpu"]) == 2 and "wecom-xuhui" not in got


def test_alert_options_are_checked_naming_the_target(tmp_path: Path) -> None:
    data = {
        "allow_hosts": ["127.0.0.1"],
        "target": [
            {
                "name": "ops",
                "type": "wecom",
                "url": "http://127.0.0.1:9/x",
                "kinds": ["alert"],
                "options": {"quiet_hours": "22-7", "max_messages": 5},
            }
        ],
    }
    with pytest.raises(OutboundConfigError, match=r"target\[0\] \(ops\): options.quiet_hours"):
        push_rules(check(tmp_path / "outbound.toml", data))
    data["target"][0]["options"] = {"max_mesages": 5}  # type: ignore[index]
    with pytest.raises(OutboundConfigError, match=r"options\.max_mesages: unknown"):
        push_rules(check(tmp_path / "outbound.toml", data))
    data["target"][0]["options"] = {"quiet_hours": "22:00-07:00", "quiet": "drop"}  # type: ignore[index]
    (rules,) = push_rules(check(tmp_path / "outbound.toml", data))
    assert rules.quiet is not None and rules.quiet.mode == "drop" and rules.max_messages == 5


def test_the_servers_outbound_hooks_alert_push_and_has_its_senders(
    store: Store, tmp_path: Path, robots: tuple[str, dict[str, list[dict[str, Any]]]]
) -> None:
    """What create_app builds (server/outbound/service.py): with alerting targets the
    store's hooks push alerts and the Deliverer has the wecom/dingtalk/smtp senders."""
    from server.outbound.service import Outbound

    base, got = robots
    out = Outbound(store, outbound(tmp_path, base))
    assert any(isinstance(h, AlertPush) for h in store.outbound_hooks)
    store.raise_alerts([offline(1, "qingpu", int(time.time() * 1000))])
    while out.deliverer.run_once():
        pass
    assert sorted(got) == ["ding-qingpu", "wecom-qingpu"]
    assert {k for k in ("wecom", "dingtalk", "smtp", "http")} <= set(out.deliverer.senders)
