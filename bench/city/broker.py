"""A private Mosquitto whose persistence really works when the harness runs as root.

Started as root, Mosquitto drops to the ``mosquitto`` user, which cannot write a 0700
temporary directory: persistence then does nothing, silently, and a restarted broker has
forgotten every session and the QoS 1 messages queued for the aggregator. A ``user`` line
naming the current user keeps it as root (it is only read when started as root). Added
only when ``server.broker.MosquittoBroker`` does not already write one.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

from server.broker import MosquittoBroker


def persistent_mosquitto(workdir: Path, extra_conf: str = "") -> MosquittoBroker:
    broker = MosquittoBroker(workdir, extra_conf=extra_conf)
    broker.write_conf()
    if os.geteuid() == 0 and "\nuser " not in "\n" + broker.conf_path.read_text():
        broker.extra_conf += f"user {pwd.getpwuid(os.geteuid()).pw_name}\n"
    return broker
