"""The harness's one deviation from the stock agent: hold events nobody was subscribed to.

Mosquitto 2.0.11 does not restore shared subscriptions (``$share/...``) from its
persistence file. After a broker restart, until the ingest replicas have reconnected and
subscribed again, an event finds no subscriber: the broker answers the agent's QoS 1
PUBLISH with PUBACK reason 0x10 "No matching subscribers" and drops it. 0x10 is a success
code, so the stock ``Transport`` deletes the row: the event is lost. (A plain persistent
subscription is restored and queues; only the shared one, which the city needs, is not.)

``HoldUnroutedTransport`` treats 0x10 like an error PUBACK: the row stays in the outbox
and the transport resends from the oldest row after ``retry_rejected_s``. This is the
change proposed for ``agent/transport.py`` (see docs/city-run.md); ``--stock-transport``
runs the city without it.
"""

from __future__ import annotations

from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agent.transport import Transport

NO_MATCHING_SUBSCRIBERS: Final = 0x10


class HoldUnroutedTransport(Transport):
    """``Transport`` that keeps a row whose PUBACK says nobody received it."""

    unrouted = 0  #: PUBACKs with 0x10 seen (per instance once incremented)

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.value == NO_MATCHING_SUBSCRIBERS:
            self.unrouted += 1
            reason_code = ReasonCode(PacketTypes.PUBACK, identifier=0x80)
        super()._on_publish(client, userdata, mid, reason_code, properties)
