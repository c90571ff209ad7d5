"""What a PUBACK code means for its row, fed with codes and monotonic times."""

from __future__ import annotations

import pytest

from agent.transport import NO_MATCHING_SUBSCRIBERS, Puback, PubackPolicy, classify

SUCCESS, NOT_AUTHORIZED, QUOTA_EXCEEDED, UNSPECIFIED = 0x00, 0x87, 0x97, 0x80


@pytest.mark.parametrize(
    ("code", "verdict"),
    [
        (SUCCESS, Puback.DELIVERED),  # also every MQTT 3.1.1 PUBACK
        (NO_MATCHING_SUBSCRIBERS, Puback.UNROUTED),
        (UNSPECIFIED, Puback.REFUSED),
        (NOT_AUTHORIZED, Puback.REFUSED),
        (QUOTA_EXCEEDED, Puback.REFUSED),
    ],
)
def test_classify(code: int, verdict: Puback) -> None:
    assert classify(code) is verdict


def policy() -> PubackPolicy:
    return PubackPolicy(resend_base_s=0.5, resend_cap_s=4.0, refused_pause_s=5.0, rand=lambda: 1.0)


def test_unrouted_rows_are_resent_from_the_lowest_after_a_pause_once_idle() -> None:
    p = policy()
    assert p.on_puback(seq=4, code=NO_MATCHING_SUBSCRIBERS, now=10.0) is Puback.UNROUTED
    assert p.on_puback(seq=3, code=NO_MATCHING_SUBSCRIBERS, now=10.2) is Puback.UNROUTED
    assert p.resend_pending and p.rejected == 2
    assert p.resend_due(10.4, idle=True) is None  # the pause (0.5 s) runs from the first
    assert p.resend_due(10.6, idle=False) is None  # rows still in flight
    assert p.resend_due(10.6, idle=True) == 3
    assert p.resend_due(10.7, idle=True) == 3  # due until the cursor went back
    p.resent()
    assert not p.resend_pending and p.resend_due(20.0, idle=True) is None


def test_the_resend_pause_grows_while_nobody_listens_and_resets_on_a_delivery() -> None:
    p = policy()
    pauses = []
    now = 0.0
    for _ in range(5):
        p.on_puback(seq=1, code=NO_MATCHING_SUBSCRIBERS, now=now)
        due = now
        while p.resend_due(due, idle=True) is None:
            due += 0.25
        p.resent()
        pauses.append(due - now)
        now = due
    assert pauses == [0.5, 1.0, 2.0, 4.0, 4.0]  # capped at resend_cap_s
    assert p.on_puback(seq=1, code=SUCCESS, now=now) is Puback.DELIVERED
    p.on_puback(seq=2, code=NO_MATCHING_SUBSCRIBERS, now=now)
    assert p.resend_due(now + 0.49, idle=True) is None
    assert p.resend_due(now + 0.5, idle=True) == 2  # back to the first step


def test_a_new_session_cancels_the_resend() -> None:
    p = policy()
    p.on_puback(seq=9, code=NO_MATCHING_SUBSCRIBERS, now=0.0)
    p.new_session()  # a fresh client resends every stored row anyway
    assert not p.resend_pending and p.resend_due(100.0, idle=True) is None


def test_a_refusal_sets_one_reset_pause_and_every_refusal_counts() -> None:
    p = policy()
    assert p.on_puback(seq=1, code=NOT_AUTHORIZED, now=100.0) is Puback.REFUSED
    assert p.on_puback(seq=2, code=QUOTA_EXCEEDED, now=101.0) is Puback.REFUSED
    assert p.reset_at == 105.0 and p.rejected == 2  # the first refusal sets the pause
    assert not p.resend_pending
    p.reset_done()
    assert p.reset_at is None
    p.on_puback(seq=1, code=NOT_AUTHORIZED, now=200.0)
    assert p.reset_at == 205.0


def test_a_delivery_counts_nothing() -> None:
    p = policy()
    assert p.on_puback(seq=1, code=SUCCESS, now=0.0) is Puback.DELIVERED
    assert (p.rejected, p.reset_at, p.resend_pending) == (0, None, False)
