"""Poison messages and stalls: one bad message must not stop storage, and an ingest that
cannot make progress must say so (``health()``, ``/healthz``).

Through a real Mosquitto into SQLite and PostgreSQL.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from agent.localbroker import MosquittoBroker
from agent.protocol import Channel, SessionOpened, topic
from server.api.app import create_app
from server.api.deps import ServerSettings
from server.ingest import Ingest, IngestHealth, IngestSettings
from server.store.db import Store
from tests.conftest import PG_URL
from tests.server.test_ingest import publisher
from tests.waiting import wait_until

WINDOWS = [f"w{i:02d}" for i in range(1, 13)]


def event(seq: int, window: str) -> SessionOpened:
    return SessionOpened(
        event_id=uuid.uuid4(),
        site="qingpu",
        window=window,
        seq=seq,
        boot_id=uuid.UUID(int=3),
        ts_ms=1_700_000_000_000 + seq,
        source="queue",
        ticket=f"A{seq % 1000:03d}",
    )


def refuse_event_id(store: Store, event_id: str | None) -> None:
    """Make the store itself refuse one event (None: every event) with a trigger: a
    message that passes validation and that the database still will not take."""
    sqlite_when = f"NEW.event_id = '{event_id}'" if event_id else "1"
    pg_when = f"NEW.event_id = '{event_id}'" if event_id else "true"
    with store.engine.begin() as conn:
        if store.engine.dialect.name == "sqlite":
            conn.execute(
                text(
                    f"CREATE TRIGGER refuse_one BEFORE INSERT ON events WHEN {sqlite_when}"
                    " BEGIN SELECT RAISE(ABORT, 'refused by the test trigger'); END"
                )
            )
        else:
            conn.execute(
                text(
                    "CREATE FUNCTION refuse_one() RETURNS trigger AS $$ BEGIN"
                    f" IF {pg_when} THEN"
                    " RAISE EXCEPTION 'refused by the test trigger'; END IF;"
                    " RETURN NEW; END $$ LANGUAGE plpgsql"
                )
            )
            conn.execute(
                text(
                    "CREATE TRIGGER refuse_one BEFORE INSERT ON events"
                    " FOR EACH ROW EXECUTE FUNCTION refuse_one()"
                )
            )


class HealthWatch:
    """Polls ``ingest.health()`` every 20 ms in a thread; keeps what it saw."""

    def __init__(self, ingest: Ingest) -> None:
        self.ingest = ingest
        self.seen: list[IngestHealth] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.seen.append(self.ingest.health())

    def __enter__(self) -> HealthWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def test_poison_is_set_aside_and_the_rest_stored(
    broker: MosquittoBroker,
    store: Store,
) -> None:
    """10,000 valid events with, mixed in, a seq past 2**63 - 1, a NUL in a string, a
    health report with an infinite float (all three refused by validation) and an event
    the store itself refuses (set aside as a dead letter): 10,000 stored, each bad one
    counted, healthy throughout, and the broker holds nothing unacknowledged after."""
    good = [event(seq, w) for seq in range(1, 835) for w in WINDOWS][:10_000]
    assert len(good) == 10_000
    refused = event(900, "w07")
    refuse_event_id(store, str(refused.event_id))
    bad_seq = json.loads(event(901, "w02").model_dump_json()) | {"seq": 2**63}
    bad_nul = json.loads(event(902, "w03").model_dump_json()) | {"ticket": "A\x00B"}
    bad_health = (
        '{"site":"qingpu","window":"w04","ts_ms":1700000000000,"uptime_s":5,'
        '"fps":Infinity,"inference_ms":10.0,"outbox_depth":0,'
        '"model_version":"m","config_version":"c"}'
    )
    refused_payload = refused.model_dump_json().encode()
    messages: list[tuple[str, bytes | str]] = [
        (topic(e.site, e.window, Channel.EVENT), e.model_dump_json()) for e in good
    ]
    for at, msg in (
        (2_500, (topic("qingpu", "w02", Channel.EVENT), json.dumps(bad_seq))),
        (5_000, (topic("qingpu", "w07", Channel.EVENT), refused_payload)),
        (6_000, (topic("qingpu", "w03", Channel.EVENT), json.dumps(bad_nul))),
        (7_500, (topic("qingpu", "w04", Channel.HEALTH), bad_health)),
    ):
        messages.insert(at, msg)

    settings = IngestSettings(port=broker.port, client_id="ww-test-poison", stall_s=3.0)
    ingest = Ingest(store, settings)
    ingest.start()
    assert ingest.wait_connected()
    pub = publisher(broker)
    t0 = time.monotonic()
    with HealthWatch(ingest) as watch:
        last = None
        for name, payload in messages:
            last = pub.publish(name, payload, qos=1)
        assert last is not None
        last.wait_for_publish(60)
        try:
            wait_until(lambda: store.event_count() == 10_000 and ingest.stats.waiting == 0, 120)
        except AssertionError:
            raise AssertionError(f"{store.event_count()} stored; {ingest.stats}") from None
    took = time.monotonic() - t0
    pub.loop_stop()
    assert watch.seen and all(h.healthy for h in watch.seen), [
        h for h in watch.seen if not h.healthy
    ][:3]
    assert ingest.health().healthy
    ingest.stop()
    print(f"\n{store.engine.dialect.name}: {len(messages)} messages stored in {took:.1f} s")

    assert set(store.event_ids()) == {str(e.event_id) for e in good}
    assert store.reject_counts() == {"malformed": 3, "store_refused": 1}
    assert ingest.stats.rejected == {"malformed": 3, "store_refused": 1}
    assert ingest.stats.dead_letters == 1 and ingest.stats.stored == 10_000
    (letter,) = store.dead_letters()
    assert letter["topic"] == "ww/v1/qingpu/w07/event"
    assert letter["sha256"] == hashlib.sha256(refused_payload).hexdigest()
    assert letter["size"] == len(refused_payload)
    assert letter["excerpt"] == refused_payload.decode()[:200]
    assert "refused by the test trigger" in letter["reason"]
    assert len(letter["reason"]) <= 200

    # acknowledged, all of it: the persistent session redelivers nothing
    again = Ingest(store, settings)
    again.start()
    try:
        assert again.wait_connected()
        time.sleep(1.5)
        assert again.stats.received == 0
    finally:
        again.stop()


def test_dead_letter_excerpt_escapes_control_characters() -> None:
    from server.store.db import DeadLetter

    payload = b'{"detail":"a\x00b\x1bc\n' + "青浦".encode() + b'"}' + b"x" * 400
    d = DeadLetter.of("ww/v1/qingpu/w01/event", payload, "DataError: " + "e" * 300, 5)
    assert "\x00" not in d.excerpt and "\x1b" not in d.excerpt and "\n" not in d.excerpt
    assert d.excerpt.startswith('{"detail":"a\\x00b\\x1bc\\n青浦"}xxx')
    assert len(d.excerpt) == 200 and len(d.reason) == 200 and d.size == len(payload)
    assert d.sha256 == hashlib.sha256(payload).hexdigest()


@contextlib.contextmanager
def outage(store: Store) -> Iterator[None]:
    """The store unreachable for the ingest: SQLite held under an exclusive lock by
    another connection ("database is locked"); PostgreSQL refusing connections to the
    database, the ingest's own ones terminated (connection refused on reconnect)."""
    if store.engine.dialect.name == "sqlite":
        path = store.url.removeprefix("sqlite:///")
        import sqlite3

        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    name = make_url(store.url).database
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false'))
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = :n AND pid <> pg_backend_pid()"
                ),
                {"n": name},
            )
        yield
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true'))
        admin.dispose()


