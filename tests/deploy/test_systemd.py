"""The systemd units: ``systemd-analyze verify`` with no complaint at all, the exposure
score of ``systemd-analyze security --offline``, and the settings the issue requires.

``verify`` insists that ExecStart's binary exists, so the units are copied with
``/opt/warmwindow/venv/bin/warmwindow`` pointed at a stub the test creates; nothing else
is changed. ``verify`` exits 0 on unknown keys and unparsable values (it only warns),
so any output on stderr fails the test as well.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy import DEPLOY

UNITS = DEPLOY / "systemd"
NAMES = (
    "warmwindow-agent.service",
    "warmwindow-server.service",
    "warmwindow-retention.service",
    "warmwindow-retention.timer",
)
EXEC = "/opt/warmwindow/venv/bin/warmwindow"
ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"


@pytest.fixture(scope="module")
def unit_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not os.access(ANALYZE, os.X_OK):
        pytest.fail("systemd-analyze is required (apt install systemd)")
    out = tmp_path_factory.mktemp("units")
    stub = out / "warmwindow"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    for name in NAMES:
        text = (UNITS / name).read_text(encoding="utf-8")
        if name.endswith(".service"):
            assert EXEC in text, f"{name}: ExecStart no longer uses {EXEC}"
        (out / name).write_text(text.replace(EXEC, str(stub)))
    return out


def directives(name: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_units_verify_cleanly(unit_dir: Path) -> None:
    proc = subprocess.run(
        [ANALYZE, "verify", *(str(unit_dir / n) for n in NAMES)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=unit_dir,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "", proc.stderr


def test_verify_would_catch_a_mistake(unit_dir: Path, tmp_path: Path) -> None:
    """The check above can fail: a misspelt directive is reported."""
    bad = tmp_path / "warmwindow-agent.service"
    bad.write_text((unit_dir / NAMES[0]).read_text().replace("WatchdogSec=", "WatchdogSecs="))
    proc = subprocess.run([ANALYZE, "verify", str(bad)], capture_output=True, text=True, timeout=60)
    assert "WatchdogSecs" in proc.stderr


@pytest.mark.parametrize("name", NAMES[:3])
def test_exposure_score_is_ok(unit_dir: Path, name: str) -> None:
    proc = subprocess.run(
        [ANALYZE, "security", "--offline=true", "--no-pager", str(unit_dir / name)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    last = (proc.stdout + proc.stderr).strip().splitlines()[-1]
    # "→ Overall exposure level for x.service: 2.0 OK 🙂"; 10.0 is an unhardened unit.
    score = float(last.split(":")[-1].split()[0])
    assert score <= 2.5, last


def test_agent_unit_has_watchdog_and_hardening() -> None:
    d = directives("warmwindow-agent.service")
    assert d["Type"] == ["notify"]
    assert d["WatchdogSec"] == ["30"]
    assert d["Restart"] == ["always"]
    assert d["ProtectSystem"] == ["strict"]
    assert d["ReadWritePaths"] == ["/var/lib/warmwindow"]
    assert set(d["SupplementaryGroups"][0].split()) == {"gpio", "video", "input"}
    assert d["User"] == ["warmwindow"] and d["NoNewPrivileges"] == ["yes"]


def test_server_units_keep_secrets_out_of_env_files_and_command_lines() -> None:
    for name in ("warmwindow-server.service", "warmwindow-retention.service"):
        d = directives(name)
        assert d["DynamicUser"] == ["yes"]
        assert any(c.startswith("db-password:") for c in d["LoadCredential"])
        assert "--from-env" in d["ExecStart"][0]
        assert "password" not in d["ExecStart"][0].lower()
    timer = directives("warmwindow-retention.timer")
    assert timer["Unit"] == ["warmwindow-retention.service"]
    assert timer["Persistent"] == ["true"]
