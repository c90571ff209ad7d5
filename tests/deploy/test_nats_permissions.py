"""The city's NATS configuration (deploy/city/nats_config.py) on a real 3-node cluster: TLS on the
client, MQTT and route listeners, certificate users, per-window permissions, pinned keys.

The same checks as test_mosquitto_tls.py, with what MQTT 3.1.1 on NATS answers: a refused
SUBSCRIBE gets SUBACK 0x80; a refused PUBLISH is still PUBACKed (3.1.1 has no reason code)
and dropped, so a forged publish is proven dropped by what arrives, after a legitimate
publish on the same connection has arrived. The cluster runs Debian's nats-server (2.9.10
here); its known MQTT advisories are probed where this configuration could be exposed.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import socket
import ssl
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import nats
import paho.mqtt.client as mqtt
import pytest

from agent.config import TlsConfig
from agent.protocol import Channel, topic
from bench.natscluster import NATS_SERVER, NatsCluster, NatsNode
from server.bundles import build_bundle, model_files, push_bundle
from server.events_source import Delivery, JetStreamEvents, JetStreamSettings
from tests.deploy import REPO, MqttPeer, load_script, payload
from tests.deploy.conftest import SITE, Pki
from tests.waiting import stays_false, wait_until

NATS_PY = REPO / "deploy" / "city" / "nats_config.py"
#: Registered in the site: w01, w02, w03 (w03's certificate revoked); w09 has a
#: certificate from our CA but no window.
WINDOWS = [(SITE, "w01"), (SITE, "w02"), (SITE, "w03")]
REFUSED = 0x80


@pytest.fixture(scope="module")
def natscfg() -> ModuleType:
    return load_script(NATS_PY)


@pytest.fixture(scope="module")
def pkimod() -> ModuleType:
    return load_script(REPO / "deploy" / "mosquitto" / "pki.py")


class CityCluster(NatsCluster):
    """NatsCluster whose nodes run exactly what deploy/city/nats_config.py renders."""

    def __init__(self, workdir: Path, pki: Pki, natscfg: ModuleType, pkimod: ModuleType) -> None:
        super().__init__(workdir, 3, name="wwcity")
        self.pki, self.natscfg, self.pkimod = pki, natscfg, pkimod
        self.pinned = natscfg.pinned_keys(pki.root)

    def conf(self, node: NatsNode) -> str:
        cfg = self.natscfg
        nodes = [
            cfg.Node(n.name, n.host, n.client_port, n.mqtt_port, n.cluster_port, n.http_port)
            for n in self.nodes
        ]
        tls = self.pkimod.issue_node(self.pki.root, node.name)
        files = cfg.Files(
            ca=str(self.pki.ca),
            cert=str(tls / "node.crt"),
            key=str(tls / "node.key"),
            store_dir=str(node.store_dir),
        )
        text: str = cfg.render_node(
            nodes[self.nodes.index(node)],
            nodes,
            WINDOWS,
            files=files,
            cluster=self.name,
            pinned=self.pinned,
        )
        return text


@pytest.fixture(scope="module")
def city(
    tmp_path_factory: pytest.TempPathFactory, pki: Pki, natscfg: ModuleType, pkimod: ModuleType
) -> Iterator[CityCluster]:
    if not Path(NATS_SERVER).exists():
        pytest.fail(f"{NATS_SERVER} missing: apt-get install nats-server")
    c = CityCluster(tmp_path_factory.mktemp("natscity"), pki, natscfg, pkimod)
    try:
        c.start()
    except (TimeoutError, RuntimeError) as exc:
        logs = "\n".join(n.log_path.read_text(errors="replace")[-1500:] for n in c.nodes)
        pytest.fail(f"the rendered configuration does not run: {exc}\n{logs}")
    try:
        yield c
    finally:
        c.stop()


def peer(
    city: CityCluster, pki: Pki, identity: str | None, node: int = 0, **kw: object
) -> MqttPeer:
    host, port = city.mqtt_nodes()[node]
    return MqttPeer(
        host,
        port,
        ca=pki.ca,
        cert_dir=pki.client(identity) if identity else None,
        protocol=mqtt.MQTTv311,
        **kw,  # type: ignore[arg-type]
    )


def connected(city: CityCluster, pki: Pki, identity: str, node: int = 0, **kw: object) -> MqttPeer:
    p = peer(city, pki, identity, node, **kw)
    assert p.wait_connack(), f"{identity} refused: {p.connack} {p.error}"
    return p


def bodies(p: MqttPeer) -> set[str]:
    return {m.decode(errors="replace") for _, m in p.received()}


@pytest.fixture
def server(city: CityCluster, pki: Pki) -> Iterator[MqttPeer]:
    """The aggregator's identity on another node than the windows, reading what they send."""
    p = connected(city, pki, "ww-server", node=1)
    for ch in ("event", "availability", "state", "health", "reply"):
        assert not p.subscribe(f"ww/v1/+/+/{ch}", 0)[0].is_failure, f"server may not read {ch}"
    yield p
    p.close()


