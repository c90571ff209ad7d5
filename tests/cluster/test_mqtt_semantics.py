"""What NATS 2.9.10's MQTT listener does with what the terminal relies on, measured with
the product's own ``Transport`` + ``Outbox`` and plain paho clients (docs/cluster.md)."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from agent.config import BrokerConfig
from agent.outbox import Outbox
from agent.protocol import OFFLINE, ONLINE, Channel, topic
from agent.transport import Transport
from bench.natscluster import NatsCluster
from tests.agent import Subscriber, draft
from tests.waiting import stays_false, wait_until

SITE = "nats"


class Peer:
    """A paho MQTT 3.1.1 client with a fixed client id and a persistent session."""

    def __init__(self, client_id: str | None = None, *, manual_ack: bool = False) -> None:
        self.client_id = client_id or f"peer-{uuid.uuid4().hex[:8]}"
        self.manual_ack = manual_ack
        self.got: list[mqtt.MQTTMessage] = []
        self.connack: list[Any] = []
        self.closed = threading.Event()
        self._lock = threading.Lock()
        self.client = self._new()

    def _new(self) -> mqtt.Client:
        c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv311,
            clean_session=False,
            manual_ack=self.manual_ack,
        )
        c.on_message = self._on_message
        c.on_connect = lambda _c, _u, flags, rc, _p: self.connack.append((flags, rc))
        c.on_disconnect = lambda *_a: self.closed.set()
        return c

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.got.append(msg)

    def payloads(self) -> list[bytes]:
        with self._lock:
            return [bytes(m.payload) for m in self.got]

    def connect(self, node: tuple[str, int], *, will: tuple[str, bytes] | None = None) -> None:
        self.connack.clear()
        self.closed.clear()
        self.client = self._new()
        if will is not None:
            self.client.will_set(will[0], will[1], qos=1, retain=True)
        self.client.connect(node[0], node[1], keepalive=5)
        self.client.loop_start()
        wait_until(lambda: bool(self.connack), 10, f"CONNACK for {self.client_id}")

    def subscribe(self, filt: str, timeout: float = 10.0) -> int:
        """Subscribe at QoS 1; the granted QoS (0x80: the broker refused it)."""
        granted: list[int] = []
        done = threading.Event()

        def on_sub(_c: mqtt.Client, _u: Any, _mid: int, codes: list[Any], _p: Any) -> None:
            granted.extend(int(getattr(c, "value", c)) for c in codes)
            done.set()

        self.client.on_subscribe = on_sub
        self.client.subscribe(filt, qos=1)
        assert done.wait(timeout), f"no SUBACK for {filt}"
        return granted[0]

    def publish(self, t: str, payload: bytes, *, retain: bool = False) -> None:
        self.client.publish(t, payload, qos=1, retain=retain).wait_for_publish(10)

    def disconnect(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def drop(self) -> None:
        """The socket dies without a DISCONNECT (a crashed terminal, a dead modem)."""
        sock = self.client.socket()
        assert isinstance(sock, socket.socket)
        sock.shutdown(socket.SHUT_RDWR)
        self.client.loop_stop()


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "outbox.db", SITE, f"w{uuid.uuid4().hex[:6]}")
    yield box
    box.close()


def transport(node: tuple[str, int], box: Outbox) -> Transport:
    cfg = BrokerConfig(host=node[0], port=node[1], keepalive_s=5)
    return Transport(cfg, SITE, box.window, box, backoff_base_s=0.2, backoff_max_s=1.0)


def test_mqtt5_is_refused_and_the_transport_falls_back_to_311(
    nats_cluster: NatsCluster, outbox: Outbox
) -> None:
    host, port = nats_cluster.mqtt_nodes()[0]
    v5 = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    codes: list[Any] = []
    v5.on_connect = lambda _c, _u, _f, rc, _p: codes.append(rc)
    v5.on_disconnect = lambda *_a: codes.append("closed")
    v5.connect(host, port, keepalive=5)
    v5.loop_start()
    wait_until(lambda: bool(codes), 10, "an answer to an MQTT 5 CONNECT")
    v5.loop_stop()
    assert codes[0] != 0  # refused: "Unsupported protocol version" (CONNACK rc 1)
    with transport((host, port), outbox) as link:
        wait_until(lambda: link.connected, 15, "the transport on 3.1.1")
        assert link.stats().protocol == "3.1.1"


def test_qos1_events_reach_a_subscriber_on_another_node(
    nats_cluster: NatsCluster, outbox: Outbox
) -> None:
    a, b = nats_cluster.mqtt_nodes()[:2]
    sub = Subscriber(*b, (Channel.EVENT, Channel.AVAILABILITY))
    try:
        with transport(a, outbox) as link:
            events = [outbox.add(draft(i)) for i in range(20)]
            wait_until(lambda: len(sub.unique()) == 20, 15, "20 events on the other node")
            assert link.flush(5) and outbox.depth == 0
        assert [e["event_id"] for e in sub.unique()] == [str(e.event_id) for e in events]
        assert (ONLINE.encode(), False) in sub.messages(Channel.AVAILABILITY)
    finally:
        sub.close()


@pytest.mark.parametrize("back_on", [0, 1], ids=["same-node", "other-node"])
def test_an_offline_persistent_subscriber_gets_what_was_published_meanwhile(
    nats_cluster: NatsCluster, back_on: int
) -> None:
    nodes = nats_cluster.mqtt_nodes()
    t = f"ww/v1/{SITE}/{uuid.uuid4().hex[:6]}/event"
    sub, pub = Peer(), Peer()
    sub.connect(nodes[0])
    sub.subscribe(t)
    sub.disconnect()
    pub.connect(nodes[2])
    for k in range(5):
        pub.publish(t, f"m{k}".encode())
    pub.disconnect()
    sub.connect(nodes[back_on])
    assert sub.connack[0][0].session_present
    wait_until(lambda: len(sub.payloads()) == 5, 10, "the 5 queued messages")
    assert sub.payloads() == [f"m{k}".encode() for k in range(5)]
    sub.disconnect()


def test_the_last_will_when_the_terminal_socket_dies_reaches_other_nodes_retained(
    nats_cluster: NatsCluster,
) -> None:
    nodes = nats_cluster.mqtt_nodes()
    avail = topic(SITE, f"w{uuid.uuid4().hex[:6]}", Channel.AVAILABILITY)
    term = Peer()
    term.connect(nodes[0], will=(avail, OFFLINE.encode()))
    term.publish(avail, ONLINE.encode(), retain=True)
    watcher = Peer()
    watcher.connect(nodes[1])
    watcher.subscribe(avail)
    wait_until(lambda: watcher.payloads() == [ONLINE.encode()], 10, "retained online")
    term.drop()
    wait_until(lambda: OFFLINE.encode() in watcher.payloads(), 10, "the will")
    watcher.disconnect()
    late = Peer()
    late.connect(nodes[2])
    late.subscribe(avail)
    wait_until(lambda: late.payloads() == [OFFLINE.encode()], 10, "retained offline")
    assert late.got[0].retain
    late.disconnect()


def test_an_unacknowledged_qos1_message_is_redelivered_after_ack_wait(tmp_path: Path) -> None:
    """Not at the reconnect (MQTT 3.1.1 says so; NATS waits for the consumer's ack_wait,
    30 s by default, 4 s here) but after it, to the session wherever it reconnected."""
    conf = 'stream_replicas: 3\nack_wait: "4s"\n'
    with NatsCluster(tmp_path, 3, name="wwack", mqtt_conf=conf) as c:
        nodes = c.mqtt_nodes()
        t = f"ww/v1/{SITE}/{uuid.uuid4().hex[:6]}/cmd"
        sub = Peer(manual_ack=True)  # receives, never acknowledges
        sub.connect(nodes[0])
        sub.subscribe(t)
        pub = Peer()
        pub.connect(nodes[1])
        pub.publish(t, b"reboot")
        wait_until(lambda: sub.payloads() == [b"reboot"], 10, "first delivery")
        first = time.monotonic()
        sub.drop()
        again = Peer(sub.client_id)
        again.connect(nodes[2])
        assert stays_false(lambda: bool(again.payloads()), 1.0)  # not at the reconnect
        wait_until(lambda: again.payloads() == [b"reboot"], 10, "redelivery")
        took = time.monotonic() - first
        assert again.got[0].dup and took > 3.0, took
        again.disconnect()
        pub.disconnect()


def test_a_shared_subscription_is_accepted_and_delivers_nothing(
    nats_cluster: NatsCluster,
) -> None:
    nodes = nats_cluster.mqtt_nodes()
    window = uuid.uuid4().hex[:6]
    sub = Peer()
    sub.connect(nodes[0])
    assert sub.subscribe("$share/ingest/ww/v1/+/+/event") == 1  # granted
    plain = Peer()
    plain.connect(nodes[0])
    plain.subscribe(f"ww/v1/{SITE}/{window}/event")
    pub = Peer()
    pub.connect(nodes[1])
    pub.publish(f"ww/v1/{SITE}/{window}/event", b"{}")
    wait_until(lambda: plain.payloads() == [b"{}"], 10, "the plain subscriber's copy")
    assert stays_false(lambda: bool(sub.payloads()), 3.0)
    for p in (sub, plain, pub):
        p.disconnect()


def passes(node: tuple[str, int], t: str, size: int) -> bool:
    """Whether a QoS 1 publish of ``size`` bytes is PUBACKed (False: the node hung up)."""
    pub = Peer()
    pub.connect(node)
    info = pub.client.publish(t, b"x" * size, qos=1)
    wait_until(lambda: info.is_published() or pub.closed.is_set(), 10, "PUBACK or hang-up")
    ok = info.is_published()
    pub.client.disconnect()
    pub.client.loop_stop()
    return ok


def test_the_mqtt_listener_passes_payloads_beyond_max_payload(nats_cluster: NatsCluster) -> None:
    """Measured: 2.9.10 PUBACKs and delivers MQTT payloads over ``max_payload`` (1 MB)."""
    node = nats_cluster.mqtt_nodes()[0]
    t = f"ww/v1/{SITE}/{uuid.uuid4().hex[:6]}/config"
    watcher = Peer()
    watcher.connect(nats_cluster.mqtt_nodes()[1])
    watcher.subscribe(t)
    mb = 1024 * 1024
    sizes = [mb - 64, mb, mb + 1, 2 * mb, 8 * mb]
    got = {size: passes(node, t, size) for size in sizes}
    print(got)
    wait_until(lambda: len(watcher.payloads()) == sum(got.values()), 10, "the copies")
    print(sorted(len(p) for p in watcher.payloads()))
    assert got[mb - 64] and got[mb + 1]
    watcher.disconnect()
