"""Ingest through a real Mosquitto into SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from agent.config import load_site
from agent.localbroker import MosquittoBroker
from agent.protocol import Channel, SessionOpened, topic
from server.ingest import Ingest, IngestSettings
from server.store.db import Store
from tests.conftest import EXAMPLE_SITE
from tests.waiting import wait_until


def make_event(seq: int, window: str = "w01", site: str = "qingpu") -> SessionOpened:
    return SessionOpened(
        event_id=uuid.uuid4(),
        site=site,
        window=window,
        seq=seq,
        boot_id=uuid.UUID(int=1),
        ts_ms=1_700_000_000_000 + seq,
        source="bell",
    )


def publisher(b: MosquittoBroker) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:6]}")
    c.connect(b.host, b.port)
    c.loop_start()
    return c


def test_events_stored_once_and_bad_messages_counted(broker: MosquittoBroker, store: Store) -> None:
    ingest = Ingest(store, IngestSettings(port=broker.port, client_id="ww-test-ingest"))
    ingest.start()
    assert ingest.wait_connected()
    pub = publisher(broker)
    evs = [make_event(i) for i in range(1, 101)]
    t = topic("qingpu", "w01", Channel.EVENT)
    for ev in evs:
        pub.publish(t, ev.model_dump_json(), qos=1).wait_for_publish(5)
    for ev in evs[:30]:  # replays, as after an outage
        pub.publish(t, ev.model_copy(update={"historical": True}).model_dump_json(), qos=1)
    # forged: payload claims w02 on w01's topic
    pub.publish(t, make_event(1, window="w02").model_dump_json(), qos=1)
    pub.publish(t, b"{not json", qos=1)
    bad = json.loads(make_event(2).model_dump_json()) | {"image": "iVBORw0KGgo="}
    pub.publish(t, json.dumps(bad), qos=1)
    pub.publish(
        topic("qingpu", "w99", Channel.EVENT), make_event(3, "w99").model_dump_json(), qos=1
    )
    pub.publish(topic("qingpu", "w03", Channel.AVAILABILITY), "online", qos=1, retain=True)
    wait_until(lambda: sum(ingest.stats.rejected.values()) >= 4 and ingest.stats.duplicates >= 30)
    wait_until(lambda: any(w["online"] for w in store.windows()))
    ingest.stop()
    pub.loop_stop()
    assert store.event_count() == 100
    assert set(store.event_ids()) == {str(e.event_id) for e in evs}
    assert store.reject_counts() == {"forged": 1, "malformed": 2, "unknown_device": 1}
    online = {w["window"] for w in store.windows() if w["online"]}
    assert online == {"w03"}
    assert max(w["max_seq"] for w in store.windows()) == 100


def test_persistent_session_keeps_events_while_server_down(
    broker: MosquittoBroker, store: Store
) -> None:
    settings = IngestSettings(port=broker.port, client_id="ww-test-persist")
    ingest = Ingest(store, settings)
    ingest.start()
    assert ingest.wait_connected()
    ingest.stop()
    pub = publisher(broker)
    t = topic("qingpu", "w05", Channel.EVENT)
    evs = [make_event(i, "w05") for i in range(1, 51)]
    for ev in evs:
        pub.publish(t, ev.model_dump_json(), qos=1).wait_for_publish(5)
    pub.loop_stop()
    ingest = Ingest(store, settings)
    ingest.start()
    wait_until(lambda: store.event_count() == 50)
    ingest.stop()


def test_falls_back_to_mqtt_311_on_the_embedded_broker(tmp_path: Path) -> None:
    """The demo's broker without Mosquitto (amqtt) speaks only MQTT 3.1.1."""
    from agent.localbroker import EmbeddedBroker

    b = EmbeddedBroker()
    b.start()
    store = Store(f"sqlite:///{tmp_path / 'ww.db'}")
    store.create()
    store.register_site(load_site(EXAMPLE_SITE))
    ingest = Ingest(store, IngestSettings(port=b.port, client_id="ww-test-amqtt"))
    try:
        ingest.start()
        assert ingest.wait_connected()
        assert ingest._protocol == mqtt.MQTTv311
        pub = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="t-amqtt", protocol=mqtt.MQTTv311
        )
        pub.connect(b.host, b.port)
        pub.loop_start()
        t = topic("qingpu", "w02", Channel.EVENT)
        for ev in [make_event(i, "w02") for i in range(1, 11)]:
            pub.publish(t, ev.model_dump_json(), qos=1).wait_for_publish(5)
        wait_until(lambda: store.event_count() == 10)
        pub.loop_stop()
    finally:
        ingest.stop()
        b.stop()
        store.close()


# --------------------------------------------------------------------------- exactly once


