"""What newly stored events cause: measure rows, alerts and bad-review cases.

``derive(events, timezones, clerk_at)`` is pure. It takes the events the store has just
inserted, the sites' time zones and who staffed which window when (a callable over the
roster), and returns the rows to insert, at most one per table key. The store writes
them in the ingest transaction and sums only the rows it actually inserted into the
rollups, so an event (or a second summary of one session, or the closing record of an
absence already alerted on) never counts twice.

>>> import uuid
>>> from agent.protocol import Evaluated, Rating
>>> bad = Evaluated(event_id=uuid.UUID(int=1), site="qingpu", window="w01", seq=1,
...                 boot_id=uuid.UUID(int=2), ts_ms=1_793_584_800_000,
...                 rating=Rating.DISSATISFIED)
>>> got = derive([bad], {"qingpu": "Asia/Shanghai"}, lambda site, window, t_ms: "c-li")
>>> [a["kind"] for a in got.alerts], got.cases[0]["clerk_id"]
(['bad_review'], 'c-li')

What each event causes
    * ``SessionSummary``: a ``sessions`` row (the clerk signed in when it opened); a
      ``conduct`` alert naming the misses among stand on call, smile at greeting and
      stand at farewell, if any. A verdict the summary says was not observed (contract
      version 3) is never a miss: its column ``<verdict>_unobserved`` is set instead.
    * ``Evaluated``: an ``evaluations`` row (suspect presses too: they are kept, not
      counted). A bad rating that is not suspect raises ``bad_review`` and opens a case
      due at the end of the ``CASE_WORKING_DAYS``-th official working day in the site's
      zone (``server.workdays``: holidays and adjusted working weekends count as the
      State Council's notice says; ``due_provisional`` when a year on the way had no
      official calendar and was counted Monday to Friday).
    * ``Away``: the closing record (``ended_ms`` set) is an ``away_periods`` row (the
      clerk signed in when the absence began). A violation raises
      ``away_without_sign``, keyed by the absence's start, so its open and closing
      records raise one alert.
    * ``Fault`` not cleared: ``fault``. ``SignWhilePresent``: ``sign_while_present``.
    * Anything else causes nothing (``projected`` drops it before any lookup).

Alert ids are the event id unless said otherwise, so a replay raises nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias, TypeVar

from agent.protocol import Away, Evaluated, EventHeader, Fault, SessionSummary, SignWhilePresent
from server.policy.rows import (
    UNOBSERVED,
    AlertKind,
    AlertRow,
    AwayRow,
    CaseRow,
    EvaluationRow,
    SessionRow,
)
from server.workdays import Due, WorkCalendar, default_calendar

#: A bad review must be rectified within this many working days (the standard's clock).
CASE_WORKING_DAYS: Final = 15
#: The zone of a site the store does not know (every registered site names its own).
DEFAULT_TIMEZONE: Final = "Asia/Shanghai"

#: Who was signed in at ``(site, window)`` at ``t_ms``, or None.
ClerkAt: TypeAlias = Callable[[str, str, int], "str | None"]

_PROJECTED: Final = (SessionSummary, Evaluated, Away, Fault, SignWhilePresent)
_CONDUCT: Final = (
    ("stand_on_call", "stood_on_call"),
    ("smile_at_greeting", "smiled_at_greeting"),
    ("stand_at_farewell", "stood_at_farewell"),
)


@dataclass(frozen=True, slots=True)
class Derived:
    """The rows a batch of new events causes, each list unique by its table's key."""

    sessions: list[SessionRow] = field(default_factory=list)
    evaluations: list[EvaluationRow] = field(default_factory=list)
    away_periods: list[AwayRow] = field(default_factory=list)
    cases: list[CaseRow] = field(default_factory=list)
    alerts: list[AlertRow] = field(default_factory=list)


def projected(events: Iterable[EventHeader]) -> list[EventHeader]:
    """The events that feed a measure table or an alert; the rest cause nothing."""
    return [e for e in events if isinstance(e, _PROJECTED)]


