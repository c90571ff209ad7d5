"""MQTT consumer: validate every message, store each event once, then acknowledge.

Why paho with manual acknowledgement rather than aiomqtt: a QoS 1 event is
acknowledged to the broker only after the batch holding it has been committed, so a
server crash between receipt and commit leaves the message with the broker (persistent
session) instead of losing it. Acks go out in receipt order, as MQTT requires.

Threads: paho's network thread parses and validates (cheap) and queues; one writer
thread batches for ``flush_s`` (about 20 ms), commits, acks, then notifies listeners.

Poison: when the store refuses a batch, the writer tells an outage (the database is
unreachable, locked or out of resources: ``OperationalError``) from a message the store
cannot take. An outage is retried as it stands, nothing acknowledged and nothing set
aside. Anything else splits the batch in halves until the refused messages stand alone;
the rest is stored, and a message refused on its own while a message like it (an event,
a state, ...) was stored is set aside in ``dead_letters`` (hash, size, short excerpt;
never the payload), counted as ``store_refused`` and acknowledged. When nothing at all
goes in, the refused messages wait at the head of the next batch (the store, not the
message, is at fault); a lone one in a quiet moment is set aside after
``suspect_wait_s`` if this process has stored such a message before. ``health()`` says
whether the ingest makes progress (``/healthz``, ``ww_ingest_healthy``).

Versions: events of every version of the ingest's ``Contract`` are accepted; an event
claiming a version it does not know is rejected as ``unsupported_version`` (valid for a
newer server, so not ``malformed``). On every connect the ingest announces its versions
as a retained ``Accepts`` on ``ww/v1/_server/accepts/<client id>``; terminals send no
newer version than every announcing ingest accepts (docs/protocol.md, "Versions").
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import logging
import queue
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import ValidationError
from sqlalchemy import exc as sa_exc

from agent.config import TlsConfig
from agent.mqtt import make_client
from agent.protocol import (
    ACCEPTS_QOS,
    CHANNEL_QOS,
    CONTRACT,
    OFFLINE,
    ONLINE,
    Accepts,
    Channel,
    Command,
    Contract,
    EventHeader,
    Health,
    UnsupportedVersion,
    WindowState,
    accepts_topic,
    now_ms,
    parse_topic,
    stored_messages,
    subscription,
    topic,
)
from server.events_source import Delivery, JetStreamEvents, JetStreamSettings
from server.store.base import is_outage
from server.store.db import STORE_REFUSED, Batch, DeadLetter, Store, StoredEvent

log = logging.getLogger(__name__)

Listener = Callable[[dict[str, Any]], None]


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
    #: Unhealthy when the writer holds messages and has committed nothing for this long.
    stall_s: float = 30.0
    #: How long a lone refused message waits for another message to show that the store
    #: takes writes, before it is set aside anyway (at most half of ``stall_s``).
    suspect_wait_s: float = 5.0
    #: Pause before retrying after an outage, or after a batch of which nothing went in.
    retry_s: float = 1.0
    #: Further broker nodes (host, port) of a cluster, tried in turn after host:port
    #: when a connection fails or drops.
    nodes: tuple[tuple[str, int], ...] = ()
    #: Events from a JetStream stream (a NATS cluster) instead of the MQTT subscription;
    #: everything else (state, availability, health, commands, bundles) stays on MQTT.
    events: JetStreamSettings | None = None
    #: After each commit, tell every terminal which of its seqs are stored (``stored``
    #: topic, QoS 0): a terminal in ``confirm = "stored"`` mode keeps an event until then.
    confirm: bool = True


#: At most this many lone refused messages are set aside without another one stored.
MAX_LONE_SUSPECTS = 3


@dataclass(frozen=True)
class IngestHealth:
    healthy: bool
    reason: str  # "" when healthy
    waiting: int  # messages received and not yet stored, rejected or set aside
    last_commit_ms: int | None
    dead_letters: int
    write_failures: int
    last_error: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.healthy else "unhealthy",
            "reason": self.reason,
            "waiting": self.waiting,
            "last_commit_ms": self.last_commit_ms,
            "dead_letters": self.dead_letters,
            "write_failures": self.write_failures,
            "last_error": self.last_error,
        }


@dataclass
class IngestStats:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    connected: bool = False
    dead_letters: int = 0
    #: Messages done with: stored, duplicate, rejected or set aside (written by the
    #: writer only, as ``received`` is by the network thread only).
    handled: int = 0
    write_failures: int = 0
    last_error: str | None = None
    last_commit_ms: int | None = None
    #: Receipt time of the oldest message the writer holds; None while it holds none.
    busy_since_ms: int | None = None
    failing_since_ms: int | None = None
    writer_alive: bool = False
    stall_s: float = 30.0

    @property
    def waiting(self) -> int:
        return max(0, self.received - self.handled)

    def health(self, now: int) -> IngestHealth:
        """Unhealthy when the writer is not running, or holds messages and has committed
        nothing for ``stall_s`` (an outage, a blocked store, a store refusing all)."""
        reason = ""
        busy = self.busy_since_ms
        if not self.writer_alive:
            reason = "writer not running"
        elif busy is not None:
            idle_s = (now - max(busy, self.last_commit_ms or 0)) / 1000
            if idle_s > self.stall_s:
                reason = f"{self.waiting} messages waiting, nothing committed for {idle_s:.0f} s"
                if self.failing_since_ms is not None and self.last_error:
                    reason += f" ({self.last_error})"
        return IngestHealth(
            healthy=not reason,
            reason=reason,
            waiting=self.waiting,
            last_commit_ms=self.last_commit_ms,
            dead_letters=self.dead_letters,
            write_failures=self.write_failures,
            last_error=self.last_error,
        )


@dataclass
class _Item:
    #: Acknowledges the message to its source (after the commit); None: nothing to ack.
    ack: Callable[[], None] | None
    received_ms: int
    #: The raw message, kept only until it is written: a dead letter's topic and hash.
    topic: str = ""
    payload: bytes = b""
    event: EventHeader | None = None
    availability: tuple[str, str, bool] | None = None
    state: WindowState | None = None
    health: Health | None = None
    reject: str | None = None
    done: bool = False  # stored, rejected or set aside: may be acknowledged

    @property
    def kind(self) -> str:
        if self.event is not None:
            return "event"
        if self.availability is not None:
            return "availability"
        if self.state is not None:
            return "state"
        return "health" if self.health is not None else "reject"


def describe(exc: BaseException) -> str:
    """Exception class and the first line of its message (the driver's, not the SQL)."""
    orig = exc.orig if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None else exc
    first = (str(orig).strip().splitlines() or [""])[0]
    return f"{type(orig).__name__}: {first}"[:200]


class Ingest:
    """Consume the fleet's topics into ``store``; ``start()``/``stop()`` own two threads."""

    def __init__(
        self, store: Store, settings: IngestSettings, *, contract: Contract = CONTRACT
    ) -> None:
        self.store = store
        self.settings = settings
        self.contract = contract
        #: Raises ValueError now for a client id that cannot name a topic level.
        self._accepts_topic = accepts_topic(settings.client_id)
        self.stats = IngestStats(stall_s=settings.stall_s)
        self._known = store.known_devices()
        #: Messages refused on their own, waiting for proof that the store takes writes.
        self._suspects: list[_Item] = []
        self._suspects_since_ms = 0
        #: Kinds of message this process has stored (see ``_write_isolating``).
        self._stored_kinds: set[str] = set()
        #: Lone messages set aside in quiet moments since the last commit.
        self._lone_set_aside = 0
        self._listeners: list[Listener] = []
        self._queue: queue.Queue[_Item] = queue.Queue()
        self._stop = threading.Event()
        self._writer: threading.Thread | None = None
        self._protocol = settings.protocol
        self._received_lock = threading.Lock()
        self._nodes = [(settings.host, settings.port), *settings.nodes]
        self._node = 0
        self._client = self._make_client()
        self._events: JetStreamEvents | None = None
        if settings.events is not None:
            self._events = JetStreamEvents(settings.events, self._on_delivery, now_ms)
        self._live: mqtt.Client | None = None
        self._live_ready = threading.Event()
        #: Set when the broker has acknowledged our subscriptions (SUBACK): from then on
        #: it routes to us what terminals publish.
        self._subscribed = threading.Event()

    def add_listener(self, fn: Listener) -> None:
        self._listeners.append(fn)

    def send_command(
        self, command: Command, site: str, window: str, timeout_s: float = 5.0
    ) -> bool:
        """Publish a command to one window (QoS 1, as the server identity the ACL lets
        write ``cmd``); True once the broker acknowledged it. The caller keeps what it
        sent (the queue bridge stores the call first), so a False loses nothing."""
        info = self._client.publish(
            topic(site, window, Channel.CMD), command.model_dump_json(exclude_none=True), qos=1
        )
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return False
        try:
            info.wait_for_publish(timeout_s)
        except (RuntimeError, ValueError):
            return False
        return info.is_published()

    def publish_retained(
        self, site: str, window: str, channel: Channel, payload: bytes, timeout_s: float = 10.0
    ) -> str | None:
        """Publish ``payload`` as the retained message of one window's ``channel`` (a
        settings bundle), as the server identity; None once the broker acknowledged it,
        else what went wrong (the caller records it and may publish again)."""
        qos, retain = CHANNEL_QOS[channel]
        info = self._client.publish(topic(site, window, channel), payload, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return f"not sent: {mqtt.error_string(info.rc)}"
        try:
            info.wait_for_publish(timeout_s)
        except (RuntimeError, ValueError) as exc:
            return f"not sent: {exc}"
        return None if info.is_published() else f"no PUBACK within {timeout_s:.0f} s"

    def refresh_devices(self) -> None:
        self._known = self.store.known_devices()

    def health(self) -> IngestHealth:
        """Whether the ingest makes progress; ``/healthz`` answers 503 when not (also when
        the events stream has been out of reach for ``stall_s``)."""
        now = now_ms()
        health = self.stats.health(now)
        if self._events is not None and health.healthy:
            reason = self._events.stats.stalled(now, self.settings.stall_s)
            if reason:
                health = dataclasses.replace(health, healthy=False, reason=reason)
        return health

    # ----------------------------------------------------------------- mqtt

    @property
    def live_feed(self) -> bool:
        s = self.settings
        shared = bool(s.share_group) or s.events is not None
        return shared if s.live_feed is None else s.live_feed

    def _fail_over(self, client: mqtt.Client, _userdata: Any = None) -> None:
        """The connection failed or dropped: the next attempt goes to the next node."""
        if len(self._nodes) > 1:
            self._node = (self._node + 1) % len(self._nodes)
            # paho's own reconnect loop reads these; its ``host``/``port`` setters refuse
            # in every state but "new", and it has no other way to change the broker.
            client._host, client._port = self._nodes[self._node]

    def _make_client(self) -> mqtt.Client:
        client = make_client(
            self.settings.client_id,
            protocol=self._protocol,
            clean_session=None if self._protocol == mqtt.MQTTv5 else False,
            manual_ack=True,
            tls=self.settings.tls,
        )
        # Keep many unacked messages flowing while a batch commits.
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._fail_over
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def _connect(self) -> None:
        s = self.settings
        host, port = self._nodes[self._node]
        if self._protocol == mqtt.MQTTv5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = s.session_expiry_s
            self._client.connect(host, port, keepalive=30, clean_start=False, properties=props)
        else:
            self._client.connect(host, port, keepalive=30)

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.warning("ingest connect refused: %s", reason)
            return
        self.stats.connected = True
        self._subscribed.clear()
        self._subscribe(client)
        # Retained, so a terminal connecting later (or while we are down) reads it.
        accepts = Accepts(
            server=self.settings.client_id, versions=self.contract.versions, ts_ms=now_ms()
        )
        qos, retain = ACCEPTS_QOS
        client.publish(self._accepts_topic, accepts.model_dump_json(), qos=qos, retain=retain)

    def _subscribe(self, client: mqtt.Client) -> None:
        # Availability and state go to every replica: they are idempotent updates.
        filters = [
            (subscription(Channel.AVAILABILITY), 1),
            (subscription(Channel.STATE), 1),
            (subscription(Channel.HEALTH), 0),
        ]
        if self._events is None:  # else the events come from the stream
            events_topic = subscription(Channel.EVENT)
            if self.settings.share_group:
                events_topic = f"$share/{self.settings.share_group}/{events_topic}"
            filters.insert(0, (events_topic, 1))
        client.subscribe(filters)

    def _on_subscribe(self, client: mqtt.Client, _u: Any, _mid: int, codes: Any, _p: Any) -> None:
        """Subscribed, unless the broker refused a filter (a NATS node that has just lost
        a peer refuses QoS 1 subscriptions for some seconds): then ask again shortly."""
        if any(int(getattr(c, "value", c)) >= 0x80 for c in codes):
            log.warning("broker refused a subscription; subscribing again in 2 s")
            timer = threading.Timer(2.0, self._subscribe, [client])
            timer.daemon = True
            timer.start()
            return
        self._subscribed.set()

    def _on_disconnect(self, client: mqtt.Client, *_args: Any) -> None:
        self.stats.connected = False
        self._fail_over(client)

    def _on_message(self, _client: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        ack = functools.partial(self._mqtt_ack, msg.mid, msg.qos) if msg.qos > 0 else None
        self._receive(_Item(ack=ack, received_ms=now_ms()), msg.topic, bytes(msg.payload))

    def _on_delivery(self, d: Delivery) -> None:
        """An event from the stream (its source's thread): the same path as MQTT's."""
        self._receive(_Item(ack=d.ack, received_ms=now_ms()), d.topic, d.payload)

    def _receive(self, item: _Item, name: str, payload: bytes) -> None:
        item.topic, item.payload = name, payload
        self._classify(item, name, payload)
        with self._received_lock:  # two sources may count at once
            self.stats.received += 1
        self._queue.put(item)

    def _mqtt_ack(self, mid: int, qos: int) -> None:
        self._client.ack(mid, qos)

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
                ev = self.contract.parse_event(payload)
            except UnsupportedVersion:
                item.reject = "unsupported_version"
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

    def _drain(self, limit: int) -> list[_Item]:
        """Group commit: take what is waiting, then linger up to ``flush_s`` only while
        more keeps arriving. At low rates a lone event commits at once; under load the
        batch grows by itself while the previous commit runs."""
        try:
            first = self._queue.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.settings.flush_s
        while len(batch) < limit:
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

    def _commit(self, piece: list[_Item]) -> set[str]:
        """Write one piece of a batch in one transaction; return the new event ids."""
        evs = [StoredEvent(i.event, i.received_ms) for i in piece if i.event is not None]
        rejects = Counter(i.reject for i in piece if i.reject)
        write = Batch(events=evs, rejects=dict(rejects))
        for i in piece:
            if i.availability:
                write.availability.append((*i.availability, i.received_ms))
            elif i.state:
                write.states.append((i.state, i.received_ms))
            elif i.health:
                write.healths.append((i.health, i.received_ms))
        new_ids = set(self.store.write_batch(write))
        self.stats.last_commit_ms = now_ms()
        self.stats.failing_since_ms = None
        self.stats.stored += len(new_ids)
        self.stats.duplicates += len(evs) - len(new_ids)  # replays, and repeats in the batch
        self.stats.rejected.update(rejects)
        for i in piece:
            i.done = True
        self._stored_kinds.update(i.kind for i in piece)
        self._lone_set_aside = 0
        return new_ids

    def _failed(self, exc: BaseException) -> None:
        self.stats.write_failures += 1
        self.stats.last_error = describe(exc)
        if self.stats.failing_since_ms is None:
            self.stats.failing_since_ms = now_ms()

    def _set_aside(self, refused: list[tuple[_Item, BaseException]]) -> bool:
        """Dead-letter the refused messages (one transaction); False if the store
        refused that too (they stay suspects)."""
        letters = [
            DeadLetter.of(i.topic, i.payload, describe(exc), i.received_ms) for i, exc in refused
        ]
        try:
            self.store.set_aside(letters)
        except Exception as exc:
            log.exception("could not set %d refused messages aside", len(letters))
            self._failed(exc)
            return False
        for (i, _), letter in zip(refused, letters, strict=True):
            log.error("store refused a message on %s, set aside: %s", letter.topic, letter.reason)
            i.done = True
        self.stats.dead_letters += len(letters)
        self.stats.rejected[STORE_REFUSED] += len(letters)
        self.stats.last_commit_ms = now_ms()
        return True

    def _write_isolating(self, new: list[_Item], *, quiet: bool = False) -> None:
        """Write waiting suspects and ``new``; isolate what the store refuses (module
        docstring); acknowledge, in receipt order, everything done with."""
        suspects, self._suspects = self._suspects, []
        batch = suspects + new
        if not batch:
            return
        self.stats.busy_since_ms = batch[0].received_ms
        pieces: list[list[_Item]] = [[i] for i in suspects] + ([new] if new else [])
        new_ids: set[str] = set()
        refused: list[tuple[_Item, BaseException]] = []
        stored_now: set[str] = set()
        while pieces:
            piece = pieces.pop(0)
            try:
                new_ids |= self._commit(piece)
                stored_now.update(i.kind for i in piece)
                continue
            except Exception as exc:
                self._failed(exc)
                if is_outage(exc):
                    # Nothing of this piece is acked: the broker still holds it.
                    log.warning("store unavailable (%s); retrying", describe(exc))
                    pieces.insert(0, piece)
                    if self._stop.wait(self.settings.retry_s):
                        break
                elif len(piece) > 1:
                    half = len(piece) // 2
                    pieces[0:0] = [piece[:half], piece[half:]]
                else:
                    refused.append((piece[0], exc))
        if pieces:  # stopping during an outage: leave the rest to the broker
            self._suspects = [i for i, _ in refused] + self._suspects
            self._finish(batch, new_ids)
            return
        if refused:
            # Set aside what failed on its own while a message like it went in; with
            # nothing stored, the store rather than the message may be at fault.
            proven = [(i, e) for i, e in refused if i.kind in stored_now]
            lone = self._lone_set_aside + len(refused) <= MAX_LONE_SUSPECTS
            if quiet and not stored_now and lone:
                proven = [(i, e) for i, e in refused if i.kind in self._stored_kinds]
                if proven and self._set_aside(proven):
                    self._lone_set_aside += len(proven)
            elif proven:
                self._set_aside(proven)
            waiting = [i for i, _ in refused if not i.done]
            if waiting:
                if not suspects:
                    self._suspects_since_ms = now_ms()
                self._suspects = waiting
        self._finish(batch, new_ids)
        if self._suspects and not stored_now:
            self._stop.wait(self.settings.retry_s)  # nothing goes in: do not spin

    def _finish(self, batch: list[_Item], new_ids: set[str]) -> None:
        """Acknowledge, in receipt order, what is done with; then tell the listeners."""
        for i in batch:
            if i.done and i.ack is not None:
                i.ack()
        done = [i for i in batch if i.done]
        if self.settings.confirm:
            self._confirm(done)
        self.stats.handled += len(done)
        self.stats.busy_since_ms = self._suspects[0].received_ms if self._suspects else None
        for i in done:
            msg: dict[str, Any] | None = None
            if i.event is not None and str(i.event.event_id) in new_ids and not self.live_feed:
                new_ids.discard(str(i.event.event_id))  # one message per stored event
                msg = {"type": "event", "event": i.event.model_dump(mode="json")}
            elif i.availability:
                site, window, online = i.availability
                msg = {"type": "availability", "site": site, "window": window, "online": online}
            elif i.state:
                msg = {"type": "state", "state": i.state.model_dump(mode="json")}
            if msg is not None:
                for fn in self._listeners:
                    fn(msg)

    def _confirm(self, done: list[_Item]) -> None:
        """Tell each terminal which of its seqs are now in the store (stored before, or
        set aside as refused, included: sending them again would change nothing)."""
        seqs: defaultdict[tuple[str, str], list[int]] = defaultdict(list)
        for i in done:
            if i.event is not None:
                seqs[(i.event.site, i.event.window)].append(i.event.seq)
        qos, retain = CHANNEL_QOS[Channel.STORED]
        ts = now_ms()
        for (site, window), got in seqs.items():
            for doc in stored_messages(site, window, got, ts):
                self._client.publish(
                    topic(site, window, Channel.STORED),
                    doc.model_dump_json(),
                    qos=qos,
                    retain=retain,
                )

    def _writer_loop(self) -> None:
        self.stats.writer_alive = True
        try:
            while True:
                stopping = self._stop.is_set()
                room = self.settings.max_batch - len(self._suspects)
                if stopping:
                    new = self._take_all()
                elif room > 0:
                    new = self._drain(room)
                else:  # the store refuses everything: retry what waits, take no more
                    new = []
                quiet = False
                if self._suspects and not new and room > 0 and not stopping:
                    wait_s = min(self.settings.suspect_wait_s, self.settings.stall_s / 2)
                    if now_ms() - self._suspects_since_ms < wait_s * 1000:
                        continue
                    quiet = True
                if new or self._suspects:
                    self._write_isolating(new, quiet=quiet)
                if stopping:
                    return
        finally:
            self.stats.writer_alive = False

    def _take_all(self) -> list[_Item]:
        out: list[_Item] = []
        with contextlib.suppress(queue.Empty):
            while True:
                out.append(self._queue.get_nowait())
        return out

    # ----------------------------------------------------------------- live feed

    def _make_live_client(self) -> mqtt.Client:
        client = make_client(
            f"{self.settings.client_id}-live", protocol=self._protocol, tls=self.settings.tls
        )
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        # QoS 0: the live feed is best effort, and on NATS a QoS 1 subscription would be a
        # replicated consumer of its own.
        client.on_connect = lambda c, *_: c.subscribe(subscription(Channel.EVENT), qos=0)
        client.on_connect_fail = self._fail_over
        client.on_disconnect = lambda c, *_: self._fail_over(c, None)
        client.on_subscribe = lambda *_: self._live_ready.set()
        client.on_message = self._on_live_message
        return client

    def _on_live_message(self, _client: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        """Every event, to the listeners only: storing is the shared subscription's job
        (which also counts the rejects, so they are not counted here)."""
        item = _Item(ack=None, received_ms=now_ms())
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
                self._live.connect(*self._nodes[self._node], keepalive=30)
            self._live.loop_start()
        if self._events is not None:
            self._events.start()

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
        """Connected and subscribed (the broker acknowledged our subscriptions), so what a
        terminal publishes from now on reaches us; the live feed too, when there is one."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            subscribed = self._subscribed.is_set()
            if (
                self.stats.connected
                and subscribed
                and (self._live is None or self._live_ready.is_set())
                and (self._events is None or self._events.stats.ready)
            ):
                return True
            time.sleep(0.02)
        return False

    def stop(self) -> None:
        """Commit and acknowledge what has arrived, then disconnect. Anything arriving
        after that is left unacknowledged for the broker to redeliver."""
        if self._events is not None:
            self._events.stop_fetching()
        self._stop.set()
        if self._writer is not None:
            self._writer.join(timeout=15)
            self._writer = None
        if self._events is not None:
            self._events.close()  # after the writer: its last acknowledgements go out
        self._client.disconnect()
        self._client.loop_stop()
        if self._live is not None:
            self._live.disconnect()
            self._live.loop_stop()
