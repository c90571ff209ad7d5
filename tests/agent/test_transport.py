"""Transport against a real Mosquitto (and amqtt for the 3.1.1 fallback).

Delivery under outage and SIGKILL is in ``test_transport_outage.py``.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from agent.config import BrokerConfig, TlsConfig
from agent.localbroker import EmbeddedBroker, MosquittoBroker, free_port
from agent.outbox import Outbox
from agent.protocol import (
    OFFLINE,
    ONLINE,
    Channel,
    Command,
    Health,
    Reply,
    WindowState,
    parse_event,
    topic,
)
from agent.transport import LinkState, Transport, Tuning
from tests.agent import Subscriber, draft
from tests.waiting import stays_false, wait_until

SITE = "qingpu"


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "outbox.db", SITE, "w01")
    yield box
    box.close()


def cfg(b: MosquittoBroker | EmbeddedBroker) -> BrokerConfig:
    return BrokerConfig(host=b.host, port=b.port, keepalive_s=5)


def test_delivers_in_order_live_and_marks_replays_historical(
    broker: MosquittoBroker, outbox: Outbox
) -> None:
    sub = Subscriber(broker.host, broker.port, (Channel.EVENT, Channel.AVAILABILITY))
    before = [outbox.add(draft(i)) for i in range(20)]  # stored before any connection
    with Transport(cfg(broker), SITE, "w01", outbox) as link:
        wait_until(lambda: link.connected, 10, "connection")
        assert link.stats().protocol == "5"
        after = [outbox.add(draft(i)) for i in range(20, 40)]
        wait_until(lambda: len(sub.unique()) == 40, 10, "40 events")
        assert link.flush(5)
        assert link.link is LinkState.ONLINE and not link.buffering
        got = sub.unique()
        assert [e["seq"] for e in got] == list(range(1, 41))
        assert [e["event_id"] for e in got] == [str(e.event_id) for e in before + after]
        assert all(e["historical"] for e in got[:20])
        assert not any(e["historical"] for e in got[20:])
        assert all(e["sent_ms"] for e in got)
        for e in got:  # what the server will parse
            assert parse_event(json.dumps(e)).event_id == uuid.UUID(e["event_id"])
        assert outbox.depth == 0 and link.stats().acked == 40
        assert (ONLINE.encode(), False) in sub.messages(Channel.AVAILABILITY)
    # close() says goodbye itself: a late subscriber finds "offline" retained.
    late = Subscriber(broker.host, broker.port, (Channel.AVAILABILITY,))
    wait_until(lambda: late.messages(Channel.AVAILABILITY) != [], 5, "retained availability")
    assert late.messages(Channel.AVAILABILITY) == [(OFFLINE.encode(), True)]
    sub.close()
    late.close()


def test_state_is_retained_and_health_published(broker: MosquittoBroker, outbox: Outbox) -> None:
    sub = Subscriber(broker.host, broker.port, (Channel.HEALTH,))
    state = WindowState(
        site=SITE,
        window="w01",
        ts_ms=1,
        present=True,
        standing=False,
        in_session=False,
        sign_up=False,
        perception="scripted",
    )
    with Transport(cfg(broker), SITE, "w01", outbox) as link:
        link.publish_state(state)  # before the connection: kept and sent once up
        wait_until(lambda: link.connected, 10, "connection")
        link.publish_health(
            Health(
                site=SITE,
                window="w01",
                ts_ms=2,
                uptime_s=1,
                fps=2.0,
                inference_ms=30.0,
                outbox_depth=0,
                model_version="m1",
                config_version="c1",
            )
        )
        wait_until(lambda: sub.messages(Channel.HEALTH) != [], 5, "health")
        with pytest.raises(ValueError):
            link.publish_state(state.model_copy(update={"window": "w02"}))
    late = Subscriber(broker.host, broker.port, (Channel.STATE,))
    wait_until(lambda: late.messages(Channel.STATE) != [], 5, "retained state")
    payload, retained = late.messages(Channel.STATE)[0]
    assert retained and WindowState.model_validate_json(payload) == state
    sub.close()
    late.close()


def test_commands_are_validated_and_always_answered(
    broker: MosquittoBroker, outbox: Outbox
) -> None:
    seen: list[Command] = []

    def handle(cmd: Command) -> Reply | None:
        if cmd.action == "recalibrate":
            raise RuntimeError("camera busy")
        seen.append(cmd)
        return None

    # events too: with nobody subscribed the broker answers 0x10 and the row is kept
    sub = Subscriber(broker.host, broker.port, (Channel.REPLY, Channel.EVENT))
    with Transport(cfg(broker), SITE, "w01", outbox, on_command=handle) as link:
        wait_until(lambda: link.connected, 10, "connection")
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-queue-system")
        pub.connect(broker.host, broker.port)
        pub.loop_start()
        cmd_topic = topic(SITE, "w01", Channel.CMD)
        good, bad_action, failing = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        # Subscriptions are made in on_connect; give the SUBACK a moment.
        wait_until(lambda: link.stats().connects == 1, 5, "connect")
        payloads: list[bytes] = [
            b"\xff not json at all",
            b"[1, 2, 3]",
            json.dumps({"cmd_id": str(bad_action), "action": "dance"}).encode(),
            json.dumps({"cmd_id": str(good), "action": "call", "ticket": "A013"}).encode(),
            json.dumps({"cmd_id": str(failing), "action": "recalibrate"}).encode(),
            json.dumps({"cmd_id": "x", "action": "ping", "image": "AAAA"}).encode(),
        ]
        for p in payloads:
            pub.publish(cmd_topic, p, qos=1).wait_for_publish(5)
        wait_until(lambda: len(sub.messages(Channel.REPLY)) == len(payloads), 10, "replies")
        replies = [Reply.model_validate_json(p) for p, _ in sub.messages(Channel.REPLY)]
        by_id = {r.cmd_id: r for r in replies if r.cmd_id is not None}
        assert by_id[good].ok and by_id[good].error is None
        assert not by_id[bad_action].ok and "action" in (by_id[bad_action].error or "")
        assert not by_id[failing].ok and "camera busy" in (by_id[failing].error or "")
        nulls = [r for r in replies if r.cmd_id is None]
        assert len(nulls) == 3 and not any(r.ok for r in nulls)
        assert [c.cmd_id for c in seen] == [good] and seen[0].ticket == "A013"
        assert link.stats().bad_commands == 4
        # Still alive and delivering after all that.
        outbox.add(draft(0))
        assert link.flush(5) and link.connected
        pub.disconnect()
        pub.loop_stop()
    sub.close()


def test_backpressure_when_paho_refuses_publishes(broker: MosquittoBroker, outbox: Outbox) -> None:
    tight = Tuning(max_queued_messages=3)  # paho answers MQTT_ERR_QUEUE_SIZE beyond it
    sub = Subscriber(broker.host, broker.port)
    for i in range(200):
        outbox.add(draft(i))
    with Transport(cfg(broker), SITE, "w01", outbox, max_inflight=32, tuning=tight) as link:
        assert link.flush(30), f"not drained: {link.stats()}"
        assert link.stats().queue_full > 0, "the refusal path was never taken"
    wait_until(lambda: len(sub.unique()) == 200, 10, "200 events")
    assert [e["seq"] for e in sub.unique()] == list(range(1, 201))
    sub.close()


def test_reconnects_after_broker_restart_with_backoff(
    broker: MosquittoBroker, outbox: Outbox
) -> None:
    sub = Subscriber(broker.host, broker.port)  # someone to have the event (else 0x10)
    with Transport(cfg(broker), SITE, "w01", outbox, backoff_max_s=1.0) as link:
        wait_until(lambda: link.connected, 10, "connection")
        broker.stop()
        wait_until(lambda: not link.connected, 10, "the drop to be noticed")
        assert link.link is LinkState.OFFLINE and link.buffering
        outbox.add(draft(0))
        broker.start()
        wait_until(lambda: link.stats().connects == 2, 15, "reconnection")
        assert link.flush(10)
    sub.close()


def test_reconnect_after_a_drop_waits_its_share_of_the_spread(
    broker: MosquittoBroker, outbox: Outbox
) -> None:
    config = BrokerConfig(host=broker.host, port=broker.port, keepalive_s=5, reconnect_spread_s=1)
    # Stable after 0.2 s, and every jitter at its maximum: the whole spread is waited.
    link = Transport(
        config,
        SITE,
        "w01",
        outbox,
        backoff_base_s=0.1,
        tuning=Tuning(stable_after_s=0.2),
        rand=lambda: 1.0,
    )
    with link:
        wait_until(lambda: link.connected, 10, "connection")
        time.sleep(0.3)  # stable, so the drop resets the backoff and spreads the retry
        dropped = time.monotonic()
        broker.restart()
        restarted = time.monotonic() - dropped
        wait_until(lambda: link.stats().connects == 2, 15, "reconnection")
        waited = time.monotonic() - dropped
    # Without the spread the retry would go 0.1 s after the drop, once the broker is back.
    assert restarted < 1.0, f"the broker took {restarted:.1f} s to restart: no margin left"
    assert waited >= 1.1  # first backoff step (0.1 s at most) + the whole 1 s spread


def test_no_matching_subscribers_keeps_the_event(broker: MosquittoBroker, outbox: Outbox) -> None:
    """PUBACK 0x10: the broker took it but nobody will get it (e.g. a restarted Mosquitto
    that forgot the aggregator's shared subscription). The row must stay until one does."""
    # Resends back off like reconnects: here from 0.05 s, capped at 0.2 s.
    link = Transport(
        cfg(broker), SITE, "w01", outbox, protocol="5", backoff_base_s=0.05, backoff_max_s=0.2
    )
    with link:
        wait_until(lambda: link.connected, 10, "connection")
        for i in range(5):
            outbox.add(draft(i))
        wait_until(lambda: link.stats().rejected >= 5, 10, "the 0x10 PUBACKs")
        # a few resends that find nobody either
        wait_until(lambda: link.stats().rejected >= 15, 5, "resends, refused again")
        assert outbox.depth == 5
        sub = Subscriber(broker.host, broker.port)
        assert link.flush(10), link.stats()
        wait_until(lambda: len(sub.unique()) == 5, 10, "the events, once someone listens")
        assert [e["seq"] for e in sub.unique()] == [1, 2, 3, 4, 5]
        # resent on the same connection: 10,000 windows reconnecting is a storm
        assert link.stats().connects == 1
        sub.close()


def test_falls_back_to_mqtt_311_on_amqtt(outbox: Outbox) -> None:
    amqtt = EmbeddedBroker()
    amqtt.start()
    try:
        sub = Subscriber(amqtt.host, amqtt.port)
        quick = Tuning(connack_timeout_s=0.3)  # a terminal waits 5 s
        link = Transport(cfg(amqtt), SITE, "w01", outbox, backoff_base_s=0.1, tuning=quick)
        with link:
            for i in range(30):
                outbox.add(draft(i))
            # two silent CONNACK waits, then 3.1.1
            assert link.flush(30), f"not drained: {link.stats()}"
            assert link.stats().protocol == "3.1.1"
        wait_until(lambda: len(sub.unique()) == 30, 10, "30 events")
        assert [e["seq"] for e in sub.unique()] == list(range(1, 31))
        sub.close()
    finally:
        amqtt.stop()


class SilentFirstProxy:
    """A TCP front for a broker that swallows the first connection (a broker too busy
    to answer a CONNECT in time) and relays every later one."""

    def __init__(self, target: MosquittoBroker) -> None:
        self.target = target
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.accepted = 0
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.server.accept()
                self.accepted += 1
                if self.accepted == 1:
                    self._held.append(conn)  # never answered
                    continue
                up = socket.create_connection((self.target.host, self.target.port))
                for a, b in ((conn, up), (up, conn)):
                    threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.server.close()
        for c in self._held:
            c.close()


def test_one_unanswered_connect_keeps_mqtt_5(broker: MosquittoBroker, outbox: Outbox) -> None:
    """A CONNACK that does not come once (a connect storm) is not a 3.1.1-only broker."""
    proxy = SilentFirstProxy(broker)
    sub = Subscriber(broker.host, broker.port)
    try:
        conf = BrokerConfig(host="127.0.0.1", port=proxy.port, keepalive_s=5)
        quick = Tuning(connack_timeout_s=0.3)  # a terminal waits 5 s
        with Transport(conf, SITE, "w01", outbox, backoff_base_s=0.1, tuning=quick) as link:
            outbox.add(draft(0))
            assert link.flush(30), f"not drained: {link.stats()}"
            assert proxy.accepted >= 2
            assert link.stats().protocol == "5"
        wait_until(lambda: len(sub.unique()) == 1, 10, "the event")
    finally:
        sub.close()
        proxy.close()


def test_forced_311_talks_to_mosquitto(broker: MosquittoBroker, outbox: Outbox) -> None:
    with Transport(cfg(broker), SITE, "w01", outbox, protocol="3.1.1") as link:
        outbox.add(draft(0))
        assert link.flush(10)
        assert link.stats().protocol == "3.1.1"


def test_events_refused_by_the_broker_are_kept_until_it_accepts_them(
    broker: MosquittoBroker, outbox: Outbox, tmp_path: Path
) -> None:
    acl = tmp_path / "acl"
    # Everything but events may be written (a will it may not write gets a CONNACK refusal).
    # Mosquitto 2.0.11 answers a refused MQTT 5 publish with PUBACK 0x87 and then drops
    # the connection; either way the row must stay until a broker takes it.
    acl.write_text("topic read ww/#\ntopic write ww/v1/qingpu/w01/availability\n")
    broker.extra_conf += f"acl_file {acl}\n"
    broker.restart()  # with the ACL
    sub = Subscriber(broker.host, broker.port)
    link = Transport(
        cfg(broker),
        SITE,
        "w01",
        outbox,
        backoff_base_s=0.05,
        backoff_max_s=0.1,
        retry_rejected_s=0.1,
    )
    with link:
        for i in range(20):
            outbox.add(draft(i))
        wait_until(
            lambda: link.stats().rejected >= 1 and link.stats().connects >= 3,
            15,
            "refusals",
        )
        assert outbox.depth == 20, "a refused event must stay in the outbox"
        assert sub.copies == []
        acl.write_text("topic readwrite ww/#\n")
        # Reload, not restart: with an acl_file, Mosquitto 2.0.11 restores a subscriber's
        # session after a restart but no longer queues messages for it while it is away.
        # MosquittoBroker has no reload(), hence the private _proc.
        assert broker._proc is not None
        broker._proc.send_signal(signal.SIGHUP)
        assert link.flush(20), f"not drained: {link.stats()}"
    wait_until(lambda: len(sub.unique()) == 20, 10, "20 events")
    assert [e["seq"] for e in sub.unique()] == list(range(1, 21))
    sub.close()


def _make_pki(d: Path) -> None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, via openssl."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=ww-test-ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
    )
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name, cn, ext in (("server", "127.0.0.1", True), ("client", "ww-qingpu-w01", False)):
        openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}")
        openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{name}.crt",
            "-days",
            "2",
            *(("-extfile", "san.ext") if ext else ()),
        )


