"""Evaluation forwarding end to end: a demo hour of a hall's evaluations stored exactly
once by a receiver that fails 30 % of requests, across a server SIGKILLed mid-run.

Everything is on loopback: the receiver is an http.server this test starts, the server a
subprocess (``create_app`` with an outbound file, under uvicorn) on the test's database.
"""

from __future__ import annotations

import http.server
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from agent import protocol as p
from agent.config import load_site
from server.api.app import create_app
from server.api.deps import ServerSettings
from server.outbound import evaluations
from server.outbound.service import Outbound
from server.outbound.targets import OutboundConfigError, load
from server.store.db import Batch, Store, StoredEvent
from server.store.schema import outbound_deliveries
from tests.conftest import EXAMPLE_SITE, REPO
from tests.waiting import wait_until

SUMMARY: Any = p.CONTRACT.model_for("session_summary")
HOUR_START = 1_796_000_400_000  # 2026-11-30 09:00 Asia/Shanghai (a Monday)
RATINGS = list(p.Rating)


class Receiver:
    """A 好差评 endpoint that fails ``fail`` of requests (half 500, half a dropped
    connection) and keeps each evaluation once by its id, counting repeats."""

    def __init__(self, fail: float, seed: int = 18) -> None:
        self.fail = fail
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.stored: dict[str, dict[str, Any]] = {}
        self.answers: Counter[str] = Counter()
        recv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers["Content-Length"]))
                with recv.lock:
                    r = recv.rng.random()
                    if r < recv.fail / 2:
                        recv.answers["500"] += 1
                    elif r < recv.fail:
                        recv.answers["dropped"] += 1
                    else:
                        body = json.loads(data)
                        assert self.headers["Idempotency-Key"] == body["evaluation_id"]
                        if body["evaluation_id"] in recv.stored:
                            recv.answers["duplicate"] += 1
                        else:
                            recv.answers["stored"] += 1
                            recv.stored[body["evaluation_id"]] = body
                if r < recv.fail / 2:
                    self.send_response(500)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif r < recv.fail:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)  # no answer at all
                else:
                    self.send_response(200)
                    self.send_header("Content-Length", "0")
                    self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/evaluations"

    def __enter__(self) -> Receiver:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def demo_hour(windows: int = 12, per_window: int = 10) -> tuple[list[p.EventHeader], int]:
    """A hall's hour: each window's sessions, most rated, some with the queue system's
    ticket and case number, a few suspect presses; returns the events and the count of
    evaluations among them."""
    rng = random.Random(4)
    evs: list[p.EventHeader] = []
    rated = 0
    for w in range(1, windows + 1):
        window, boot, seq = f"w{w:02d}", uuid.uuid4(), 0

        def head(
            ts: int, sid: uuid.UUID | None, window: str = window, boot: uuid.UUID = boot
        ) -> dict[str, Any]:
            nonlocal seq
            seq += 1
            return {
                "event_id": uuid.uuid4(),
                "site": "qingpu",
                "window": window,
                "seq": seq,
                "boot_id": boot,
                "ts_ms": ts,
                "session_id": sid,
            }

        for i in range(per_window):
            sid, opened = uuid.uuid4(), HOUR_START + i * 330_000 + w * 1000
            closed = opened + 300_000
            rating = rng.choice(RATINGS) if rng.random() < 0.9 else None
            queued = rng.random() < 0.7
            if rating is not None:
                evs.append(p.Evaluated(**head(closed, sid), rating=rating))
                rated += 1
            evs.append(
                SUMMARY(
                    **head(closed + 1000, sid),
                    opened_ms=opened,
                    closed_ms=closed,
                    closed_by="evaluation" if rating else "next_call",
                    stood_on_call=True,
                    stand_after_ms=1200,
                    smiled_at_greeting=True,
                    smile_after_ms=2000,
                    smile_peak=0.8,
                    smile_too_broad=False,
                    stood_at_farewell=True,
                    see_off_ms=4000,
                    rating=rating,
                    source="queue" if queued else "bell",
                    ticket=f"A{w:02d}{i:03d}" if queued else None,
                    matter_code="310118-001" if queued else None,
                    case_number=f"QP2026{w:02d}{i:04d}" if queued else None,
                )
            )
        evs.append(
            p.Evaluated(
                **head(HOUR_START + 3_500_000, None),
                rating=p.Rating.VERY_SATISFIED,
                suspect=True,
                suspect_reason="no_session",
            )
        )
        rated += 1
    return evs, rated


def outbound_file(tmp_path: Path, url: str, **extra: Any) -> Path:
    lines = [
        'allow_hosts = ["127.0.0.1"]',
        "backoff_s = 0.05",
        "backoff_cap_s = 0.4",
        "poll_s = 0.1",
        "lease_s = 2",
        "[[target]]",
        'name = "province"',
        'type = "http"',
        f'url = "{url}"',
        'kinds = ["evaluation"]',
        "timeout_s = 1",
        "max_attempts = 100",
        *(f"{k} = {json.dumps(v)}" for k, v in extra.items()),
    ]
    path = tmp_path / "outbound.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


