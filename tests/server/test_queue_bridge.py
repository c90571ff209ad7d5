"""The queue-system bridge end to end: a recorded morning of calls replayed over HTTP
(a real uvicorn, a service token granted ``queue``) opens sessions on real agents over a
real Mosquitto, and the stored sessions and the export carry ticket, matter, priority
category and case number. Also: idempotency, the H-PRIORITY and farewell measures, and
sign-ins from the terminal (badge/PIN) through the ingest."""

from __future__ import annotations

import csv
import io
import json
import random
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import uvicorn
from gpiozero.pins.mock import MockFactory
from sqlalchemy import select

from agent import protocol as p
from agent.app import ScriptedPump, WindowAgent, build_agent
from agent.config import BrokerConfig, load_site
from agent.localbroker import MosquittoBroker, free_port, wait_port
from agent.perception import EXEMPLARY, ScriptedClerk
from agent.transport import LinkState
from server.api.app import ServerSettings, create_app
from server.ingest import IngestSettings
from server.metrics.measures import Scope, compute
from server.metrics.periods import period_bounds
from server.queue_replay import read_day, replay
from server.store.db import Store, StoredEvent
from server.store.schema import audit_log, roster, sessions
from tests.conftest import EXAMPLE_SITE, REPO
from tests.server.test_measures import Fleet, ms
from tests.waiting import wait_until

DAY = REPO / "deploy" / "queue" / "sample-day.jsonl"
WINDOWS = ("w02", "w03", "w04")  # w01 is the front desk: no calls


