"""deploy/deb/build-deb.sh: the warmwindow-agent package as dpkg sees it.

The package is built once for amd64 with ``--no-wheels`` (the layout, control data,
maintainer scripts and unit are the same as the full build's; the third-party wheels
only add files under /opt/warmwindow/lib, and downloading them takes minutes). The full
install, upgrade, remove and purge in bookworm roots is ``make deb-check``
(deploy/deb/test-install.sh), not part of this suite.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.deploy import DEPLOY, REPO

BUILD = DEPLOY / "deb" / "build-deb.sh"
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
DEB_NAME = f"warmwindow-agent_{VERSION}_amd64.deb"
ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"

#: Paths (as ``dpkg-deb -c`` names them) the package must hold, and their modes.
REQUIRED = {
    "./opt/warmwindow/bin/warmwindow": "-rwxr-xr-x",
    "./opt/warmwindow/lib/agent/cli.py": "-rw-r--r--",
    "./opt/warmwindow/lib/agent/outbox.py": "-rw-r--r--",
    "./opt/warmwindow/lib/models/face_detector.onnx": "-rw-r--r--",
    "./opt/warmwindow/lib/models/smile.onnx": "-rw-r--r--",
    "./opt/warmwindow/lib/models/manifest.json": "-rw-r--r--",
    f"./opt/warmwindow/lib/warmwindow-{VERSION}.dist-info/entry_points.txt": "-rw-r--r--",
    "./etc/warmwindow/agent.env": "-rw-r--r--",
    "./etc/warmwindow/site/": "drwxr-xr-x",
    "./lib/systemd/system/warmwindow-agent.service": "-rw-r--r--",
    "./usr/bin/warmwindow": "lrwxrwxrwx",
    "./usr/bin/warmwindow-agent": "lrwxrwxrwx",
    "./usr/share/doc/warmwindow-agent/copyright": "-rw-r--r--",
    "./usr/share/doc/warmwindow-agent/changelog.gz": "-rw-r--r--",
    "./usr/share/man/man1/warmwindow.1.gz": "-rw-r--r--",
}
#: What must never be in it: state (postinst creates it, purge deletes it), the server,
#: bytecode (postinst compiles it), console scripts with the build machine's python.
FORBIDDEN = re.compile(
    r"^\./var/|^\./opt/warmwindow/lib/server/|__pycache__|\.pyc$|^\./opt/warmwindow/lib/bin/"
    r"|^\./etc/warmwindow/site/."
)


def run(*cmd: str | Path, **kw: object) -> str:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=120, **kw)  # type: ignore[call-overload]
    assert proc.returncode == 0, f"{cmd}: {proc.stdout}\n{proc.stderr}"
    return str(proc.stdout)


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("dpkg-deb") is None:
        pytest.fail("dpkg-deb is required (a Debian machine: apt install dpkg)")
    out = tmp_path_factory.mktemp("deb")
    run("bash", BUILD, "--arch", "amd64", "--no-wheels", "--compress", "zstd", "--out", out)
    path = out / DEB_NAME
    assert path.is_file(), sorted(p.name for p in out.iterdir())
    return path


@pytest.fixture(scope="module")
def listing(deb: Path) -> dict[str, tuple[str, str, str]]:
    """path -> (mode, owner, symlink target or "")."""
    entries: dict[str, tuple[str, str, str]] = {}
    for line in run("dpkg-deb", "-c", deb).splitlines():
        mode, owner, _size, _date, _time, rest = line.split(maxsplit=5)
        path, _, target = rest.partition(" -> ")
        entries[path] = (mode, owner, target)
    return entries


@pytest.fixture(scope="module")
def control_dir(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("control") / "DEBIAN"
    run("dpkg-deb", "-e", deb, out)
    return out


@pytest.fixture(scope="module")
def data(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data")
    run("dpkg-deb", "-x", deb, out)
    return out


def control_fields(deb: Path) -> dict[str, str]:
    fields: dict[str, str] = {}
    key = ""
    for line in run("dpkg-deb", "-f", deb).splitlines():
        if line.startswith(" ") and key:
            fields[key] += "\n" + line
        else:
            key, _, value = line.partition(": ")
            fields[key] = value
    return fields


def layout_problems(entries: dict[str, tuple[str, str, str]]) -> list[str]:
    """What is wrong with a package's file list; empty when the layout is right."""
    problems = [f"{path}: missing" for path in REQUIRED if path not in entries] + [
        f"{path}: mode {entries[path][0]}, not {mode}"
        for path, mode in REQUIRED.items()
        if path in entries and entries[path][0] != mode
    ]
    problems += [f"{path}: must not be packaged" for path in entries if FORBIDDEN.search(path)]
    problems += [f"{path}: owner {e[1]}" for path, e in entries.items() if e[1] != "root/root"]
    for link in ("./usr/bin/warmwindow", "./usr/bin/warmwindow-agent"):
        if link in entries and entries[link][2] != "/opt/warmwindow/bin/warmwindow":
            problems.append(f"{link} -> {entries[link][2]}")
    return problems


