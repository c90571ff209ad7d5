"""The delivery window: which outbox rows are on the wire and which may be deleted.

Pure bookkeeping, no I/O: the owner reads rows after ``cursor`` from the outbox, tells
the window the paho ``mid`` each went out with, and hands it a delete function when the
acknowledged ones are due. Time is passed in as monotonic seconds.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["DeliveryWindow"]


class DeliveryWindow:
    """Outbox rows in flight (``mid -> seq``), the cursor, and the batch of acked rows.

    * **In-flight limit.** At most ``limit`` rows await their PUBACK: ``max_inflight``,
      or the broker's Receive Maximum less ``reserved_slots`` (for birth, state and
      replies) when that is smaller.
    * **Cursor.** The highest seq handed to the current client; a new client has no
      session state, so ``restart()`` sends everything still stored again, oldest first.
    * **Ack batching.** Each delete costs an fsync, so acked rows are deleted once half
      the window is acked or the oldest has waited ``ack_batch_s``. Holding a PUBACKed
      row a little longer only risks a duplicate (same event_id, which the server
      ignores) if the agent dies in between, never a loss.
    * **Replays.** Rows stored before the current connection (``seq < live_from_seq``)
      are replays: "older" by seq, not by clock, since a Pi has no RTC.

    >>> w = DeliveryWindow(max_inflight=4)
    >>> w.connected(last_seq=2, receive_maximum=None)
    >>> w.room(last_seq=5), w.is_replay(2), w.is_replay(3)
    (4, True, False)
    >>> w.sent(mid=7, seq=1); w.settle(7)
    1
    """

    def __init__(
        self, max_inflight: int = 32, *, reserved_slots: int = 4, ack_batch_s: float = 0.1
    ) -> None:
        if max_inflight < 1:
            raise ValueError("max_inflight must be at least 1")
        self.max_inflight = max_inflight
        self.reserved_slots = reserved_slots
        self.ack_batch_s = ack_batch_s
        self.limit = max_inflight
        self.cursor = 0  #: highest seq handed to the current client
        self.live_from_seq = 1 << 62  #: rows below it are replays (set at each CONNACK)
        self.acked = 0  #: rows acknowledged and deleted, over the window's life
        self._inflight: dict[int, int] = {}  # paho mid -> outbox seq
        self._batch: list[int] = []  # PUBACKed seqs not yet deleted
        self._batch_since = 0.0

    @property
    def inflight(self) -> int:
        """Rows published and waiting for their PUBACK."""
        return len(self._inflight)

    @property
    def pending_acks(self) -> tuple[int, ...]:
        """Acked seqs waiting for their batched delete."""
        return tuple(self._batch)

    def connected(self, last_seq: int, receive_maximum: int | None) -> None:
        """A CONNACK: rows up to ``last_seq`` are replays; the broker may cap the window."""
        self.live_from_seq = last_seq + 1
        self.limit = self.max_inflight
        if receive_maximum is not None and receive_maximum > 0:
            self.limit = max(1, min(self.max_inflight, receive_maximum - self.reserved_slots))

    def restart(self) -> None:
        """A new client, with no session: what was in flight goes again from the outbox."""
        self._inflight.clear()
        self.cursor = 0

    def room(self, last_seq: int) -> int:
        """How many rows after ``cursor`` to send now, given the outbox's ``last_seq``."""
        if last_seq <= self.cursor:
            return 0
        return max(0, self.limit - len(self._inflight))

    def sent(self, mid: int, seq: int) -> None:
        """Row ``seq`` was handed to the client as message ``mid``."""
        self._inflight[mid] = seq
        self.cursor = seq

    @property
    def free(self) -> int:
        """In-flight slots left, whatever the cursor (resends of unconfirmed rows)."""
        return max(0, self.limit - len(self._inflight))

    @property
    def inflight_seqs(self) -> tuple[int, ...]:
        """The seqs on the wire, their PUBACK not back yet."""
        return tuple(self._inflight.values())

    def track(self, mid: int, seq: int) -> None:
        """Row ``seq`` went again as message ``mid``, out of turn: the cursor stays."""
        self._inflight[mid] = seq

    def settle(self, mid: int) -> int | None:
        """A PUBACK for ``mid``: the row it carried, or None for any other message."""
        return self._inflight.pop(mid, None)

    def release(self, seq: int, now: float) -> None:
        """Row ``seq`` was delivered: delete it with the next batch."""
        if not self._batch:
            self._batch_since = now
        self._batch.append(seq)

    def is_replay(self, seq: int) -> bool:
        """Row ``seq`` was stored before the current connection came up."""
        return seq < self.live_from_seq

    def rewind(self, seq: int) -> None:
        """Send again from row ``seq`` on this client (rows nobody received)."""
        self.cursor = seq - 1

    def flush(
        self, now: float, delete: Callable[[list[int]], object], *, force: bool = False
    ) -> int:
        """Delete the acked rows with ``delete`` when a batch is due; returns how many.

        The batch is cleared only once ``delete`` returned: if the disk fails, the next
        call tries again rather than leaving the rows behind the cursor until a restart.
        """
        if not self._batch:
            return 0
        if not (
            force
            or len(self._batch) >= max(1, self.limit // 2)
            or now - self._batch_since >= self.ack_batch_s
        ):
            return 0
        delete(self._batch)
        n = len(self._batch)
        self.acked += n
        self._batch = []
        return n
