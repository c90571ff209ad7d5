"""The production broker config against a real Mosquitto: TLS, client certificates, ACL.

Every "cannot" is paired with a "can" on the same connection, so a test cannot pass
because nothing worked at all: the forged publish goes first, the legitimate one second,
and once the second has arrived at the server the first can no longer be in flight.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config import BrokerConfig, TlsConfig
from agent.outbox import Outbox
from agent.protocol import ACCEPTS_SUBSCRIPTION, ONLINE, Accepts, Channel, accepts_topic, topic
from agent.transport import Transport
from tests.agent import draft
from tests.deploy import MqttPeer, load_script, payload
from tests.deploy.conftest import SITE, Pki, ProductionMosquitto
from tests.waiting import stays_false, wait_until

NOT_AUTHORIZED = 0x87


@pytest.fixture
def server(tls_broker: ProductionMosquitto, pki: Pki) -> Iterator[MqttPeer]:
    """The aggregator's identity, subscribed to everything windows send."""
    peer = MqttPeer(tls_broker.host, tls_broker.port, ca=pki.ca, cert_dir=pki.client("ww-server"))
    assert peer.wait_connack(), f"server identity refused: {peer.connack}"
    for ch in ("event", "availability", "state", "health", "reply"):
        codes = peer.subscribe(f"ww/v1/+/+/{ch}")
        assert not codes[0].is_failure, f"server may not read {ch}: {codes}"
    yield peer
    peer.close()


def window(broker: ProductionMosquitto, pki: Pki, identity: str) -> MqttPeer:
    peer = MqttPeer(broker.host, broker.port, ca=pki.ca, cert_dir=pki.client(identity))
    assert peer.wait_connack(), f"{identity} refused: {peer.connack} {peer.error}"
    return peer


def test_window_cannot_publish_as_another_window(
    tls_broker: ProductionMosquitto, pki: Pki, server: MqttPeer
) -> None:
    w01 = window(tls_broker, pki, f"{SITE}/w01")
    try:
        forged = {ch: payload() for ch in ("event", "state", "availability", "health", "reply")}
        for ch, body in forged.items():
            rc = w01.publish(topic(SITE, "w02", Channel(ch)), body)
            assert rc.value == NOT_AUTHORIZED, f"forged {ch} answered {rc}"
        # A window may not push config, settings, commands or confirmations, not even to
        # itself.
        for ch in ("config", "settings", "cmd", "stored"):
            rc = w01.publish(topic(SITE, "w01", Channel(ch)), payload())
            assert rc.value == NOT_AUTHORIZED, f"window wrote its own {ch}: {rc}"
        own = payload()
        assert not w01.publish(topic(SITE, "w01", Channel.EVENT), own).is_failure
        assert wait_until(lambda: bool(server.received(topic(SITE, "w01", Channel.EVENT))))
        bodies = {p.decode() for _, p in server.received()}
        assert own in bodies
        assert not bodies & set(forged.values()), "a forged message reached the server"
    finally:
        w01.close()


def test_window_cannot_read_another_windows_commands(
    tls_broker: ProductionMosquitto, pki: Pki, server: MqttPeer
) -> None:
    w01 = window(tls_broker, pki, f"{SITE}/w01")
    try:
        # Mosquitto 2.0 grants the SUBSCRIBE and applies the read ACL to each message it
        # would deliver, so what counts is what arrives, through any filter.
        w01.subscribe(topic(SITE, "w02", Channel.CMD))
        w01.subscribe(topic(SITE, "w02", Channel.CONFIG))
        w01.subscribe(topic(SITE, "w02", Channel.SETTINGS))
        w01.subscribe(topic(SITE, "w02", Channel.STORED))
        w01.subscribe("ww/v1/#")
        assert not w01.subscribe(topic(SITE, "w01", Channel.CMD))[0].is_failure
        assert not w01.subscribe(topic(SITE, "w01", Channel.STORED))[0].is_failure
        other, config, settings, own = payload(), payload(), payload(), payload()
        stored, own_stored = payload(), payload()
        assert not server.publish(topic(SITE, "w02", Channel.CMD), other).is_failure
        assert not server.publish(topic(SITE, "w02", Channel.CONFIG), config).is_failure
        assert not server.publish(topic(SITE, "w02", Channel.SETTINGS), settings).is_failure
        assert not server.publish(topic(SITE, "w02", Channel.STORED), stored).is_failure
        assert not server.publish(topic(SITE, "w01", Channel.STORED), own_stored).is_failure
        assert not server.publish(topic(SITE, "w01", Channel.CMD), own).is_failure
        assert wait_until(lambda: bool(w01.received(topic(SITE, "w01", Channel.CMD))))
        assert wait_until(lambda: bool(w01.received(topic(SITE, "w01", Channel.STORED))))
        got = {p.decode() for _, p in w01.received()}
        assert own in got
        assert own_stored in got, "w01 cannot read its own confirmations"
        assert other not in got, "w01 read w02's command"
        assert config not in got, "w01 read w02's config"
        assert settings not in got, "w01 read w02's settings"
        assert stored not in got, "w01 read w02's confirmations"
        # Nor does it see other windows' events.
        w02 = window(tls_broker, pki, f"{SITE}/w02")
        try:
            secret = payload()
            w02.publish(topic(SITE, "w02", Channel.EVENT), secret)
            assert wait_until(lambda: secret in {p.decode() for _, p in server.received()})
            assert secret not in {p.decode() for _, p in w01.received()}
        finally:
            w02.close()
    finally:
        w01.close()


