"""The demo stack as separate processes, with handles to break each part.

Broker: a private Mosquitto (persistence on). Server: ``warmwindow server`` (ingest +
API, persistent MQTT session, acknowledges after commit) as a subprocess, so it can be
SIGKILLed and restarted. Windows: ``bench.chaos.agent`` processes, the demo's simulated
windows, each on its own outbox file, restarted on the same file after a SIGKILL.

Network cut: one window can live in its own network namespace (``ip netns``, needs
root), joined to the host by a veth pair; the broker gets a second listener on the
host end. Cutting is ``ip link set <veth> down`` inside the namespace: the TCP
connection goes silent (no RST), as when a cable is pulled or a switch dies, and both
sides find out only through MQTT keepalive.

Disk-full: that window's state directory is a small tmpfs of its own (``mount -t tmpfs
-o size=...``, root), filled to the last block by a filler file.

``Supervisor`` plays systemd for the windows (deploy/systemd/warmwindow-agent.service:
``Restart=always``, ``RestartSec=5``, ``WatchdogSec=30`` kicked only by a healthy rule
loop): a window process that exits, or whose rule loop has been dead for the watchdog
interval, is killed and started again on the same outbox.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from agent.localbroker import wait_port
from bench.city.broker import persistent_mosquitto, quiet_port
from bench.city.verify import Device, outbox_last_seq, stored_by_device
from server.store.db import Store

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_SITE = REPO / "firmware_config" / "sites" / "qingpu"
SITE_SLUG = "qingpu"
#: deploy/systemd/warmwindow-agent.service
WATCHDOG_S = 30.0
RESTART_S = 5.0


def run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=20)


class NetNs:
    """A namespace + veth pair for one window; ``cut()``/``mend()`` its link."""

    def __init__(self, tag: str, subnet: int = 77) -> None:
        self.name = f"ww-chaos-{tag}"
        self.host_if = f"wwc{tag}h"[:15]
        self.ns_if = f"wwc{tag}a"[:15]
        self.host_ip = f"10.{subnet}.0.1"
        self.ns_ip = f"10.{subnet}.0.2"
        self.up = False

    @staticmethod
    def available() -> bool:
        return os.geteuid() == 0 and shutil.which("ip") is not None

    def create(self) -> None:
        self.destroy()
        run(["ip", "netns", "add", self.name])
        run(["ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if])
        run(["ip", "link", "set", self.ns_if, "netns", self.name])
        run(["ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_if])
        run(["ip", "link", "set", self.host_if, "up"])
        ns = ["ip", "netns", "exec", self.name]
        run([*ns, "ip", "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if])
        run([*ns, "ip", "link", "set", self.ns_if, "up"])
        run([*ns, "ip", "link", "set", "lo", "up"])
        self.up = True

    def prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]

    def cut(self) -> None:
        run([*self.prefix(), "ip", "link", "set", self.ns_if, "down"])

    def mend(self) -> None:
        run([*self.prefix(), "ip", "link", "set", self.ns_if, "up"])

    def destroy(self) -> None:
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True, timeout=20)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=20)
        self.up = False


class SmallDisk:
    """A tmpfs of ``size_kib`` for one window's state directory; ``fill()``/``clear()``."""

    def __init__(self, path: Path, size_kib: int) -> None:
        self.path = path
        self.size_kib = size_kib
        self.filler = path / "filler.bin"
        self.mounted = False

    @staticmethod
    def available() -> bool:
        return os.geteuid() == 0

    def mount(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        run(
            [
                "mount",
                "-t",
                "tmpfs",
                "-o",
                f"size={self.size_kib}k,mode=0755",
                "tmpfs",
                str(self.path),
            ]
        )
        self.mounted = True

    def fill(self) -> int:
        """Write until ENOSPC; return the bytes written."""
        written = 0
        block = b"\0" * 4096
        # Unbuffered, so ENOSPC surfaces at the write that hits it, not at close().
        with self.filler.open("wb", buffering=0) as f:
            # Bounded by the tmpfs size: at most size_kib / 4 blocks fit.
            for _ in range(self.size_kib // 4 + 16):
                try:
                    written += f.write(block) or 0
                except OSError:
                    break
        return written

    def clear(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.filler.unlink()

    def unmount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True, timeout=20)
            self.mounted = False


@dataclass
class Window:
    """One window process and what the supervisor knows about it."""

    slug: str
    index: int
    state_dir: Path
    status_path: Path
    log: IO[bytes]
    netns: NetNs | None = None
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    refused_before: int = 0  #: refused drafts counted by earlier incarnations
    unhealthy_since: float | None = None
    down_since: float | None = None
    restarts: list[str] = field(default_factory=list)

    @property
    def outbox(self) -> Path:
        return self.state_dir / f"{SITE_SLUG}-{self.slug}.outbox.db"

    def status(self) -> dict[str, Any]:
        try:
            doc: dict[str, Any] = json.loads(self.status_path.read_text(encoding="utf-8"))
            return doc
        except (OSError, ValueError):
            return {}

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class ChaosStack:
    """Broker + server + windows; every part startable, killable and checkable."""

    def __init__(
        self,
        workdir: Path,
        db_url: str,
        windows: int = 6,
        pace: float = 0.1,
        netns_window: bool = False,
        small_disk_kib: int | None = None,
        site_dir: Path = EXAMPLE_SITE,
    ) -> None:
        self.workdir = workdir
        self.db_url = db_url
        self.pace = pace
        self.site_dir = site_dir
        self.netns: NetNs | None = NetNs(str(os.getpid() % 100000)) if netns_window else None
        extra = ""
        if self.netns is not None:
            self.netns.create()
            self.ns_port = quiet_port()
            extra = f"listener {self.ns_port} {self.netns.host_ip}\n"
        self.broker = persistent_mosquitto(workdir / "mosquitto", extra_conf=extra)
        self.http_port = quiet_port()
        self.server: subprocess.Popen[bytes] | None = None
        self.server_log = (workdir / "server.log").open("ab")
        self.store = Store(db_url)
        slugs = [f"w{i:02d}" for i in range(1, windows + 1)]
        self.windows: list[Window] = []
        self.disk: SmallDisk | None = None
        for i, slug in enumerate(slugs):
            state = workdir / "agents" / slug
            state.mkdir(parents=True, exist_ok=True)
            if i == 0 and small_disk_kib is not None:
                self.disk = SmallDisk(state, small_disk_kib)
                self.disk.mount()
            self.windows.append(
                Window(
                    slug=slug,
                    index=i,
                    state_dir=state,
                    status_path=workdir / f"{slug}.status.json",
                    log=(workdir / f"{slug}.log").open("ab"),
                    netns=self.netns if i == 0 else None,
                )
            )

    # ------------------------------------------------------------------ parts

    def start(self, timeout: float = 60) -> None:
        self.broker.start()
        self.start_server()
        self.wait_server(timeout)
        for w in self.windows:
            self.start_window(w)

    def start_server(self) -> None:
        self.server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agent.cli",
                "server",
                "--db",
                self.db_url,
                "--site",
                str(self.site_dir),
                "--mqtt-port",
                str(self.broker.port),
                "--port",
                str(self.http_port),
                "--client-id",
                "ww-chaos-server",
            ],
            cwd=REPO,
            stdout=self.server_log,
            stderr=subprocess.STDOUT,
        )

    def wait_server(self, timeout: float) -> None:
        """Up = the HTTP port answers (the lifespan has migrated, registered, subscribed)."""
        wait_port("127.0.0.1", self.http_port, timeout=timeout)

    def kill_server(self) -> None:
        if self.server is not None:
            self.server.send_signal(signal.SIGKILL)
            self.server.wait(10)

    def start_window(self, w: Window) -> None:
        prev = w.status()
        w.refused_before += int(prev.get("refused", 0)) if w.starts else 0
        host, port = "127.0.0.1", self.broker.port
        prefix: list[str] = []
        if w.netns is not None:
            host, port, prefix = w.netns.host_ip, self.ns_port, w.netns.prefix()
        w.status_path.unlink(missing_ok=True)
        w.proc = subprocess.Popen(
            [
                *prefix,
                sys.executable,
                "-m",
                "bench.chaos.agent",
                "--site",
                str(self.site_dir),
                "--window",
                w.slug,
                "--state-dir",
                str(w.state_dir),
                "--host",
                host,
                "--port",
                str(port),
                "--pace",
                str(self.pace),
                "--seed",
                str(w.index * 100 + w.starts),
                "--status",
                str(w.status_path),
            ],
            cwd=REPO,
            stdout=w.log,
            stderr=subprocess.STDOUT,
        )
        w.starts += 1
        w.unhealthy_since = None
        w.down_since = None

    def kill_window(self, w: Window) -> None:
        if w.proc is not None:
            w.proc.send_signal(signal.SIGKILL)
            w.proc.wait(10)

    def stop_windows(self, timeout: float = 20) -> None:
        for w in self.windows:
            if w.alive and w.proc is not None:
                w.proc.terminate()
        for w in self.windows:
            if w.proc is None:
                continue
            try:
                w.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait(10)

    def supervise(self) -> None:
        """One systemd pass (see the module docstring); call it about once a second."""
        now = time.monotonic()
        for w in self.windows:
            if not w.alive:
                w.down_since = w.down_since or now
                if now - w.down_since >= RESTART_S:
                    w.restarts.append(f"{time.strftime('%H:%M:%S')} exited; restarted")
                    self.start_window(w)
                continue
            st = w.status()
            if st and not st.get("healthy", True):
                w.unhealthy_since = w.unhealthy_since or now
                if now - w.unhealthy_since >= WATCHDOG_S:
                    w.restarts.append(
                        f"{time.strftime('%H:%M:%S')} watchdog: rule loop dead "
                        f"({st.get('last_error', '')}); killed"
                    )
                    self.kill_window(w)
                    w.down_since = now
            else:
                w.unhealthy_since = None

    def close(self) -> None:
        for w in self.windows:
            if w.alive and w.proc is not None:
                w.proc.kill()
                w.proc.wait(10)
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            try:
                self.server.wait(20)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait(10)
        self.broker.stop()
        self.store.close()
        if self.disk is not None:
            self.disk.unmount()
        if self.netns is not None:
            self.netns.destroy()

    # ------------------------------------------------------------------ checks

    def generated(self) -> dict[Device, int]:
        """Each window's outbox last_seq, read from its file (true after a SIGKILL too)."""
        out: dict[Device, int] = {}
        for w in self.windows:
            if w.outbox.exists():
                out[(SITE_SLUG, w.slug)] = outbox_last_seq(w.outbox)[0]
        return out

    def refused(self) -> int:
        return sum(w.refused_before + int(w.status().get("refused", 0)) for w in self.windows)

    def backlog_stored(self, upto: dict[Device, int]) -> tuple[int, int]:
        """(missing, duplicates) among every window's seqs 1..upto."""
        held = stored_by_device(self.store, upto)
        missing = dup = 0
        for dev, last in upto.items():
            s = held.get(dev)
            missing += last - (s.distinct_seq if s else 0)
            dup += (s.rows - s.distinct_seq) if s else 0
        return missing, dup

    def wait_stored(
        self, upto: dict[Device, int], timeout: float, tick: Callable[[], None] | None = None
    ) -> tuple[float | None, int, int]:
        """Seconds until every seq in ``upto`` is stored (None on timeout), missing, dups."""
        t0 = time.monotonic()
        missing, dup = self.backlog_stored(upto)
        while missing and time.monotonic() - t0 < timeout:
            if tick is not None:
                tick()
            time.sleep(0.25)
            with contextlib.suppress(Exception):  # the server may be migrating the schema
                missing, dup = self.backlog_stored(upto)
        return (time.monotonic() - t0 if not missing else None), missing, dup
