"""Tests of the window agent's delivery path (outbox and MQTT transport), and their helpers.

``Subscriber`` plays the aggregator: a persistent-session QoS 1 paho subscriber that keeps
every copy it receives and de-duplicates by ``event_id`` the way the server does.
``CuttableLink`` sits between an agent and the broker and can cut the network the way a
pulled cable or a dead 4G modem does: bytes vanish, nobody gets a reset.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import select
import socket
import threading
import uuid
from typing import Any

import paho.mqtt.client as mqtt

from agent.events import Draft
from agent.protocol import Channel, SessionOpened, StoodUp, subscription

_counter = itertools.count()


def draft(i: int | None = None) -> Draft:
    """A small valid event draft; alternates two kinds so both cap tiers get exercised."""
    n = next(_counter) if i is None else i
    if n % 2:
        return Draft(
            kind=StoodUp,
            ts_ms=1_700_000_000_000 + n,
            fields={
                "phase": "greeting",
                "on_time": True,
                "after_ms": n % 5000,
            },
        )
    return Draft(kind=SessionOpened, ts_ms=1_700_000_000_000 + n, fields={"source": "bell"})


class Subscriber:
    """The aggregator's side in tests: persistent session, QoS 1, de-dup by event_id."""

    def __init__(
        self,
        host: str,
        port: int,
        channels: tuple[Channel, ...] = (Channel.EVENT,),
        *,
        protocol: mqtt.MQTTProtocolVersion = mqtt.MQTTv311,
    ) -> None:
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"test-sub-{uuid.uuid4().hex[:8]}",
            protocol=protocol,
            clean_session=False if protocol != mqtt.MQTTv5 else None,
        )
        self.client.reconnect_delay_set(1, 1)
        self._lock = threading.Lock()
        self.copies: list[dict[str, Any]] = []  # every event payload, in arrival order
        self.raw: list[tuple[str, bytes, bool]] = []  # (topic, payload, retain) of the rest
        self._subscribed = threading.Event()
        self._filters = [(subscription(ch), 1) for ch in channels]
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port, keepalive=5)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise AssertionError("test subscriber could not subscribe")

    def _on_connect(self, client: mqtt.Client, *args: Any) -> None:
        client.subscribe(self._filters)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            if msg.topic.endswith("/event"):
                self.copies.append(json.loads(msg.payload))
            else:
                self.raw.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def unique(self) -> list[dict[str, Any]]:
        """First copy of each event_id, in arrival order (what the server stores)."""
        seen: set[str] = set()
        out = []
        with self._lock:
            copies = list(self.copies)
        for ev in copies:
            if ev["event_id"] not in seen:
                seen.add(ev["event_id"])
                out.append(ev)
        return out

    def messages(self, channel: Channel) -> list[tuple[bytes, bool]]:
        with self._lock:
            return [(p, r) for t, p, r in self.raw if t.endswith("/" + channel.value)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class CuttableLink:
    """A TCP forwarder to the broker whose ``cut()`` silently swallows all traffic.

    While cut, both directions are read and discarded, so the agent's writes succeed
    and no PUBACK ever comes back (no RST, no FIN). ``restore()`` drops the connections
    that lived through the cut, as the broker would after the keepalive, and forwards
    new ones again.
    """

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server = socket.create_server(("127.0.0.1", 0))
        self.host, self.port = "127.0.0.1", int(self._server.getsockname()[1])
        self._cut = threading.Event()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        self._server.settimeout(0.2)
        while not self._closed.is_set():
            try:
                near, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                far = socket.create_connection(self._target, timeout=5)
            except OSError:
                near.close()
                continue
            with self._lock:
                self._pairs.append((near, far))
            t = threading.Thread(target=self._pump, args=(near, far), daemon=True)
            t.start()
            self._threads.append(t)

    def _pump(self, near: socket.socket, far: socket.socket) -> None:
        try:
            while not self._closed.is_set():
                ready, _, _ = select.select([near, far], [], [], 0.2)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    if not self._cut.is_set():
                        (far if s is near else near).sendall(data)
        except OSError:
            return
        finally:
            near.close()
            far.close()

    def cut(self) -> None:
        self._cut.set()

    def restore(self) -> None:
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for near, far in pairs:
            for s in (near, far):
                with contextlib.suppress(OSError):  # already gone
                    s.shutdown(socket.SHUT_RDWR)
        self._cut.clear()

    def close(self) -> None:
        self._closed.set()
        self.restore()
        self._server.close()
