"""MQTT consumer: validate every message, store each event once, then acknowledge.

Why paho with manual acknowledgement rather than aiomqtt: a QoS 1 event is
acknowledged to the broker only after the batch holding it has been committed, so a
server crash between receipt and commit leaves the message with the broker (persistent
session) instead of losing it. Acks go out in receipt order, as MQTT requires.

Threads: paho's network thread parses and validates (cheap) and queues; one writer
thread batches for ``flush_s`` (about 20 ms), commits, acks, then notifies listeners.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import ValidationError

from agent.config import TlsConfig
from agent.protocol import (
    OFFLINE,
    ONLINE,
    Channel,
    EventHeader,
    Health,
    WindowState,
    parse_event,
    parse_topic,
    subscription,
)
from agent.transport import apply_tls
from server.store.db import Batch, Store, StoredEvent

log = logging.getLogger(__name__)

Listener = Callable[[dict[str, Any]], None]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class IngestSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = "ww-server-1"
    share_group: str | None = None  # e.g. "ww-ingest" for several replicas
    protocol: mqtt.MQTTProtocolVersion = mqtt.MQTTv5  # falls back to 3.1.1 when refused
    session_expiry_s: int = 7 * 24 * 3600
    flush_s: float = 0.02
    max_batch: int = 1000
    #: With a share group each replica stores only its share; the live dashboard needs
    #: every event, so a second, non-persistent client feeds listeners (None: auto,
    #: on when share_group is set).
    live_feed: bool | None = None
    tls: TlsConfig | None = None  # broker CA + the server identity's client certificate


@dataclass
class IngestStats:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    connected: bool = False


@dataclass
class _Item:
    mid: int
    qos: int
    received_ms: int
    event: EventHeader | None = None
    availability: tuple[str, str, bool] | None = None
    state: WindowState | None = None
    health: Health | None = None
    reject: str | None = None


class Ingest:
    """Consume the fleet's topics into ``store``; ``start()``/``stop()`` own two threads."""

    def __init__(self, store: Store, settings: IngestSettings) -> None:
        self.store = store
        self.settings = settings
        self.stats = IngestStats()
        self._known = store.known_devices()
        self._listeners: list[Listener] = []
        self._queue: queue.Queue[_Item] = queue.Queue()
        self._stop = threading.Event()
        self._writer: threading.Thread | None = None
        self._protocol = settings.protocol
        self._client = self._make_client()
        self._live: mqtt.Client | None = None
        self._live_ready = threading.Event()

    def add_listener(self, fn: Listener) -> None:
        self._listeners.append(fn)

    def refresh_devices(self) -> None:
        self._known = self.store.known_devices()

    # ----------------------------------------------------------------- mqtt

    @property
    def live_feed(self) -> bool:
        s = self.settings
        return bool(s.share_group) if s.live_feed is None else s.live_feed

    def _make_client(self) -> mqtt.Client:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.settings.client_id,
            protocol=self._protocol,
            clean_session=None if self._protocol == mqtt.MQTTv5 else False,
            manual_ack=True,
        )
        # Keep many unacked messages flowing while a batch commits.
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        apply_tls(client, self.settings.tls)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def _connect(self) -> None:
        s = self.settings
        if self._protocol == mqtt.MQTTv5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = s.session_expiry_s
            self._client.connect(s.host, s.port, keepalive=30, clean_start=False, properties=props)
        else:
            self._client.connect(s.host, s.port, keepalive=30)

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.warning("ingest connect refused: %s", reason)
            return
        self.stats.connected = True
        events_topic = subscription(Channel.EVENT)
        if self.settings.share_group:
            events_topic = f"$share/{self.settings.share_group}/{events_topic}"
        # Availability and state go to every replica: they are idempotent updates.
        client.subscribe(
            [
                (events_topic, 1),
                (subscription(Channel.AVAILABILITY), 1),
                (subscription(Channel.STATE), 1),
                (subscription(Channel.HEALTH), 0),
            ]
        )

    def _on_disconnect(self, *_args: Any) -> None:
        self.stats.connected = False

    def _on_message(self, _client: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        item = _Item(mid=msg.mid, qos=msg.qos, received_ms=now_ms())
        self.stats.received += 1
        self._classify(item, msg.topic, bytes(msg.payload))
        self._queue.put(item)

    def _classify(self, item: _Item, name: str, payload: bytes) -> None:
        """Validate one message against the contract; fill in what it is or why not."""
        try:
            site, window, channel = parse_topic(name)
        except ValueError:
            item.reject = "bad_topic"
            return
        if (site, window) not in self._known:
            item.reject = "unknown_device"
        elif channel is Channel.EVENT:
            try:
                ev = parse_event(payload)
            except ValidationError:
                item.reject = "malformed"
            else:
                if (ev.site, ev.window) != (site, window):
                    item.reject = "forged"  # a device publishing as another one
                else:
                    item.event = ev
        elif channel is Channel.AVAILABILITY:
            text = payload.decode("utf-8", "replace")
            if text in (ONLINE, OFFLINE):
                item.availability = (site, window, text == ONLINE)
            else:
                item.reject = "malformed"
        elif channel in (Channel.STATE, Channel.HEALTH):
            model = WindowState if channel is Channel.STATE else Health
            try:
                doc = model.model_validate_json(payload)
            except ValidationError:
                item.reject = "malformed"
            else:
                if (doc.site, doc.window) != (site, window):
                    item.reject = "forged"
                elif isinstance(doc, WindowState):
                    item.state = doc
                else:
                    item.health = doc
        else:
            item.reject = "bad_topic"

    # ----------------------------------------------------------------- writer

    def _drain(self) -> list[_Item]:
        """Group commit: take what is waiting, then linger up to ``flush_s`` only while
        more keeps arriving. At low rates a lone event commits at once; under load the
        batch grows by itself while the previous commit runs."""
        try:
            first = self._queue.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.settings.flush_s
        while len(batch) < self.settings.max_batch:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except queue.Empty:
                pass
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                batch.append(self._queue.get(timeout=min(left, 0.002)))
            except queue.Empty:
                break
        return batch

    def _write(self, batch: list[_Item]) -> None:
        evs = [StoredEvent(i.event, i.received_ms) for i in batch if i.event is not None]
        rejects = Counter(i.reject for i in batch if i.reject)
        write = Batch(events=evs, rejects=dict(rejects))
        for i in batch:
            if i.availability:
                write.availability.append((*i.availability, i.received_ms))
            elif i.state:
                write.states.append((i.state, i.received_ms))
            elif i.health:
                write.healths.append((i.health, i.received_ms))
        new_ids = set(self.store.write_batch(write))
        # Committed: now the broker may forget these messages.
        for i in batch:
            if i.qos > 0:
                self._client.ack(i.mid, i.qos)
        self.stats.stored += len(new_ids)
        self.stats.duplicates += len(evs) - len(new_ids)
        self.stats.rejected.update(rejects)
        for i in batch:
            msg: dict[str, Any] | None = None
            if i.event is not None and str(i.event.event_id) in new_ids and not self.live_feed:
                msg = {"type": "event", "event": i.event.model_dump(mode="json")}
            elif i.availability:
                site, window, online = i.availability
                msg = {"type": "availability", "site": site, "window": window, "online": online}
            elif i.state:
                msg = {"type": "state", "state": i.state.model_dump(mode="json")}
            if msg is not None:
                for fn in self._listeners:
                    fn(msg)

    def _writer_loop(self) -> None:
        while True:
            stopping = self._stop.is_set()
            batch = self._drain() if not stopping else self._take_all()
            if batch:
                self._write_retrying(batch)
            if stopping:
                return

    def _take_all(self) -> list[_Item]:
        out: list[_Item] = []
        with contextlib.suppress(queue.Empty):
            while True:
                out.append(self._queue.get_nowait())
        return out

    def _write_retrying(self, batch: list[_Item]) -> None:
        while True:
            try:
                self._write(batch)
                return
            except Exception:
                # Nothing was acked: the broker still holds these messages.
                log.exception("store write failed; retrying in 1 s")
                if self._stop.wait(1.0):
                    return

    # ----------------------------------------------------------------- live feed

    def _make_live_client(self) -> mqtt.Client:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"{self.settings.client_id}-live",
            protocol=self._protocol,
        )
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        apply_tls(client, self.settings.tls)
        client.on_connect = lambda c, *_: c.subscribe(subscription(Channel.EVENT), qos=1)
        client.on_subscribe = lambda *_: self._live_ready.set()
        client.on_message = self._on_live_message
        return client

    def _on_live_message(self, _client: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        """Every event, to the listeners only: storing is the shared subscription's job
        (which also counts the rejects, so they are not counted here)."""
        item = _Item(mid=msg.mid, qos=0, received_ms=now_ms())
        self._classify(item, msg.topic, bytes(msg.payload))
        if item.event is not None:
            for fn in self._listeners:
                fn({"type": "event", "event": item.event.model_dump(mode="json")})

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        # What is loaded by now (SQLAlchemy, pydantic, FastAPI, the models) lives as long
        # as the process: keep full collections from walking it each time. A gen-2 pass
        # over it stalled the writer ~60 ms, the p99 of bench.ingest on PostgreSQL.
        gc.collect()
        gc.freeze()
        self._stop.clear()
        self._writer = threading.Thread(target=self._writer_loop, name="ingest-writer")
        self._writer.start()
        try:
            self._connect()
        except (ConnectionRefusedError, OSError):
            log.warning("broker not reachable yet at %s:%s", self.settings.host, self.settings.port)
        self._client.loop_start()
        if self._protocol == mqtt.MQTTv5:
            self._fallback_if_refused()
        if self.live_feed:
            self._live = self._make_live_client()
            with contextlib.suppress(OSError):
                self._live.connect(self.settings.host, self.settings.port, keepalive=30)
            self._live.loop_start()

    def _fallback_if_refused(self) -> None:
        """The embedded broker speaks only MQTT 3.1.1: notice and reconnect with it."""
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and not self.stats.connected:
            time.sleep(0.05)
        if self.stats.connected:
            return
        self._client.loop_stop()
        self._client.disconnect()
        self._protocol = mqtt.MQTTv311
        self._client = self._make_client()
        with contextlib.suppress(OSError):
            self._connect()
        self._client.loop_start()

    def wait_connected(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stats.connected and (self._live is None or self._live_ready.is_set()):
                return True
            time.sleep(0.02)
        return False

    def stop(self) -> None:
        """Commit and acknowledge what has arrived, then disconnect. Anything arriving
        after that is left unacknowledged for the broker to redeliver."""
        self._stop.set()
        if self._writer is not None:
            self._writer.join(timeout=15)
            self._writer = None
        self._client.disconnect()
        self._client.loop_stop()
        if self._live is not None:
            self._live.disconnect()
            self._live.loop_stop()