def test_tls_with_client_certificate(
    broker: MosquittoBroker, outbox: Outbox, tmp_path: Path
) -> None:
    pki = tmp_path / "pki"
    pki.mkdir()
    _make_pki(pki)
    tls_port = free_port()
    broker.extra_conf += (
        f"listener {tls_port} 127.0.0.1\n"
        f"cafile {pki / 'ca.crt'}\ncertfile {pki / 'server.crt'}\nkeyfile {pki / 'server.key'}\n"
        "require_certificate true\n"
    )
    broker.restart()
    sub = Subscriber(broker.host, broker.port)  # the plain listener
    good = BrokerConfig(
        host="127.0.0.1",
        port=tls_port,
        keepalive_s=5,
        tls=TlsConfig(
            ca_file=pki / "ca.crt", cert_file=pki / "client.crt", key_file=pki / "client.key"
        ),
    )
    no_cert = good.model_copy(update={"tls": TlsConfig(ca_file=pki / "ca.crt")})
    with Transport(no_cert, SITE, "w01", outbox, backoff_base_s=0.05, backoff_max_s=0.1) as link:
        outbox.add(draft(0))
        wait_until(lambda: link.stats().last_error is not None, 10, "a refused handshake")
        assert stays_false(lambda: link.stats().connects > 0, 0.5), "connected without a cert"
        assert outbox.depth == 1
    with Transport(good, SITE, "w01", outbox) as link:
        assert link.flush(10), f"not drained: {link.stats()}"
    wait_until(lambda: len(sub.unique()) == 1, 5, "the event")
    sub.close()


def test_retained_config_reaches_the_handler_on_every_connect(
    broker: MosquittoBroker, outbox: Outbox
) -> None:
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-config-server")
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    body = b'{"rules": {"stand_within_s": 4.0}}'
    pub.publish(topic(SITE, "w01", Channel.CONFIG), body, qos=1, retain=True).wait_for_publish(5)
    got: list[bytes] = []
    link = Transport(cfg(broker), SITE, "w01", outbox, on_config=got.append, backoff_max_s=0.5)
    with link:
        wait_until(lambda: got == [body], 10, "the retained config")
        broker.restart()
        wait_until(lambda: link.stats().connects == 2, 10, "reconnection")
        wait_until(lambda: got == [body, body], 10, "the config again after reconnecting")
    pub.disconnect()
    pub.loop_stop()
