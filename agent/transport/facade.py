"""``Transport``: the facade the app, the benches and the tests use; see the package docstring."""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import ValidationError

from agent.config import BrokerConfig
from agent.mqtt import make_client
from agent.outbox import Outbox, OutboxRow, now_ms
from agent.protocol import (
    CHANNEL_QOS,
    OFFLINE,
    ONLINE,
    Channel,
    Command,
    Health,
    Reply,
    WindowState,
    parse_topic,
    topic,
)

log = logging.getLogger(__name__)

ProtocolChoice = Literal["auto", "5", "3.1.1"]
NO_MATCHING_SUBSCRIBERS: Final = 0x10
CommandHandler = Callable[[Command], Reply | None]
ConfigHandler = Callable[[bytes], None]

#: CONNACK codes meaning "I do not speak this protocol version" (v5 0x84, v3 0x01).
_UNSUPPORTED_PROTOCOL: Final = frozenset({0x84, 0x01})
#: A connection must stay up this long before the reconnect backoff starts over.
_STABLE_AFTER_S: Final = 10.0
#: How long to wait for a CONNACK after the TCP (and TLS) connection is up. A broker
#: answers in milliseconds; amqtt never answers an MQTT 5 CONNECT that has properties.
_CONNACK_TIMEOUT_S: Final = 5.0
#: Unanswered MQTT 5 CONNECTs in a row (before v5 ever worked) that mean "speaks 3.1.1 only".
_V5_SILENCES_BEFORE_FALLBACK: Final = 2
#: Pause of the drain after paho refused a publish (its queue is full).
_QUEUE_FULL_PAUSE_S: Final = 0.2
#: Longest a PUBACKed row waits for its batched delete.
_ACK_BATCH_S: Final = 0.1
#: In-flight slots left for birth, state and replies when the broker caps Receive Maximum.
_RESERVED_SLOTS: Final = 4
_SHORT: Final = 64  # protocol.ShortText


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


def backoff_delay(
    attempt: int, base_s: float, cap_s: float, rand: Callable[[], float] = random.random
) -> float:
    """Delay before reconnect attempt ``attempt`` (0-based): capped exponential, equal jitter.

    Half of the step is fixed so a terminal never hammers the broker, half is random so a
    centre's terminals spread out after a broker restart.
    """
    step = min(cap_s, base_s * 2.0 ** min(attempt, 30))
    return step / 2 + rand() * step / 2


def first_retry_delay(
    spread_s: float, base_s: float, cap_s: float, rand: Callable[[], float] = random.random
) -> float:
    """Delay before the first reconnect after an established connection dropped: the
    first backoff step plus a uniform share of the fleet's spread."""
    return backoff_delay(0, base_s, cap_s, rand) + rand() * spread_s


def _short(text: str) -> str:
    return text if len(text) <= _SHORT else text[: _SHORT - 1] + "…"


def _salvage_cmd_id(payload: bytes) -> uuid.UUID | None:
    """The cmd_id of an invalid command, when it has a usable one, so the reply can be matched."""
    try:
        return uuid.UUID(str(json.loads(payload)["cmd_id"]))
    except Exception:  # not JSON, not an object, no cmd_id, not a UUID: answer with null
        return None