def test_window_cannot_publish_as_another_window(
    city: CityCluster, pki: Pki, server: MqttPeer
) -> None:
    w01 = connected(city, pki, f"{SITE}/w01")
    try:
        for ch in ("cmd", "config", "settings", "stored"):
            assert not w01.subscribe(topic(SITE, "w01", Channel(ch)), 1)[0].is_failure
        forged = {ch: payload() for ch in ("event", "state", "availability", "health", "reply")}
        for ch, body in forged.items():
            w01.publish(topic(SITE, "w02", Channel(ch)), body)
        # Not even to itself: config, settings, commands and confirmations come from the
        # server only. Nor into the engine's own MQTT subjects.
        own_forged = {ch: payload() for ch in ("config", "settings", "cmd", "stored")}
        for ch, body in own_forged.items():
            w01.publish(topic(SITE, "w01", Channel(ch)), body)
        internal = payload()
        for t in ("$MQTT/sub/probe", "$MQTT/JSA/x/SL", "$MQTT/sess/x"):
            w01.publish(t, internal)
        own = payload()
        w01.publish(topic(SITE, "w01", Channel.EVENT), own)
        assert wait_until(lambda: own in bodies(server), 5), "w01's own event never arrived"
        legit = payload()
        assert not server.publish(topic(SITE, "w01", Channel.CMD), legit).is_failure
        assert wait_until(lambda: legit in bodies(w01), 5), "w01 never got its own command"
        assert not bodies(server) & set(forged.values()), "a forged message reached the server"
        assert not bodies(w01) & set(own_forged.values()), "a window wrote its own config"
        assert internal not in bodies(w01) | bodies(server)
        assert w01.client.is_connected()
    finally:
        w01.close()


def test_window_cannot_read_another_windows_topics(
    city: CityCluster, pki: Pki, server: MqttPeer
) -> None:
    w01 = connected(city, pki, f"{SITE}/w01", node=2)
    w02 = connected(city, pki, f"{SITE}/w02", node=0)
    try:
        # NATS checks a filter at SUBSCRIBE: each is refused outright, wildcards too, and
        # the engine's deliver prefix of QoS 1 subscriptions cannot be read through MQTT.
        for f in (
            *(topic(SITE, "w02", Channel(ch)) for ch in ("cmd", "config", "settings", "stored")),
            topic(SITE, "w02", Channel.EVENT),
            "ww/v1/#",
            "ww/v1/+/+/cmd",
            "#",
            "$MQTT/sub/#",
            "$MQTT/deliver/pubrel/#",
            "$MQTT/#",
        ):
            code = w01.subscribe(f, 1)[0]
            assert code.value == REFUSED, f"w01 may subscribe to {f}: {code}"
        for ch in ("cmd", "stored"):
            assert not w01.subscribe(topic(SITE, "w01", Channel(ch)), 1)[0].is_failure
            assert not w02.subscribe(topic(SITE, "w02", Channel(ch)), 1)[0].is_failure
        theirs = {ch: payload() for ch in ("cmd", "config", "settings", "stored")}
        for ch, body in theirs.items():
            assert not server.publish(topic(SITE, "w02", Channel(ch)), body).is_failure
        secret = payload()
        w02.publish(topic(SITE, "w02", Channel.EVENT), secret)
        mine = payload()
        assert not server.publish(topic(SITE, "w01", Channel.CMD), mine).is_failure
        assert wait_until(lambda: mine in bodies(w01), 5)
        assert wait_until(lambda: theirs["cmd"] in bodies(w02), 5), "w02 lost its command"
        assert wait_until(lambda: secret in bodies(server), 5)
        assert not bodies(w01) & {*theirs.values(), secret}, "w01 read what is w02's"
    finally:
        w01.close()
        w02.close()


