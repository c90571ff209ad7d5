"""A broker that refuses a subscription in its SUBACK (a NATS node that has just lost a
peer does, for some seconds) does not leave the terminal deaf: it subscribes again.

Mosquitto grants every subscription and filters at delivery, so the broker here is a
minimal MQTT 3.1.1 peer on loopback that refuses the first two SUBSCRIBEs (0x80)."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from agent.config import BrokerConfig
from agent.outbox import Outbox
from agent.protocol import Channel, topic
from agent.transport import Transport
from tests.waiting import wait_until

SITE, WINDOW = "qingpu", "w01"


def _read_packet(conn: socket.socket) -> tuple[int, bytes]:
    head = conn.recv(1)
    if not head:
        raise ConnectionError("closed")
    length, shift = 0, 0
    while True:
        b = conn.recv(1)[0]
        length |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    body = b""
    while len(body) < length:
        chunk = conn.recv(length - len(body))
        if not chunk:
            raise ConnectionError("closed")
        body += chunk
    return head[0], body


def _packet(kind: int, body: bytes) -> bytes:
    assert len(body) < 128
    return bytes([kind, len(body)]) + body


class RefusingBroker:
    """Answers CONNECT (MQTT 5 refused: the transport falls back), refuses the first
    ``refuse`` SUBSCRIBEs, PUBACKs publishes, and sends one invalid ``cmd`` once a
    subscription is granted."""

    def __init__(self, refuse: int) -> None:
        self.refuse = refuse
        self.subscribes = 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _client(self, conn: socket.socket) -> None:
        with conn:
            try:
                while not self._stop.is_set():
                    kind, body = _read_packet(conn)
                    ptype = kind >> 4
                    if ptype == 1:  # CONNECT: level byte after the protocol name
                        level = body[6]
                        conn.sendall(_packet(0x20, b"\x00\x00" if level == 4 else b"\x00\x01"))
                        if level != 4:
                            return
                    elif ptype == 8:  # SUBSCRIBE
                        mid, filters = body[:2], body.count(b"\x01", 2)
                        self.subscribes += 1
                        granted = self.subscribes > self.refuse
                        conn.sendall(_packet(0x90, mid + bytes([1 if granted else 0x80] * filters)))
                        if granted:
                            name = topic(SITE, WINDOW, Channel.CMD).encode()
                            conn.sendall(
                                _packet(0x32, len(name).to_bytes(2, "big") + name + b"\x00\x07!")
                            )
                    elif ptype == 3 and kind & 0x06:  # PUBLISH QoS 1: PUBACK it
                        n = int.from_bytes(body[:2], "big")
                        conn.sendall(_packet(0x40, body[2 + n : 4 + n]))
                    elif ptype == 12:  # PINGREQ
                        conn.sendall(b"\xd0\x00")
            except (ConnectionError, OSError, IndexError):
                return

    def close(self) -> None:
        self._stop.set()
        self._sock.close()


def test_a_refused_subscription_is_sent_again_until_granted(tmp_path: Path) -> None:
    broker = RefusingBroker(refuse=2)
    try:
        cfg = BrokerConfig(host="127.0.0.1", port=broker.port, keepalive_s=5)
        with (
            Outbox(tmp_path / "outbox.db", SITE, WINDOW) as box,
            Transport(cfg, SITE, WINDOW, box) as link,
        ):
            wait_until(lambda: link.stats().suback_refused > 0, 20, "a refused SUBACK")
            # Sent again after a pause (1 s, then 2 s), and granted the third time: the
            # command the broker then sends reaches the terminal (invalid, so counted).
            wait_until(lambda: link.stats().bad_commands == 1, 20, "the command")
            assert broker.subscribes == 3
            assert link.stats().connects == 1, "on the same connection"
    finally:
        broker.close()