def test_no_certificate_no_connection(tls_broker: ProductionMosquitto, pki: Pki) -> None:
    anonymous = MqttPeer(tls_broker.host, tls_broker.port, ca=pki.ca, cert_dir=None)
    try:
        assert not anonymous.wait_connack(), "a client without certificate was accepted"
    finally:
        anonymous.close()
    # Plain MQTT on the TLS port gets no CONNACK either.
    connect = bytes.fromhex("101000044d5154540402000a0004616e6f6e")  # CONNECT, id "anon"
    with socket.create_connection((tls_broker.host, tls_broker.port), timeout=3) as s:
        s.sendall(connect)
        try:
            answer = s.recv(4)
        except (TimeoutError, ConnectionResetError):
            answer = b""
    assert not answer.startswith(b"\x20"), "plain MQTT got a CONNACK"


def test_foreign_ca_and_revoked_certificates_are_refused(
    tls_broker: ProductionMosquitto, pki: Pki, tmp_path: Path
) -> None:
    pki_mod = load_script(Path(__file__).parents[2] / "deploy" / "mosquitto" / "pki.py")
    other = tmp_path / "other-pki"
    pki_mod.init_ca(other)
    rogue = pki_mod.issue_client(other, f"{SITE}/w01")  # right name, wrong CA
    for cert_dir, what in ((rogue, "foreign CA"), (pki.client(f"{SITE}/w03"), "revoked")):
        peer = MqttPeer(tls_broker.host, tls_broker.port, ca=pki.ca, cert_dir=cert_dir)
        try:
            assert not peer.wait_connack(), f"{what} certificate accepted"
        finally:
            peer.close()


def test_certificate_not_in_acl_has_no_rights(
    tls_broker: ProductionMosquitto, pki: Pki, server: MqttPeer
) -> None:
    stray = window(tls_broker, pki, f"{SITE}/w09")  # valid CA, but not a registered window
    try:
        rc = stray.publish(topic(SITE, "w09", Channel.EVENT), payload())
        assert rc.value == NOT_AUTHORIZED
        stray.subscribe(topic(SITE, "w09", Channel.CMD))
        probe = payload()
        assert not server.publish(topic(SITE, "w09", Channel.CMD), probe).is_failure
        # Delivery is checked against the ACL when the message is routed, synchronously
        # with the server's PUBACK flow; a short wait makes a wrong delivery visible.
        assert stays_false(lambda: bool(stray.received()), 0.5)
    finally:
        stray.close()


def test_server_reads_through_a_shared_subscription(
    tls_broker: ProductionMosquitto, pki: Pki
) -> None:
    replica = MqttPeer(
        tls_broker.host, tls_broker.port, ca=pki.ca, cert_dir=pki.client("ww-server")
    )
    w02 = window(tls_broker, pki, f"{SITE}/w02")
    try:
        assert replica.wait_connack()
        codes = replica.subscribe("$share/ww-ingest/ww/v1/+/+/event")
        assert not codes[0].is_failure, codes
        body = payload()
        w02.publish(topic(SITE, "w02", Channel.EVENT), body)
        assert wait_until(lambda: body in {p.decode() for _, p in replica.received()})
    finally:
        replica.close()
        w02.close()


def test_agent_transport_delivers_over_mutual_tls(
    tls_broker: ProductionMosquitto, pki: Pki, server: MqttPeer, tmp_path: Path
) -> None:
    """The real agent Transport, configured as a terminal would be (BrokerConfig.tls)."""
    certs = pki.client(f"{SITE}/w02")
    cfg = BrokerConfig(
        host="127.0.0.1",
        port=tls_broker.port,
        keepalive_s=10,
        tls=TlsConfig(
            ca_file=certs / "ca.crt",
            cert_file=certs / "window.crt",
            key_file=certs / "window.key",
        ),
    )
    with Outbox(tmp_path / "outbox.db", SITE, "w02") as box, Transport(cfg, SITE, "w02", box) as t:
        ids = [str(box.add(draft(i)).event_id) for i in range(5)]
        assert wait_until(lambda: box.depth == 0, 15), f"not delivered: {t.stats()}"
        assert t.stats().protocol == "5" and t.stats().rejected == 0
    got = [json.loads(p) for tp, p in server.received(topic(SITE, "w02", Channel.EVENT))]
    assert [e["event_id"] for e in got if e.get("event_id") in ids] == ids
    avail = [p for _, p in server.received(topic(SITE, "w02", Channel.AVAILABILITY))]
    assert ONLINE.encode() in avail


