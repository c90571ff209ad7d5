"""Where the ingest's events come from, when not from its own MQTT subscription.

The seam: a source hands the ingest ``Delivery`` objects (the MQTT topic, the payload,
and how to acknowledge it) and the ingest acknowledges each one only after the batch
holding it is committed, exactly as it does for a QoS 1 MQTT message. Above the seam
there is one code path (validate, store once, acknowledge, confirm to the terminal);
below it, two transports:

* **MQTT** (Mosquitto, EMQX): the ingest's own paho subscription, shared by replicas
  with ``$share/<group>/...``. That stays in ``server.ingest``.
* **A NATS JetStream stream** (``JetStreamEvents``, this module): on a NATS cluster the
  terminals still speak MQTT to any node, and a stream replicated on the nodes captures
  every event subject (NATS maps the topic ``ww/v1/<site>/<window>/event`` to the
  subject ``ww.v1.<site>.<window>.event``). Replicas consume it through one durable pull
  consumer, so each event goes to one replica and an unacknowledged one comes back after
  ``ack_wait_s``. NATS 2.9 accepts an MQTT ``$share/...`` subscription but delivers
  nothing to it (docs/cluster.md), so the engine's own client is needed here.

Threads: nats-py is asyncio; ``JetStreamEvents`` runs its own event loop on one thread
(like paho's network thread) and calls ``deliver`` there. ``ack`` may be called from
any thread: it is handed to the loop. ``stop()`` first stops fetching, so the writer can
still acknowledge what it committed, then closes the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message from a source: its MQTT topic, its payload, and its acknowledgement
    (None when the source needs none)."""

    topic: str
    payload: bytes
    ack: Callable[[], None] | None


def topic_of(subject: str) -> str:
    """The MQTT topic a NATS subject stands for (``ww.v1.s.w.event`` -> ``ww/v1/s/w/event``).
    Topic levels of the contract are slugs, which hold no ``.`` and no ``/``."""
    return subject.replace(".", "/")


def subject_of(mqtt_topic: str) -> str:
    """The NATS subject of an MQTT topic filter (``+`` -> ``*``, ``#`` -> ``>``)."""
    return mqtt_topic.replace("/", ".").replace("+", "*").replace("#", ">")


@dataclass
class JetStreamSettings:
    """Events from a JetStream stream (a NATS cluster) instead of an MQTT subscription."""

    #: The cluster's nodes; the client connects to one and fails over to the others.
    urls: list[str] = field(default_factory=lambda: ["nats://127.0.0.1:4222"])
    stream: str = "WW_EVENTS"
    #: What the stream captures: every terminal's event subject.
    subjects: tuple[str, ...] = ("ww.v1.*.*.event",)
    #: Raft replicas of the stream: 3 on a 3-node cluster, so one node may die.
    replicas: int = 3
    #: How long the stream keeps an event after it arrived (acknowledged or not): the
    #: ingest's longest outage it rides out without the terminals resending.
    max_age_s: float = 7 * 24 * 3600
    #: The durable consumer all replicas share (each event goes to one of them).
    durable: str = "ww-ingest"
    #: An event not acknowledged this long after delivery is delivered again.
    ack_wait_s: float = 60.0
    #: Events delivered and not yet acknowledged, over all replicas (flow control).
    max_ack_pending: int = 20_000
    #: Events asked for per pull.
    fetch: int = 500
    name: str = "ww-ingest"
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.ca_file is None:
            return None
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        if self.cert_file is not None:
            ctx.load_cert_chain(str(self.cert_file), str(self.key_file) if self.key_file else None)
        return ctx


@dataclass
class SourceStats:
    connected: bool = False
    #: The stream and the consumer exist and a pull is running.
    ready: bool = False
    delivered: int = 0
    acked: int = 0
    #: Pulls that failed for another reason than "nothing there" (a node lost, a
    #: leader election): the loop waits a moment and pulls again.
    pull_errors: int = 0
    reconnects: int = 0
    last_error: str | None = None
    server: str | None = None
    #: Since when (UTC ms) the source has been unable to pull; None while it pulls.
    stalled_since_ms: int | None = None

    def stalled(self, now: int, limit_s: float) -> str:
        """Why the source has not pulled for ``limit_s``, or "" when it pulls."""
        since = self.stalled_since_ms
        if since is None or now - since <= limit_s * 1000:
            return ""
        return f"events stream not reachable for {(now - since) / 1000:.0f} s ({self.last_error})"


