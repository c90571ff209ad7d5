"""What a PUBACK's reason code means for the outbox row it acknowledges.

Pure: codes and monotonic times in, decisions out. Success releases the row; the others
keep it, and say when and how it goes again:

* ``0x10`` "no matching subscribers" is a success code, yet nobody has the event:
  Mosquitto 2.0 forgets shared subscriptions over a restart, so until the aggregator
  resubscribes every event would be acknowledged and dropped (city run). The row is
  resent **on the same connection** after a pause that grows while resends keep finding
  nobody: reconnecting instead made 10,000 windows a connect storm that kept the
  aggregator from resubscribing.
* An error code (``>= 0x80``: not authorised, quota) is usually sticky. The client and
  its in-memory queue are dropped and, after ``refused_pause_s``, everything goes again
  from the oldest stored row on a fresh client: paho would resend the rows published
  after the refused one first, out of order.

An MQTT 3.1.1 PUBACK has no reason code; paho reports it as 0, so it always releases.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from enum import StrEnum
from typing import Final

from agent.transport.backoff import backoff_delay

__all__ = ["NO_MATCHING_SUBSCRIBERS", "Puback", "PubackPolicy", "classify"]

NO_MATCHING_SUBSCRIBERS: Final = 0x10


class Puback(StrEnum):
    """What a PUBACK means for its row."""

    DELIVERED = "delivered"  #: delete the row
    UNROUTED = "unrouted"  #: keep it; resend on this connection after a pause
    REFUSED = "refused"  #: keep it; reset the session after a pause


# The members, bound once: a lookup on the class (an enum descriptor) costs as much as
# the rest of the decision, which is made once per event.
_DELIVERED: Final = Puback.DELIVERED
_UNROUTED: Final = Puback.UNROUTED
_REFUSED: Final = Puback.REFUSED


def classify(code: int) -> Puback:
    """The meaning of PUBACK reason code ``code`` (MQTT 5; 3.1.1 PUBACKs read as 0)."""
    if code == 0:
        return _DELIVERED
    if code == NO_MATCHING_SUBSCRIBERS:
        return _UNROUTED
    return _REFUSED if code >= 0x80 else _DELIVERED


class PubackPolicy:
    """Counts the PUBACKs that kept their row and holds the deadlines they set.

    >>> p = PubackPolicy(resend_base_s=0.5, resend_cap_s=60.0, refused_pause_s=5.0,
    ...                  rand=lambda: 1.0)
    >>> p.on_puback(seq=3, code=0x10, now=100.0)
    <Puback.UNROUTED: 'unrouted'>
    >>> p.resend_due(100.4, idle=True), p.resend_due(100.5, idle=True)
    (None, 3)
    >>> p.resent(); p.resend_pending
    False
    """

    def __init__(
        self,
        *,
        resend_base_s: float,
        resend_cap_s: float,
        refused_pause_s: float,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.resend_base_s = resend_base_s
        self.resend_cap_s = resend_cap_s
        self.refused_pause_s = refused_pause_s
        self._rand = rand
        #: PUBACKs that kept their row (unrouted or refused).
        self.rejected = 0
        #: When the session dropped for a refusal may start again; None: no refusal.
        self.reset_at: float | None = None
        # 0x10: the lowest such seq, when to resend from it, and how many resends in a
        # row found nobody.
        self._unrouted_low: int | None = None
        self._resend_at = 0.0
        self._streak = 0

    def on_puback(self, seq: int, code: int, now: float) -> Puback:
        """Row ``seq`` got a PUBACK with ``code`` at ``now``; what that means for it."""
        verdict = classify(code)
        if verdict is _DELIVERED:
            self._streak = 0
            return verdict
        self.rejected += 1
        if verdict is _UNROUTED:
            if self._unrouted_low is None:
                self._resend_at = now + backoff_delay(
                    self._streak, self.resend_base_s, self.resend_cap_s, self._rand
                )
                self._streak += 1
            self._unrouted_low = min(seq, self._unrouted_low or seq)
        elif self.reset_at is None:  # the first refusal sets the pause; later ones wait in it
            self.reset_at = now + self.refused_pause_s
        return verdict

    @property
    def resend_pending(self) -> bool:
        """Rows nobody received wait for their resend: send nothing new meanwhile."""
        return self._unrouted_low is not None

    def resend_due(self, now: float, *, idle: bool) -> int | None:
        """The seq to resend from, once the pause is over and nothing is in flight
        (``idle``); None while there is nothing due. ``resent()`` clears it."""
        if self._unrouted_low is None or now < self._resend_at or not idle:
            return None
        return self._unrouted_low

    def resent(self) -> None:
        """The cursor went back to the due seq: the wait is over."""
        self._unrouted_low = None

    def new_session(self) -> None:
        """A new client sends every stored row again anyway: no resend is pending."""
        self._unrouted_low = None

    def reset_done(self) -> None:
        """The pause after a refusal is over; the next refusal sets a new one."""
        self.reset_at = None
