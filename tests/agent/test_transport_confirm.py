"""The end-to-end confirmation's bookkeeping (``agent.transport.confirm``), no broker."""

from __future__ import annotations

import doctest

import pytest

from agent.transport import confirm
from agent.transport.confirm import Confirmations, resend_pause


def test_doctest() -> None:
    assert doctest.testmod(confirm).failed == 0


def test_pause_doubles_per_resend_up_to_the_cap() -> None:
    assert [resend_pause(n, 30.0, 900.0) for n in range(7)] == [30, 60, 120, 240, 480, 900, 900]
    assert resend_pause(10_000, 1.0, 900.0) == 900.0


def test_nothing_due_before_the_timeout_then_lowest_seq_first() -> None:
    c = Confirmations(timeout_s=30.0, limit=100)
    for seq, t in ((7, 2.0), (3, 1.0), (5, 0.0)):
        c.handed_off(seq, t)
    assert c.unconfirmed == 3 and c.next_due() == 30.0
    assert c.take_due(29.9, 8) == []
    assert c.take_due(31.0, 8) == [3, 5]  # 7 is due at 32
    assert c.take_due(31.0, 8) == []  # taken: they wait for their next PUBACK
    assert c.take_due(100.0, 1) == [7]  # n bounds it (the free in-flight slots)
    assert c.unconfirmed == 3  # taken rows are still unconfirmed


def test_every_resend_of_a_row_waits_twice_as_long() -> None:
    c = Confirmations(timeout_s=1.0, limit=10, cap_s=4.0)
    now, gaps = 0.0, []
    c.handed_off(1, now)
    for _ in range(5):
        due = c.next_due()
        assert due is not None
        gaps.append(due - now)
        now = due
        assert c.take_due(now, 8) == [1]
        c.handed_off(1, now)  # its PUBACK comes at once
    assert gaps == [1.0, 2.0, 4.0, 4.0, 4.0]


def test_confirm_forgets_exactly_its_ranges() -> None:
    c = Confirmations(timeout_s=30.0, limit=1000)
    for seq in range(1, 21):
        c.handed_off(seq, 0.0)
    assert c.confirm(((2, 4), (10, 10), (15, 1 << 62)), inflight=()) == 10
    assert c.tracked == (1, 5, 6, 7, 8, 9, 11, 12, 13, 14)
    assert c.confirm(((2, 4),), inflight=()) == 0  # again: nothing left to forget
    assert c.take_due(30.0, 100) == [1, 5, 6, 7, 8, 9, 11, 12, 13, 14]


def test_a_confirmation_can_overtake_the_puback() -> None:
    c = Confirmations(timeout_s=30.0, limit=100)
    c.confirm(((4, 6),), inflight=(5, 9))
    c.handed_off(5, 1.0)  # its late PUBACK: the row is gone, start no wait
    c.handed_off(9, 1.0)  # not covered
    assert c.tracked == (9,)
    c.handed_off(5, 2.0)  # a later hand-off of seq 5 (another send) counts again
    assert c.tracked == (5, 9)


def test_untake_and_forget() -> None:
    c = Confirmations(timeout_s=1.0, limit=100)
    c.handed_off(1, 0.0)
    c.handed_off(2, 0.0)
    assert c.take_due(1.0, 8) == [1, 2]
    c.untake(1, 1.5)  # paho's queue was full: due again now, this try not counted
    c.forget(2)  # its row was gone from the outbox
    assert c.take_due(1.5, 8) == [1]
    c.handed_off(1, 2.0)
    assert c.next_due() == 4.0  # one resend counted: 2 s
    assert c.unconfirmed == 1


def test_bounded_by_the_outbox_size() -> None:
    c = Confirmations(timeout_s=1.0, limit=100)
    for seq in range(1, 1001):
        c.handed_off(seq, 0.0)
        assert c.unconfirmed <= 100
    assert max(c.tracked) == 1000 and min(c.tracked) > 900  # the oldest went first
    assert len(c.take_due(10.0, 10_000)) == c.unconfirmed


def test_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        Confirmations(timeout_s=0.0, limit=1)
    with pytest.raises(ValueError):
        Confirmations(timeout_s=30.0, limit=1, cap_s=10.0)
    with pytest.raises(ValueError):
        Confirmations(timeout_s=30.0, limit=0)