def test_ca_hostname_checked(tls_broker: ProductionMosquitto, pki: Pki) -> None:
    """The broker certificate is valid for 127.0.0.1/localhost and the configured names,
    and a client checking the name refuses one it was not issued for."""
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    with (
        socket.create_connection((tls_broker.host, tls_broker.port)) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
    with (
        pytest.raises(ssl.SSLCertVerificationError),
        socket.create_connection((tls_broker.host, tls_broker.port)) as raw,
        ctx.wrap_socket(raw, server_hostname="mqtt.elsewhere.invalid"),
    ):
        pass


def test_server_pushes_a_signed_bundle_to_one_terminal(
    tls_broker: ProductionMosquitto, pki: Pki, tmp_path: Path, models_dir: Path
) -> None:
    """bundle build -> retained config over mutual TLS -> the agent's Transport -> Updater."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from agent.update import Updater, is_bundle
    from server.bundles import build_bundle, model_files, push_bundle

    models = models_dir
    key = Ed25519PrivateKey.generate()
    data = build_bundle(model_files(models), version="v2", serial=2, key=key, targets=["s1/w01"])
    server_tls = TlsConfig(
        ca_file=pki.ca,
        cert_file=pki.client("ww-server") / "window.crt",
        key_file=pki.client("ww-server") / "window.key",
    )
    push_bundle(data, SITE, "w01", host="127.0.0.1", port=tls_broker.port, tls=server_tls)
    # A window's identity may not push one (the broker answers "not authorised").
    w02_dir = pki.client(f"{SITE}/w02")
    w02_tls = TlsConfig(
        ca_file=pki.ca, cert_file=w02_dir / "window.crt", key_file=w02_dir / "window.key"
    )
    with pytest.raises(PermissionError):
        push_bundle(data, SITE, "w01", host="127.0.0.1", port=tls_broker.port, tls=w02_tls)

    received: list[bytes] = []
    certs = pki.client(f"{SITE}/w01")
    cfg = BrokerConfig(
        host="127.0.0.1",
        port=tls_broker.port,
        tls=TlsConfig(
            ca_file=certs / "ca.crt",
            cert_file=certs / "window.crt",
            key_file=certs / "window.key",
        ),
    )
    with (
        Outbox(tmp_path / "outbox.db", SITE, "w01") as box,
        Transport(cfg, SITE, "w01", box, on_config=received.append),
    ):
        assert wait_until(lambda: bool(received), 10), "retained bundle not delivered"
    assert received[0] == data and is_bundle(received[0])
    updater = Updater(tmp_path / "bundles", [key.public_key()], identity=f"{SITE}/w01")
    updater.seed(models)
    report = updater.apply(received[0])
    assert report.ok, report.steps
    assert updater.current_serial() == 2


def test_windows_read_the_accepts_announcements_but_cannot_forge_them(
    tls_broker: ProductionMosquitto, pki: Pki
) -> None:
    """An ingest's retained Accepts reaches every window; a window's forged one (it would
    move the whole fleet's event version up or down) is refused and reaches no window.

    The server identity may write these topics but not read them, so the witnesses are
    windows: w01 sees the genuine update that follows its refused forgery, and w02,
    subscribing afterwards, gets the genuine retained announcement, not the forged one.
    """
    server_id = f"ww-test-{uuid.uuid4().hex[:8]}"
    announced = accepts_topic(server_id)
    connected_ms = int(time.time() * 1000)

    def announcement(*versions: int, later_ms: int = 0) -> str:
        return Accepts(
            server=server_id, versions=versions, ts_ms=connected_ms + later_ms
        ).model_dump_json()

    ingest = window(tls_broker, pki, "ww-server")
    w01 = window(tls_broker, pki, f"{SITE}/w01")
    w02: MqttPeer | None = None
    try:
        genuine = announcement(1)
        assert not ingest.publish(announced, genuine, retain=True).is_failure
        assert not w01.subscribe(ACCEPTS_SUBSCRIPTION)[0].is_failure
        assert wait_until(
            lambda: genuine.encode() in {p for _, p in w01.received(announced)},
            5,
            "the retained announcement at a window",
        )

        forged = announcement(1, 2, later_ms=1)
        for target in (announced, accepts_topic(f"{SITE}-w01")):
            rc = w01.publish(target, forged, retain=True)
            assert rc.value == NOT_AUTHORIZED, f"window announced on {target}: {rc}"
        update = announcement(1, later_ms=2)  # the ingest reconnected
        assert not ingest.publish(announced, update, retain=True).is_failure
        assert wait_until(
            lambda: update.encode() in {p for _, p in w01.received(announced)},
            5,
            "the ingest's update after the refused forgery",
        )
        assert forged.encode() not in {p for _, p in w01.received()}, "forgery delivered"

        w02 = window(tls_broker, pki, f"{SITE}/w02")
        assert not w02.subscribe(ACCEPTS_SUBSCRIPTION)[0].is_failure
        assert wait_until(lambda: bool(w02.received(announced)), 5, "the retained one at w02")
        assert w02.received() == [(announced, update.encode())], "retained forgery"
    finally:
        ingest.publish(announced, b"", retain=True)  # clear it for the module's broker
        for peer in (ingest, w01, w02):
            if peer is not None:
                peer.close()
