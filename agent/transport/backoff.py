"""When to reconnect: capped exponential backoff with equal jitter, and the schedule
that decides which step comes next. Pure: no clock, no socket; how long a connection
stayed up is passed in."""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["Reconnect", "backoff_delay", "first_retry_delay"]


def backoff_delay(
    attempt: int, base_s: float, cap_s: float, rand: Callable[[], float] = random.random
) -> float:
    """Delay before reconnect attempt ``attempt`` (0-based): capped exponential, equal jitter.

    Half of the step is fixed so a terminal never hammers the broker, half is random so a
    centre's terminals spread out after a broker restart.
    """
    step = min(cap_s, base_s * 2.0 ** min(attempt, 30))
    return step / 2 + rand() * step / 2


def first_retry_delay(
    spread_s: float, base_s: float, cap_s: float, rand: Callable[[], float] = random.random
) -> float:
    """Delay before the first reconnect after an established connection dropped: the
    first backoff step plus a uniform share of the fleet's spread."""
    return backoff_delay(0, base_s, cap_s, rand) + rand() * spread_s


class Reconnect:
    """How long to wait before the next connection attempt.

    The backoff starts over only after a connection stayed up ``stable_after_s``, so two
    terminals misconfigured with the same client id cannot kick each other in a tight
    loop; the first retry after such a drop also waits a share of ``spread_s``.

    >>> r = Reconnect(base_s=0.5, cap_s=60.0, spread_s=0.0, rand=lambda: 1.0)
    >>> r.next_delay()  # the first attempt goes at once
    0.0
    >>> r.down(up_for_s=None); r.down(up_for_s=None)  # two attempts that never came up
    >>> r.next_delay()
    2.0
    """

    def __init__(
        self,
        *,
        base_s: float,
        cap_s: float,
        spread_s: float,
        stable_after_s: float = 10.0,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.base_s = base_s
        self.cap_s = cap_s
        self.spread_s = spread_s
        self.stable_after_s = stable_after_s
        self._rand = rand
        #: Attempts in a row that failed or did not last.
        self.failures = 0
        self._now = True  # no backoff before the first attempt, a fallback or a reset
        self._spread = False  # an established connection dropped: spread the retry

    def next_delay(self) -> float:
        """Seconds to wait before the attempt about to be made (0.0: go now)."""
        if self._now:
            self._now = False  # a pending spread is kept for the attempt after this one
            return 0.0
        spread, self._spread = self._spread, False
        if spread:
            return first_retry_delay(self.spread_s, self.base_s, self.cap_s, self._rand)
        return backoff_delay(self.failures, self.base_s, self.cap_s, self._rand)

    def failed(self) -> None:
        """The attempt failed before a CONNECT went out (refused, unreachable, TLS)."""
        self.failures += 1

    def down(self, up_for_s: float | None) -> None:
        """A connection, or an attempt, ended; ``up_for_s`` is None when it never came up."""
        if up_for_s is not None and up_for_s >= self.stable_after_s:
            self.failures = 0
            self._spread = True
        else:
            self.failures += 1

    def retry_now(self) -> None:
        """The next attempt goes without a backoff (a protocol fallback, a reset session)."""
        self._now = True