@pytest.fixture
def hall(broker: MosquittoBroker, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The aggregator on a real port with its ingest on the broker, a queue token, and
    the three windows' real agents (scripted clerks, MockFactory pins)."""
    port = free_port()
    settings = ServerSettings(
        db_url=f"sqlite:///{tmp_path / 'ww.db'}",
        sites=[EXAMPLE_SITE],
        mqtt=IngestSettings(host=broker.host, port=broker.port, client_id="ww-test-queue"),
    )
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    web = threading.Thread(target=server.run, daemon=True)
    web.start()
    wait_port("127.0.0.1", port, timeout=20)
    wait_until(lambda: app.state.ingest is not None and app.state.ingest.wait_connected(0.1), 20)
    store: Store = app.state.store
    for w in WINDOWS:
        store.add_clerk(f"c-qingpu-{w[1:]}", f"clerk {w}", "qingpu")
    _, token = app.state.tokens.create("queue-vendor", "site:qingpu", ["queue"], "test")
    site = load_site(EXAMPLE_SITE)
    agents: list[WindowAgent] = []
    factories: dict[str, MockFactory] = {}
    for w in WINDOWS:
        factories[w] = MockFactory()
        agents.append(
            build_agent(
                site,
                site.window(w),
                tmp_path / "agents",
                pin_factory=factories[w],
                pump=ScriptedPump(ScriptedClerk(EXEMPLARY, random.Random(3)), step_s=0.05),
                broker=BrokerConfig(host=broker.host, port=broker.port),
            )
        )
    for a in agents:
        a.start()
    try:
        up = lambda: all(a.link.link is not LinkState.OFFLINE for a in agents)  # noqa: E731
        wait_until(up, 15, "agents connected")
        wait_until(  # each terminal's retained state reached the server
            lambda: all(w["state"] for w in store.windows("qingpu") if w["window"] in WINDOWS),
            15,
            "terminal states",
        )
        yield {
            "url": f"http://127.0.0.1:{port}",
            "token": token,
            "store": store,
            "agents": agents,
            "factories": factories,
            "site": site,
        }
    finally:
        for a in agents:
            a.stop()
        server.should_exit = True
        web.join(timeout=15)


def test_a_replayed_morning_opens_the_sessions_and_the_export_carries_the_calls(
    hall: dict[str, Any],
) -> None:
    store: Store = hall["store"]
    day = read_day(DAY)
    calls = [c for c in day if "call_id" in c]
    headers = {"Authorization": f"Bearer {hall['token']}"}
    with httpx.Client(base_url=hall["url"], headers=headers, timeout=30) as http:
        # 600x: the morning's 105 minutes in about 10 s. The last call at w04 comes 180 s
        # before its clerk signs out: 0.3 s here, time for a loaded terminal to open
        # that session before the shift ends (at 6000x, 30 ms, it sometimes did not).
        report = replay(day, lambda path, body: http.post(path, json=body), speed=600.0)
        assert report.failed == [] and report.sent == len(calls) == 24
        assert report.delivered == 24 and report.signed == 4
        # The last call at each window ends with the finish key.
        time.sleep(0.5)
        for w in WINDOWS:
            finish = hall["site"].window(w).gpio.finish_button
            f = hall["factories"][w]
            f.pin(finish).drive_low()
            time.sleep(0.08)
            f.pin(finish).drive_high()

        def stored() -> list[dict[str, Any]]:
            with store.engine.connect() as conn:
                return [dict(r._mapping) for r in conn.execute(select(sessions))]

        wait_until(lambda: len(stored()) == 24, 60, "24 sessions stored")
        rows = {r["ticket"]: r for r in stored()}
        assert set(rows) == {c["ticket"] for c in calls}
        for c in calls:
            r = rows[c["ticket"]]
            assert (r["site"], r["window"]) == ("qingpu", c["window"])
            assert r["source"] == "queue" and r["call_id"] == c["call_id"]
            assert (r["matter_code"], r["matter_name"]) == (c["matter_code"], c["matter_name"])
            assert r["priority_category"] == c["priority_category"]
            assert r["priority"] == (c["priority_category"] is not None)
            assert r["case_number"] == c["case_number"]
            assert r["clerk_id"] == c["clerk_id"]  # signed in by the queue system
        # A replay of the same morning opens nothing new: every call is a duplicate.
        again = replay(day, lambda path, body: http.post(path, json=body), speed=6000.0)
        assert (again.sent, again.duplicates) == (0, 24)
        time.sleep(1.0)
        assert len(stored()) == 24
        # The queue token may call, not read.
        month = datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m")
        refused = http.get("/api/export/sessions.csv", params={"period": month, "site": "qingpu"})
    assert refused.status_code == 403
    token = _read_token(hall)
    with httpx.Client(
        base_url=hall["url"], headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as http:
        got = http.get("/api/export/sessions.csv", params={"period": month, "site": "qingpu"})
    assert got.status_code == 200, got.text
    table = list(csv.DictReader(io.StringIO(got.content.decode("utf-8-sig"))))
    by_ticket = {row["ticket"]: row for row in table}
    for c in calls:
        row = by_ticket[c["ticket"]]
        assert row["matter_name"] == c["matter_name"]
        assert row["priority_category"] == (c["priority_category"] or "")
        assert row["case_number"] == c["case_number"]


def _read_token(hall: dict[str, Any]) -> str:
    from server.tokens import Tokens

    tokens = Tokens(hall["store"].engine)
    _, value = tokens.create("reader", "site:qingpu", ["read"], "test")
    return value


# --------------------------------------------------------------------- store level


def test_priority_and_farewell_measures_agree_between_rollups_and_sessions(
    store: Store,
) -> None:
    f = Fleet()
    summary_v2: Any = p.V2_CONTRACT.model_for("session_summary")
    evs: list[p.EventHeader] = []
    for i, (cat, closed_by, smiled) in enumerate(
        [
            ("elderly", "evaluation", True),
            ("pregnant", "next_call", False),
            (None, "evaluation", True),
            (None, "finish_key", None),
        ]
    ):
        base = f.session("w03", ms(2026, 11, 3, 9 + i, 0))
        data = base.model_dump() | {
            "schema_version": 2,
            "closed_by": closed_by,
            "priority": cat is not None,
            "priority_category": cat,
            "smiled_at_farewell": smiled,
        }
        evs.append(summary_v2.model_validate(data))
    store.insert_events([StoredEvent(e, e.ts_ms) for e in evs])
    start, end = period_bounds("2026-11")
    for use_rollups in (True, False):
        m = compute(store.engine, Scope(site="qingpu"), start, end, rollups=use_rollups)[None]
        assert m.sessions == 4 and m.priority_sessions == 2
        assert m.priority_share == 0.5
        assert m.priority_own_session_rate == 0.5  # the pregnant citizen's was cut short
        assert m.farewell_smile_rate == round(2 / 3, 4)  # one terminal did not say


def test_a_version_1_session_is_joined_with_its_call_by_ticket(store: Store) -> None:
    opened = ms(2026, 11, 3, 10, 0)
    store.add_call(
        {
            "call_id": "qp-1",
            "site": "qingpu",
            "window": "w03",
            "ticket": "B007",
            "matter_code": "310118-0042",
            "matter_name": "居住证办理",
            "priority_category": "military",
            "clerk_id": None,
            "case_number": "QP1",
            "called_ms": opened - 20_000,
            "received_ms": opened - 20_000,
            "cmd_id": str(uuid.uuid4()),
            "sent": True,
            "token": "t",
        }
    )
    f = Fleet()
    s = f.session("w03", opened)
    v1 = s.model_copy(update={"priority": True})
    # a version 1 summary has no ticket: the terminal's session_opened did; here the
    # summary carries it as version 2 would, without the call's other fields
    summary_v2: Any = p.V2_CONTRACT.model_for("session_summary")
    ev = summary_v2.model_validate(v1.model_dump() | {"schema_version": 2, "ticket": "B007"})
    store.insert_events([StoredEvent(ev, ev.ts_ms)])
    with store.engine.connect() as conn:
        row = conn.execute(select(sessions)).one()._mapping
    assert (row["call_id"], row["matter_name"], row["priority_category"]) == (
        "qp-1",
        "居住证办理",
        "military",
    )
    assert row["case_number"] == "QP1"


def _signed(store: Store, clerk: str | None, action: str = "sign_in", **kw: Any) -> Any:
    return p.ClerkAtTerminal(
        event_id=uuid.uuid4(),
        site="qingpu",
        window="w03",
        seq=kw.pop("seq", 1),
        boot_id=uuid.UUID(int=9),
        ts_ms=kw.pop("ts", ms(2026, 11, 3, 8, 50)),
        action=action,
        method=kw.pop("method", "badge"),
        clerk_id=clerk,
        **kw,
    )


def test_sign_ins_at_the_terminal_make_shifts_through_the_one_rule(store: Store) -> None:
    store.add_clerk("c-li", "李敏", "qingpu")
    store.add_clerk("c-far", "远方", "xuhui-elsewhere")
    f = Fleet()
    s = f.session("w03", ms(2026, 11, 3, 9, 0))
    badge = _signed(store, "c-li", seq=100)
    refused = _signed(store, None, seq=101, refused="other_centre", ts=ms(2026, 11, 3, 8, 51))
    foreign = _signed(store, "c-far", seq=102, ts=ms(2026, 11, 3, 8, 52), method="pin")
    store.insert_events([StoredEvent(e, e.ts_ms) for e in [badge, refused, foreign, *f.events]])
    with store.engine.connect() as conn:
        shifts = [dict(r._mapping) for r in conn.execute(select(roster))]
        row = conn.execute(select(sessions.c.clerk_id)).one()
        audit = [dict(r._mapping) for r in conn.execute(select(audit_log))]
    assert [(x["clerk_id"], x["source"], x["end_ms"]) for x in shifts] == [("c-li", "badge", None)]
    assert shifts[0]["recorded_by"] == "terminal:qingpu/w03"
    assert row.clerk_id == "c-li" and s.session_id is not None
    assert [a["action"] for a in audit] == ["terminal_sign_in_refused"]
    assert json.loads(json.dumps(audit[0]["detail"]))["clerk_id"] == "c-far"
    out = _signed(store, "c-li", "sign_out", seq=103, ts=ms(2026, 11, 3, 17, 0))
    store.insert_events([StoredEvent(out, out.ts_ms)])
    with store.engine.connect() as conn:
        (end,) = conn.execute(select(roster.c.end_ms)).one()
    assert end == ms(2026, 11, 3, 17, 0)


def test_a_refused_sign_in_stores_nothing_so_the_retry_is_no_duplicate(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    app = create_app(
        ServerSettings(db_url=f"sqlite:///{tmp_path / 'ww.db'}", sites=[EXAMPLE_SITE], mqtt=None)
    )
    with TestClient(app) as c:
        store: Store = app.state.store
        for clerk in ("c-a", "c-b"):
            store.add_clerk(clerk, clerk, "qingpu")
        _, token = app.state.tokens.create("queue", "site:qingpu", ["queue"], "test")
        c.headers["Authorization"] = f"Bearer {token}"
        t0 = ms(2026, 11, 3, 9, 0)
        store.sign_in("c-a", "qingpu", "w03", t0)
        f = Fleet()
        f.session("w03", t0 + 600_000)  # c-a served at 09:10
        store.insert_events([StoredEvent(e, e.ts_ms) for e in f.events])
        body = {"call_id": "c-1", "site": "qingpu", "window": "w03", "ticket": "A1"}
        # c-b "from 09:05" would take the session c-a served: refused, nothing stored
        late = {"clerk_id": "c-b", "called_ms": t0 + 300_000}
        early = c.post("/api/queue/v1/calls", json=body | late)
        assert early.status_code == 409 and "c-a served" in early.text
        assert store.call("c-1") is None
        again = c.post("/api/queue/v1/calls", json=body | {"clerk_id": "c-b"})  # now
        assert again.status_code == 201 and again.json()["signed_in"] is True
        assert again.json()["sent"] is False  # no broker here: stored, the bell remains
        assert c.post("/api/queue/v1/calls", json=body).json()["duplicate"] is True
