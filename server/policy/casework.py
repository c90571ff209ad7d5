"""The bad-review case workflow as rules of plain values: which step a case can take now,
what each step writes, and the 15-working-day clock as a person reads it.

A bad review (不满意 / 非常不满意) opens a case (``events.case_of``) that the centre must
rectify by its due time (``events.case_due``). The steps, every one on the record
(``case_actions``): *assign* it to a user of the centre, record the *callback* to the
citizen (every bad review gets one; an attempt that did not reach the citizen is recorded
too), record the *rectification*, *close* it (only with a call-back and a rectification
recorded) and *reopen* it with a reason. A reopened case needs its rectification recorded
again (the earlier one stays in the history): the reopening says it was not enough.

>>> open_case = CaseState(status="open", callback_ms=None, rectification=None)
>>> refusal(open_case, "close")
'record the call-back to the citizen and the rectification first'
>>> refusal(CaseState("open", 1, "retrained the clerk"), "close") is None
True
>>> refusal(CaseState("closed", 1, "retrained the clerk"), "callback")
'the case is closed: reopen it first'
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Final, Literal, NamedTuple, get_args
from zoneinfo import ZoneInfo

from server.workdays import WorkCalendar, default_calendar

Step = Literal["assign", "callback", "rectify", "close", "reopen"]
STEPS: Final[tuple[Step, ...]] = get_args(Step)
CallbackOutcome = Literal["reached_satisfied", "reached_not_satisfied", "unreachable"]
CALLBACK_OUTCOMES: Final[tuple[CallbackOutcome, ...]] = get_args(CallbackOutcome)
#: What a close still needs, by name (the page words them).
Missing = Literal["callback", "rectification"]


class CaseState(NamedTuple):
    """The parts of a case row the rules look at."""

    status: str  # "open" or "closed"
    callback_ms: int | None
    rectification: str | None


def missing_to_close(case: CaseState) -> list[Missing]:
    """What must be recorded before the case can be closed (empty: nothing)."""
    out: list[Missing] = []
    if case.callback_ms is None:
        out.append("callback")
    if not case.rectification:
        out.append("rectification")
    return out


def refusal(case: CaseState, step: Step) -> str | None:
    """Why ``step`` cannot be taken on ``case`` now, in words; None when it can."""
    if step == "reopen":
        return None if case.status == "closed" else "the case is open: only a closed case reopens"
    if case.status != "open":
        return "the case is closed: reopen it first"
    if step != "close":
        return None
    missing = missing_to_close(case)
    if not missing:
        return None
    words = {"callback": "the call-back to the citizen", "rectification": "the rectification"}
    return f"record {' and '.join(words[m] for m in missing)} first"


def step_values(step: Step, by: str, at_ms: int, **given: object) -> dict[str, object]:
    """The case columns a step writes (``given``: the step's own fields, already checked).

    * assign: ``assigned_to``;
    * callback: ``callback_ms`` (when the call was made, as the caller says), ``outcome``,
      ``note``;
    * rectify: ``note`` (what was done), stamped ``at_ms``;
    * close: ``note``, stamped ``at_ms`` and ``by``;
    * reopen: clears the close and the rectification, counted by the store
      (``reopened + 1``).
    """
    if step == "assign":
        return {"assigned_to": given["assigned_to"], "assigned_ms": at_ms}
    if step == "callback":
        return {
            "callback_ms": given["callback_ms"],
            "callback_outcome": given["outcome"],
            "callback_note": given.get("note") or None,
        }
    if step == "rectify":
        return {"rectification": given["note"], "rectified_ms": at_ms}
    if step == "close":
        return {"status": "closed", "closed_ms": at_ms, "closed_by": by, "note": given["note"]}
    return {
        "status": "open",
        "closed_ms": None,
        "closed_by": None,
        "note": None,
        "rectification": None,
        "rectified_ms": None,
    }


# ------------------------------------------------------------------ the clock


class Clock(NamedTuple):
    """How a case stands against its due time, at one moment.

    ``due_day``: the local date it is due by (the end of that day). ``working_days_left``:
    for an open case, the official working days after today up to and including the due
    day (0 on the due day itself, and the case is not overdue until that day ends);
    once overdue, minus the working days since the due day, up to and including today.
    None for a closed case. ``overdue``: open and past its due time.
    """

    due_day: str
    working_days_left: int | None
    overdue: bool


def _days(first: date, last: date, calendar: WorkCalendar) -> int:
    """Working days in ``[first, last]`` (a day of an unknown year: Monday to Friday)."""
    n, d = 0, first
    while d <= last:
        known = calendar.is_workday(d)
        if known if known is not None else d.isoweekday() <= 5:
            n += 1
        d += timedelta(days=1)
    return n


def clock(
    now_ms: int, status: str, due_ms: int, tz: str, calendar: WorkCalendar | None = None
) -> Clock:
    """The case's clock at ``now_ms`` in the centre's time zone ``tz``.

    >>> from datetime import datetime
    >>> from zoneinfo import ZoneInfo
    >>> sh = ZoneInfo("Asia/Shanghai")
    >>> at = lambda *a: int(datetime(*a, tzinfo=sh).timestamp() * 1000)
    >>> due = at(2026, 12, 21, 23, 59, 59, 999_000)  # a Monday
    >>> clock(at(2026, 12, 17, 10), "open", due, "Asia/Shanghai")  # a Thursday
    Clock(due_day='2026-12-21', working_days_left=2, overdue=False)
    >>> clock(at(2026, 12, 23, 10), "open", due, "Asia/Shanghai")
    Clock(due_day='2026-12-21', working_days_left=-2, overdue=True)
    """
    cal = calendar or default_calendar()
    zone = ZoneInfo(tz)
    due_day = datetime.fromtimestamp(due_ms / 1000, zone).date()
    today = datetime.fromtimestamp(now_ms / 1000, zone).date()
    overdue = status == "open" and due_ms < now_ms
    left: int | None = None
    if status == "open":
        if today <= due_day:
            left = _days(today + timedelta(days=1), due_day, cal)
        else:
            left = -_days(due_day + timedelta(days=1), today, cal)
    return Clock(due_day.isoformat(), left, overdue)