@pytest.fixture
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Store]]:
    """Fresh, registered stores of the parametrized kind (several per test)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from tests.conftest import PG_URL

    kind: str = request.param
    made: list[Store] = []
    databases: list[str] = []
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")

    def make() -> Store:
        if kind == "sqlite":
            url = f"sqlite:///{tmp_path / f'ww{len(made)}.db'}"
        else:
            name = f"ww_test_{uuid.uuid4().hex[:12]}"
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            databases.append(name)
            url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
        s = Store(url)
        s.create()
        s.register_site(load_site(EXAMPLE_SITE))
        made.append(s)
        return s

    try:
        yield make
    finally:
        for s in made:
            s.close()
        if databases:
            with admin.connect() as conn:
                for name in databases:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _staff(store: Store) -> None:
    from tests.server.test_measures import ms

    nov1 = ms(2026, 11, 1, 0, 0)
    for clerk, window in (("c-li", "w03"), ("c-wang", "w04"), ("c-zhao", "w05")):
        store.add_clerk(clerk, clerk, "qingpu")
        store.sign_in(clerk, "qingpu", window, nov1)


def _everything_measured(store: Store) -> dict[str, Any]:
    """Every measure over several scopes, groupings and periods, by the rollup path and
    by the projection path, plus the projection tables' and alerts' contents."""
    from sqlalchemy import select

    from server.metrics.measures import Scope, compute
    from server.metrics.periods import period_bounds
    from server.store.schema import alerts, away_periods, cases, daily_rollups, evaluations
    from server.store.schema import sessions as sessions_t
    from tests.server.test_measures import DAY, ms

    now = ms(2026, 11, 30, 12, 0)
    scopes: list[tuple[Any, Any]] = [
        (Scope(), None),
        (Scope(), "clerk"),
        (Scope(), "window"),
        (Scope(district="青浦区"), "site"),
        (Scope(site="qingpu", window="w03"), None),
        (Scope(clerk_id="c-zhao"), None),
    ]
    out: dict[str, Any] = {}
    ranges = [period_bounds(p) for p in ("2026-11", "2026-Q4")]
    ranges.append((DAY + 3_000_000, DAY + 86_400_000))  # part of a day: projections only
    for start, end in ranges:
        for scope, by in scopes:
            for fast in (True, False):
                got = compute(
                    store.engine, scope, start, end, now_ms=now, group_by=by, rollups=fast
                )
                key = f"{start}-{end} {scope} {by} rollups={fast}"
                out[key] = {k: m.as_dict() for k, m in got.items()}
    with store.engine.connect() as conn:
        for table in (sessions_t, evaluations, away_periods, cases, daily_rollups):
            out[table.name] = sorted(tuple(str(v) for v in r) for r in conn.execute(select(table)))
        out["alerts"] = sorted(
            (r.alert_id, r.kind) for r in conn.execute(select(alerts.c.alert_id, alerts.c.kind))
        )
    out["events"] = sorted(store.event_ids())
    return out


def _copies(events: list[Any], seed: int) -> list[Any]:
    """Each event 1 to 5 times, all copies shuffled (seeded)."""
    import random

    rng = random.Random(seed)
    out = [ev for ev in events for _ in range(rng.randint(1, 5))]
    rng.shuffle(out)
    return out


@pytest.mark.parametrize("make_store", ["sqlite", "postgresql"], indirect=True)
def test_duplicates_in_one_batch_are_measured_once(
    broker: MosquittoBroker, make_store: Callable[[], Store]
) -> None:
    """A day of events, each published 1-5 times at random positions, must give exactly
    the measures of the same events stored once: directly in batches holding duplicates,
    and through a real ingest over a real Mosquitto."""
    from server.store.db import Batch, StoredEvent
    from tests.server.test_measures import scenario

    fleet, _ = scenario()
    events = fleet.events
    once = make_store()
    _staff(once)
    once.insert_events([StoredEvent(e, e.ts_ms + 50) for e in events])
    expected = _everything_measured(once)
    assert expected["sessions"] and expected["daily_rollups"] and expected["cases"]

    # directly: three batches, each holding duplicates of its own and of the others'
    direct = make_store()
    _staff(direct)
    copies = _copies(events, seed=13)
    third = len(copies) // 3
    for chunk in (copies[:third], copies[third : 2 * third], copies[2 * third :]):
        direct.write_batch(Batch(events=[StoredEvent(e, e.ts_ms + 50) for e in chunk]))
    assert _everything_measured(direct) == expected

    # through the ingest: queue everything at the broker, then let it arrive in a burst
    via = make_store()
    _staff(via)
    batches: list[list[str]] = []
    write = via.write_batch

    def recording(batch: Batch) -> list[str]:
        batches.append([str(e.event.event_id) for e in batch.events])
        return write(batch)

    via.write_batch = recording  # type: ignore[method-assign]
    settings = IngestSettings(port=broker.port, client_id="ww-test-dups", flush_s=0.5)
    ingest = Ingest(via, settings)
    ingest.start()
    assert ingest.wait_connected()
    ingest.stop()  # the persistent session now queues for it
    pub = publisher(broker)
    published = _copies(events, seed=14)
    for ev in published:
        t = topic(ev.site, ev.window, Channel.EVENT)
        pub.publish(t, ev.model_dump_json(), qos=1).wait_for_publish(5)
    pub.loop_stop()
    ingest = Ingest(via, settings)
    ingest.start()
    try:
        wait_until(lambda: ingest.stats.stored + ingest.stats.duplicates >= len(published), 30)
    finally:
        ingest.stop()
    assert ingest.stats.stored == len(events)
    assert any(len(b) != len(set(b)) for b in batches), "no batch held a duplicate"
    assert _everything_measured(via) == expected