def test_no_certificate_foreign_ca_revoked_or_unregistered_no_connection(
    city: CityCluster, pki: Pki, pkimod: ModuleType, tmp_path: Path
) -> None:
    ok = connected(city, pki, f"{SITE}/w02")  # the same listener lets a good one in
    ok.close()
    other = tmp_path / "other-pki"
    pkimod.init_ca(other)
    rogue = pkimod.issue_client(other, f"{SITE}/w01")  # right name, wrong CA
    for cert_dir, what in (
        (None, "no certificate"),
        (rogue, "foreign CA"),
        (pki.client(f"{SITE}/w03"), "revoked (its key is not pinned)"),
        (pki.client(f"{SITE}/w09"), "not a registered window"),
    ):
        host, port = city.mqtt_nodes()[1]
        p = MqttPeer(host, port, ca=pki.ca, cert_dir=cert_dir, protocol=mqtt.MQTTv311)
        try:
            assert not p.wait_connack(), f"{what}: accepted"
        finally:
            p.close()
    # Plain MQTT on the TLS port gets no CONNACK.
    connect = bytes.fromhex("101000044d5154540402000a0004616e6f6e")
    with socket.create_connection(city.mqtt_nodes()[2], timeout=3) as s:
        s.sendall(connect)
        try:
            answer = s.recv(4)
        except (TimeoutError, ConnectionResetError):
            answer = b""
    assert not answer.startswith(b"\x20"), "plain MQTT got a CONNACK"


