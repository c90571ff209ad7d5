"""Reconnect timing, fed with values: no broker, no clock, jitter chosen by the test."""

from __future__ import annotations

import doctest
from types import ModuleType

import pytest

from agent.transport import (
    Reconnect,
    backoff,
    backoff_delay,
    fallback,
    first_retry_delay,
    puback,
    window,
)

LOW, HIGH = (lambda: 0.0), (lambda: 1.0)


def test_backoff_is_capped_exponential_with_jitter() -> None:
    lo = [backoff_delay(a, 0.5, 8.0, rand=LOW) for a in range(8)]
    hi = [backoff_delay(a, 0.5, 8.0, rand=HIGH) for a in range(8)]
    assert lo == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    assert hi == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0]
    assert backoff_delay(10_000, 0.5, 60.0, rand=HIGH) == 60.0  # no overflow


def test_first_retry_delay_adds_a_share_of_the_spread() -> None:
    assert first_retry_delay(30.0, 0.5, 60.0, rand=LOW) == 0.25
    assert first_retry_delay(30.0, 0.5, 60.0, rand=HIGH) == 30.5
    assert first_retry_delay(0.0, 0.5, 60.0, rand=HIGH) == 0.5  # a hall: no spread


def schedule(spread_s: float = 30.0) -> Reconnect:
    return Reconnect(base_s=0.5, cap_s=8.0, spread_s=spread_s, stable_after_s=10.0, rand=HIGH)


def test_attempts_that_never_come_up_back_off_further() -> None:
    r = schedule()
    delays = [r.next_delay()]
    for _ in range(5):
        r.down(up_for_s=None)
        delays.append(r.next_delay())
    assert delays == [0.0, 1.0, 2.0, 4.0, 8.0, 8.0]
    r.failed()  # a refused TCP connection counts the same
    assert r.failures == 6 and r.next_delay() == 8.0


def test_a_stable_connection_resets_the_backoff_and_spreads_one_retry() -> None:
    r = schedule()
    r.next_delay()
    for _ in range(4):
        r.down(up_for_s=None)
    r.down(up_for_s=10.0)  # up long enough
    assert r.failures == 0
    assert r.next_delay() == 30.5  # first step + the whole spread (rand at its maximum)
    r.down(up_for_s=None)
    assert r.next_delay() == 1.0  # the spread was for the first retry only


def test_a_connection_that_did_not_last_counts_as_a_failure() -> None:
    """Two terminals with the same client id kick each other out: they must slow down."""
    r = schedule()
    r.next_delay()
    for _ in range(3):
        r.down(up_for_s=9.9)
    assert r.failures == 3 and r.next_delay() == 4.0


def test_retry_now_skips_one_backoff_and_keeps_a_pending_spread() -> None:
    r = schedule()
    r.next_delay()
    r.down(up_for_s=60.0)
    r.retry_now()  # a fallback or a reset session: go at once
    assert r.next_delay() == 0.0
    assert r.next_delay() == 30.5


@pytest.mark.parametrize("module", [backoff, fallback, window, puback], ids=lambda m: m.__name__)
def test_docstring_examples_run(module: ModuleType) -> None:
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