class JetStreamEvents:
    """A durable pull consumer on a replicated stream, feeding ``deliver``.

    Creates the stream when it is missing (with ``replicas`` copies), and the consumer;
    an existing stream is used as it is, with a warning when its replicas differ.
    """

    def __init__(
        self,
        settings: JetStreamSettings,
        deliver: Callable[[Delivery], None],
        clock_ms: Callable[[], int],
    ) -> None:
        self.settings = settings
        self._deliver = deliver
        self._clock_ms = clock_ms
        self.stats = SourceStats(stalled_since_ms=clock_ms())
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._fetching = threading.Event()
        self._closed: asyncio.Event | None = None
        self._ready = threading.Event()

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._fetching.set()
        started = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._closed = asyncio.Event()
            started.set()
            try:
                loop.run_until_complete(self._main())
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="ingest-jetstream", daemon=True)
        self._thread.start()
        started.wait(5)

    def wait_ready(self, timeout: float) -> bool:
        return self._ready.wait(timeout)

    def stop_fetching(self) -> None:
        """Ask for nothing more; what was delivered can still be acknowledged."""
        self._fetching.clear()

    def close(self, timeout: float = 10.0) -> None:
        """Flush the acknowledgements given so far and disconnect."""
        self._fetching.clear()
        loop, closed = self._loop, self._closed
        if loop is not None and closed is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(closed.set)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    # ------------------------------------------------------------ acknowledging

    def _ack(self, msg: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return  # not acknowledged: the stream delivers it again after ack_wait
        self.stats.acked += 1
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(lambda: loop.create_task(self._send_ack(msg)))

    async def _send_ack(self, msg: Any) -> None:
        try:
            await msg.ack()
        except Exception as exc:  # a lost ack means one redelivery, stored once
            self.stats.last_error = f"ack: {type(exc).__name__}: {exc}"[:200]

    # ------------------------------------------------------------ the loop

    async def _main(self) -> None:
        import nats
        from nats.errors import TimeoutError as NatsTimeout

        s = self.settings
        assert self._closed is not None

        async def disconnected() -> None:
            self.stats.connected = False

        async def reconnected() -> None:
            self.stats.connected = True
            self.stats.reconnects += 1
            if nc is not None and nc.connected_url is not None:
                self.stats.server = str(nc.connected_url.netloc)

        async def error(exc: Exception) -> None:
            self.stats.last_error = f"{type(exc).__name__}: {exc}"[:200]

        nc = None
        while nc is None and not self._closed.is_set():
            try:
                nc = await nats.connect(
                    servers=s.urls,
                    name=s.name,
                    tls=s.ssl_context(),
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=1,
                    connect_timeout=3,
                    allow_reconnect=True,
                    disconnected_cb=disconnected,
                    reconnected_cb=reconnected,
                    error_cb=error,
                )
            except Exception as exc:
                self.stats.last_error = f"connect: {type(exc).__name__}: {exc}"[:200]
                log.warning("JetStream not reachable at %s: %s", s.urls, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closed.wait(), 2)
        if nc is None:
            return
        self.stats.connected = True
        self.stats.server = str(nc.connected_url.netloc) if nc.connected_url else None
        js = nc.jetstream(timeout=5)
        sub = None
        try:
            while not self._closed.is_set():
                if not self._fetching.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._closed.wait(), 0.2)
                    continue
                if sub is None:
                    try:
                        sub = await self._subscribe(js)
                    except Exception as exc:
                        self._pull_failed("set-up", exc)
                        await self._pause(1.0)
                        continue
                    self.stats.ready = True
                    self._ready.set()
                try:
                    msgs = await sub.fetch(s.fetch, timeout=1)
                except NatsTimeout:  # nothing to deliver, or no answer at all
                    self._pulled(nc.is_connected)
                    continue
                except Exception as exc:
                    self._pull_failed("pull", exc)
                    await self._pause(0.5)
                    continue
                self._pulled(True)
                for m in msgs:
                    self.stats.delivered += 1
                    self._deliver(
                        Delivery(topic_of(m.subject), m.data, functools.partial(self._ack, m))
                    )
        finally:
            self.stats.ready = False
            with contextlib.suppress(Exception):
                await nc.drain()
            self.stats.connected = False

    async def _pause(self, seconds: float) -> None:
        assert self._closed is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closed.wait(), seconds)

    def _pulled(self, ok: bool) -> None:
        if ok:
            self.stats.stalled_since_ms = None
        elif self.stats.stalled_since_ms is None:
            self.stats.stalled_since_ms = self._clock_ms()

    def _pull_failed(self, what: str, exc: BaseException) -> None:
        self._pulled(False)
        self.stats.pull_errors += 1
        self.stats.last_error = f"{what}: {type(exc).__name__}: {exc}"[:200]
        log.info("JetStream %s failed (%s); again shortly", what, self.stats.last_error)

    async def _subscribe(self, js: Any) -> Any:
        """The stream (created when missing) and the shared durable consumer."""
        from nats.js.api import (
            AckPolicy,
            ConsumerConfig,
            DeliverPolicy,
            RetentionPolicy,
            StorageType,
            StreamConfig,
        )
        from nats.js.errors import NotFoundError

        s = self.settings
        try:
            info = await js.stream_info(s.stream)
            if info.config.num_replicas != s.replicas:
                log.warning(
                    "stream %s has %s replicas, %s configured; using it as it is",
                    s.stream,
                    info.config.num_replicas,
                    s.replicas,
                )
        except NotFoundError:
            await js.add_stream(
                StreamConfig(
                    name=s.stream,
                    subjects=list(s.subjects),
                    num_replicas=s.replicas,
                    storage=StorageType.FILE,
                    retention=RetentionPolicy.LIMITS,
                    max_age=s.max_age_s,
                )
            )
            log.info("created stream %s (%s replicas)", s.stream, s.replicas)
        try:
            await js.consumer_info(s.stream, s.durable)
        except NotFoundError:
            await js.add_consumer(
                s.stream,
                ConsumerConfig(
                    durable_name=s.durable,
                    ack_policy=AckPolicy.EXPLICIT,
                    deliver_policy=DeliverPolicy.ALL,
                    ack_wait=s.ack_wait_s,
                    max_ack_pending=s.max_ack_pending,
                    max_deliver=-1,
                ),
            )
        return await js.pull_subscribe_bind(s.durable, s.stream)