class Transport:
    """Connects to the broker, drains the outbox, answers commands; see the module docstring.

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
        protocol: ProtocolChoice = "auto",
        max_inflight: int = 32,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 60.0,
        session_expiry_s: int = 7 * 24 * 3600,
        poll_s: float = 0.05,
        retry_rejected_s: float = 5.0,
    ) -> None:
        if outbox.site != site or outbox.window != window:
            raise ValueError("outbox belongs to another window")
        if max_inflight < 1:
            raise ValueError("max_inflight must be at least 1")
        self.broker = broker
        self.site = site
        self.window = window
        self.client_id = f"ww-{site}-{window}"
        self._outbox = outbox
        self._on_command = on_command
        self._on_config = on_config
        self._protocol_choice: ProtocolChoice = protocol
        self._max_inflight = max_inflight
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._session_expiry_s = session_expiry_s
        self._poll_s = poll_s
        self._retry_rejected_s = retry_rejected_s
        self._password = (
            broker.password_file.read_text(encoding="utf-8").strip()
            if broker.password_file is not None
            else None
        )
        self._topics = {ch: topic(site, window, ch) for ch in Channel}

        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._close_timeout_s = 5.0

        # Owned by the owner thread (paho callbacks run there too).
        self._client: mqtt.Client | None = None
        self._use_v5 = protocol != "3.1.1"
        self._up = False
        self._connecting_since: float | None = None
        self._up_since = 0.0
        self._failures = 0  # connection attempts in a row that failed or did not last
        self._retry_now = True  # no backoff before the first attempt or a fallback
        self._spread_next = False  # an established connection dropped: spread the retry
        self._window = max_inflight
        self._inflight: dict[int, int] = {}  # paho mid -> outbox seq
        self._acked_batch: list[int] = []  # PUBACKed seqs not yet deleted from the outbox
        self._acked_since = 0.0
        self._cursor = 0  # highest seq handed to paho on this client
        self._live_from_seq = 1 << 62  # rows below it are replays (set at each CONNACK)
        self._reset_at: float | None = None  # set by an error PUBACK, see _reset_session
        self._drain_paused_until = 0.0
        # PUBACK 0x10 "no matching subscribers": the lowest such seq, when to resend from
        # it, and how many resends in a row found nobody (see _rewind_if_unrouted).
        self._unrouted_low: int | None = None
        self._rewind_at = 0.0
        self._unrouted_streak = 0

        # Handed over by other threads; the latest value wins.
        self._pending_lock = threading.Lock()
        self._state_payload: bytes | None = None
        self._state_dirty = False
        self._health_payload: bytes | None = None
        # Replies not tied to a command (update reports), oldest first, bounded.
        self._replies: deque[bytes] = deque(maxlen=64)

        # Counters (read by any thread for stats()).
        self._protocol_used: str | None = None
        self._v5_unanswered = 0  # MQTT 5 CONNECTs that got no CONNACK, before any worked
        self._connects = 0
        self._acked = 0
        self._queue_full = 0
        self._rejected = 0
        self._bad_commands = 0
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
            if self._outbox.depth == 0 and not self._inflight:
                return True
            time.sleep(0.02)
        return self._outbox.depth == 0 and not self._inflight

    @property
    def connected(self) -> bool:
        return self._up

    @property
    def link(self) -> LinkState:
        if not self._up:
            return LinkState.OFFLINE
        return LinkState.DRAINING if self._outbox.depth > self._window else LinkState.ONLINE

    @property
    def buffering(self) -> bool:
        """Events are waiting in the outbox rather than flowing (blink the LED)."""
        return self.link is not LinkState.ONLINE

    def stats(self) -> TransportStats:
        return TransportStats(
            link=self.link,
            protocol=self._protocol_used,
            connects=self._connects,
            acked=self._acked,
            inflight=len(self._inflight),
            queue_full=self._queue_full,
            rejected=self._rejected,
            bad_commands=self._bad_commands,
            last_error=self._last_error,
        )

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
                    self._last_error = _short(f"{type(exc).__name__}: {exc}")
                    self._stop.wait(1.0)
        finally:
            try:
                self._shutdown()
            except Exception:
                log.exception("transport shutdown failed")

    def _step(self) -> None:
        self._flush_acks(force=not self._up)
        if self._reset_at is not None:
            self._reset_session()
            return
        client = self._client
        if client is None or (not self._up and self._connecting_since is None):
            self._connect()
            return
        rc = client.loop(self._poll_s)
        if rc != mqtt.MQTT_ERR_SUCCESS and client.socket() is None:
            if self._up or self._connecting_since is not None:  # no on_disconnect came
                self._mark_down(f"loop: {mqtt.error_string(rc)}")
            return
        if not self._up:
            since = self._connecting_since
            if since is not None and time.monotonic() - since > _CONNACK_TIMEOUT_S:
                self._mark_down("no CONNACK")
                client.disconnect()
            return
        self._publish_pending()
        self._drain(client)
        self._flush_acks()

    def _connect(self) -> None:
        if not self._retry_now:
            if self._spread_next:
                spread = self.broker.reconnect_spread_s
                delay = first_retry_delay(spread, self._backoff_base_s, self._backoff_max_s)
            else:
                delay = backoff_delay(self._failures, self._backoff_base_s, self._backoff_max_s)
            self._spread_next = False
            if self._stop.wait(delay):
                return
        self._retry_now = False
        try:
            if self._client is None:
                self._client = self._make_client()  # reads the TLS files: may fail too
            client = self._client
            if self._use_v5:
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = self._session_expiry_s
                client.connect(
                    self.broker.host,
                    self.broker.port,
                    self.broker.keepalive_s,
                    clean_start=False,
                    properties=props,
                )
            else:
                client.connect(self.broker.host, self.broker.port, self.broker.keepalive_s)
        except (OSError, ValueError) as exc:  # refused, unreachable, TLS files/handshake, DNS
            self._failures += 1
            self._last_error = _short(f"connect: {exc}")
            log.info("connect to %s:%s failed: %s", self.broker.host, self.broker.port, exc)
            return
        self._connecting_since = time.monotonic()

    def _make_client(self) -> mqtt.Client:
        client = make_client(
            self.client_id,
            protocol=mqtt.MQTTv5 if self._use_v5 else mqtt.MQTTv311,
            # MQTT 5 takes clean_start at connect(); 3.1.1 takes clean_session here.
            clean_session=None if self._use_v5 else False,
            reconnect_on_failure=False,
            tls=self.broker.tls,
        )
        # Unlimited inside paho: our own window bounds the outbox rows, and with a paho
        # limit, messages beyond it sit in a "queued" state that paho 2.2 only releases
        # as PUBACKs arrive, which reorders them after a reconnect.
        client.max_inflight_messages_set(0)
        client.will_set(self._topics[Channel.AVAILABILITY], OFFLINE, qos=1, retain=True)
        if self.broker.username is not None:
            client.username_pw_set(self.broker.username, self._password)
        client.enable_logger(log)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        # A new client has no session state: everything still in the outbox goes again.
        self._inflight.clear()
        self._cursor = 0
        self._unrouted_low = None
        return client

    def _reset_session(self) -> None:
        """After an error PUBACK: drop the client and its in-memory queue, resend from the outbox.

        Paho would resend the rows published after the refused one as soon as it
        reconnects, and the refused row would follow them: out of order. A fresh client
        has no queue, so after the pause everything goes again from the oldest stored
        row (rows the broker had already taken come twice, same event_id). Refusals are
        usually sticky (ACL, quota), so the pause keeps this from spinning.
        """
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()  # on_disconnect marks the link down
            if self._up or self._connecting_since is not None:
                self._mark_down(None)
        assert self._reset_at is not None
        wait = self._reset_at - time.monotonic()
        if wait > 0 and self._stop.wait(wait):
            return
        self._reset_at = None
        self._retry_now = True

    def _mark_down(self, why: str | None) -> None:
        """The connection (or the attempt) is over; the next one waits for the backoff."""
        was_up = self._up
        if why:
            self._last_error = _short(why)
        if was_up and time.monotonic() - self._up_since >= _STABLE_AFTER_S:
            self._failures = 0
            self._spread_next = True
        else:
            self._failures += 1
        if (
            not was_up
            and self._connecting_since is not None  # cleared when a CONNACK came
            and self._use_v5
            and self._protocol_choice == "auto"
            and self._protocol_used is None
        ):
            # A v5 CONNECT never answered by a CONNACK, before v5 ever worked in this run:
            # amqtt leaves it hanging, old brokers close the socket. A broker busy with a
            # connect storm answers late too, so one silence is not enough to give up v5.
            self._v5_unanswered += 1
            if self._v5_unanswered >= _V5_SILENCES_BEFORE_FALLBACK:
                self._fall_back(f"no CONNACK to {self._v5_unanswered} MQTT 5 CONNECTs")
        self._up = False
        self._connecting_since = None

    def _fall_back(self, why: str) -> None:
        log.warning("%s; falling back to MQTT 3.1.1", why)
        self._use_v5 = False
        self._client = None  # rebuilt with MQTTv311 on the next attempt
        self._retry_now = True

    # ------------------------------------------------------------------ paho callbacks

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            self._connecting_since = None  # answered, so not a silent close
            self._mark_down(f"CONNACK: {reason_code}")
            if (
                self._use_v5
                and self._protocol_choice == "auto"
                and reason_code.value in _UNSUPPORTED_PROTOCOL
            ):
                self._fall_back(f"broker refused MQTT 5 ({reason_code})")
            return  # paho closes the socket
        self._up = True
        self._up_since = time.monotonic()
        self._connecting_since = None
        self._connects += 1
        self._protocol_used = "5" if self._use_v5 else "3.1.1"
        # Everything stored before this moment is a replay.
        self._live_from_seq = self._outbox.last_seq + 1
        receive_max = getattr(properties, "ReceiveMaximum", None)
        self._window = self._max_inflight
        if isinstance(receive_max, int) and receive_max > 0:
            self._window = max(1, min(self._max_inflight, receive_max - _RESERVED_SLOTS))
        log.info(
            "connected to %s:%s (MQTT %s, session present: %s)",
            self.broker.host,
            self.broker.port,
            self._protocol_used,
            flags.session_present,
        )
        client.publish(self._topics[Channel.AVAILABILITY], ONLINE, qos=1, retain=True)
        client.subscribe(
            [
                (self._topics[Channel.CONFIG], CHANNEL_QOS[Channel.CONFIG][0]),
                (self._topics[Channel.CMD], CHANNEL_QOS[Channel.CMD][0]),
            ]
        )
        # The broker may have restarted without our last state: send it again.
        with self._pending_lock:
            self._state_dirty = self._state_payload is not None

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if self._up or self._connecting_since is not None:
            self._mark_down(f"disconnected: {reason_code}" if reason_code.is_failure else None)
            log.info("disconnected: %s", reason_code)

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._drain_paused_until = 0.0  # paho's queue has room again
        seq = self._inflight.pop(mid, None)
        if seq is None:
            return  # birth, state, health or a reply
        unrouted = reason_code.value == NO_MATCHING_SUBSCRIBERS
        if unrouted or reason_code.is_failure:
            self._rejected += 1
            self._last_error = _short(f"PUBACK seq {seq}: {reason_code}")
        if unrouted:
            # A success code, yet nobody has the event: Mosquitto 2.0 forgets shared
            # subscriptions over a restart, so until the aggregator resubscribes every
            # event would be acknowledged and dropped (city run). Keep the row and resend
            # it on this connection after a growing pause: reconnecting instead made
            # 10,000 windows a connect storm that kept the aggregator from resubscribing.
            if self._unrouted_low is None:
                self._rewind_at = time.monotonic() + backoff_delay(
                    self._unrouted_streak, self._backoff_base_s, self._backoff_max_s
                )
                self._unrouted_streak += 1
            self._unrouted_low = min(seq, self._unrouted_low or seq)
        elif reason_code.is_failure:
            if self._reset_at is None:
                self._reset_at = time.monotonic() + self._retry_rejected_s
        else:
            self._unrouted_streak = 0
            if not self._acked_batch:
                self._acked_since = time.monotonic()
            self._acked_batch.append(seq)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            site, window, channel = parse_topic(msg.topic)
        except ValueError:
            return
        if (site, window) != (self.site, self.window):
            return
        payload = bytes(msg.payload)
        if channel is Channel.CMD:
            self._handle_command(client, payload)
        elif channel is Channel.CONFIG and self._on_config is not None:
            try:
                self._on_config(payload)
            except Exception:
                log.exception("config handler failed")

    def _handle_command(self, client: mqtt.Client, payload: bytes) -> None:
        try:
            cmd = Command.model_validate_json(payload)
        except ValidationError as exc:
            self._bad_commands += 1
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "payload"
            reply = Reply(
                cmd_id=_salvage_cmd_id(payload),
                ok=False,
                error=_short(f"invalid command: {where}: {err['msg']}"),
            )
        else:
            if self._on_command is None:
                reply = Reply(cmd_id=cmd.cmd_id, ok=False, error="commands not supported")
            else:
                try:
                    reply = self._on_command(cmd) or Reply(cmd_id=cmd.cmd_id, ok=True)
                except Exception as exc:
                    log.exception("command handler failed on %s", cmd.action)
                    reply = Reply(
                        cmd_id=cmd.cmd_id,
                        ok=False,
                        error=_short(f"{type(exc).__name__}: {exc}"),
                    )
        qos, retain = CHANNEL_QOS[Channel.REPLY]
        client.publish(self._topics[Channel.REPLY], reply.model_dump_json(), qos=qos, retain=retain)

    # ------------------------------------------------------------------ draining

    def _flush_acks(self, force: bool = False) -> None:
        """Delete acknowledged rows, in batches: each delete transaction costs an fsync.

        Holding a PUBACKed row a little longer only risks a duplicate (same event_id,
        which the server ignores) if the agent dies in between, never a loss.
        """
        if not self._acked_batch:
            return
        if (
            force
            or len(self._acked_batch) >= max(1, self._window // 2)
            or time.monotonic() - self._acked_since >= _ACK_BATCH_S
        ):
            # Cleared only once deleted: if the disk fails, the next step tries again
            # rather than leaving the rows behind the cursor until the next restart.
            self._outbox.ack(self._acked_batch)
            self._acked += len(self._acked_batch)
            self._acked_batch = []

    def _publish_pending(self) -> None:
        client = self._client
        assert client is not None
        with self._pending_lock:
            state = self._state_payload if self._state_dirty else None
            self._state_dirty = False
            health, self._health_payload = self._health_payload, None
            replies = list(self._replies)
            self._replies.clear()
        if state is not None:
            qos, retain = CHANNEL_QOS[Channel.STATE]
            info = client.publish(self._topics[Channel.STATE], state, qos=qos, retain=retain)
            if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
                with self._pending_lock:
                    self._state_dirty = True  # try again next step (unless a newer one came)
        if health is not None:
            qos, retain = CHANNEL_QOS[Channel.HEALTH]
            client.publish(self._topics[Channel.HEALTH], health, qos=qos, retain=retain)
        qos, retain = CHANNEL_QOS[Channel.REPLY]
        for payload in replies:
            client.publish(self._topics[Channel.REPLY], payload, qos=qos, retain=retain)

    def _drain(self, client: mqtt.Client) -> None:
        now = time.monotonic()
        if now < self._drain_paused_until or not self._rewind_if_unrouted(now):
            return
        room = self._window - len(self._inflight)
        if room <= 0 or self._outbox.last_seq <= self._cursor:
            return
        qos, retain = CHANNEL_QOS[Channel.EVENT]
        for row in self._outbox.peek(room, after_seq=self._cursor):
            info = client.publish(
                self._topics[Channel.EVENT], self._wire(row), qos=qos, retain=retain
            )
            if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
                # Not taken: the row stays next in line; back off instead of spinning.
                self._queue_full += 1
                self._drain_paused_until = now + _QUEUE_FULL_PAUSE_S
                return
            # Any other code: paho holds the message (and resends it on reconnect).
            self._inflight[info.mid] = row.seq
            self._cursor = row.seq
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                self._last_error = _short(f"publish: {mqtt.error_string(info.rc)}")
                return

    def _rewind_if_unrouted(self, now: float) -> bool:
        """False while rows nobody received wait for their resend; once the pause is
        over and nothing is in flight, move the cursor back to the first of them."""
        if self._unrouted_low is None:
            return True
        if now < self._rewind_at or self._inflight:
            return False
        self._flush_acks(force=True)  # rows delivered meanwhile are not sent again
        self._cursor = self._unrouted_low - 1
        self._unrouted_low = None
        return True

    def _wire(self, row: OutboxRow) -> bytes:
        data = json.loads(row.payload)
        data["sent_ms"] = now_ms()
        data["historical"] = row.seq < self._live_from_seq
        return json.dumps(data, separators=(",", ":")).encode()

    # ------------------------------------------------------------------ shutdown

    def _shutdown(self) -> None:
        client = self._client
        if client is None:
            return
        deadline = time.monotonic() + self._close_timeout_s
        if self._up:
            # Let PUBACKs of what is in flight arrive, so the next start resends less.
            while self._inflight and self._up and time.monotonic() < deadline:
                client.loop(self._poll_s)
            info = client.publish(self._topics[Channel.AVAILABILITY], OFFLINE, qos=1, retain=True)
            while not info.is_published() and self._up and time.monotonic() < deadline:
                client.loop(self._poll_s)
            self._up = False
        self._flush_acks(force=True)
        client.disconnect()  # paho writes it at once and closes the socket
        self._connecting_since = None
