"""Ingest through a real Mosquitto into SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from agent.config import load_site
from agent.protocol import Channel, SessionOpened, topic
from server.broker import MosquittoBroker
from server.ingest import Ingest, IngestSettings
from server.store.db import Store
from tests.conftest import EXAMPLE_SITE


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


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ww.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    s = Store(url)
    s.create()
    s.register_site(load_site(EXAMPLE_SITE))
    yield s
    s.close()


def publisher(b: MosquittoBroker) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:6]}")
    c.connect(b.host, b.port)
    c.loop_start()
    return c


def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


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
    wait_for(lambda: sum(ingest.stats.rejected.values()) >= 4 and ingest.stats.duplicates >= 30)
    wait_for(lambda: any(w["online"] for w in store.windows()))
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
    wait_for(lambda: store.event_count() == 50)
    ingest.stop()


def test_falls_back_to_mqtt_311_on_the_embedded_broker(tmp_path: Path) -> None:
    """The demo's broker without Mosquitto (amqtt) speaks only MQTT 3.1.1."""
    from server.broker import EmbeddedBroker

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
        wait_for(lambda: store.event_count() == 10)
        pub.loop_stop()
    finally:
        ingest.stop()
        b.stop()
        store.close()
