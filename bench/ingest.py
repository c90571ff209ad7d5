"""Ingest benchmark through a real Mosquitto: ``python -m bench.ingest``.

Prints, measured in one run on this machine:
  * raw broker throughput: a bare paho subscriber receiving QoS 1 events (the baseline);
  * ingest throughput into SQLite and PostgreSQL (whole sessions' events, so the
    measure tables, alerts and cases are written too), and its ratio to the baseline
    (goal >= 0.5);
  * publish-to-stored latency (after commit) at a paced 1,000 events/s, p50/p99
    (goal p99 <= 50 ms).
The publisher runs in a process of its own (the fleet is other machines); times are
wall-clock across the two processes. Nothing is asserted: figures to compare, not tests.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from sqlalchemy import create_engine, text

from agent.config import load_site
from agent.localbroker import MosquittoBroker
from agent.protocol import Channel, EventHeader, Rating, topic
from bench.city.model import EVENTS_PER_SESSION, draft_for
from server.ingest import Ingest, IngestSettings
from server.store.db import Store

REPO = Path(__file__).resolve().parent.parent
SITE = REPO / "firmware_config" / "sites" / "qingpu"
WINDOWS = [f"w{i:02d}" for i in range(1, 13)]


def session_events(w: str, first_seq: int, t: int, k: int) -> list[EventHeader]:
    """One service session's events as an agent sends them (the city run's script,
    ``bench.city.model.draft_for``); every 5th misses the greeting smile (an alert),
    every 10th is rated 不满意 (a case)."""
    sid = uuid.uuid4()
    rating = Rating.DISSATISFIED if k % 10 == 9 else Rating.SATISFIED
    out = []
    for step in range(EVENTS_PER_SESSION):
        d = draft_for(step, sid, t, t + step * 15_000, rating, smiled=k % 5 != 4)
        out.append(
            d.kind(
                **d.fields,
                event_id=uuid.uuid4(),
                site="qingpu",
                window=w,
                seq=first_seq + step,
                boot_id=uuid.UUID(int=3),
                ts_ms=d.ts_ms,
                session_id=d.session_id,
                clauses=d.clauses,
            )
        )
    return out


def payloads(n: int) -> list[tuple[str, str, str]]:
    """``n`` events: whole sessions, round robin over the 12 windows, so a third of them
    (evaluations, summaries) also write the measure tables, alerts and cases."""
    evs: list[EventHeader] = []
    seqs = dict.fromkeys(WINDOWS, 1)
    t = time.time_ns() // 1_000_000
    k = 0
    while len(evs) < n:
        w = WINDOWS[k % len(WINDOWS)]
        evs += session_events(w, seqs[w], t + k * 1000, k)
        seqs[w] += EVENTS_PER_SESSION
        k += 1
    return [
        (str(ev.event_id), topic(ev.site, ev.window, Channel.EVENT), ev.model_dump_json())
        for ev in evs[:n]
    ]


def publish_all(
    host: str, port: int, msgs: list[tuple[str, str, str]], rate: float | None = None
) -> dict[str, float]:
    """Publish QoS 1; return event id -> wall-clock send time. ``rate`` paces events/s."""
    pub = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{uuid.uuid4().hex[:6]}"
    )
    pub.max_inflight_messages_set(500)
    pub.connect(host, port)
    pub.loop_start()
    sent: dict[str, float] = {}
    infos = []
    t0 = time.perf_counter()
    for i, (eid, t, body) in enumerate(msgs):
        if rate:
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        sent[eid] = time.time()
        infos.append(pub.publish(t, body, qos=1))
    for info in infos:
        info.wait_for_publish(60)
    pub.disconnect()
    pub.loop_stop()
    return sent


def _publisher(host: str, port: int, n: int, rate: float | None, out: str) -> None:
    sent = publish_all(host, port, payloads(n), rate)
    Path(out).write_text(json.dumps(sent), encoding="utf-8")


def publish_elsewhere(broker: MosquittoBroker, n: int, rate: float | None) -> dict[str, float]:
    """Publish from a process of its own, as the fleet does: a publisher sharing the
    measured process's interpreter lock would be measured along with it."""
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "sent.json")
        proc = multiprocessing.get_context("spawn").Process(
            target=_publisher, args=(broker.host, broker.port, n, rate, out)
        )
        proc.start()
        proc.join(600)
        sent: dict[str, float] = json.loads(Path(out).read_text(encoding="utf-8"))
        return sent


