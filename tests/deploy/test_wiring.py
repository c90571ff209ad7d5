"""The deployment pieces wired into the product: the agent process under a systemd-like
supervisor (sd_notify READY/WATCHDOG/STOPPING), a signed bundle pushed to a running agent
(installed, reported on ``reply``, agent exits for systemd to restart it on the new
models), and the server's ingest over mutual TLS into the store.

"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.config import BrokerConfig, Site, TlsConfig, load_site
from agent.localbroker import MosquittoBroker
from agent.outbox import Outbox
from agent.protocol import Channel, Reply, topic
from agent.transport import Transport
from server.bundles import build_bundle, model_files, push_bundle
from server.ingest import Ingest, IngestSettings
from server.store.db import Store
from tests.agent import draft
from tests.conftest import EXAMPLE_SITE
from tests.deploy import REPO, MqttPeer
from tests.deploy.conftest import SITE, Pki, ProductionMosquitto
from tests.waiting import wait_until


class Notify:
    """The NOTIFY_SOCKET end of systemd."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.got: list[str] = []

    def poll(self) -> list[str]:
        while True:
            try:
                self.got.append(self.sock.recv(4096).decode())
            except TimeoutError:
                return self.got


@pytest.fixture
def demo_site(tmp_path: Path, broker: MosquittoBroker) -> Path:
    """The example site with its broker pointed at the test's Mosquitto."""
    site = tmp_path / "site"
    shutil.copytree(EXAMPLE_SITE, site)
    toml = (site / "site.toml").read_text()
    (site / "site.toml").write_text(toml.replace("port = 1883", f"port = {broker.port}"))
    assert load_site(site).site.broker.port == broker.port
    return site


@pytest.fixture
def agent_proc(
    tmp_path: Path, demo_site: Path
) -> Iterator[tuple[subprocess.Popen[str], Notify, Ed25519PrivateKey]]:
    key = Ed25519PrivateKey.generate()
    pub = tmp_path / "bundle.pub"
    pub.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    notify = Notify(tmp_path / "notify.sock")
    env = {
        **os.environ,
        "NOTIFY_SOCKET": str(tmp_path / "notify.sock"),
        "WATCHDOG_USEC": "1000000",  # ping every 0.5 s
        "WW_BUNDLE_KEY": str(pub),
    }
    env.pop("WW_MODEL_DIR", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "agent", "--site", str(demo_site), "--window", "w03",
         "--state-dir", str(tmp_path / "state"), "--mock-pins", "--scripted"],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        yield proc, notify, key
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        notify.sock.close()


def test_agent_notifies_systemd_ready_watchdog_stopping(
    agent_proc: tuple[subprocess.Popen[str], Notify, Ed25519PrivateKey],
) -> None:
    proc, notify, _key = agent_proc
    assert wait_until(lambda: any(m.startswith("READY=1") for m in notify.poll()), 30), proc.pid
    assert wait_until(lambda: notify.poll().count("WATCHDOG=1") >= 2, 10)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert "STOPPING=1" in notify.poll()


def test_running_agent_installs_pushed_bundle_reports_and_restarts(
    agent_proc: tuple[subprocess.Popen[str], Notify, Ed25519PrivateKey],
    broker: MosquittoBroker,
    tmp_path: Path,
    models_dir: Path,
) -> None:
    proc, notify, key = agent_proc
    assert wait_until(lambda: any(m.startswith("READY=1") for m in notify.poll()), 30)
    watcher = MqttPeer(broker.host, broker.port, ca=None, cert_dir=None)
    assert watcher.wait_connack()
    watcher.subscribe(topic("qingpu", "w03", Channel.REPLY))
    data = build_bundle(
        model_files(models_dir), version="v9", serial=9, key=key, targets=["qingpu/w03"]
    )
    push_bundle(data, "qingpu", "w03", host=broker.host, port=broker.port)
    assert proc.wait(60) == 0, "agent did not exit to restart on the new models"
    current = tmp_path / "state" / "bundles" / "current"
    assert current.resolve().name == "9-v9"
    assert wait_until(lambda: len(watcher.received()) >= 7, 10)
    steps = [Reply.model_validate_json(p) for _, p in watcher.received()]
    assert all(r.ok for r in steps) and "check" in steps[-1].error  # type: ignore[operator]
    watcher.close()


def test_server_ingest_stores_events_over_mutual_tls(
    tls_broker: ProductionMosquitto, pki: Pki, tmp_path: Path
) -> None:
    store = Store(f"sqlite:///{tmp_path / 'ww.db'}")
    store.create()
    example = load_site(EXAMPLE_SITE)  # registered under the test PKI's site slug
    store.register_site(
        Site(path=EXAMPLE_SITE, site=example.site.model_copy(update={"site": SITE}),
             windows=example.windows[:2])
    )  # fmt: skip
    server_id = pki.client("ww-server")
    settings = IngestSettings(
        host="127.0.0.1", port=tls_broker.port, client_id="ww-server-tls", share_group="ww-ingest"
    )
    tls = TlsConfig(
        ca_file=pki.ca, cert_file=server_id / "window.crt", key_file=server_id / "window.key"
    )
    extra: dict[str, Any] = {"tls": tls}  # a field only after the change
    settings = dataclasses.replace(settings, **extra)
    ingest = Ingest(store, settings)
    ingest.start()
    try:
        assert ingest.wait_connected(10)
        certs = pki.client(f"{SITE}/w01")
        cfg = BrokerConfig(
            host="127.0.0.1",
            port=tls_broker.port,
            tls=TlsConfig(
                ca_file=pki.ca, cert_file=certs / "window.crt", key_file=certs / "window.key"
            ),
        )
        with Outbox(tmp_path / "o.db", SITE, "w01") as box, Transport(cfg, SITE, "w01", box):
            for i in range(20):
                box.add(draft(i))
            assert wait_until(lambda: ingest.stats.stored >= 20, 20), ingest.stats
        assert store.event_count() == 20
        assert ingest.stats.rejected.total() == 0
    finally:
        ingest.stop()
        store.close()
