"""Two aggregator replicas on one broker, splitting the fleet through a shared subscription."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from agent.config import load_site
from agent.localbroker import MosquittoBroker
from agent.protocol import Channel, topic
from server.ingest import Ingest, IngestSettings
from server.store.db import Store
from tests.conftest import EXAMPLE_SITE
from tests.server.test_ingest import make_event
from tests.waiting import wait_until

TOTAL = 20_000


def test_two_replicas_store_each_event_exactly_once(broker: MosquittoBroker, pg_url: str) -> None:
    store = Store(pg_url)
    store.create()
    store.register_site(load_site(EXAMPLE_SITE))
    replicas = [
        Ingest(
            Store(pg_url),
            IngestSettings(port=broker.port, client_id=f"ww-replica-{i}", share_group="ww-ingest"),
        )
        for i in (1, 2)
    ]
    live: list[set[str]] = [set(), set()]

    def watcher(seen: set[str]) -> Callable[[dict[str, Any]], None]:
        def on_msg(msg: dict[str, Any]) -> None:
            if msg["type"] == "event":
                seen.add(msg["event"]["event_id"])

        return on_msg

    for r, seen in zip(replicas, live, strict=True):
        r.add_listener(watcher(seen))
        r.start()
        assert r.wait_connected()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fleet-sim")
    pub.max_inflight_messages_set(200)
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    windows = [f"w{i:02d}" for i in range(1, 13)]
    sent: set[str] = set()
    infos = []
    for n in range(TOTAL):
        w = windows[n % 12]
        ev = make_event(n // 12 + 1, window=w)
        sent.add(str(ev.event_id))
        infos.append(pub.publish(topic("qingpu", w, Channel.EVENT), ev.model_dump_json(), qos=1))
    for info in infos:
        info.wait_for_publish(30)
    wait_until(lambda: store.event_count() >= TOTAL, timeout=120)
    # each replica's dashboards see every event live, not just the replica's share
    wait_until(lambda: all(len(seen) == TOTAL for seen in live), timeout=60)
    for r in replicas:
        r.stop()
        r.store.close()
    pub.loop_stop()
    assert store.event_count() == TOTAL
    assert set(store.event_ids()) == sent
    # both replicas did real work, and neither stored anything twice
    stored = [r.stats.stored for r in replicas]
    assert sum(stored) == TOTAL and min(stored) > TOTAL // 10, stored
    assert sum(r.stats.duplicates for r in replicas) == 0
    assert store.sequence_gaps() == []
    store.close()
