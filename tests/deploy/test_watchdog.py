"""agent/watchdog.py against a real AF_UNIX datagram socket playing systemd."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.watchdog import Watchdog, notify


class FakeSystemd:
    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.2)

    def messages(self) -> list[str]:
        out = []
        while True:
            try:
                out.append(self.sock.recv(4096).decode())
            except TimeoutError:
                return out


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[tuple[FakeSystemd, dict[str, str]]]:
    path = str(tmp_path / "notify.sock")
    fake = FakeSystemd(path)
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}
    yield fake, env
    fake.sock.close()


def test_lifecycle_messages_and_rate_limited_pings(
    systemd: tuple[FakeSystemd, dict[str, str]],
) -> None:
    fake, env = systemd
    now = [100.0]
    dog = Watchdog.from_env(env)
    assert dog.interval_s == 30.0
    dog = Watchdog(dog.interval_s, env=env, clock=lambda: now[0])
    assert dog.ready("s1/w01 online")
    assert fake.messages() == ["READY=1\nSTATUS=s1/w01 online"]
    assert not dog.kick()  # just said READY: next ping after interval/2
    now[0] += 15.0
    assert not dog.kick(healthy=False)  # an unhealthy loop never pings
    assert dog.kick()
    now[0] += 5.0
    assert not dog.kick()
    now[0] += 10.0
    assert dog.kick()
    assert dog.status("outbox 3")
    assert dog.stopping()
    assert fake.messages() == ["WATCHDOG=1", "WATCHDOG=1", "STATUS=outbox 3", "STOPPING=1"]
    assert dog.pings == 2


def test_abstract_socket_address() -> None:
    name = f"ww-test-{uuid.uuid4().hex}"
    fake = FakeSystemd("\0" + name)
    try:
        assert notify("READY=1", {"NOTIFY_SOCKET": "@" + name})
        assert fake.messages() == ["READY=1"]
    finally:
        fake.sock.close()


def test_without_systemd_everything_is_a_quiet_no_op(tmp_path: Path) -> None:
    assert not notify("READY=1", {})
    assert not notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    dog = Watchdog.from_env({})
    assert not dog.enabled and not dog.kick() and not dog.ready()


def test_pings_only_from_the_process_systemd_watches(
    systemd: tuple[FakeSystemd, dict[str, str]],
) -> None:
    _fake, env = systemd
    # A child (the model check) inherits the environment but is not the main process.
    assert not Watchdog.from_env({**env, "WATCHDOG_PID": str(os.getpid() + 1)}).enabled
    assert not Watchdog.from_env({**env, "WATCHDOG_USEC": "0"}).enabled