def derive(
    events: Iterable[EventHeader],
    timezones: Mapping[str, str],
    clerk_at: ClerkAt,
    *,
    calendar: WorkCalendar | None = None,
) -> Derived:
    """The rows ``events`` cause, in event order, the first of each key kept (two
    summaries of one session, or the open and closing records of one absence, give one
    row). Cases fall due by ``calendar`` (None: ``server.workdays.default_calendar()``)."""
    sess: list[SessionRow] = []
    evals: list[EvaluationRow] = []
    aways: list[AwayRow] = []
    new_cases: list[CaseRow] = []
    new_alerts: list[AlertRow] = []
    for ev in projected(events):
        new_alerts.extend(alerts_of(ev))
        if isinstance(ev, SessionSummary):
            sess.append(session_row(ev, clerk_at(ev.site, ev.window, ev.opened_ms)))
        elif isinstance(ev, Evaluated):
            clerk = clerk_at(ev.site, ev.window, ev.ts_ms)
            evals.append(evaluation_row(ev, clerk))
            tz = timezones.get(ev.site, DEFAULT_TIMEZONE)
            case = case_of(ev, clerk, tz, calendar)
            if case is not None:
                new_cases.append(case)
        elif isinstance(ev, Away) and ev.ended_ms is not None:
            aways.append(away_row(ev, clerk_at(ev.site, ev.window, ev.started_ms)))
    return Derived(
        sessions=_first_by(sess, "session_id"),
        evaluations=_first_by(evals, "event_id"),
        away_periods=_first_by(aways, "event_id"),
        cases=_first_by(new_cases, "case_id"),
        alerts=_first_by(new_alerts, "alert_id"),
    )


def alerts_of(ev: EventHeader) -> list[AlertRow]:
    """The alerts one event raises (none, or one)."""
    if isinstance(ev, SessionSummary):
        conduct = _CONDUCT[:2] if _reception(ev) else _CONDUCT
        unseen = not_observed(ev)
        misses = [name for name, attr in conduct if not getattr(ev, attr) and not unseen[attr]]
        if misses:
            return [_alert(ev, "conduct", {"misses": misses, "session_id": str(ev.session_id)})]
    elif isinstance(ev, Evaluated) and ev.rating.is_bad and not ev.suspect:
        return [_alert(ev, "bad_review", {"rating": ev.rating.value})]
    elif isinstance(ev, Away) and ev.violation:
        detail = {"started_ms": ev.started_ms, "ended_ms": ev.ended_ms}
        return [_alert(ev, "away_without_sign", detail, away_alert_id(ev))]
    elif isinstance(ev, Fault) and not ev.cleared:
        return [_alert(ev, "fault", {"code": ev.code, "detail": ev.detail})]
    elif isinstance(ev, SignWhilePresent):
        return [_alert(ev, "sign_while_present", {"duration_ms": ev.duration_ms})]
    return []


def away_alert_id(ev: Away) -> str:
    """One absence, one alert: its open and closing records share ``started_ms``."""
    return f"away-{ev.site}-{ev.window}-{ev.started_ms}"


def case_due(opened_ms: int, tz: str, calendar: WorkCalendar | None = None) -> Due:
    """When a case opened at ``opened_ms`` falls due: the end (23:59:59.999 in ``tz``) of
    the ``CASE_WORKING_DAYS``-th official working day after its opening day, and whether
    that count is provisional (a day on the way of a year no calendar knows)."""
    return (calendar or default_calendar()).add_working_days(opened_ms, CASE_WORKING_DAYS, tz)


def case_of(
    ev: Evaluated, clerk_id: str | None, tz: str, calendar: WorkCalendar | None = None
) -> CaseRow | None:
    """The rectification case a review opens: bad and not suspect; keyed by the event."""
    if not ev.rating.is_bad or ev.suspect:
        return None
    due = case_due(ev.ts_ms, tz, calendar)
    return {
        "case_id": str(ev.event_id),
        "site": ev.site,
        "window": ev.window,
        "clerk_id": clerk_id,
        "session_id": str(ev.session_id) if ev.session_id else None,
        "rating": ev.rating.value,
        "opened_ms": ev.ts_ms,
        "due_ms": due.ms,
        "due_provisional": due.provisional,
        "status": "open",
    }


def offline_alert(site: str, window: str, at_ms: int) -> AlertRow:
    """A terminal reported offline (its last will, or a clean stop) at ``at_ms``."""
    return {
        "alert_id": f"offline-{site}-{window}-{at_ms}",
        "site": site,
        "window": window,
        "kind": "offline",
        "ts_ms": at_ms,
        "detail": {},
    }


