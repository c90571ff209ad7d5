"""deploy/city/nats_config.py without a cluster: versions against the known advisories, pinned keys
against the CRL, and the CLI's errors. The rendered files run in test_nats_permissions.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.deploy import DEPLOY, load_script
from tests.deploy.conftest import SITE, Pki

SCRIPT = DEPLOY / "city" / "nats_config.py"


@pytest.fixture(scope="module")
def natscfg() -> ModuleType:
    return load_script(SCRIPT)


@pytest.mark.parametrize(
    ("version", "count"),
    [
        ("nats-server: v2.9.10", 4),  # Debian bookworm's: every advisory applies
        ("2.11.15", 2),  # the 2.11 line has the first two fixes only
        ("2.12.6", 2),
        ("2.12.12", 0),
        ("2.14.2", 2),
        ("2.14.3", 0),
    ],
)
def test_advisories_by_version(natscfg: ModuleType, version: str, count: int) -> None:
    assert len(natscfg.advisories(natscfg.parse_version(version))) == count


def test_pinned_keys_leave_out_revoked_certificates(natscfg: ModuleType, pki: Pki) -> None:
    # The session PKI: ww-server, s1/w01, w02, w09 valid; s1/w03 revoked.
    keys = natscfg.pinned_keys(pki.root)
    issued = sorted(p.parent.name for p in (pki.root / "clients").glob("*/window.crt"))
    assert f"{SITE}-w03" in issued
    assert len(keys) == len(issued) - 1
    assert all(len(k) == 64 and int(k, 16) >= 0 for k in keys)


def test_a_window_listed_twice_is_refused(natscfg: ModuleType) -> None:
    with pytest.raises(ValueError, match="s1/w01 listed twice"):
        natscfg.users([("s1", "w01"), ("s1", "w01")])


def test_windows_may_publish_their_own_topics_only(natscfg: ModuleType) -> None:
    perms = natscfg.window_permissions("s1", "w01")
    assert perms["publish"]["allow"] == [
        f"ww.v1.s1.w01.{ch}" for ch in ("availability", "event", "state", "health", "reply")
    ]
    assert not [s for s in perms["subscribe"]["allow"] if s.startswith("ww.v1.*")]


def test_cli_names_the_bad_site_file(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "windows").mkdir(parents=True)
    (site / "site.toml").write_text("[site\n")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(site), "--node", "n1=10.0.0.1", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "site.toml" in proc.stderr, proc.stderr


def test_cli_warns_of_the_engines_advisories(tmp_path: Path) -> None:
    site = DEPLOY.parent / "firmware_config" / "sites"
    dirs = sorted(p for p in site.iterdir() if (p / "site.toml").exists())
    assert dirs, "no shipped site to render"
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            str(dirs[0]),
            "--node",
            "nats1=10.0.0.1",
            "--node",
            "nats2=10.0.0.2",
            "--engine-version",
            "2.9.10",
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("warning: nats-server 2.9.10 is affected by") == 4
    assert "no --pki" in proc.stderr
    conf = (tmp_path / "out" / "nats1.conf").read_text()
    assert '"nats-route://10.0.0.2:6222"' in conf and '10.0.0.1:6222"' in conf
    assert "max_payload: 8388608" in conf
