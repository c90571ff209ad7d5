"""The rows the policy hands the store: one ``TypedDict`` per table, keyed by column.

Plain data, so a test compares them with ``==`` and the store inserts them as they are.
"""

from __future__ import annotations

from typing import Any, Final, Literal, TypeAlias, TypedDict

from agent.protocol import VERDICTS

#: Every kind of alert there is; the dashboard names each one (server/web/static/i18n.js).
AlertKind: TypeAlias = Literal[
    "conduct",
    "bad_review",
    "away_without_sign",
    "fault",
    "sign_while_present",
    "offline",
    "case_overdue",
    "terminal_silent",
    "not_observed",
]


#: Contract version 3: per verdict of a session (``agent.protocol.VERDICTS``), the
#: ``sessions`` column that says it was not observed.
UNOBSERVED: Final[dict[str, str]] = {v: f"{v}_unobserved" for v in VERDICTS}


class SessionRow(TypedDict):
    session_id: str
    event_id: str
    site: str
    window: str
    clerk_id: str | None
    opened_ms: int
    closed_ms: int
    closed_by: str
    stood_on_call: bool
    stand_after_ms: int | None
    smiled_at_greeting: bool
    smile_after_ms: int | None
    smile_peak: float | None
    smile_too_broad: bool
    stood_at_farewell: bool | None  #: None: no farewell (a front desk's reception)
    see_off_ms: int | None
    rating: str | None
    priority: bool
    # contract version 2; None from a version 1 summary
    source: str | None
    ticket: str | None
    call_id: str | None
    matter_code: str | None
    matter_name: str | None
    priority_category: str | None
    case_number: str | None
    smiled_at_farewell: bool | None
    farewell_smile_after_ms: int | None
    greeted_first: bool | None
    # contract version 3: the verdicts the camera could not see (their fields above say
    # False, which then means "not observed", never "did not"); False from versions 1-2
    stood_on_call_unobserved: bool
    smiled_at_greeting_unobserved: bool
    stood_at_farewell_unobserved: bool
    smiled_at_farewell_unobserved: bool
    greeted_first_unobserved: bool
    observed_share: float | None


class EvaluationRow(TypedDict):
    event_id: str
    site: str
    window: str
    clerk_id: str | None
    session_id: str | None
    ts_ms: int
    rating: str
    suspect: bool
    suspect_reason: str | None


class AwayRow(TypedDict):
    event_id: str
    site: str
    window: str
    clerk_id: str | None
    started_ms: int
    ended_ms: int
    with_sign: bool
    violation: bool


class CaseRow(TypedDict):
    case_id: str
    site: str
    window: str
    clerk_id: str | None
    session_id: str | None
    rating: str
    opened_ms: int
    due_ms: int
    #: ``due_ms`` counted Monday to Friday for a year no official calendar knows.
    due_provisional: bool
    status: Literal["open"]


class AlertRow(TypedDict):
    alert_id: str
    site: str
    window: str
    kind: AlertKind
    ts_ms: int
    detail: dict[str, Any]
