"""Which MQTT version to speak: MQTT 5 first, MQTT 3.1.1 when the broker will not.

Pure: the owner feeds it what happened to each CONNECT and asks which version to use.
There is no way back to MQTT 5 within a run: a broker that needed 3.1.1 once is
assumed to need it until the agent restarts (the city bench relies on that reading,
which is why it forces ``"5"``). A timed retry of MQTT 5 would be a deadline here.
"""

from __future__ import annotations

from typing import Final, Literal

__all__ = ["UNSUPPORTED_PROTOCOL", "ProtocolChoice", "ProtocolFallback"]

ProtocolChoice = Literal["auto", "5", "3.1.1"]

#: CONNACK codes meaning "I do not speak this protocol version" (v5 0x84, v3 0x01).
UNSUPPORTED_PROTOCOL: Final = frozenset({0x84, 0x01})


class ProtocolFallback:
    """MQTT 5 until the broker shows it speaks 3.1.1 only, when ``choice`` is ``"auto"``.

    It shows it by refusing the CONNECT with "unsupported protocol version", or by never
    answering ``silences`` MQTT 5 CONNECTs before any connection of this run worked (amqtt
    leaves one with properties hanging, old brokers close the socket). One silence is not
    enough: a broker busy with a connect storm answers late too.

    >>> p = ProtocolFallback("auto")
    >>> p.unanswered(), p.version
    (None, '5')
    >>> p.unanswered()
    'no CONNACK to 2 MQTT 5 CONNECTs'
    >>> p.version
    '3.1.1'
    """

    def __init__(self, choice: ProtocolChoice = "auto", *, silences: int = 2) -> None:
        if silences < 1:
            raise ValueError("silences must be at least 1")
        self.choice: ProtocolChoice = choice
        self.silences = silences
        self.v5 = choice != "3.1.1"
        #: The version of the last connection that worked; None before the first.
        self.used: str | None = None
        self._unanswered = 0  # MQTT 5 CONNECTs that got no CONNACK, before any worked

    @property
    def version(self) -> str:
        """The version the next CONNECT speaks: ``"5"`` or ``"3.1.1"``."""
        return "5" if self.v5 else "3.1.1"

    def connected(self) -> str:
        """A CONNACK accepted the CONNECT; returns the version that worked."""
        self.used = self.version
        return self.used

    def unanswered(self) -> str | None:
        """A CONNECT got no CONNACK (timed out or the socket closed): why we fall back
        to 3.1.1 now, or None to keep the version."""
        if not (self.v5 and self.choice == "auto" and self.used is None):
            return None
        self._unanswered += 1
        if self._unanswered < self.silences:
            return None
        self.v5 = False
        return f"no CONNACK to {self._unanswered} MQTT 5 CONNECTs"

    def refused(self, code: int, reason: str) -> str | None:
        """A CONNACK refused the CONNECT with ``code``: why we fall back now, or None."""
        if not (self.v5 and self.choice == "auto" and code in UNSUPPORTED_PROTOCOL):
            return None
        self.v5 = False
        return f"broker refused MQTT 5 ({reason})"
