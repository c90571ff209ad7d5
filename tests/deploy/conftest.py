"""Fixtures: a PKI issued by deploy/mosquitto/pki.py and a real Mosquitto running the
shipped deploy/mosquitto/mosquitto.conf, with only its paths and port rewritten.

Like tests/conftest.py, a missing Mosquitto fails the tests; it never skips them.
"""

from __future__ import annotations

import getpass
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.localbroker import MosquittoBroker, find_mosquitto
from tests.deploy import DEPLOY

SITE = "s1"
#: w01, w02 registered; w03 registered but its certificate revoked; w09 has a
#: certificate from our CA but is not in the ACL (issued by mistake).
REGISTERED = ("w01", "w02", "w03")
CONF = DEPLOY / "mosquitto" / "mosquitto.conf"


@dataclass(frozen=True)
class Pki:
    root: Path
    ca: Path

    def client(self, identity: str) -> Path:
        return self.root / "clients" / identity.replace("/", "-")


def _run(*args: str | Path) -> str:
    proc = subprocess.run(
        [sys.executable, *map(str, args)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, f"{args}: {proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="session")
def site_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("site")
    (root / "windows").mkdir()
    (root / "site.toml").write_text(f'site = "{SITE}"\n')
    for w in REGISTERED:
        (root / "windows" / f"{w}.toml").write_text(f'window = "{w}"\n')
    return root


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory, site_dir: Path) -> Pki:
    """The CLI exactly as an installer runs it."""
    root = tmp_path_factory.mktemp("pki")
    script = DEPLOY / "mosquitto" / "pki.py"
    _run(script, "init", "--dir", root)
    _run(script, "server", "--dir", root, "--dns", "mqtt.test.invalid")
    _run(script, "site", "--dir", root, site_dir)
    _run(script, "client", "--dir", root, "ww-server", f"{SITE}/w09")
    _run(script, "revoke", "--dir", root, f"{SITE}/w03")
    return Pki(root=root, ca=root / "ca.crt")


def render_conf(template: str, *, port: int, etc: Path, data: Path, log: Path) -> str:
    """The production conf with test paths; fails if the file no longer has what we
    rewrite, so the test cannot silently stop testing the shipped file."""
    swaps = {
        "listener 8883\n": f"listener {port} 127.0.0.1\n",
        "/etc/mosquitto/warmwindow/": f"{etc}/",
        "persistence_location /var/lib/mosquitto/": f"persistence_location {data}/",
        "log_dest stderr": f"log_dest file {log}",
    }
    for old, new in swaps.items():
        assert old in template, f"{CONF} no longer contains {old!r}"
        template = template.replace(old, new)
    # Running as root, Mosquitto would switch to user "mosquitto", who cannot read the
    # test's private keys; as any other user this line is ignored.
    return template + f"user {getpass.getuser()}\n"


class ProductionMosquitto(MosquittoBroker):
    """MosquittoBroker running deploy/mosquitto/mosquitto.conf instead of the demo conf."""

    def __init__(self, workdir: Path, etc: Path) -> None:
        super().__init__(workdir)
        self.etc = etc

    def write_conf(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(
            render_conf(
                CONF.read_text(encoding="utf-8"),
                port=self.port,
                etc=self.etc,
                data=self.workdir,
                log=self.workdir / "mosquitto.log",
            )
        )

    def log_text(self) -> str:
        path = self.workdir / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture(scope="module")
def tls_broker(
    tmp_path_factory: pytest.TempPathFactory, pki: Pki, site_dir: Path
) -> Iterator[ProductionMosquitto]:
    if find_mosquitto() is None:
        pytest.fail("mosquitto is required for deploy tests (apt install mosquitto)")
    etc = tmp_path_factory.mktemp("etc-mosquitto")
    for src, dst in (
        (pki.ca, "ca.crt"),
        (pki.root / "server" / "server.crt", "server.crt"),
        (pki.root / "server" / "server.key", "server.key"),
        (pki.root / "crl.pem", "crl.pem"),
    ):
        (etc / dst).write_bytes(src.read_bytes())
    _run(DEPLOY / "mosquitto" / "acl.py", site_dir, "--out", etc / "acl")
    broker = ProductionMosquitto(tmp_path_factory.mktemp("mosquitto"), etc)
    try:
        broker.start()
    except TimeoutError:
        pytest.fail(f"mosquitto did not start with the production conf:\n{broker.log_text()}")
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped ONNX models with a manifest.json that matches them.

    A copy, so that a model rebuild going on in the checkout (new .onnx written, manifest
    not yet) cannot make these tests flaky; the copy is checked the same way.
    """
    import hashlib
    import json

    from tests.deploy import REPO

    out = tmp_path_factory.mktemp("models")
    files = []
    for name in ("face_detector.onnx", "smile.onnx"):
        data = (REPO / "models" / name).read_bytes()
        (out / name).write_bytes(data)
        sha = hashlib.sha256(data).hexdigest()
        files.append({"file": name, "sha256": sha, "size": len(data)})
    (out / "manifest.json").write_text(json.dumps({"version": "test", "files": files}))
    return out