def session_row(ev: SessionSummary, clerk_id: str | None) -> SessionRow:
    return {
        "session_id": str(ev.session_id or ev.event_id),
        "event_id": str(ev.event_id),
        "site": ev.site,
        "window": ev.window,
        "clerk_id": clerk_id,
        "opened_ms": ev.opened_ms,
        "closed_ms": ev.closed_ms,
        "closed_by": ev.closed_by,
        "stood_on_call": ev.stood_on_call,
        "stand_after_ms": ev.stand_after_ms,
        "smiled_at_greeting": ev.smiled_at_greeting,
        "smile_after_ms": ev.smile_after_ms,
        "smile_peak": ev.smile_peak,
        "smile_too_broad": ev.smile_too_broad,
        # a front desk's reception (greeted_first is set) has no farewell to judge
        "stood_at_farewell": None if _reception(ev) else ev.stood_at_farewell,
        "see_off_ms": ev.see_off_ms,
        "rating": ev.rating.value if ev.rating else None,
        "priority": ev.priority,
        # version 2 (a version 1 summary has none of them)
        **{name: getattr(ev, name, None) for name in V2_SESSION_FIELDS},  # type: ignore[typeddict-item]
        # version 3 (False and None from older summaries: everything was observed)
        **{UNOBSERVED[name]: unseen for name, unseen in not_observed(ev).items()},
        "observed_share": getattr(ev, "observed_share", None),
    }


def not_observed(ev: SessionSummary) -> dict[str, bool]:
    """Per verdict (``agent.protocol.VERDICTS``): was it *not observed*? Only a verdict
    that is judged in this session and whose field says False can be: a reception has
    no farewell, a summary without the farewell smile or the greeting first judges
    neither, and a True (the stand or smile happened) passes whatever else was unseen."""
    named = set(getattr(ev, "not_observed", None) or ())
    judged = {
        "stood_on_call": True,
        "smiled_at_greeting": True,
        "stood_at_farewell": not _reception(ev),
        "smiled_at_farewell": getattr(ev, "smiled_at_farewell", None) is not None,
        "greeted_first": _reception(ev),
    }
    return {
        name: name in named and judged[name] and getattr(ev, name, None) is False
        for name in UNOBSERVED
    }


def _reception(ev: SessionSummary) -> bool:
    """A front desk's reception (F-RECEIVE): judged on stand and smile, no farewell."""
    return getattr(ev, "greeted_first", None) is not None


#: The summary's fields that version 2 added, stored as they come (None from version 1).
V2_SESSION_FIELDS: Final = (
    "source",
    "ticket",
    "call_id",
    "matter_code",
    "matter_name",
    "priority_category",
    "case_number",
    "smiled_at_farewell",
    "farewell_smile_after_ms",
    "greeted_first",
)


def evaluation_row(ev: Evaluated, clerk_id: str | None) -> EvaluationRow:
    return {
        "event_id": str(ev.event_id),
        "site": ev.site,
        "window": ev.window,
        "clerk_id": clerk_id,
        "session_id": str(ev.session_id) if ev.session_id else None,
        "ts_ms": ev.ts_ms,
        "rating": ev.rating.value,
        "suspect": ev.suspect,
        "suspect_reason": ev.suspect_reason,
    }


def away_row(ev: Away, clerk_id: str | None) -> AwayRow:
    if ev.ended_ms is None:
        raise ValueError("an absence still open has no away_periods row")
    return {
        "event_id": str(ev.event_id),
        "site": ev.site,
        "window": ev.window,
        "clerk_id": clerk_id,
        "started_ms": ev.started_ms,
        "ended_ms": ev.ended_ms,
        "with_sign": ev.with_sign,
        "violation": ev.violation,
    }


def _alert(
    ev: EventHeader, kind: AlertKind, detail: dict[str, Any], alert_id: str = ""
) -> AlertRow:
    return {
        "alert_id": alert_id or str(ev.event_id),
        "site": ev.site,
        "window": ev.window,
        "kind": kind,
        "ts_ms": ev.ts_ms,
        "detail": detail,
    }


_Row = TypeVar("_Row", SessionRow, EvaluationRow, AwayRow, CaseRow, AlertRow)


def _first_by(rows: Sequence[_Row], key: str) -> list[_Row]:
    firsts: dict[Any, _Row] = {}
    for r in rows:
        firsts.setdefault(r[key], r)  # type: ignore[literal-required]
    return list(firsts.values())
