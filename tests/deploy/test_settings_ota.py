"""Settings over the air, end to end: a district administrator pushes a rule threshold
through the API, the server signs one bundle per window and publishes it retained over a
real Mosquitto, and a real ``warmwindow agent`` process (restarted like systemd's
``Restart=always`` does) applies it and says so in its health report; a push the
terminal's own window file contradicts is refused there, naming the field; and an agent
that is unhealthy on a new bundle goes back to the one before."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from agent.localbroker import MosquittoBroker
from agent.overrides import Layer, Overrides
from agent.protocol import Channel
from server.api.app import ServerSettings, create_app
from server.bundles import generate_key, load_private_key
from server.ingest import IngestSettings
from server.settings_push import SettingsPublisher
from tests.conftest import EXAMPLE_SITE, REPO
from tests.waiting import wait_until

PASSWORD = "correct horse battery"
DISTRICT = "青浦区"


@dataclass
class Supervised:
    """One window's agent, started again whenever it exits (systemd's Restart=always)."""

    argv: list[str]
    env: dict[str, str]
    log: Path
    starts: int = 0
    exits: list[int] = field(default_factory=list)
    _proc: subprocess.Popen[bytes] | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with self.log.open("ab") as out:
            while not self._stop.is_set():
                self.starts += 1
                self._proc = subprocess.Popen(
                    self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO
                )
                self.exits.append(self._proc.wait())
                self._stop.wait(0.3)  # RestartSec

    def stop(self) -> None:
        self._stop.set()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        if self._thread is not None:
            self._thread.join(20)

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


@dataclass
class Centre:
    client: TestClient
    app: Any
    site_dir: Path
    pub_key: Path
    broker: MosquittoBroker
    tmp: Path

    def as_user(self, username: str) -> TestClient:
        c = self.client
        c.cookies.clear()
        r = c.post("/api/login", json={"username": username, "password": PASSWORD})
        assert r.status_code == 200, r.text
        c.headers["X-CSRF-Token"] = r.json()["csrf"]
        return c

    def agent(
        self, window: str, *, scripted: bool = True, confirm_after_s: float = 4
    ) -> Supervised:
        state = self.tmp / f"state-{window}"
        env = {
            **os.environ,
            "WW_BUNDLE_KEY": str(self.pub_key),
            "WW_HEALTH_S": "1",
            "WW_CONFIRM_AFTER_S": str(confirm_after_s),
            "PYTHONUNBUFFERED": "1",
        }
        argv = [
            *(sys.executable, "-m", "agent.cli", "agent", "--site", str(self.site_dir)),
            *("--window", window, "--state-dir", str(state), "--mock-pins"),
            *("--broker", f"127.0.0.1:{self.broker.port}"),
            *(["--scripted"] if scripted else []),
        ]
        return Supervised(argv, env, self.tmp / f"agent-{window}.log")

    def status(self, window: str) -> dict[str, Any]:
        r = self.client.get("/api/window-settings", params={"site": "qingpu"})
        assert r.status_code == 200, r.text
        return next(w for w in r.json()["windows"] if w["window"] == window)


@pytest.fixture
def centre(broker: MosquittoBroker, tmp_path: Path) -> Iterator[Centre]:
    site_dir = tmp_path / "site"
    shutil.copytree(EXAMPLE_SITE, site_dir)
    key = tmp_path / "signing" / "bundle-signing.key"
    pub = generate_key(key)
    app = create_app(
        ServerSettings(
            db_url=f"sqlite:///{tmp_path / 'ww.db'}",
            sites=[site_dir],
            mqtt=IngestSettings(host=broker.host, port=broker.port, client_id="ww-test-ota"),
            bundle_signing_key=key,
        )
    )
    with TestClient(app) as client:
        wait_until(lambda: app.state.ingest.wait_connected(0.1), 20, "ingest connected")
        accounts = app.state.accounts
        accounts.add_user("ann", PASSWORD, "district_admin", f"district:{DISTRICT}")
        accounts.add_user("meg", PASSWORD, "centre_manager", "site:qingpu")
        yield Centre(client, app, site_dir, pub, broker, tmp_path)


def test_a_pushed_threshold_reaches_a_running_agent_over_mqtt(centre: Centre) -> None:
    agent = centre.agent("w03")
    agent.start()
    try:
        c = centre.as_user("ann")
        wait_until(lambda: centre.status("w03")["status"] == "none", 20, "first health")
        assert centre.status("w03")["applied_serial"] is None
        # Checked on the server first, each field named; nothing recorded.
        r = c.post(
            "/api/window-settings",
            json={"scope": f"district:{DISTRICT}", "fields": {"gpio.sign_sensor": 5}, "note": "x"},
        )
        assert r.status_code == 422 and "gpio.sign_sensor: may not be set" in r.text
        r = c.post(
            "/api/window-settings",
            json={
                "scope": f"district:{DISTRICT}",
                "fields": {"rules.greet_within_s": -1},
                "note": "x",
            },
        )
        assert r.status_code == 422
        assert "rules.greet_within_s: Input should be greater than 0" in r.text
        # A centre's manager may not change what its own clerks are measured by.
        meg = centre.as_user("meg")
        r = meg.post(
            "/api/window-settings",
            json={"scope": "site:qingpu", "fields": {"rules.greet_within_s": 20}, "note": "x"},
        )
        assert r.status_code == 403

        c = centre.as_user("ann")
        r = c.post(
            "/api/window-settings",
            json={
                "scope": f"district:{DISTRICT}",
                "fields": {"rules.greet_within_s": 6.0, "rules.stand_within_s": 4.0},
                "note": "district rule: greet within 6 s",
            },
        )
        assert r.status_code == 201, r.text
        pubs = r.json()["publications"]
        assert len(pubs) == 12 and all(p["published"] for p in pubs)  # every window of it
        serial = next(p["serial"] for p in pubs if p["window"] == "w03")
        wait_until(lambda: centre.status("w03")["status"] == "applied", 30, "applied")
        status = centre.status("w03")
        assert status["applied_serial"] == serial and status["terminal_error"] is None
        assert agent.starts == 2  # restarted once, on the new settings
        log = agent.text()
        assert f"setting rules.greet_within_s from district:{DISTRICT} (push 1)" in log
        fleet = c.get("/api/fleet").json()
        assert next(d for d in fleet if d["window"] == "w03")["settings_serial"] == serial
        shown = subprocess.run(
            [
                *(sys.executable, "-m", "agent.cli", "config", "show"),
                *("--site", str(centre.site_dir), "--window", "w03"),
                *("--state-dir", str(centre.tmp / "state-w03")),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert f"rules.greet_within_s = 6.0  # district:{DISTRICT} (push 1)" in shown
        # Every push is on the record.
        audit = c.get("/api/audit").json()
        assert any(e["action"] == "settings_push" for e in audit)
    finally:
        agent.stop()


def test_a_push_the_window_file_contradicts_is_refused_on_the_terminal(centre: Centre) -> None:
    """The window file of w03 here keeps its too-broad threshold at 0.9; a district push of
    a smile threshold of 0.95 is fine on the server (against the defaults) and refused
    by the terminal, naming the field; an unchecked document too."""
    w03 = centre.site_dir / "windows" / "w03.toml"
    w03.write_text(
        w03.read_text(encoding="utf-8").replace(
            "too_broad_threshold = 0.97", "too_broad_threshold = 0.9"
        ),
        encoding="utf-8",
    )
    agent = centre.agent("w03")
    agent.start()
    try:
        c = centre.as_user("ann")
        wait_until(lambda: centre.status("w03")["status"] == "none", 20, "first health")
        r = c.post(
            "/api/window-settings",
            json={
                "scope": f"district:{DISTRICT}",
                "fields": {"rules.smile_threshold": 0.95},
                "note": "stricter smile",
            },
        )
        assert r.status_code == 201, r.text
        serial = next(p["serial"] for p in r.json()["publications"] if p["window"] == "w03")
        wait_until(lambda: centre.status("w03")["status"] == "refused", 30, "refused")
        status = centre.status("w03")
        assert status["applied_serial"] is None
        error = status["terminal_error"]  # the wire's 64 characters, cut with "…"
        assert error.startswith(f"serial {serial} validate: rules: too_broad_threshold must be")
        assert len(error) == 64 and error.endswith("…")
        # An operator's document sent unchecked: out of range, named by the terminal.
        ingest = centre.app.state.ingest
        publisher = SettingsPublisher(
            centre.app.state.store.engine,
            load_private_key(centre.pub_key.with_suffix(".key")),
            lambda s, w, d: ingest.publish_retained(s, w, Channel.SETTINGS, d),
        )
        bad = Overrides(
            site="qingpu",
            window="w03",
            layers=(
                Layer(
                    scope="window:qingpu/w03",
                    push_id=99,
                    by="ops",
                    at_ms=1,
                    fields={"rules.greet_within_s": -3},
                ),
            ),
        )
        sent = publisher.publish_document(bad, "ops")
        assert sent.published
        wait_until(
            lambda: str(centre.status("w03")["terminal_error"]).startswith(
                f"serial {sent.serial} validate: rules.greet_within_s: Input should be"
            ),
            30,
            "unchecked document refused",
        )
        assert agent.starts == 1  # nothing was installed: no restart
        assert "rules: too_broad_threshold must be above smile_threshold" in agent.text()
    finally:
        agent.stop()


def test_an_agent_unhealthy_on_new_settings_rolls_them_back(centre: Centre) -> None:
    """Whatever makes the agent unhealthy on a new bundle (here its camera, a replay of
    two seconds of frames, stops delivering and its perception thread ends), once the
    confirmation time is up on a pending bundle the agent goes back to the previous one
    and says why."""
    frames = centre.tmp / "frames"
    frames.mkdir()
    face = REPO / "agent" / "demo_faces" / "neutral.png"
    for i in range(20):
        shutil.copy(face, frames / f"{i * 100:05d}.png")
    w05 = centre.site_dir / "windows" / "w05.toml"
    w05.write_text(
        w05.read_text(encoding="utf-8").replace(
            'source = "picamera2"', f'source = "replay"\ndevice = "{frames}"'
        ),
        encoding="utf-8",
    )
    agent = centre.agent("w05", scripted=False, confirm_after_s=4)
    agent.start()
    try:
        c = centre.as_user("ann")
        wait_until(lambda: centre.status("w05")["status"] == "none", 30, "first health")
        r = c.post(
            "/api/window-settings",
            json={"scope": "window:qingpu/w05", "fields": {"camera.active_fps": 8.0}, "note": "x"},
        )
        assert r.status_code == 201, r.text
        (pub,) = r.json()["publications"]
        wait_until(lambda: centre.status("w05")["status"] == "refused", 60, "rolled back")
        status = centre.status("w05")
        assert status["applied_serial"] is None
        assert status["terminal_error"] == (
            f"serial {pub['serial']} check: agent unhealthy 4 s after start"
        )
        assert agent.starts >= 3  # the old settings, the new ones, the old ones again
        log = agent.text()
        assert "settings bundle rolled back: agent unhealthy 4 s after start" in log
        assert "setting camera.active_fps from window:qingpu/w05 (push 1)" in log
    finally:
        agent.stop()


def test_a_clerk_enrolled_now_can_sign_in_now_the_directory_goes_over_the_air(
    centre: Centre,
) -> None:
    """Enrolling a badge and PIN sends the centre's terminals a settings bundle carrying the
    new clerk directory (digests only); the agent restarts with sign-in on. A centre that
    enrolled nobody gets no directory: its terminals keep sign-in off."""
    store = centre.app.state.store
    store.add_clerk("c-li", "李敏", "qingpu")
    agent = centre.agent("w03")
    agent.start()
    try:
        c = centre.as_user("ann")
        wait_until(lambda: centre.status("w03")["status"] == "none", 20, "first health")
        r = c.post("/api/window-settings/republish", json={"scope": "window:qingpu/w03"})
        assert r.status_code == 200, r.text
        (first,) = r.json()["publications"]
        assert first["directory_clerks"] is None  # nobody enrolled: no directory
        wait_until(lambda: centre.status("w03")["status"] == "applied", 30, "applied")
        assert "sign-in on" not in agent.text()

        r = c.post("/api/clerks/c-li/credentials", json={"badges": ["0012345678"], "pin": "1234"})
        assert r.status_code == 200, r.text
        assert r.json()["terminals"] == 12  # every window of the centre
        wait_until(
            lambda: centre.status("w03")["applied_serial"] not in (None, first["serial"]),
            30,
            "directory applied",
        )
        log = agent.text()
        assert "sign-in on at qingpu/w03: 1 clerks in the directory received over the air" in log
        assert "0012345678" not in log  # the badge number itself is never written down
        shown = subprocess.run(
            [
                *(sys.executable, "-m", "agent.cli", "config", "show"),
                *("--site", str(centre.site_dir), "--window", "w03"),
                *("--state-dir", str(centre.tmp / "state-w03")),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "clerk directory received over the air: 1 clerks" in shown.splitlines()[1]
        # Nothing changed: no new bundle.
        pub = SettingsPublisher(
            store.engine,
            load_private_key(centre.pub_key.with_suffix(".key")),
            lambda s, w, d: None,
            store.directory,
        )
        assert pub.sync_directory("qingpu", "ann") == []
    finally:
        agent.stop()
