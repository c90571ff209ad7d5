"""Run a private MQTT broker on loopback: for the demo, the tests of both halves and a
terminal tried on a bench. Part of the shared contract (the server's demo imports it).

Mosquitto when its binary is installed (Debian keeps it in /usr/sbin, often off PATH),
otherwise the embedded pure-Python amqtt broker (MQTT 3.1.1 only).
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Protocol


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_mosquitto() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def wait_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


class Broker(Protocol):
    host: str
    port: int
    name: str

    def start(self) -> None: ...
    def stop(self) -> None: ...


class MosquittoBroker:
    """A private Mosquitto on loopback; restartable, with persistence in ``workdir``.

    Persistence is on so that persistent sessions and queued QoS 1 messages survive a
    restart, as they do with a production broker.
    """

    name = "mosquitto"

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        binary: str | None = None,
        extra_conf: str = "",
        ready_timeout_s: float = 10.0,
    ) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.ready_timeout_s = ready_timeout_s  # persistence of 10,000 sessions loads slowly
        self.workdir = Path(workdir)
        self.binary = binary or find_mosquitto()
        if self.binary is None:
            raise FileNotFoundError("mosquitto binary not found (apt install mosquitto)")
        self.extra_conf = extra_conf
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def conf_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    def write_conf(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(
            # Started as root, Mosquitto drops to user "mosquitto", which cannot write our
            # private workdir: persistence would be silently off. Stay who we are.
            f"user {getpass.getuser()}\n"
            f"listener {self.port} {self.host}\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {self.workdir}/\n"
            "autosave_interval 1\n"
            "max_queued_messages 0\n"
            "max_inflight_messages 0\n"
            f"log_dest file {self.workdir}/mosquitto.log\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
            f"{self.extra_conf}"
        )

    def start(self) -> None:
        if self.running:
            return
        self.write_conf()
        assert self.binary is not None
        self._proc = subprocess.Popen(
            [self.binary, "-c", str(self.conf_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_port(self.host, self.port, self.ready_timeout_s)
        except TimeoutError:
            self.stop()
            raise

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=max(10.0, self.ready_timeout_s))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """Stop abruptly (SIGKILL), as a crash or power loss would."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> MosquittoBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class EmbeddedBroker:
    """amqtt in a thread of its own, for machines without Mosquitto (MQTT 3.1.1 only)."""

    name = "amqtt (embedded)"

    def __init__(self, port: int | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self._thread: threading.Thread | None = None
        self._stop: threading.Event = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="amqtt", daemon=True)
        self._thread.start()
        try:
            wait_port(self.host, self.port)
        except TimeoutError:
            raise RuntimeError(f"embedded broker failed: {self._error!r}") from None

    def _run(self) -> None:
        import asyncio

        from amqtt.broker import Broker as AmqttBroker

        async def main() -> None:
            config = {
                "listeners": {
                    "default": {"type": "tcp", "bind": f"{self.host}:{self.port}"},
                },
                "plugins": {
                    "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
                    "amqtt.plugins.sys.broker.BrokerSysPlugin": {"sys_interval": 0},
                },
            }
            broker = AmqttBroker(config)
            await broker.start()
            while not self._stop.is_set():
                await asyncio.sleep(0.1)
            await broker.shutdown()

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported by start()
            self._error = exc

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None


def local_broker(workdir: Path, prefer_mosquitto: bool = True) -> Broker:
    if prefer_mosquitto and find_mosquitto():
        return MosquittoBroker(workdir)
    return EmbeddedBroker()