def _nats_tls(pki: Pki, identity: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    d = pki.client(identity)
    ctx.load_cert_chain(str(d / "window.crt"), str(d / "window.key"))
    return ctx


def test_a_window_certificate_cannot_use_the_nats_protocol(city: CityCluster, pki: Pki) -> None:
    """A NATS-protocol connection could read $MQTT.sub.> (every terminal's QoS 1 deliveries),
    which window users need for their own; so windows may connect by MQTT only."""

    async def attempt(identity: str) -> str:
        try:
            nc = await nats.connect(
                city.nats_urls()[0].replace("nats://", "tls://"),
                tls=_nats_tls(pki, identity),
                allow_reconnect=False,
                connect_timeout=3,
            )
        except Exception as exc:  # nats-py raises its own Error for -ERR
            return f"refused: {exc}"
        await nc.close()
        return "connected"

    assert asyncio.run(attempt("ww-server")) == "connected"
    answer = asyncio.run(attempt(f"{SITE}/w01"))
    assert answer.startswith("refused") and "Authorization Violation" in answer, answer


def test_the_ingest_consumes_the_stream_within_its_permissions(
    city: CityCluster, pki: Pki, server: MqttPeer
) -> None:
    """The server's JetStream permissions are exactly enough: the real JetStreamEvents (stream
    created if missing, durable pull consumer, ack after commit) gets a window's event."""
    got: list[Delivery] = []
    d = pki.client("ww-server")
    source = JetStreamEvents(
        JetStreamSettings(
            urls=[u.replace("nats://", "tls://") for u in city.nats_urls()],
            ca_file=pki.ca,
            cert_file=d / "window.crt",
            key_file=d / "window.key",
        ),
        got.append,
        clock_ms=lambda: time.time_ns() // 1_000_000,
    )
    source.start()

    def violations() -> list[str]:
        logs = "".join(n.log_path.read_text(errors="replace") for n in city.nodes)
        return [ln for ln in logs.splitlines() if "Violation" in ln and "CN=ww-server" in ln]

    assert source.wait_ready(30), f"the stream or consumer was refused: {violations()}"
    w01 = connected(city, pki, f"{SITE}/w01", node=2)
    try:
        body = payload()
        w01.publish(topic(SITE, "w01", Channel.EVENT), body)
        assert wait_until(lambda: any(g.payload.decode() == body for g in got), 20), (
            f"no event from the stream: {source.stats} {violations()}"
        )
        item = next(g for g in got if g.payload.decode() == body)
        assert item.topic == topic(SITE, "w01", Channel.EVENT)
        assert item.ack is not None
        item.ack()
    finally:
        w01.close()
        source.close()
    assert not violations(), violations()


def test_another_windows_client_id_reads_none_of_its_messages(
    city: CityCluster, pki: Pki, server: MqttPeer
) -> None:
    """CVE-2026-33215 (sessions hijacked by client id, fixed in 2.11.15/2.12.6): under this
    configuration a window that takes another's client id knocks it off (a denial of
    service, logged "Replacing old client") but its queued commands stay its own."""
    victim_id = f"ww-{SITE}-w02-{uuid.uuid4().hex[:6]}"
    w02 = connected(city, pki, f"{SITE}/w02", client_id=victim_id, clean_session=False)
    assert not w02.subscribe(topic(SITE, "w02", Channel.CMD), 1)[0].is_failure
    w02.close()
    queued = payload()
    assert not server.publish(topic(SITE, "w02", Channel.CMD), queued).is_failure
    thief = connected(city, pki, f"{SITE}/w01", client_id=victim_id, clean_session=False)
    try:
        later = payload()
        assert not server.publish(topic(SITE, "w02", Channel.CMD), later).is_failure
        assert stays_false(lambda: bool(thief.received()), 2.0), "w01 read w02's session"
    finally:
        thief.close()
    back = connected(city, pki, f"{SITE}/w02", client_id=victim_id, clean_session=False)
    try:
        assert wait_until(lambda: {queued, later} <= bodies(back), 10), (
            f"w02's session lost its commands: {bodies(back)}"
        )
    finally:
        back.close()


def test_the_real_models_bundle_fits_and_reaches_only_its_window(
    city: CityCluster, pki: Pki, natscfg: ModuleType, tmp_path: Path
) -> None:
    """The shipped models bundle is over NATS's 1 MB default; the rendered max_payload holds
    it and the server's retained push reaches its window intact, and no other window."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    data = build_bundle(
        model_files(REPO / "models"), version="t", serial=1, key=Ed25519PrivateKey.generate()
    )
    assert len(data) > 1024 * 1024, "the bundle is small again: revisit MAX_PAYLOAD's note"
    assert len(data) * 2 < natscfg.MAX_PAYLOAD
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None
    w01 = connected(city, pki, f"{SITE}/w01", node=1)
    w02 = connected(city, pki, f"{SITE}/w02", node=2)
    try:
        assert not w01.subscribe(topic(SITE, "w01", Channel.CONFIG), 1)[0].is_failure
        assert w02.subscribe(topic(SITE, "w01", Channel.CONFIG), 1)[0].value == REFUSED
        d = pki.client("ww-server")
        host, port = city.mqtt_nodes()[0]
        push_bundle(
            data,
            SITE,
            "w01",
            host=host,
            port=port,
            tls=TlsConfig(ca_file=pki.ca, cert_file=d / "window.crt", key_file=d / "window.key"),
            protocol=mqtt.MQTTv311,
        )
        assert wait_until(lambda: bool(w01.received(topic(SITE, "w01", Channel.CONFIG))), 20)
        got = w01.received(topic(SITE, "w01", Channel.CONFIG))[-1][1]
        assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()
        assert not w02.received()
    finally:
        w01.close()
        w02.close()