def raw_throughput(broker: MosquittoBroker, n: int) -> float:
    """Events/s a bare QoS 1 subscriber receives: the broker + client baseline."""
    got = threading.Event()
    count = 0

    def on_message(_c: Any, _u: Any, _m: Any) -> None:
        nonlocal count
        count += 1
        if count >= n:
            got.set()

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-raw-sub")
    sub.max_inflight_messages_set(1000)
    sub.on_message = on_message
    sub.on_connect = lambda c, *_: c.subscribe("ww/v1/+/+/event", qos=1)
    sub.connect(broker.host, broker.port)
    sub.loop_start()
    time.sleep(0.5)
    done_at = 0.0

    def on_message_timed(c: Any, u: Any, m: Any) -> None:
        nonlocal done_at
        on_message(c, u, m)
        done_at = time.time()

    sub.on_message = on_message_timed
    sent = publish_elsewhere(broker, n, None)
    got.wait(120)
    sub.disconnect()
    sub.loop_stop()
    return n / (done_at - min(sent.values()))


def ingest_run(
    broker: MosquittoBroker, url: str, n: int, rate: float | None
) -> tuple[float, list[float]]:
    """(events/s until all stored, publish-to-stored latencies in ms)."""
    store = Store(url)
    store.create()
    store.register_site(load_site(SITE))
    client_id = f"bench-{uuid.uuid4().hex[:6]}"
    ingest = Ingest(store, IngestSettings(port=broker.port, client_id=client_id))
    stored_at: dict[str, float] = {}
    done = threading.Event()

    def on_stored(msg: dict[str, Any]) -> None:
        if msg.get("type") == "event":
            stored_at[msg["event"]["event_id"]] = time.time()
            if len(stored_at) >= n:
                done.set()

    ingest.add_listener(on_stored)
    ingest.start()
    ingest.wait_connected()
    time.sleep(0.3)
    sent = publish_elsewhere(broker, n, rate)
    done.wait(300)
    elapsed = max(stored_at.values(), default=time.time()) - min(sent.values())
    ingest.stop()
    store.close()
    forget_session(broker, client_id)
    lat = [(stored_at[e] - sent[e]) * 1000 for e in sent if e in stored_at]
    return len(stored_at) / elapsed, lat


def forget_session(broker: MosquittoBroker, client_id: str) -> None:
    """End a finished run's persistent session: otherwise the broker keeps queueing every
    later run's events for it and the later runs measure that extra work."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.connect(broker.host, broker.port, clean_start=True)  # session expiry 0: gone on close
    c.loop_start()
    time.sleep(0.3)
    c.disconnect()
    c.loop_stop()


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=1000)[int(q * 10) - 1] if len(values) > 1 else values[0]


def fresh_pg(base: str) -> tuple[str, Callable[[], None]]:
    name = f"ww_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
        # Dropping the previous run's database leaves a checkpoint's worth of writes
        # behind; flush them now so they do not land inside the next measurement.
        c.execute(text("CHECKPOINT"))

    def drop() -> None:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return base.rsplit("/", 1)[0] + f"/{name}", drop


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--latency-events", type=int, default=10_000)
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, MosquittoBroker(Path(tmp) / "mq") as broker:
        raw = raw_throughput(broker, args.events)
        print(f"baseline  raw broker QoS1 subscriber: {raw:9.0f} events/s")
        for name in ("sqlite", "postgresql"):
            if name == "sqlite":
                url, drop = f"sqlite:///{tmp}/bench.db", (lambda: None)
            else:
                url, drop = fresh_pg(args.pg)
            try:
                rate, _ = ingest_run(broker, url, args.events, None)
                print(f"ingest    {name:10s} {rate:9.0f} events/s   ratio to raw: {rate / raw:.2f}")
            finally:
                drop()
            if name == "sqlite":
                url = f"sqlite:///{tmp}/bench-lat.db"
            else:
                url, drop = fresh_pg(args.pg)
            try:
                _, lat = ingest_run(broker, url, args.latency_events, args.rate)
                print(
                    f"latency   {name:10s} at {args.rate:.0f}/s: p50 {pct(lat, 50):6.1f} ms"
                    f"  p99 {pct(lat, 99):6.1f} ms  max {max(lat):6.1f} ms  (n={len(lat)})"
                )
            finally:
                drop()


if __name__ == "__main__":
    main()
