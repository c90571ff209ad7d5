"""systemd notifications (READY, WATCHDOG, STOPPING, STATUS) without a systemd library.

The protocol is one datagram of ``KEY=value`` lines to the AF_UNIX socket named by
``$NOTIFY_SOCKET`` (a path, or an abstract name written with a leading ``@``); see
sd_notify(3). Writing it ourselves spares the Pi a compiled dependency, and every call
is a no-op when the agent is not run by systemd (a developer's shell, the tests).

The agent's unit has ``Type=notify`` and ``WatchdogSec=30``: systemd restarts the agent
when no ``WATCHDOG=1`` arrives for 30 s. Pinging from a timer thread would prove only that
the timer runs; the agent pings from its rule loop, and only while the loop's own health
checks pass, so a wedged loop, a dead transport thread or a camera that stopped delivering
frames all end in a restart.

Example::

    dog = Watchdog.from_env()
    dog.ready("w03 online")                 # after start-up, before the loop
    while not stop.is_set():
        ...
        dog.kick(healthy=threads_alive())   # every iteration; sent at most every interval/2
    dog.stopping()
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Final

_MAX_STATUS: Final = 200


def notify(message: str, env: Mapping[str, str] | None = None) -> bool:
    """Send one sd_notify datagram; False when there is no socket or sending fails.

    Never raises: a broken notification channel must not take the agent down (systemd
    will restart it for the missing watchdog pings anyway).
    """
    address = (env if env is not None else os.environ).get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace
    elif not address.startswith("/"):
        return False  # sd_notify(3) also accepts vsock addresses; a Pi never uses them
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError:
        return False
    return True


class Watchdog:
    """Rate-limited ``WATCHDOG=1`` pings plus the lifecycle messages.

    ``interval_s`` is systemd's ``WatchdogSec`` (from ``$WATCHDOG_USEC``) or None when no
    watchdog is configured; pings go out at half of it, as sd_watchdog_enabled(3) advises.
    """

    def __init__(
        self,
        interval_s: float | None,
        *,
        env: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval_s = interval_s
        self._env = env
        self._clock = clock
        self._last_ping: float | None = None
        self.pings = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Watchdog:
        e = env if env is not None else os.environ
        interval: float | None = None
        usec = e.get("WATCHDOG_USEC")
        pid = e.get("WATCHDOG_PID")
        # WATCHDOG_PID names the process systemd expects pings from; a child the agent
        # started (the model check) inherits the variables but must not ping.
        if usec and usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            interval = int(usec) / 1_000_000
        return cls(interval, env=env)

    @property
    def enabled(self) -> bool:
        return self.interval_s is not None

    def _send(self, message: str) -> bool:
        return notify(message, self._env)

    def ready(self, status: str | None = None) -> bool:
        """Start-up is complete (``Type=notify`` units stay 'activating' until this)."""
        msg = "READY=1"
        if status:
            msg += f"\nSTATUS={status[:_MAX_STATUS]}"
        sent = self._send(msg)
        self._last_ping = self._clock()
        return sent

    def kick(self, healthy: bool = True) -> bool:
        """Ping the watchdog if ``healthy`` and at least interval/2 has passed.

        Returns True when a ping was sent. An unhealthy call sends nothing: systemd then
        restarts the service once ``WatchdogSec`` has passed without a ping.
        """
        if self.interval_s is None or not healthy:
            return False
        now = self._clock()
        if self._last_ping is not None and now - self._last_ping < self.interval_s / 2:
            return False
        self._last_ping = now
        sent = self._send("WATCHDOG=1")
        self.pings += sent
        return sent

    def status(self, text: str) -> bool:
        """Free text shown by ``systemctl status``."""
        return self._send(f"STATUS={text[:_MAX_STATUS]}")

    def stopping(self) -> bool:
        """Shutdown has begun: systemd stops expecting pings and waits for the exit."""
        return self._send("STOPPING=1")