def test_file_name_and_control(deb: Path) -> None:
    fields = control_fields(deb)
    assert deb.name == DEB_NAME
    assert fields["Package"] == "warmwindow-agent"
    assert fields["Version"] == VERSION
    assert fields["Architecture"] == "amd64"
    assert int(fields["Installed-Size"]) > 0
    depends = [d.strip() for d in fields["Depends"].split(",")]
    for dep in ("python3 (>= 3.11)", "python3 (<< 3.12)", "adduser", "python3-evdev"):
        assert dep in depends, fields["Depends"]
    assert "python3-picamera2" in fields["Recommends"]
    assert fields["Maintainer"] and fields["Description"]


def test_layout(listing: dict[str, tuple[str, str, str]]) -> None:
    assert layout_problems(listing) == []


def test_layout_check_catches_a_wrong_layout(listing: dict[str, tuple[str, str, str]]) -> None:
    """The check above can fail: state shipped, the conffile moved, a loose symlink."""
    wrong = dict(listing)
    wrong["./var/lib/warmwindow/"] = ("drwxr-xr-x", "root/root", "")
    wrong["./usr/share/warmwindow/agent.env"] = wrong.pop("./etc/warmwindow/agent.env")
    wrong["./usr/bin/warmwindow"] = ("lrwxrwxrwx", "root/root", "../../opt/warmwindow/bin/x")
    wrong["./opt/warmwindow/lib/agent/__pycache__/cli.cpython-311.pyc"] = (
        "-rw-r--r--",
        "root/root",
        "",
    )
    problems = layout_problems(wrong)
    assert "./var/lib/warmwindow/: must not be packaged" in problems
    assert "./etc/warmwindow/agent.env: missing" in problems
    assert "./usr/bin/warmwindow -> ../../opt/warmwindow/bin/x" in problems
    assert any("__pycache__" in p for p in problems)


def test_conffiles_and_agent_env(control_dir: Path, data: Path) -> None:
    assert (control_dir / "conffiles").read_text().split() == ["/etc/warmwindow/agent.env"]
    env = (data / "etc/warmwindow/agent.env").read_text()
    assert re.search(r"(?m)^WW_WINDOW=$", env), "agent.env must ship WW_WINDOW= (empty)"
    assert all(line.startswith("#") or "=" in line for line in env.splitlines() if line)


def test_md5sums_cover_every_file(
    control_dir: Path, listing: dict[str, tuple[str, str, str]]
) -> None:
    sums = {
        line.split(maxsplit=1)[1] for line in (control_dir / "md5sums").read_text().splitlines()
    }
    files = {p[2:] for p, e in listing.items() if e[0].startswith("-")}
    assert sums == files


@pytest.mark.parametrize("script", ["postinst", "prerm", "postrm"])
def test_maintainer_scripts(control_dir: Path, script: str) -> None:
    path = control_dir / script
    assert os.stat(path).st_mode & 0o777 == 0o755
    text = path.read_text()
    assert text.startswith("#!/bin/sh\n")
    assert re.search(r"(?m)^set -e$", text)
    run("sh", "-n", path)
    if shutil.which("shellcheck"):
        run("shellcheck", "-s", "sh", path)