def test_unhealthy_while_the_store_is_unreachable_and_healthy_again(
    broker: MosquittoBroker,
    store: Store,
    tmp_path: Path,
) -> None:
    """An outage is retried, not dead-lettered: nothing is lost, nothing set aside.
    While nothing commits with messages waiting, health and /healthz say unhealthy
    (503); once the store is back everything is stored and they say ok again."""
    settings = IngestSettings(
        port=broker.port, client_id="ww-test-outage", stall_s=1.0, retry_s=0.2
    )
    ingest = Ingest(store, settings)
    app = create_app(ServerSettings(db_url=store.url, mqtt=None))
    pub = publisher(broker)
    evs = [event(seq, "w05") for seq in range(1, 201)]
    t = topic("qingpu", "w05", Channel.EVENT)

    def healthz() -> tuple[int, dict[str, Any]]:
        r = client.get("/healthz")
        return r.status_code, r.json()

    with TestClient(app) as client:
        app.state.ingest = ingest
        ingest.start()
        assert ingest.wait_connected()
        for ev in evs[:100]:
            pub.publish(t, ev.model_dump_json(), qos=1)
        wait_until(lambda: store.event_count() == 100)
        code, body = healthz()
        assert (code, body["status"], body["ingest_connected"]) == (200, "ok", True)
        assert body["last_commit_ms"] is not None

        with outage(store):
            for ev in evs[100:]:
                pub.publish(t, ev.model_dump_json(), qos=1)
            wait_until(lambda: not ingest.health().healthy, 15)
            code, body = healthz()
            assert (code, body["status"]) == (503, "unhealthy")
            assert "nothing committed" in body["reason"] and body["waiting"] > 0
            # blocked first (SQLite waits out its busy timeout), then failing: retried
            wait_until(lambda: ingest.stats.write_failures > 0, 20)
            assert not ingest.health().healthy and ingest.stats.dead_letters == 0
        wait_until(lambda: ingest.health().healthy and ingest.stats.waiting == 0, 30)
        code, body = healthz()
        assert (code, body["status"]) == (200, "ok")
        ingest.stop()
        code, body = healthz()
        assert (code, body["reason"]) == (503, "writer not running")
    pub.loop_stop()
    assert set(store.event_ids()) == {str(e.event_id) for e in evs}
    assert store.dead_letters() == [] and ingest.stats.dead_letters == 0
    assert "store_refused" not in store.reject_counts()
    assert ingest.stats.write_failures > 0


