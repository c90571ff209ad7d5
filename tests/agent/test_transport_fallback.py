"""When the transport stops offering MQTT 5, fed with CONNACK outcomes."""

from __future__ import annotations

from agent.transport import ProtocolFallback

UNSUPPORTED_V5, UNSUPPORTED_V3, NOT_AUTHORIZED = 0x84, 0x01, 0x87


def test_two_unanswered_connects_mean_a_311_only_broker() -> None:
    p = ProtocolFallback("auto")
    assert p.version == "5"
    assert p.unanswered() is None  # one silence: maybe a connect storm
    assert p.version == "5"
    assert p.unanswered() == "no CONNACK to 2 MQTT 5 CONNECTs"
    assert p.version == "3.1.1" and not p.v5
    assert p.unanswered() is None  # already on 3.1.1: nothing more to fall back to
    assert p.connected() == "3.1.1" and p.used == "3.1.1"


def test_silences_after_a_connection_worked_keep_mqtt_5() -> None:
    p = ProtocolFallback("auto")
    assert p.unanswered() is None
    assert p.connected() == "5"
    for _ in range(5):  # a broker under load later on
        assert p.unanswered() is None
    assert p.version == "5"


def test_unsupported_protocol_falls_back_at_once_other_refusals_do_not() -> None:
    p = ProtocolFallback("auto")
    assert p.refused(NOT_AUTHORIZED, "Not authorized") is None
    assert p.version == "5"
    assert p.refused(UNSUPPORTED_V5, "Unsupported protocol version") == (
        "broker refused MQTT 5 (Unsupported protocol version)"
    )
    assert p.version == "3.1.1"
    assert ProtocolFallback("auto").refused(UNSUPPORTED_V3, "refused") is not None


def test_a_forced_version_never_changes() -> None:
    five = ProtocolFallback("5")
    for _ in range(3):
        assert five.unanswered() is None
    assert five.refused(UNSUPPORTED_V5, "Unsupported protocol version") is None
    assert five.version == "5"
    old = ProtocolFallback("3.1.1")
    assert old.version == "3.1.1" and old.used is None
    assert old.connected() == "3.1.1"


def test_the_number_of_silences_is_a_setting() -> None:
    p = ProtocolFallback("auto", silences=1)
    assert p.unanswered() == "no CONNACK to 1 MQTT 5 CONNECTs"
