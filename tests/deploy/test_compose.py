"""deploy/compose: valid YAML whose every local reference exists (or is an install-time
file git ignores, with an example beside it), no committed secrets, and settings that
ServerEnv actually reads. Docker is not needed: nothing is started."""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import yaml

from server.settings import ServerEnv
from tests.deploy import DEPLOY
from tests.deploy.conftest import Pki

COMPOSE = DEPLOY / "compose"
INSTALL_TIME = ("server.env", "secrets/", "pki/")  # created by the installer, ignored


def load() -> dict[str, Any]:
    doc = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def expand(value: str) -> str:
    """Compose's ${VAR:-default} with the variable unset."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def assert_present(rel: str) -> None:
    path = (COMPOSE / rel).resolve()
    if path.exists():
        return
    inside = path.relative_to(COMPOSE.resolve()).as_posix()
    assert any(inside == p or inside.startswith(p) for p in INSTALL_TIME), f"{rel} missing"
    ignored = (COMPOSE / ".gitignore").read_text().split()
    assert any(inside == p or inside.startswith(p) for p in ignored), f"{rel} not ignored"


def test_stack_has_server_postgres_mosquitto_and_references_exist() -> None:
    doc = load()
    services = doc["services"]
    assert {"db", "mqtt", "server"} <= set(services)
    assert services["db"]["image"].startswith("postgres:")
    assert services["mqtt"]["image"].startswith("eclipse-mosquitto:2")
    for svc in services.values():
        for vol in svc.get("volumes", []):
            src = expand(vol.split(":")[0])
            if src.startswith("."):
                assert_present(src)
        if "env_file" in svc:
            assert_present(svc["env_file"])
            assert (COMPOSE / f"{svc['env_file']}.example").exists()
        if "build" in svc:
            context = (COMPOSE / svc["build"]["context"]).resolve()
            dockerfile = context / svc["build"]["dockerfile"]
            assert dockerfile.exists()
            for line in dockerfile.read_text().splitlines():
                if line.startswith("COPY "):
                    for src in line.split()[1:-1]:
                        assert (context / src).exists(), f"Dockerfile copies missing {src}"
        for name in svc.get("secrets", []):
            assert name in doc["secrets"], f"undeclared secret {name}"
    for secret in doc["secrets"].values():
        assert_present(secret["file"])
    # The broker runs the production config, unchanged.
    mounts = [v.split(":")[0] for v in services["mqtt"]["volumes"]]
    assert "../mosquitto/mosquitto.conf" in mounts


def test_no_secret_values_and_only_known_settings() -> None:
    doc = load()
    known = {f"WW_{name.upper()}" for name in ServerEnv.model_fields}
    example = (COMPOSE / "server.env.example").read_text()
    keys = re.findall(r"^#?(WW_[A-Z_]+)=", example, flags=re.M)
    assert keys and set(keys) <= known, set(keys) - known
    for name, svc in doc["services"].items():
        env = svc.get("environment", {})
        for key, value in env.items():
            if key.startswith("WW_"):
                assert key in known, f"{name}: {key} is not read by ServerEnv"
            if "PASSWORD" in key or "KEY" in key or "TOKEN" in key:
                assert key.endswith("_FILE") and str(value).startswith("/run/secrets/"), key
        db_url = str(env.get("WW_DB_URL", ""))
        assert ":" not in db_url.split("@")[0].split("//")[-1], f"{name}: password in URL"


def test_install_pki_lays_out_broker_and_server_files(
    pki: Pki, site_dir: Path, tmp_path: Path
) -> None:
    # A copy of the two scripts, so the test writes nothing into the checkout.
    (tmp_path / "compose").mkdir()
    (tmp_path / "mosquitto").mkdir()
    shutil.copy(COMPOSE / "install-pki.sh", tmp_path / "compose")
    shutil.copy(DEPLOY / "mosquitto" / "acl.py", tmp_path / "mosquitto")
    proc = subprocess.run(
        ["bash", str(tmp_path / "compose" / "install-pki.sh"), str(pki.root), str(site_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    broker = tmp_path / "compose" / "pki" / "broker"
    assert sorted(p.name for p in broker.iterdir()) == [
        "acl",
        "ca.crt",
        "crl.pem",
        "server.crt",
        "server.key",
    ]
    assert "user s1/w01" in (broker / "acl").read_text()
    key = tmp_path / "compose" / "pki" / "server" / "window.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o640
    assert key.read_bytes() == (pki.client("ww-server") / "window.key").read_bytes()
