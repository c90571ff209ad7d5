"""The delivery window, fed with mids, seqs and times: no broker, no outbox."""

from __future__ import annotations

import pytest

from agent.transport import DeliveryWindow


def test_room_is_the_inflight_limit_less_what_awaits_a_puback() -> None:
    w = DeliveryWindow(max_inflight=4)
    assert w.room(last_seq=0) == 0  # nothing stored
    assert w.room(last_seq=10) == 4
    for mid, seq in ((11, 1), (12, 2), (13, 3)):
        w.sent(mid, seq)
    assert (w.cursor, w.inflight, w.room(last_seq=10)) == (3, 3, 1)
    assert w.room(last_seq=3) == 0  # everything stored is out
    w.sent(14, 4)
    assert w.room(last_seq=10) == 0
    assert w.settle(12) == 2 and w.settle(12) is None  # a PUBACK is taken once
    assert w.settle(999) is None  # birth, state, a reply
    assert w.room(last_seq=10) == 1


@pytest.mark.parametrize(
    ("receive_maximum", "limit"), [(None, 32), (0, 32), (100, 32), (20, 16), (3, 1)]
)
def test_the_broker_receive_maximum_caps_the_window(
    receive_maximum: int | None, limit: int
) -> None:
    w = DeliveryWindow(max_inflight=32, reserved_slots=4)
    w.connected(last_seq=0, receive_maximum=receive_maximum)
    assert w.limit == limit


def test_rows_stored_before_the_connection_are_replays() -> None:
    w = DeliveryWindow()
    assert w.is_replay(1)  # before any connection everything is
    w.connected(last_seq=20, receive_maximum=None)
    assert w.is_replay(20) and not w.is_replay(21)
    w.connected(last_seq=35, receive_maximum=None)  # a reconnect
    assert w.is_replay(35) and not w.is_replay(36)


def test_acks_are_deleted_in_batches_by_count_by_age_or_on_demand() -> None:
    deleted: list[list[int]] = []

    def delete(seqs: list[int]) -> None:
        deleted.append(list(seqs))

    w = DeliveryWindow(max_inflight=8, ack_batch_s=0.1)
    assert w.flush(0.0, delete, force=True) == 0 and deleted == []  # nothing acked
    for seq in (1, 2, 3):
        w.release(seq, now=0.0)
    assert w.flush(0.05, delete) == 0 and w.pending_acks == (1, 2, 3)
    w.release(4, now=0.06)
    assert w.flush(0.06, delete) == 4  # half the window
    w.release(5, now=1.0)
    assert w.flush(1.09, delete) == 0
    assert w.flush(1.1, delete) == 1  # the oldest waited ack_batch_s
    w.release(6, now=2.0)
    assert w.flush(2.0, delete, force=True) == 1
    assert deleted == [[1, 2, 3, 4], [5], [6]] and w.acked == 6


def test_a_failed_delete_keeps_the_batch_for_the_next_try() -> None:
    w = DeliveryWindow()
    w.release(7, now=0.0)

    def disk_full(seqs: list[int]) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError):
        w.flush(1.0, disk_full)
    assert w.pending_acks == (7,) and w.acked == 0
    kept: list[int] = []
    assert w.flush(1.0, kept.extend) == 1 and kept == [7]


def test_a_new_client_sends_everything_again_and_a_rewind_resends_from_a_row() -> None:
    w = DeliveryWindow()
    for mid, seq in ((1, 5), (2, 6), (3, 7)):
        w.sent(mid, seq)
    w.rewind(6)
    assert w.cursor == 5 and w.inflight == 3  # same client: what is in flight stays
    w.restart()
    assert (w.cursor, w.inflight) == (0, 0)
    assert w.settle(1) is None  # a late PUBACK of the old client releases nothing


def test_max_inflight_must_be_positive() -> None:
    with pytest.raises(ValueError):
        DeliveryWindow(max_inflight=0)
