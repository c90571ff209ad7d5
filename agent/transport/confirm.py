"""End-to-end confirmation (``BrokerConfig.confirm = "stored"``): which handed-off rows
still wait for the aggregator's ``Stored``, and which are due to go again.

Why: a broker's PUBACK says the broker took the event, not that the store has it; a
clustered broker may PUBACK before it has replicated the message, and a node lost then
loses it. In this mode a PUBACK only *hands the row off*: it stays in the outbox until a
``protocol.Stored`` covers its seq. A row handed off and not confirmed within
``timeout_s`` goes again (``historical`` true, same ``event_id``; the store keeps one),
and each further resend of the same row waits twice as long, up to ``cap_s``: a server
that never confirms costs a bounded trickle, not a flood.

Pure bookkeeping: seqs and monotonic times in, decisions out; no outbox, no socket. The
owner deletes the rows (``Outbox.ack_ranges``) and publishes the resends.

>>> c = Confirmations(timeout_s=30.0, limit=100)
>>> c.handed_off(5, now=0.0); c.handed_off(6, now=0.0)
>>> c.take_due(now=29.0, n=8), c.take_due(now=30.0, n=8)
([], [5, 6])
>>> c.handed_off(5, now=31.0)         # the resend's PUBACK: the next wait is 60 s
>>> c.confirm(((6, 6),), inflight=()), c.unconfirmed
(1, 1)
>>> c.take_due(now=90.0, n=8), c.take_due(now=91.0, n=8)
([], [5])
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from typing import Final

__all__ = ["DEFAULT_CAP_S", "Confirmations", "resend_pause"]

#: Longest wait between two resends of one unconfirmed row.
DEFAULT_CAP_S: Final = 900.0
_AWAITING: Final = math.inf  # resent, its PUBACK not back yet: not due


def resend_pause(resends: int, timeout_s: float, cap_s: float) -> float:
    """How long a handed-off row waits for its confirmation after ``resends`` resends:
    ``timeout_s``, doubling with each resend, at most ``cap_s``."""
    return min(cap_s, timeout_s * 2.0 ** min(resends, 30))


class Confirmations:
    """Handed-off, unconfirmed rows: ``seq -> (due, resends)``, and the due order.

    * ``handed_off(seq, now)``: a PUBACK for the row (first send or resend); its
      confirmation is due by ``now + resend_pause(resends)``.
    * ``take_due(now, n)``: up to ``n`` rows whose wait is over, lowest seq first; each
      counts one more resend and waits for its next PUBACK (``untake`` if it could not
      be sent now, ``forget`` if its row is gone).
    * ``confirm(ranges, inflight)``: a ``Stored``; forgets the rows it covers. A
      confirmation can overtake a PUBACK: the ``inflight`` seqs it covers are
      remembered, so their late PUBACK does not start a wait.
    * At most ``limit`` rows are tracked (the outbox's size): beyond it the lowest seqs
      (the oldest, which the outbox drops first for room) are forgotten down to 90 %; a
      forgotten row still in the outbox goes again at the next new session.
    """

    def __init__(self, *, timeout_s: float, limit: int, cap_s: float = DEFAULT_CAP_S) -> None:
        if timeout_s <= 0 or cap_s < timeout_s:
            raise ValueError("need 0 < timeout_s <= cap_s")
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.timeout_s = timeout_s
        self.cap_s = cap_s
        self.limit = limit
        #: Rows deleted because a ``Stored`` covered them, over the life of this object
        #: (counted by the owner, which knows how many rows the delete found).
        self.confirmed = 0
        self._rows: dict[int, tuple[float, int]] = {}  # seq -> (due, resends)
        self._heap: list[tuple[float, int]] = []  # (due, seq); stale entries skipped
        self._early: set[int] = set()  # confirmed while in flight: ignore their PUBACK

    @property
    def unconfirmed(self) -> int:
        """Rows handed off (or resent) and not confirmed yet."""
        return len(self._rows)

    @property
    def tracked(self) -> tuple[int, ...]:
        """The unconfirmed seqs, in order (tests, diagnostics)."""
        return tuple(sorted(self._rows))

    def handed_off(self, seq: int, now: float) -> None:
        """Row ``seq`` got a PUBACK at ``now``: wait for its ``Stored``."""
        if self._early and seq in self._early:
            self._early.discard(seq)
            return
        resends = self._rows[seq][1] if seq in self._rows else 0
        due = now + resend_pause(resends, self.timeout_s, self.cap_s)
        self._rows[seq] = (due, resends)
        heapq.heappush(self._heap, (due, seq))
        if len(self._rows) > self.limit:
            # Down to 90 %: one sort per tenth of the outbox, not one per PUBACK.
            for old in sorted(self._rows)[: len(self._rows) - self.limit * 9 // 10]:
                del self._rows[old]
        if len(self._heap) > 2 * len(self._rows) + 64:
            self._heap = [(d, s) for s, (d, _) in self._rows.items() if d != _AWAITING]
            heapq.heapify(self._heap)

    def next_due(self) -> float | None:
        """When the earliest wait ends (None: nothing waits); cheap, for the drain."""
        heap = self._heap
        while heap:
            due, seq = heap[0]
            entry = self._rows.get(seq)
            if entry is not None and entry[0] == due:
                return due
            heapq.heappop(heap)  # stale: confirmed, forgotten or handed off again
        return None

    def take_due(self, now: float, n: int) -> list[int]:
        """Up to ``n`` rows to send again now, lowest seq first among the due ones."""
        out: list[int] = []
        heap = self._heap
        while heap and len(out) < n:
            due = self.next_due()
            if due is None or due > now:
                break
            _, seq = heapq.heappop(heap)
            self._rows[seq] = (_AWAITING, self._rows[seq][1] + 1)
            out.append(seq)
        out.sort()
        return out

    def untake(self, seq: int, now: float) -> None:
        """A taken row could not be sent now: due again at once, not counted."""
        entry = self._rows.get(seq)
        if entry is not None:
            self._rows[seq] = (now, max(0, entry[1] - 1))
            heapq.heappush(self._heap, (now, seq))

    def forget(self, seq: int) -> None:
        """Row ``seq`` is gone from the outbox (confirmed, or dropped for room)."""
        self._rows.pop(seq, None)

    def confirm(self, ranges: Iterable[tuple[int, int]], inflight: Iterable[int]) -> int:
        """A ``Stored`` covering ``ranges`` (inclusive) arrived; ``inflight`` are the seqs
        on the wire now, PUBACK not back. Returns how many tracked rows it covered."""
        spans = list(ranges)
        before = len(self._rows)
        for first, last in spans:
            if last - first + 1 <= len(self._rows):
                for seq in range(first, last + 1):
                    self._rows.pop(seq, None)
            else:
                for seq in [s for s in self._rows if first <= s <= last]:
                    del self._rows[seq]
        self._early.update(s for s in inflight if any(a <= s <= b for a, b in spans))
        return before - len(self._rows)

    def new_session(self) -> None:
        """A new client: what was in flight is gone, and every row still in the outbox
        goes again from the oldest; resends already counted keep their longer wait."""
        self._early.clear()
