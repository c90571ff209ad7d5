"""A private Mosquitto whose persistence really works when the harness runs as root.

Started as root, Mosquitto drops to the ``mosquitto`` user, which cannot write a 0700
temporary directory: persistence then does nothing, silently, and a restarted broker has
forgotten every session and the QoS 1 messages queued for the aggregator. A ``user`` line
naming the current user keeps it as root (it is only read when started as root). Added
only when ``agent.localbroker.MosquittoBroker`` does not already write one.
"""

from __future__ import annotations

import os
import pwd
import random
import socket
from pathlib import Path

from agent.localbroker import MosquittoBroker


def quiet_port(lo: int = 20_000, hi: int = 32_000) -> int:
    """A free port below Linux's ephemeral range (32768+): with thousands of client
    connections on loopback, a port from ``free_port()`` can be taken by one of them
    before the server binds it."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(lo, hi)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {lo}..{hi}")


def persistent_mosquitto(
    workdir: Path, extra_conf: str = "", port: int | None = None
) -> MosquittoBroker:
    # A broker saving or loading 10,000 sessions on a busy machine takes more than 10 s.
    broker = MosquittoBroker(
        workdir, port=port or quiet_port(), extra_conf=extra_conf, ready_timeout_s=60.0
    )
    broker.write_conf()
    if os.geteuid() == 0 and "\nuser " not in "\n" + broker.conf_path.read_text():
        broker.extra_conf += f"user {pwd.getpwuid(os.geteuid()).pw_name}\n"
    return broker
