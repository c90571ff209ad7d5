"""``Transport``: the object the app, the benches and the tests use; see the package
docstring for what it guarantees.

It owns the owner thread and the order of things: it runs the ``PahoLink``, feeds what
the link reports to the pure parts (``Reconnect``, ``ProtocolFallback``,
``DeliveryWindow``, ``PubackPolicy``) and does what they decide.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from pydantic import ValidationError

from agent.config import BrokerConfig
from agent.outbox import Outbox, OutboxRow, now_ms
from agent.protocol import (
    ACCEPTS_QOS,
    ACCEPTS_SUBSCRIPTION,
    CHANNEL_QOS,
    CONTRACT,
    OFFLINE,
    ONLINE,
    Accepts,
    Channel,
    Contract,
    Health,
    NotInVersion,
    Reply,
    Stored,
    WindowState,
    parse_accepts_topic,
    parse_topic,
    topic,
)
from agent.transport.backoff import Reconnect
from agent.transport.commands import CommandHandler, answer, short
from agent.transport.confirm import Confirmations
from agent.transport.fallback import ProtocolChoice, ProtocolFallback
from agent.transport.link import PahoLink
from agent.transport.nodes import NodeRing
from agent.transport.puback import Puback, PubackPolicy
from agent.transport.window import DeliveryWindow

__all__ = ["ConfigHandler", "LinkState", "Transport", "TransportStats", "Tuning"]

log = logging.getLogger(__name__)

ConfigHandler = Callable[[bytes], None]

# json.dumps(data, separators=(",", ":")) builds a new encoder on every call; this one
# is that encoder, made once (same options, same bytes).
_COMPACT: Final = json.JSONEncoder(separators=(",", ":"))
_DELIVERED: Final = Puback.DELIVERED  # bound once: a class lookup per PUBACK costs


@dataclass(frozen=True, slots=True)
class Tuning:
    """The transport's timeouts and limits that are not per-site configuration.

    The defaults are what a terminal runs with; tests pass shorter times instead of
    waiting them out.
    """

    #: How long to wait for a CONNACK after the TCP (and TLS) connection is up. A broker
    #: answers in milliseconds; amqtt never answers an MQTT 5 CONNECT that has properties.
    #: ``BrokerConfig.connack_timeout_s`` overrides it; with nodes the default is
    #: ``cluster_connack_timeout_s``.
    connack_timeout_s: float = 5.0
    #: The CONNACK wait with several nodes: a loaded cluster node takes seconds per session.
    cluster_connack_timeout_s: float = 30.0
    #: Unanswered MQTT 5 CONNECTs (before v5 ever worked) that mean "speaks 3.1.1 only".
    v5_silences_before_fallback: int = 2
    #: A connection must stay up this long before the reconnect backoff starts over.
    stable_after_s: float = 10.0
    #: Pause of the drain after paho refused a publish (its queue is full).
    queue_full_pause_s: float = 0.2
    #: Longest a PUBACKed row waits for its batched delete.
    ack_batch_s: float = 0.1
    #: In-flight slots left for birth, state and replies when the broker caps Receive Maximum.
    reserved_slots: int = 4
    #: paho's own queue bound (0: none); beyond it paho refuses with MQTT_ERR_QUEUE_SIZE.
    max_queued_messages: int = 0


class LinkState(StrEnum):
    """What the status LED shows."""

    OFFLINE = "offline"  #: not connected: events are buffered in the outbox
    DRAINING = "draining"  #: connected, replaying a backlog larger than the in-flight window
    ONLINE = "online"  #: connected, events go out as they happen


@dataclass(frozen=True, slots=True)
class TransportStats:
    link: LinkState
    protocol: str | None  #: "5" or "3.1.1"; None before the first connection
    connects: int  #: successful CONNACKs
    acked: int  #: outbox rows acknowledged by the broker and deleted
    inflight: int  #: outbox rows published and waiting for their PUBACK
    queue_full: int  #: publishes refused by paho (MQTT_ERR_QUEUE_SIZE)
    rejected: int  #: PUBACKs with an error reason code (rows kept and retried)
    bad_commands: int  #: cmd payloads that failed validation
    last_error: str | None
    #: The event schema version events go out at now (see ``Transport.send_version``).
    send_version: int = 1
    #: ``confirm = "stored"``: rows handed to the broker and not yet confirmed stored.
    unconfirmed: int = 0
    #: ``confirm = "stored"``: rows deleted because the aggregator confirmed them.
    confirmed: int = 0
    #: ``stored`` payloads ignored: invalid, or naming another window.
    bad_stored: int = 0
    #: The broker node ("host:port") connected to, or the next attempt goes to.
    node: str | None = None
    #: How often the terminal moved to another node (``BrokerConfig.nodes``).
    node_moves: int = 0
    #: Subscriptions the broker refused in a SUBACK (sent again after a pause): a NATS
    #: node that has just lost a peer refuses QoS 1 subscriptions for some seconds.
    suback_refused: int = 0


class Transport:
    """Connects to the broker, drains the outbox, answers commands; see the package docstring.

    Example::

        with Outbox(path, site, window) as box, Transport(cfg, site, window, box) as link:
            box.add(draft)           # goes out within one poll interval when online
            link.publish_state(state)
    """

    def __init__(
        self,
        broker: BrokerConfig,
        site: str,
        window: str,
        outbox: Outbox,
        *,
        on_command: CommandHandler | None = None,
        on_config: ConfigHandler | None = None,
        on_settings: ConfigHandler | None = None,
        protocol: ProtocolChoice = "auto",
        max_inflight: int = 32,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 60.0,
        session_expiry_s: int = 7 * 24 * 3600,
        poll_s: float = 0.05,
        retry_rejected_s: float = 5.0,
        tuning: Tuning = Tuning(),
        rand: Callable[[], float] = random.random,
        contract: Contract = CONTRACT,
    ) -> None:
        if outbox.site != site or outbox.window != window:
            raise ValueError("outbox belongs to another window")
        if max_inflight < 1:
            raise ValueError("max_inflight must be at least 1")
        self.broker = broker
        self.site = site
        self.window = window
        self.client_id = f"ww-{site}-{window}"
        self.tuning = tuning
        self._connack_timeout_s = broker.connack_timeout_s or (
            tuning.cluster_connack_timeout_s if len(broker.nodes) > 1 else tuning.connack_timeout_s
        )
        self._outbox = outbox
        self._on_command = on_command
        self._on_config = on_config
        self._on_settings = on_settings
        self._session_expiry_s = session_expiry_s
        self._poll_s = poll_s
        self._password = (
            broker.password_file.read_text(encoding="utf-8").strip()
            if broker.password_file is not None
            else None
        )
        self._topics = {ch: topic(site, window, ch) for ch in Channel}
        self._event_topic = self._topics[Channel.EVENT]
        self._event_qos = CHANNEL_QOS[Channel.EVENT]
        self._contract = contract
        #: What each ingest announced (by its client id); kept across reconnects, since
        #: a retained announcement changes only when its ingest reconnects.
        self._accepted: dict[str, frozenset[int]] = {}
        #: The version events go out at: the base one until announcements say more.
        self._send_version = contract.base
        self._held: str | None = None  # the kind of a row waiting for a newer ingest

        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._close_timeout_s = 5.0

        # The pure parts; owned by the owner thread (the link's callbacks run there too).
        self._reconnect = Reconnect(
            base_s=backoff_base_s,
            cap_s=backoff_max_s,
            spread_s=broker.reconnect_spread_s,
            stable_after_s=tuning.stable_after_s,
            rand=rand,
        )
        self._nodes = NodeRing(broker.addresses(), self.client_id)
        #: Subscriptions refused in a SUBACK: sent again at ``_resubscribe_at``.
        self._suback_refused = 0
        self._resubscribe_at: float | None = None
        self._resubscribe_pause = 0.0
        self._protocol = ProtocolFallback(protocol, silences=tuning.v5_silences_before_fallback)
        self._window = DeliveryWindow(
            max_inflight, reserved_slots=tuning.reserved_slots, ack_batch_s=tuning.ack_batch_s
        )
        self._pubacks = PubackPolicy(
            resend_base_s=backoff_base_s,
            resend_cap_s=backoff_max_s,
            refused_pause_s=retry_rejected_s,
            rand=rand,
        )
        #: ``confirm = "stored"``: rows leave the outbox at the aggregator's ``Stored``.
        self._confirm = (
            Confirmations(timeout_s=broker.confirm_timeout_s, limit=outbox.max_rows)
            if broker.confirm == "stored"
            else None
        )
        self._link: PahoLink | None = None
        self._up = False
        self._connecting_since: float | None = None
        self._up_since = 0.0
        self._drain_paused_until = 0.0

        # Handed over by other threads; the latest value wins.
        self._pending_lock = threading.Lock()
        self._state_payload: bytes | None = None
        self._state_dirty = False
        self._health_payload: bytes | None = None
        # Replies not tied to a command (update reports), oldest first, bounded.
        self._replies: deque[bytes] = deque(maxlen=64)

        # Counters (read by any thread for stats()).
        self._connects = 0
        self._queue_full = 0
        self._bad_commands = 0
        self._bad_stored = 0
        self._last_error: str | None = None

    # ------------------------------------------------------------------ public API

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("transport already started")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"mqtt-{self.window}", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Stop: wait (bounded) for in-flight PUBACKs, publish ``offline``, disconnect.

        Unsent rows simply stay in the outbox for the next start.
        """
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._close_timeout_s = timeout
        self._stop.set()
        thread.join(timeout + 2.0)
        if thread.is_alive():
            log.error("transport thread did not stop within %.1f s", timeout + 2.0)

    def __enter__(self) -> Transport:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def publish_state(self, state: WindowState) -> None:
        """Publish the window's retained state now, and again after every reconnect."""
        self._check_ours(state.site, state.window)
        payload = state.model_dump_json().encode()
        with self._pending_lock:
            self._state_payload = payload
            self._state_dirty = True

    def publish_health(self, health: Health) -> None:
        """Publish health (QoS 0) when connected; while offline only the latest is kept."""
        self._check_ours(health.site, health.window)
        payload = health.model_dump_json().encode()
        with self._pending_lock:
            self._health_payload = payload

    def publish_reply(self, reply: Reply) -> None:
        """Publish a reply not tied to a command (an update step) when connected; while
        offline the latest 64 are kept."""
        payload = reply.model_dump_json().encode()
        with self._pending_lock:
            self._replies.append(payload)

    def flush(self, timeout: float) -> bool:
        """Wait until the outbox is empty and nothing is in flight; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._outbox.depth == 0 and not self._window.inflight:
                return True
            time.sleep(0.02)
        return self._outbox.depth == 0 and not self._window.inflight

    @property
    def connected(self) -> bool:
        return self._up

    @property
    def link(self) -> LinkState:
        if not self._up:
            return LinkState.OFFLINE
        # Rows waiting only for their confirmation are not a backlog.
        waiting = self._outbox.depth - (self._confirm.unconfirmed if self._confirm else 0)
        return LinkState.DRAINING if waiting > self._window.limit else LinkState.ONLINE

    @property
    def buffering(self) -> bool:
        """Events are waiting in the outbox rather than flowing (blink the LED)."""
        return self.link is not LinkState.ONLINE

    def stats(self) -> TransportStats:
        return TransportStats(
            link=self.link,
            protocol=self._protocol.used,
            connects=self._connects,
            acked=self._window.acked,
            inflight=self._window.inflight,
            queue_full=self._queue_full,
            rejected=self._pubacks.rejected,
            bad_commands=self._bad_commands,
            last_error=self._last_error,
            send_version=self._send_version,
            unconfirmed=self._confirm.unconfirmed if self._confirm else 0,
            confirmed=self._confirm.confirmed if self._confirm else 0,
            bad_stored=self._bad_stored,
            node=self._nodes.label,
            node_moves=self._nodes.moves,
            suback_refused=self._suback_refused,
        )

    @property
    def send_version(self) -> int:
        """The highest event version this terminal and every announcing ingest know:
        the contract's base version until an announcement arrives."""
        return self._send_version

    def _check_ours(self, site: str, window: str) -> None:
        if (site, window) != (self.site, self.window):
            raise ValueError(f"payload for {site}/{window} given to {self.site}/{self.window}")

    # ------------------------------------------------------------------ owner thread

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self._step()
                except Exception as exc:  # keep the terminal delivering whatever the bug
                    log.exception("transport step failed")
                    self._last_error = short(f"{type(exc).__name__}: {exc}")
                    self._stop.wait(1.0)
        finally:
            try:
                self._shutdown()
            except Exception:
                log.exception("transport shutdown failed")

    def _step(self) -> None:
        self._flush_acks(force=not self._up)
        if self._pubacks.reset_at is not None:
            self._reset_session()
            return
        link = self._link
        if link is None or (not self._up and self._connecting_since is None):
            self._connect()
            return
        gone = link.loop(self._poll_s)
        if gone is not None:
            if self._up or self._connecting_since is not None:  # no on_closed came
                self._mark_down(gone)
            return
        if not self._up:
            since = self._connecting_since
            if since is not None and time.monotonic() - since > self._connack_timeout_s:
                self._mark_down("no CONNACK")
                link.disconnect()
            return
        if self._resubscribe_at is not None and time.monotonic() >= self._resubscribe_at:
            self._subscribe(link)
        self._publish_pending(link)
        self._drain(link)
        self._flush_acks()

    def _connect(self) -> None:
        delay = self._reconnect.next_delay()
        if delay > 0 and self._stop.wait(delay):
            return
        try:
            if self._link is None:
                self._link = self._new_link()  # reads the TLS files: may fail too
            self._link.connect(self._session_expiry_s, self._nodes.current)
        except (OSError, ValueError) as exc:  # refused, unreachable, TLS files/handshake, DNS
            self._reconnect.failed()
            self._last_error = short(f"connect: {exc}")
            log.info("connect to %s failed: %s", self._nodes.label, exc)
            self._nodes.advance()  # the next attempt tries the next node
            return
        self._connecting_since = time.monotonic()

    def _new_link(self) -> PahoLink:
        link = PahoLink(
            self.broker,
            self.client_id,
            v5=self._protocol.v5,
            will=(self._topics[Channel.AVAILABILITY], OFFLINE),
            password=self._password,
            on_connack=self._on_connack,
            on_refused=self._on_refused,
            on_closed=self._on_closed,
            on_puback=self._on_puback,
            on_message=self._on_message,
            on_suback=self._on_suback,
            max_queued_messages=self.tuning.max_queued_messages,
        )
        # A new client has no session state: everything still in the outbox goes again.
        self._window.restart()
        self._pubacks.new_session()
        if self._confirm is not None:
            self._confirm.new_session()
        return link

    def _reset_session(self) -> None:
        """After an error PUBACK: drop the client and its in-memory queue, resend from the outbox.

        Paho would resend the rows published after the refused one as soon as it
        reconnects, and the refused row would follow them: out of order. A fresh client
        has no queue, so after the pause everything goes again from the oldest stored
        row (rows the broker had already taken come twice, same event_id). Refusals are
        usually sticky (ACL, quota), so the pause keeps this from spinning.
        """
        link, self._link = self._link, None
        if link is not None:
            link.disconnect()  # on_closed marks the link down
            if self._up or self._connecting_since is not None:
                self._mark_down(None)
        reset_at = self._pubacks.reset_at
        assert reset_at is not None
        wait = reset_at - time.monotonic()
        if wait > 0 and self._stop.wait(wait):
            return
        self._pubacks.reset_done()
        self._reconnect.retry_now()

    def _mark_down(self, why: str | None) -> None:
        """The connection (or the attempt) is over; the next one waits for the backoff."""
        was_up = self._up
        if why:
            self._last_error = short(why)
        self._reconnect.down(time.monotonic() - self._up_since if was_up else None)
        # _connecting_since is cleared when a CONNACK came: this CONNECT was never answered.
        if not was_up and self._connecting_since is not None:
            why_fall_back = self._protocol.unanswered()
            if why_fall_back is not None:
                self._fall_back(why_fall_back)
        self._up = False
        self._connecting_since = None
        # Unanswered, refused or dropped: the next attempt (after the backoff) tries the
        # next node of a cluster; with one node this is that node again.
        self._nodes.advance()

    def _fall_back(self, why: str) -> None:
        log.warning("%s; falling back to MQTT 3.1.1", why)
        self._link = None  # rebuilt with MQTTv311 on the next attempt
        self._reconnect.retry_now()

    # ------------------------------------------------------------------ link callbacks

    def _on_refused(self, code: int, reason: str) -> None:
        self._connecting_since = None  # answered, so not a silent close
        self._mark_down(f"CONNACK: {reason}")
        why_fall_back = self._protocol.refused(code, reason)
        if why_fall_back is not None:
            self._fall_back(why_fall_back)
        # paho closes the socket

    def _on_connack(self, session_present: bool, receive_maximum: int | None) -> None:
        link = self._link
        assert link is not None  # callbacks run inside link.loop()
        self._up = True
        self._up_since = time.monotonic()
        self._connecting_since = None
        self._connects += 1
        version = self._protocol.connected()
        # Everything stored before this moment is a replay.
        self._window.connected(self._outbox.last_seq, receive_maximum)
        log.info(
            "connected to %s (MQTT %s, session present: %s)",
            self._nodes.label,
            version,
            session_present,
        )
        link.publish(self._topics[Channel.AVAILABILITY], ONLINE, qos=1, retain=True)
        self._subscribe(link)
        # The broker may have restarted without our last state: send it again.
        with self._pending_lock:
            self._state_dirty = self._state_payload is not None

    def _subscribe(self, link: PahoLink) -> None:
        """Config, settings, cmd, the ingests' announcements (and ``stored``); on every
        connect, and again while the broker refuses any of them."""
        filters = [
            (self._topics[Channel.CONFIG], CHANNEL_QOS[Channel.CONFIG][0]),
            (self._topics[Channel.SETTINGS], CHANNEL_QOS[Channel.SETTINGS][0]),
            (self._topics[Channel.CMD], CHANNEL_QOS[Channel.CMD][0]),
            (ACCEPTS_SUBSCRIPTION, ACCEPTS_QOS[0]),
        ]
        if self._confirm is not None:
            filters.append((self._topics[Channel.STORED], CHANNEL_QOS[Channel.STORED][0]))
        self._resubscribe_at = None
        link.subscribe(filters)

    def _on_suback(self, refused: int) -> None:
        if refused:
            self._suback_refused += refused
            self._resubscribe_pause = min(self._resubscribe_pause * 2 or 1.0, 30.0)
            self._resubscribe_at = time.monotonic() + self._resubscribe_pause
            log.warning(
                "broker refused %d subscriptions; again in %.0f s", refused, self._resubscribe_pause
            )
        else:
            self._resubscribe_pause = 0.0

    def _on_closed(self, reason: str, failure: bool) -> None:
        if self._up or self._connecting_since is not None:
            self._mark_down(f"disconnected: {reason}" if failure else None)
            log.info("disconnected: %s", reason)

    def _on_puback(self, mid: int, code: int, reason: str) -> None:
        self._drain_paused_until = 0.0  # paho's queue has room again
        seq = self._window.settle(mid)
        if seq is None:
            return  # birth, state, health or a reply
        now = time.monotonic()
        if self._pubacks.on_puback(seq, code, now) is _DELIVERED:
            if self._confirm is None:
                self._window.release(seq, now)
            else:  # handed off: the row stays until the aggregator's Stored
                self._confirm.handed_off(seq, now)
        else:
            self._last_error = short(f"PUBACK seq {seq}: {reason}")

    def _on_message(self, topic_name: str, payload: bytes) -> None:
        try:
            site, window, channel = parse_topic(topic_name)
        except ValueError:
            server = parse_accepts_topic(topic_name)
            if server is not None:
                self._on_accepts(server, payload)
            return
        if (site, window) != (self.site, self.window):
            return
        if channel is Channel.CMD:
            reply, bad = answer(payload, self._on_command)
            if bad:
                self._bad_commands += 1
            qos, retain = CHANNEL_QOS[Channel.REPLY]
            assert self._link is not None  # callbacks run inside link.loop()
            self._link.publish(
                self._topics[Channel.REPLY], reply.model_dump_json(), qos=qos, retain=retain
            )
        elif channel is Channel.STORED:
            self._on_stored(payload)
        elif channel in (Channel.CONFIG, Channel.SETTINGS):
            handler = self._on_config if channel is Channel.CONFIG else self._on_settings
            if handler is None:
                return
            try:
                handler(payload)
            except Exception:
                log.exception("%s handler failed", channel.value)

    def _on_stored(self, payload: bytes) -> None:
        """The aggregator's confirmation: delete every row in its ranges, PUBACKed yet or
        not. One that does not validate or names another window is counted, ignored."""
        confirm = self._confirm
        if confirm is None:
            return
        try:
            stored: Stored | None = Stored.model_validate_json(payload)
        except ValidationError:
            stored = None
        if stored is None or (stored.site, stored.window) != (self.site, self.window):
            self._bad_stored += 1
            log.info("ignored a stored confirmation that is not this window's")
            return
        confirm.confirmed += self._outbox.ack_ranges(stored.ranges)
        confirm.confirm(stored.ranges, self._window.inflight_seqs)

    def _on_accepts(self, server: str, payload: bytes) -> None:
        """One ingest's announcement. An empty payload (the retained message cleared)
        forgets that ingest; one that does not validate counts as the base version only,
        the safe reading of an ingest we cannot understand."""
        if not payload:
            self._accepted.pop(server, None)
        else:
            try:
                accepts = Accepts.model_validate_json(payload)
            except ValidationError:
                accepts = None
            if accepts is None or accepts.server != server:
                log.warning("unreadable announcement from ingest %s: base version only", server)
                self._accepted[server] = frozenset({self._contract.base})
            else:
                self._accepted[server] = frozenset(accepts.versions)
        common: set[int] = set(self._contract.versions)
        for versions in self._accepted.values():
            common &= versions
        version = self._contract.common(common) if self._accepted else self._contract.base
        if version != self._send_version:
            log.info("events go out at schema version %d (was %d)", version, self._send_version)
            self._send_version = version

    # ------------------------------------------------------------------ draining

    def _flush_acks(self, force: bool = False) -> None:
        """Delete acknowledged rows, in batches (see ``DeliveryWindow.flush``)."""
        self._window.flush(time.monotonic(), self._outbox.ack, force=force)

    def _publish_pending(self, link: PahoLink) -> None:
        with self._pending_lock:
            state = self._state_payload if self._state_dirty else None
            self._state_dirty = False
            health, self._health_payload = self._health_payload, None
            replies = list(self._replies)
            self._replies.clear()
        if state is not None:
            qos, retain = CHANNEL_QOS[Channel.STATE]
            if link.publish(self._topics[Channel.STATE], state, qos, retain).queue_full:
                with self._pending_lock:
                    self._state_dirty = True  # try again next step (unless a newer one came)
        if health is not None:
            qos, retain = CHANNEL_QOS[Channel.HEALTH]
            link.publish(self._topics[Channel.HEALTH], health, qos, retain)
        qos, retain = CHANNEL_QOS[Channel.REPLY]
        for payload in replies:
            link.publish(self._topics[Channel.REPLY], payload, qos, retain)

    def _drain(self, link: PahoLink) -> None:
        now = time.monotonic()
        if now < self._drain_paused_until:
            return
        if self._pubacks.resend_pending:
            # Rows nobody received wait for their resend; once the pause is over and
            # nothing is in flight, the cursor moves back to the first of them.
            resend_from = self._pubacks.resend_due(now, idle=not self._window.inflight)
            if resend_from is None:
                return
            # Rows delivered meanwhile are not sent again. Should the delete fail, the
            # resend stays due and the next step tries again.
            self._flush_acks(force=True)
            self._window.rewind(resend_from)
            self._pubacks.resent()
        confirm = self._confirm
        if confirm is not None:
            due = confirm.next_due()
            if due is not None and due <= now and not self._resend_unconfirmed(link, now):
                return
        room = self._window.room(self._outbox.last_seq)
        if room <= 0:
            return
        # The loop runs once per event: what it uses is looked up once, here.
        event_topic, (qos, retain) = self._event_topic, self._event_qos
        publish, wire, window = link.publish, self._wire, self._window
        for row in self._outbox.peek(room, after_seq=window.cursor):
            try:
                payload = wire(row)
            except NotInVersion as exc:
                # A kind the ingests do not know yet (servers are upgraded first): it and
                # what follows wait in the outbox, in order, until they announce it.
                if self._held != exc.kind:
                    log.warning("event %d held: %s", row.seq, exc)
                self._held = exc.kind
                return
            self._held = None
            sent = publish(event_topic, payload, qos, retain)
            if sent.queue_full:
                # Not taken: the row stays next in line; back off instead of spinning.
                self._queue_full += 1
                self._drain_paused_until = now + self.tuning.queue_full_pause_s
                return
            # Any other outcome: paho holds the message (and resends it on reconnect).
            window.sent(sent.mid, row.seq)
            if sent.error is not None:
                self._last_error = short(sent.error)
                return

    def _resend_unconfirmed(self, link: PahoLink, now: float) -> bool:
        """Send again the handed-off rows whose confirmation is overdue (``historical``,
        same event_id), out of turn; False when paho's queue is full (stop the drain)."""
        confirm = self._confirm
        assert confirm is not None
        event_topic, (qos, retain) = self._event_topic, self._event_qos
        for seq in confirm.take_due(now, self._window.free):
            rows = self._outbox.peek(1, after_seq=seq - 1)
            if not rows or rows[0].seq != seq:
                confirm.forget(seq)  # confirmed meanwhile, or dropped for room
                continue
            try:
                payload = self._wire(rows[0], historical=True)
            except NotInVersion as exc:  # the ingests went back a version: next session
                log.warning("unconfirmed event %d not resent: %s", seq, exc)
                confirm.forget(seq)
                continue
            sent = link.publish(event_topic, payload, qos, retain)
            if sent.queue_full:
                confirm.untake(seq, now)
                self._queue_full += 1
                self._drain_paused_until = now + self.tuning.queue_full_pause_s
                return False
            self._window.track(sent.mid, seq)
        return True

    def _wire(self, row: OutboxRow, *, historical: bool = False) -> bytes:
        data = json.loads(row.payload)
        # The outbox keeps the newest form; an ingest that accepts no newer version gets
        # the fields its version has (one comparison per event when nothing is dropped).
        if data["schema_version"] > self._send_version:
            data = self._contract.downgrade(data, self._send_version)
        data["sent_ms"] = now_ms()
        data["historical"] = historical or self._window.is_replay(row.seq)
        return _COMPACT.encode(data).encode()

    # ------------------------------------------------------------------ shutdown

    def _shutdown(self) -> None:
        link = self._link
        if link is None:
            return
        deadline = time.monotonic() + self._close_timeout_s
        if self._up:
            # Let PUBACKs of what is in flight arrive, so the next start resends less.
            while self._window.inflight and self._up and time.monotonic() < deadline:
                link.loop(self._poll_s)
            sent = link.publish(self._topics[Channel.AVAILABILITY], OFFLINE, qos=1, retain=True)
            while not sent.done() and self._up and time.monotonic() < deadline:
                link.loop(self._poll_s)
            self._up = False
        self._flush_acks(force=True)
        link.disconnect()  # paho writes it at once and closes the socket
        self._connecting_since = None
