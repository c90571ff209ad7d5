"""The paho link: the only part of the transport that imports paho.

One client and its socket. It connects with our session properties, publishes and
subscribes, runs paho's loop when the owner asks, and translates paho's callbacks into
plain calls (codes as ints, reasons as text) on the functions it was given. It makes no
decision of its own: no retry, no fallback, no bookkeeping of rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agent.config import BrokerConfig
from agent.mqtt import make_client

__all__ = ["PahoLink", "Sent"]

log = logging.getLogger(__name__)

_SUCCESS: Final = mqtt.MQTT_ERR_SUCCESS
#: ``str()`` of PUBACK (and 3.1.1's code-less PUBACK) reason code 0.
_PUBACK_SUCCESS: Final = "Success"

#: ``(session_present, receive_maximum)``: the broker accepted the CONNECT.
OnConnack = Callable[[bool, int | None], None]
#: ``(code, reason)``: the broker refused the CONNECT; paho closes the socket.
OnRefused = Callable[[int, str], None]
#: ``(reason, failure)``: the connection ended (``failure`` False for a clean DISCONNECT).
OnClosed = Callable[[str, bool], None]
#: ``(mid, code, reason)``: a PUBACK (3.1.1: code 0).
OnPuback = Callable[[int, int, str], None]
#: ``(topic, payload)``: a message on a subscribed topic.
OnMessage = Callable[[str, bytes], None]
#: ``(refused)``: a SUBACK; ``refused`` counts the filters the broker did not grant
#: (reason code 0x80 or above).
OnSuback = Callable[[int], None]


# Not frozen: one is made per event, and a frozen dataclass's __init__ (one
# object.__setattr__ per field) takes five times as long, about 0.5 us more per publish.
@dataclass(slots=True)
class Sent:
    """What became of one publish (read it, do not change it)."""

    mid: int
    #: paho refused it (its queue is full or a mid would collide): not taken, send again.
    queue_full: bool
    #: Taken but not written now (no connection): paho keeps it and resends it.
    error: str | None
    #: True once a QoS 1 message is acknowledged (QoS 0: once written).
    done: Callable[[], bool]


class PahoLink:
    """One paho client, driven by its owner thread through ``loop()``."""

    def __init__(
        self,
        broker: BrokerConfig,
        client_id: str,
        *,
        v5: bool,
        will: tuple[str, str],
        password: str | None,
        on_connack: OnConnack,
        on_refused: OnRefused,
        on_closed: OnClosed,
        on_puback: OnPuback,
        on_message: OnMessage,
        on_suback: OnSuback | None = None,
        max_queued_messages: int = 0,
    ) -> None:
        self.broker = broker
        self.v5 = v5
        self._on_connack = on_connack
        self._on_refused = on_refused
        self._on_closed = on_closed
        self._on_puback = on_puback
        self._on_message = on_message
        self._on_suback = on_suback
        client = make_client(  # reads the TLS files: may raise OSError or ValueError
            client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            # MQTT 5 takes clean_start at connect(); 3.1.1 takes clean_session here.
            clean_session=None if v5 else False,
            reconnect_on_failure=False,
            tls=broker.tls,
        )
        # Unlimited inside paho: the delivery window bounds the outbox rows, and with a
        # paho limit, messages beyond it sit in a "queued" state that paho 2.2 only
        # releases as PUBACKs arrive, which reorders them after a reconnect.
        client.max_inflight_messages_set(0)
        client.max_queued_messages_set(max_queued_messages)
        client.will_set(will[0], will[1], qos=1, retain=True)
        if broker.username is not None:
            client.username_pw_set(broker.username, password)
        client.enable_logger(log)
        client.on_connect = self._connect_cb
        client.on_disconnect = self._disconnect_cb
        client.on_publish = self._publish_cb
        client.on_message = self._message_cb
        client.on_subscribe = self._subscribe_cb
        self._client = client

    def connect(self, session_expiry_s: int, node: tuple[str, int] | None = None) -> None:
        """Open the socket to ``node`` (default: the config's host and port) and send
        CONNECT (the CONNACK comes through ``loop()``). The same client on another node
        keeps its client id and session flags: a cluster shares the session.

        Raises OSError or ValueError when refused, unreachable, or the TLS handshake fails.
        """
        b = self.broker
        host, port = node if node is not None else (b.host, b.port)
        if self.v5:
            props = Properties(PacketTypes.CONNECT)
            # Without an expiry interval an MQTT 5 session ends at the disconnect.
            props.SessionExpiryInterval = session_expiry_s
            self._client.connect(host, port, b.keepalive_s, clean_start=False, properties=props)
        else:
            self._client.connect(host, port, b.keepalive_s)

    def loop(self, timeout_s: float) -> str | None:
        """Run paho's loop once; why the connection is gone when paho closed the socket."""
        rc = self._client.loop(timeout_s)
        if rc != mqtt.MQTT_ERR_SUCCESS and self._client.socket() is None:
            return f"loop: {mqtt.error_string(rc)}"
        return None

    def publish(self, topic: str, payload: bytes | str, qos: int, retain: bool) -> Sent:
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        rc = info.rc
        if rc == _SUCCESS:  # the common case, once per event: keep it short
            return Sent(info.mid, False, None, info.is_published)
        return Sent(
            info.mid,
            rc == mqtt.MQTT_ERR_QUEUE_SIZE,
            f"publish: {mqtt.error_string(rc)}",
            info.is_published,
        )

    def subscribe(self, filters: list[tuple[str, int]]) -> None:
        self._client.subscribe(filters)

    def disconnect(self) -> None:
        """Send DISCONNECT and close the socket now (paho calls ``on_closed`` at once)."""
        self._client.disconnect()

    # ------------------------------------------------------------------ paho callbacks

    def _connect_cb(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            self._on_refused(reason_code.value, str(reason_code))
            return
        receive_max = getattr(properties, "ReceiveMaximum", None)
        self._on_connack(
            flags.session_present, receive_max if isinstance(receive_max, int) else None
        )

    def _disconnect_cb(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._on_closed(str(reason_code), reason_code.is_failure)

    def _publish_cb(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        code = reason_code.value
        # str() of a ReasonCode searches paho's name table: only for the rare non-zero code.
        self._on_puback(mid, code, _PUBACK_SUCCESS if code == 0 else str(reason_code))

    def _subscribe_cb(
        self, client: mqtt.Client, userdata: Any, mid: int, codes: list[Any], props: Any
    ) -> None:
        if self._on_suback is not None:
            self._on_suback(sum(1 for c in codes if int(getattr(c, "value", c)) >= 0x80))

    def _message_cb(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._on_message(msg.topic, bytes(msg.payload))