def test_purge_deletes_state_config_and_user(control_dir: Path) -> None:
    postrm = (control_dir / "postrm").read_text()
    purge = postrm.split("purge)", 1)[1].split(";;", 1)[0]
    assert "rm -rf /var/lib/warmwindow /etc/warmwindow" in purge
    assert "deluser --system" in purge
    remove = postrm.split("remove)", 1)[1].split(";;", 1)[0]
    assert "rm " not in remove, "remove must keep the state and the configuration"
    postinst = (control_dir / "postinst").read_text()
    assert "adduser --system --group" in postinst
    assert "-d /run/systemd/system ]" in postinst, "start only where systemd runs"


def test_entry_points_without_the_server(data: Path) -> None:
    dist = data / f"opt/warmwindow/lib/warmwindow-{VERSION}.dist-info"
    eps = (dist / "entry_points.txt").read_text()
    assert "models = models.cli:register" in eps
    assert "vision = agent.vision.cli:register" in eps
    assert "server" not in eps
    assert not (data / "opt/warmwindow/lib/server").exists()


def test_wrapper_puts_the_lib_first(data: Path) -> None:
    text = (data / "opt/warmwindow/bin/warmwindow").read_text()
    assert text.startswith("#!/usr/bin/python3 -I\n")
    assert 'sys.path.insert(0, "/opt/warmwindow/lib")' in text


def unit_directives(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_unit_is_the_repo_unit_with_package_paths(data: Path) -> None:
    unit = unit_directives(data / "lib/systemd/system/warmwindow-agent.service")
    source = unit_directives(DEPLOY / "systemd" / "warmwindow-agent.service")
    assert unit["Type"] == ["notify"]
    assert unit["WatchdogSec"] == source["WatchdogSec"]
    assert unit["User"] == ["warmwindow"]
    assert unit["EnvironmentFile"] == ["/etc/warmwindow/agent.env"]
    assert unit["ExecStart"][0].startswith("/opt/warmwindow/bin/warmwindow agent --site ")
    assert unit["ConditionPathExists"] == ["/etc/warmwindow/site/site.toml"]
    assert unit["ExecCondition"] == ['/usr/bin/test -n "${WW_WINDOW}"']
    assert unit["WantedBy"] == ["multi-user.target"]
    # Everything else as in deploy/systemd/ (sandbox, restart policy, groups).
    changed = {"Documentation", "ExecStart", "Environment", "ConditionPathExists", "ExecCondition"}
    assert {k: v for k, v in unit.items() if k not in changed} == {
        k: v for k, v in source.items() if k not in changed
    }
    assert unit["Environment"] == ["PYTHONUNBUFFERED=1"]


def test_unit_verifies(data: Path, tmp_path: Path) -> None:
    if not os.access(ANALYZE, os.X_OK):
        pytest.fail("systemd-analyze is required (apt install systemd)")
    stub = tmp_path / "warmwindow"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    text = (data / "lib/systemd/system/warmwindow-agent.service").read_text()
    unit = tmp_path / "warmwindow-agent.service"
    unit.write_text(text.replace("/opt/warmwindow/bin/warmwindow", str(stub)))
    proc = subprocess.run(
        [ANALYZE, "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr


def test_make_unit_refuses_a_changed_source(tmp_path: Path) -> None:
    """A source unit that lost a line the package rewrites fails the build."""
    src = tmp_path / "src.service"
    text = (DEPLOY / "systemd" / "warmwindow-agent.service").read_text()
    src.write_text(text.replace("ExecStart=/opt/warmwindow/venv/bin/", "ExecStart=/usr/bin/"))
    proc = subprocess.run(
        ["python3", str(DEPLOY / "deb" / "make_unit.py"), str(src), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode != 0 and "ExecStart" in proc.stderr