SERVER = """
import sys
from pathlib import Path
import uvicorn
from server.api.app import create_app
from server.api.deps import ServerSettings
app = create_app(ServerSettings(db_url=sys.argv[1], mqtt=None, outbound_file=Path(sys.argv[2])))
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[3]), log_level="warning")
"""


@pytest.fixture
def server_proc(tmp_path: Path) -> Iterator[Any]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(db_url: str, config: Path) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, db_url, str(config), str(free_port())],
            cwd=REPO,
            env=os.environ | {"PYTHONPATH": str(REPO)},
            stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / "server.log", "ab"),  # noqa: SIM115
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def delivered(store: Store) -> Counter[str]:
    with store.engine.connect() as conn:
        return Counter(r.status for r in conn.execute(select(outbound_deliveries.c.status)))


def test_a_demo_hour_is_stored_once_across_failures_and_a_sigkill(
    pg_url: str, tmp_path: Path, server_proc: Any
) -> None:
    evs, rated = demo_hour()
    store = Store(pg_url)
    store.create()
    store.register_site(load_site(EXAMPLE_SITE))
    with Receiver(fail=0.30) as recv:
        config = outbound_file(tmp_path, recv.url)
        Outbound(store, load(config))  # this process ingests: the hook, no deliverer
        first = server_proc(pg_url, config)
        half = len(evs) // 2
        for i in range(0, half, 20):  # ingest batches of 20 messages
            store.write_batch(Batch(events=[StoredEvent(e, e.ts_ms) for e in evs[i : i + 20]]))
        wait_until(lambda: len(recv.stored) >= 20, timeout=30)
        os.kill(first.pid, signal.SIGKILL)  # mid-run: claims in flight, leases held
        first.wait(10)
        at_kill = len(recv.stored)
        for i in range(half, len(evs), 20):
            store.write_batch(Batch(events=[StoredEvent(e, e.ts_ms) for e in evs[i : i + 20]]))
        # a replayed batch (the broker redelivers after an ingest crash) queues nothing
        store.write_batch(Batch(events=[StoredEvent(e, e.ts_ms) for e in evs[:20]]))
        server_proc(pg_url, config)
        wait_until(lambda: delivered(store) == {"delivered": rated}, timeout=60)
        stored, answers = dict(recv.stored), Counter(recv.answers)
    print(f"\nreceiver: {answers} ; stored at the kill {at_kill} ; evaluations {rated}")
    assert len(stored) == rated and at_kill < rated
    assert answers["500"] > 0 and answers["dropped"] > 0
    sent = [e for e in evs if isinstance(e, p.Evaluated)]
    by_id = {str(e.event_id): e for e in sent}
    assert set(stored) == set(by_id)
    cases = 0
    for eid, body in stored.items():
        ev = by_id[eid]
        assert body["level"] == evaluations.LEVELS[ev.rating.value]
        assert body["channel"] == "window evaluator" and body["mapping_version"] == "ww-eval-1"
        assert body["suspect_press"] == ev.suspect and body["window"] == ev.window
        cases += body["case_number"] is not None
        if ev.session_id is None:
            assert body["case_number"] is None and body["ticket"] is None
    assert cases > 40  # the sessions' case numbers rode along
    store.close()


def test_with_no_outbound_file_nothing_is_queued(store: Store) -> None:
    app = create_app(ServerSettings(db_url=store.url, mqtt=None))
    assert app.state.store.outbound_hooks == ()
    assert not app.state.outbound.deliverer.config.targets
    evs, _ = demo_hour(windows=2, per_window=3)
    app.state.store.create()
    app.state.store.write_batch(Batch(events=[StoredEvent(e, e.ts_ms) for e in evs]))
    assert delivered(app.state.store) == {}
    app.state.store.close()


def test_a_target_outside_the_allow_list_stops_the_server_at_start(tmp_path: Path) -> None:
    path = outbound_file(tmp_path, "https://example.org/x")
    settings = ServerSettings(db_url="sqlite://", mqtt=None, outbound_file=path)
    with pytest.raises(OutboundConfigError, match=r"target\[0\]\.url: host 'example.org'"):
        create_app(settings)


def test_a_units_target_takes_only_its_units(store: Store, tmp_path: Path) -> None:
    path = outbound_file(tmp_path, "http://127.0.0.1:9/x", districts=["嘉定区"])
    Outbound(store, load(path))
    evs, _ = demo_hour(windows=1, per_window=2)
    store.write_batch(Batch(events=[StoredEvent(e, e.ts_ms) for e in evs]))
    assert delivered(store) == {}  # qingpu is not in 嘉定区
    t0 = time.time()
    path = outbound_file(tmp_path, "http://127.0.0.1:9/x", sites=["qingpu"])
    Outbound(store, load(path))
    evs, rated = demo_hour(windows=1, per_window=2)
    store.write_batch(Batch(events=[StoredEvent(e, e.ts_ms) for e in evs]))
    assert delivered(store) == {"pending": rated} and time.time() - t0 < 5