def test_a_lone_refused_message_in_a_quiet_moment_is_set_aside(
    broker: MosquittoBroker,
    store: Store,
) -> None:
    """Nothing else arrives to prove the store takes writes: the refused message waits
    ``suspect_wait_s`` at most, then is set aside (this process has stored events)."""
    settings = IngestSettings(
        port=broker.port, client_id="ww-test-lone", stall_s=4.0, suspect_wait_s=0.5
    )
    ingest = Ingest(store, settings)
    ingest.start()
    try:
        assert ingest.wait_connected()
        pub = publisher(broker)
        first, lone = event(1, "w06"), event(2, "w06")
        refuse_event_id(store, str(lone.event_id))
        t = topic("qingpu", "w06", Channel.EVENT)
        pub.publish(t, first.model_dump_json(), qos=1).wait_for_publish(5)
        wait_until(lambda: store.event_count() == 1)
        pub.publish(t, lone.model_dump_json(), qos=1).wait_for_publish(5)
        # The writer counts the letter, then acknowledges it: wait for both.
        wait_until(lambda: ingest.stats.dead_letters == 1 and ingest.stats.waiting == 0, 10)
        assert ingest.health().healthy
        pub.loop_stop()
    finally:
        ingest.stop()
    assert len(store.dead_letters()) == 1 and store.event_count() == 1


def test_nothing_set_aside_when_the_store_refuses_everything(
    broker: MosquittoBroker,
    store: Store,
) -> None:
    """A fault of the store, not of the messages (here every event refused): nothing is
    set aside or acknowledged, health goes unhealthy, and once the fault is gone every
    event is stored."""
    settings = IngestSettings(port=broker.port, client_id="ww-test-all", stall_s=1.0, retry_s=0.2)
    refuse_event_id(store, None)
    ingest = Ingest(store, settings)
    ingest.start()
    try:
        assert ingest.wait_connected()
        pub = publisher(broker)
        evs = [event(seq, "w08") for seq in range(1, 51)]
        for ev in evs:
            pub.publish(topic("qingpu", "w08", Channel.EVENT), ev.model_dump_json(), qos=1)
        wait_until(lambda: not ingest.health().healthy, 15)
        assert ingest.stats.dead_letters == 0
        with store.engine.begin() as conn:
            conn.execute(
                text(
                    "DROP TRIGGER refuse_one"
                    + ("" if conn.dialect.name == "sqlite" else " ON events")
                )
            )
        wait_until(lambda: store.event_count() == 50 and ingest.stats.waiting == 0, 30)
        assert ingest.health().healthy
        pub.loop_stop()
    finally:
        ingest.stop()
    assert store.dead_letters() == [] and ingest.stats.dead_letters == 0
