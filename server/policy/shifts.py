"""Who served: the one attribution rule for sign-ins and sign-outs, from any source.

A *shift* is one clerk signed in at one window from ``start_ms`` until ``end_ms`` (None
while open). Every source (the queue system's clerk login, a badge or PIN at the
terminal, a manager on the roster page) ends in ``plan_sign_in`` / ``plan_sign_out``,
which decide, from the shifts that are there and the sessions already attributed, what
to write. Pure: no database, time passed in; the store applies the plan in one
transaction.

The rule (service standard A-PASS/A-REVIEW: a verdict must be about the clerk who served):

* A sign-in applies from its own time. It closes the previous clerk's open shift at that
  window and the same clerk's open shift at any other window, at that time.
* A session belongs to the clerk on shift when it opened. Shifts at one window never
  overlap, so that clerk is one clerk or nobody.
* A sign-in recorded late (an earlier effective time, by a manager) takes only the
  window's *unattributed* time: it starts no earlier than the end of a shift that covers
  its time and ends where the next shift at that window starts. It never moves a session
  already attributed to someone else: closing a shift before a session its clerk served
  is refused, naming the session's time.
* Nothing is guessed: a session with no shift is unattributed, and stays so until a
  sign-in covers it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

__all__ = [
    "SOURCES",
    "Shift",
    "ShiftConflict",
    "ShiftPlan",
    "Source",
    "plan_sign_in",
    "plan_sign_out",
]

#: Where a sign-in or sign-out came from.
Source: TypeAlias = Literal["queue", "badge", "pin", "manager", "demo"]
SOURCES: tuple[Source, ...] = ("queue", "badge", "pin", "manager", "demo")

#: The latest time a clerk's session opened at a window at or after a time, or None.
ServedAfter: TypeAlias = Callable[[str, str, int], "int | None"]


@dataclass(frozen=True, slots=True)
class Shift:
    id: int
    clerk_id: str
    window: str
    start_ms: int
    end_ms: int | None  #: None: still signed in

    def covers(self, t_ms: int) -> bool:
        return self.start_ms <= t_ms and (self.end_ms is None or t_ms < self.end_ms)


@dataclass(frozen=True, slots=True)
class ShiftPlan:
    """What to write: a new shift ``[start_ms, end_ms)`` (none when ``noop``), and the
    shifts to close, as ``(shift id, end_ms)``."""

    start_ms: int
    end_ms: int | None
    close: tuple[tuple[int, int], ...] = ()
    noop: bool = False  #: the clerk is already signed in there: nothing changes


class ShiftConflict(ValueError):
    """The sign-in or sign-out would take a session from the clerk who served it, or
    there is no unattributed time for it; the message says which and when."""


def _refuse_if_served(served_after: ServedAfter, clerk: str, window: str, t_ms: int) -> None:
    last = served_after(clerk, window, t_ms)
    if last is not None:
        raise ShiftConflict(
            f"{clerk} served a session at {window} opened at {last} (UTC ms), after {t_ms}: "
            "a shift cannot end before a session its clerk served"
        )


def plan_sign_in(
    clerk_id: str,
    window: str,
    at_ms: int,
    *,
    until_ms: int | None,
    at_window: Sequence[Shift],
    own: Sequence[Shift],
    served_after: ServedAfter,
) -> ShiftPlan:
    """Sign ``clerk_id`` in at ``window`` from ``at_ms`` (until ``until_ms``, when a manager
    records a shift that is over).

    ``at_window``: the window's shifts that are open or end after ``at_ms``; ``own``: the
    clerk's shifts at other windows that are open or end after ``at_ms``;
    ``served_after(clerk, window, t)``: the latest session that clerk served there from
    ``t`` on. Raises ``ShiftConflict``.
    """
    if until_ms is not None and until_ms <= at_ms:
        raise ShiftConflict("a shift must end after it starts")
    start, end = at_ms, until_ms
    close: list[tuple[int, int]] = []
    for s in sorted(at_window, key=lambda s: s.start_ms):
        if s.clerk_id == clerk_id and s.end_ms is None and s.start_ms <= start:
            if until_ms is None:
                return ShiftPlan(s.start_ms, None, noop=True)  # a repeated login
            raise ShiftConflict(f"{clerk_id} is signed in at {window} since {s.start_ms}")
        if s.start_ms < start and s.covers(start):
            if s.end_ms is not None:  # a shift that is over covers the time: start after it
                start = s.end_ms
                continue
            # the open shift of the clerk before: a shift change at ``start``
            _refuse_if_served(served_after, s.clerk_id, window, start)
            close.append((s.id, start))
        elif s.start_ms >= start:  # the next shift at this window: ours ends there
            end = s.start_ms if end is None else min(end, s.start_ms)
            break
    if end is not None and end <= start:
        raise ShiftConflict(
            f"{window} has no unattributed time from {at_ms}"
            + (f" to {until_ms}" if until_ms is not None else "")
            + ": other clerks were signed in throughout"
        )
    for o in own:  # the same clerk elsewhere
        if o.end_ms is None and o.start_ms < start:
            # moves windows: the other shift ends where this one starts
            _refuse_if_served(served_after, clerk_id, o.window, start)
            close.append((o.id, start))
        elif o.start_ms < (end if end is not None else 2**62) and (
            o.end_ms is None or o.end_ms > start
        ):
            raise ShiftConflict(
                f"{clerk_id} was signed in at {o.window} from {o.start_ms} then; "
                "a clerk serves at one window at a time"
            )
    return ShiftPlan(start, end, tuple(close))


def plan_sign_out(shift: Shift | None, at_ms: int, *, served_after: ServedAfter) -> tuple[int, int]:
    """End the open ``shift`` at ``at_ms``: ``(shift id, end_ms)``. Refused when nobody is
    signed in, when ``at_ms`` is before the shift began, or when its clerk served a
    session after ``at_ms``."""
    if shift is None or shift.end_ms is not None:
        raise ShiftConflict("nobody is signed in there")
    if at_ms <= shift.start_ms:
        raise ShiftConflict(f"the shift began at {shift.start_ms}, after {at_ms}")
    _refuse_if_served(served_after, shift.clerk_id, shift.window, at_ms)
    return shift.id, at_ms
