"""deploy/pi/provision.sh into a scratch root (``--root``): the files a terminal gets,
the boot block replaced rather than duplicated, and the commands it would run."""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE_SITE
from tests.deploy import DEPLOY, REPO

SCRIPT = DEPLOY / "pi" / "provision.sh"
ORIGINAL_CONFIG = "# Raspberry Pi OS default\ndtparam=audio=on\n[cm4]\notg_mode=1\n"


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    tls = tmp_path / "tls"
    tls.mkdir()
    for name in ("ca.crt", "window.crt", "window.key"):
        (tls / name).write_text(f"-----{name}-----\n")
    key = tmp_path / "bundle-signing.pub"
    key.write_text("-----BEGIN PUBLIC KEY-----\n")
    root = tmp_path / "root"
    (root / "boot" / "firmware").mkdir(parents=True)
    (root / "boot" / "firmware" / "config.txt").write_text(ORIGINAL_CONFIG)
    return {"tls": tls, "key": key, "root": root}


def provision(inputs: dict[str, Path], *extra: str, window: str = "w03") -> str:
    proc = subprocess.run(
        [
            "bash",
            str(SCRIPT),
            "--root",
            str(inputs["root"]),
            "--site-dir",
            str(EXAMPLE_SITE),
            "--window",
            window,
            "--tls-dir",
            str(inputs["tls"]),
            "--bundle-key",
            str(inputs["key"]),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_terminal_files_and_commands(inputs: dict[str, Path]) -> None:
    out = provision(inputs, "--wired")
    root = inputs["root"]
    etc = root / "etc" / "warmwindow"
    assert "WW_WINDOW=w03" in (etc / "agent.env").read_text()
    assert sorted(p.name for p in (etc / "site" / "windows").iterdir()) == ["w03.toml"]
    assert stat.S_IMODE((etc / "tls" / "window.key").stat().st_mode) == 0o640
    unit = root / "etc" / "systemd" / "system" / "warmwindow-agent.service"
    assert unit.read_text() == (DEPLOY / "systemd" / "warmwindow-agent.service").read_text()
    assert (root / "etc" / "systemd" / "journald.conf.d" / "warmwindow.conf").exists()
    assert (root / "etc" / "systemd" / "system.conf.d" / "warmwindow-watchdog.conf").exists()
    current = root / "var" / "lib" / "warmwindow" / "bundles" / "current"
    assert (
        current.is_symlink()
        and (current / "smile.onnx").read_bytes() == (REPO / "models" / "smile.onnx").read_bytes()
    )
    config = (root / "boot" / "firmware" / "config.txt").read_text()
    assert config.startswith(ORIGINAL_CONFIG)
    for line in ("camera_auto_detect=1", "dtparam=watchdog=on", "dtoverlay=disable-wifi"):
        assert f"\n{line}\n" in config
    # What it would run on a real Pi.
    assert "apt-get install" in out and "python3-picamera2" in out and "python3-lgpio" in out
    assert "mosquitto-clients" in out
    assert "venv --system-site-packages /opt/warmwindow/venv" in out
    assert "systemctl enable warmwindow-agent.service" in out
    assert "reboot" in out


def test_clerk_directory_for_badge_and_pin_sign_in(inputs: dict[str, Path], tmp_path: Path) -> None:
    etc = inputs["root"] / "etc" / "warmwindow"
    out = provision(inputs)
    assert "WW_CLERK_DIRECTORY" not in (etc / "agent.env").read_text()  # none given: none
    assert "python3-evdev" in out and "--groups gpio\\,video\\,input" in out
    clerks = tmp_path / "qingpu-clerks.json"
    clerks.write_text('{"site": "qingpu", "salt": "' + "ab" * 16 + '", "clerks": []}')
    provision(inputs, "--clerk-directory", str(clerks))
    assert "WW_CLERK_DIRECTORY=/etc/warmwindow/clerks.json" in (etc / "agent.env").read_text()
    assert stat.S_IMODE((etc / "clerks.json").stat().st_mode) == 0o640
    assert (etc / "clerks.json").read_text() == clerks.read_text()


def test_rerun_replaces_the_boot_block(inputs: dict[str, Path]) -> None:
    provision(inputs, "--wired")
    out = provision(inputs)  # now without --wired
    config = (inputs["root"] / "boot" / "firmware" / "config.txt").read_text()
    assert config.count("# >>> warmwindow") == 1 and config.count("dtparam=watchdog=on") == 1
    assert "disable-wifi" not in config
    assert config.startswith(ORIGINAL_CONFIG) and config.count("otg_mode=1") == 1
    assert "useradd" in out  # in --root mode it prints, never runs, system commands


def test_refuses_incomplete_input(inputs: dict[str, Path]) -> None:
    (inputs["tls"] / "window.key").unlink()
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--root", str(inputs["root"]), "--site-dir", str(EXAMPLE_SITE),
         "--window", "w03", "--tls-dir", str(inputs["tls"]), "--bundle-key", str(inputs["key"])],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1 and "window.key not found" in proc.stderr
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--root", str(inputs["root"]), "--site-dir", str(EXAMPLE_SITE),
         "--window", "w99", "--tls-dir", str(inputs["tls"]), "--bundle-key", str(inputs["key"])],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1 and "w99" in proc.stderr


def test_shell_scripts_pass_shellcheck() -> None:
    scripts = sorted(DEPLOY.rglob("*.sh"))
    assert SCRIPT in scripts
    for s in scripts:
        syntax = subprocess.run(["bash", "-n", str(s)], capture_output=True, text=True)
        assert syntax.returncode == 0, syntax.stderr
    if shutil.which("shellcheck") is None:
        pytest.fail("shellcheck is required (apt install shellcheck; `make deps` does)")
    proc = subprocess.run(["shellcheck", *map(str, scripts)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
