"""What ``PahoLink`` hands the owner for a publish and a PUBACK, without a broker."""

from __future__ import annotations

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from agent.config import BrokerConfig
from agent.transport import NO_MATCHING_SUBSCRIBERS, PahoLink


def make_link(pubacks: list[tuple[int, int, str]]) -> PahoLink:
    def unused(*_: object) -> None:
        raise AssertionError("not expected in this test")

    return PahoLink(
        BrokerConfig(host="127.0.0.1", port=1),
        "ww-test-w01",
        v5=True,
        will=("ww/v1/test/w01/availability", "offline"),
        password=None,
        on_connack=unused,
        on_refused=unused,
        on_closed=unused,
        on_puback=lambda mid, code, reason: pubacks.append((mid, code, reason)),
        on_message=unused,
    )


@pytest.mark.parametrize(
    ("packet", "code"),
    [
        (PacketTypes.PUBACK, 0x00),
        (PacketTypes.PUBCOMP, 0x00),
        (PacketTypes.PUBACK, NO_MATCHING_SUBSCRIBERS),
        (PacketTypes.PUBACK, 0x87),  # not authorized
    ],
)
def test_a_puback_reports_its_code_and_paho_s_name_for_it(packet: int, code: int) -> None:
    pubacks: list[tuple[int, int, str]] = []
    link = make_link(pubacks)
    reason = ReasonCode(packet, identifier=code)
    link._publish_cb(mqtt.Client(mqtt.CallbackAPIVersion.VERSION2), None, 7, reason, None)
    assert pubacks == [(7, code, str(reason))]  # "Success" for 0 without asking paho


def test_a_3_1_1_puback_without_a_code_reads_as_success() -> None:
    pubacks: list[tuple[int, int, str]] = []
    link = make_link(pubacks)
    reason = ReasonCode(PacketTypes.PUBACK)  # what paho passes for an MQTT 3.1.1 PUBACK
    link._publish_cb(mqtt.Client(mqtt.CallbackAPIVersion.VERSION2), None, 3, reason, None)
    assert pubacks == [(3, 0, "Success")]


def test_a_publish_without_a_connection_is_kept_and_says_why() -> None:
    link = make_link([])
    sent = link.publish("ww/v1/test/w01/event", b"{}", 1, False)
    assert not sent.queue_full
    assert sent.error == "publish: The client is not currently connected."
    assert sent.mid > 0
