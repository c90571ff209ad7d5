"""The fleet on a 3-node NATS cluster, one node SIGKILLed mid-run: nothing lost, nothing
stored twice.

Forty real terminals (``Outbox`` + ``Transport`` in ``confirm = "stored"`` mode, every
node in their list) speak MQTT to the cluster; two ingest replicas take the events from
the replicated JetStream stream through one shared durable consumer, and everything else
over MQTT. The node leading the events stream is killed while the terminals keep adding
events, and restarted later. Each replica's live feed (what the hall wall shows) sees
every terminal's events, before the kill and after it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from agent.config import BrokerConfig
from agent.localbroker import MosquittoBroker
from agent.outbox import Outbox
from agent.transport import Transport
from bench.city.broker import quiet_port
from bench.city.model import city_layout, city_sites
from bench.natscluster import NatsCluster
from server.events_source import JetStreamSettings
from server.ingest import Ingest, IngestSettings
from server.store.db import Store
from tests.agent import draft
from tests.waiting import wait_until

WINDOWS, CENTRES = 40, 4
STREAM = "WW_EVENTS"


def _note_live(seen: set[str], msg: dict[str, Any]) -> None:
    if msg["type"] == "event":
        seen.add(msg["event"]["event_id"])


@pytest.fixture
def fleet_store(tmp_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'city.db'}")
    store.create()
    for site in city_sites(city_layout(WINDOWS, CENTRES)):
        store.register_site(site)
    yield store
    store.close()


def test_a_node_killed_mid_run_loses_nothing_and_stores_nothing_twice(
    nats_cluster: NatsCluster, fleet_store: Store, tmp_path: Path
) -> None:
    cluster = nats_cluster  # one test: the module's cluster, ended with it
    nodes = cluster.mqtt_nodes()
    node_list = [f"{h}:{p}" for h, p in nodes]
    layout = city_layout(WINDOWS, CENTRES)
    sent: set[str] = set()
    live: list[set[str]] = [set(), set()]  # what each replica's live feed (the wall) saw
    with ExitStack() as stack:
        replicas = []
        for i in range(2):
            ingest = Ingest(
                Store(fleet_store.url),
                IngestSettings(
                    host=nodes[i][0],
                    port=nodes[i][1],
                    nodes=tuple(nodes[:i] + nodes[i + 1 :]),
                    client_id=f"ww-cluster-ingest-{i}",
                    protocol=mqtt.MQTTv311,
                    events=JetStreamSettings(urls=cluster.nats_urls(), stream=STREAM),
                ),
            )
            ingest.add_listener(functools.partial(_note_live, live[i]))
            ingest.start()
            stack.callback(ingest.store.close)
            stack.callback(ingest.stop)
            replicas.append(ingest)
        for ingest in replicas:
            assert ingest.wait_connected(30), "ingest replica not subscribed"
        boxes: list[Outbox] = []
        links: list[Transport] = []
        for site, window in layout:
            box = stack.enter_context(Outbox(tmp_path / f"{site}-{window}.db", site, window))
            cfg = BrokerConfig(
                host=nodes[0][0],
                port=nodes[0][1],
                nodes=node_list,
                keepalive_s=5,
                confirm="stored",
                confirm_timeout_s=5.0,
            )
            links.append(stack.enter_context(Transport(cfg, site, window, box)))
            boxes.append(box)
        wait_until(lambda: all(t.connected for t in links), 60, "all terminals connected")
        on_nodes = {t.stats().node for t in links}
        assert len(on_nodes) == 3, f"the terminals should spread over the nodes: {on_nodes}"

        def add(n: int) -> None:
            for box in boxes:
                for _ in range(n):
                    sent.add(str(box.add(draft()).event_id))

        def all_stored_and_confirmed(what: str) -> None:
            wait_until(lambda: fleet_store.event_count() >= len(sent), 90, f"{what}: stored")
            wait_until(lambda: all(b.depth == 0 for b in boxes), 90, f"{what}: confirmed")

        add(10)
        all_stored_and_confirmed("before the kill")
        # Every replica's live page sees the whole city, not just its share of the stream.
        for i, seen in enumerate(live):
            wait_until(functools.partial(set.issubset, set(sent), seen), 20, f"live feed {i}")

        victim = cluster.stream_leader(STREAM)
        assert victim is not None, "the events stream has no leader"
        victim_addr = f"{cluster.nodes[victim].host}:{cluster.nodes[victim].mqtt_port}"
        on_victim = [t for t in links if t.stats().node == victim_addr]
        assert on_victim, "some terminals are on the node that dies"
        cluster.kill(victim)
        add(10)
        all_stored_and_confirmed("with the stream leader's node dead")
        new_leader = cluster.stream_leader(STREAM)
        assert new_leader is not None and new_leader != victim
        # Its terminals went on through the other nodes, under the same session.
        assert all(t.stats().node != victim_addr and t.stats().node_moves for t in on_victim)

        cluster.start_node(victim, wait=False)  # its streams catch up while we go on
        before_last = set(sent)
        add(5)
        all_stored_and_confirmed("after the restart")
        # The live feed is best effort (QoS 0) while a node dies; after it, it is whole again.
        last = set(sent) - before_last
        for i, seen in enumerate(live):
            wait_until(functools.partial(set.issubset, last, seen), 30, f"live feed {i}, after")

    assert fleet_store.event_count() == len(sent) == WINDOWS * 25
    assert set(fleet_store.event_ids()) == sent  # nothing lost, nothing extra
    assert fleet_store.sequence_gaps() == []
    assert sum(r.stats.stored for r in replicas) == len(sent)
    assert all(r.stats.stored > 0 for r in replicas), "both replicas share the consumer"


def test_an_unreachable_stream_makes_the_ingest_unhealthy(
    broker: MosquittoBroker, fleet_store: Store
) -> None:
    """MQTT is up, the stream is not: the ingest stores nothing and must say so."""
    ingest = Ingest(
        fleet_store,
        IngestSettings(
            port=broker.port,
            client_id="ww-cluster-unhealthy",
            stall_s=1.0,
            events=JetStreamSettings(urls=[f"nats://127.0.0.1:{quiet_port()}"]),
        ),
    )
    ingest.start()
    try:
        wait_until(lambda: not ingest.health().healthy, 20, "unhealthy")
        assert "events stream not reachable" in ingest.health().reason
        assert not ingest.wait_connected(0.5)
    finally:
        ingest.stop()
