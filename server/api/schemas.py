"""Response models of the HTTP API: what every route in ``routes.py`` answers.

They are the API's contract (``/openapi.json``): closed (``extra="forbid"``), so a key a
read model adds without a field here answers 500 in the tests instead of reaching
clients undocumented, and their field order is the read models' key order, so the JSON
is the same bytes it was before the routes were typed.

Conventions (as in the read models): times are UTC epoch milliseconds (``*_ms``),
durations say their unit in the name, rates are fractions 0..1 rounded to 4 places and
null when there is nothing to divide by (never a misleading 0 or 1).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from agent.protocol import Rating
from server.metrics.measures import GroupBy, Measures

#: A JSON object as stored (a message payload, an alert's detail, a device document).
JsonObject = dict[str, JsonValue]

Rate = Annotated[
    float | None,
    Field(ge=0, le=1, description="A fraction 0..1; null when there is no denominator."),
]
TimeMs = Annotated[int, Field(description="UTC epoch milliseconds.")]
Result = Literal["pass", "fail", "insufficient_data"]


class Out(BaseModel):
    """Base of every response: closed, so the document lists every key a client gets."""

    model_config = ConfigDict(extra="forbid")


# ----------------------------------------------------------------- units, hall, fleet


class UnitOut(Out):
    site: str = Field(description="The centre's slug.")
    name: str
    district: str
    unit_kind: Literal["district_centre", "branch_centre", "community_centre"]
    timezone: str = Field(description="IANA time zone of the centre's local days.")


class HallTile(Out):
    """One window of a centre with today's figures (the centre's local day)."""

    site: str
    window: str
    label: str
    role: Literal["front_desk", "comprehensive", "help_desk"]
    online: bool
    last_seen_ms: TimeMs | None = Field(description="Last state or health message, UTC ms.")
    availability_ms: TimeMs | None = Field(description="Last online/offline change, UTC ms.")
    state: JsonObject | None = Field(
        description="The window's last WindowState message (agent/protocol.py); null before one."
    )
    clerk_id: str | None = Field(description="The clerk signed in now; null when nobody is.")
    sessions_today: int
    stand_rate_today: Rate
    smile_rate_today: Rate
    good_rate_today: Rate


class WindowOut(Out):
    """A terminal as the store knows it, with its centre's name."""

    site: str
    window: str
    label: str
    role: Literal["front_desk", "comprehensive", "help_desk"]
    online: bool
    availability_ms: TimeMs | None = Field(description="Last online/offline change, UTC ms.")
    last_seen_ms: TimeMs | None = Field(description="Last state or health message, UTC ms.")
    state: JsonObject | None = Field(description="The last WindowState message; null before one.")
    health: JsonObject | None = Field(description="The last Health message; null before one.")
    max_seq: int = Field(description="The highest device sequence number received.")
    boot_id: str | None = Field(description="The terminal's current boot (UUID).")
    site_name: str


class FleetRow(Out):
    """A terminal's health: the fields of its last Health message, null before one."""

    site: str
    site_name: str
    window: str
    label: str
    online: bool
    last_seen_ms: TimeMs | None
    max_seq: int = Field(description="The highest device sequence number received.")
    fps: float | None = Field(description="Camera frames analysed per second.")
    inference_ms: float | None = Field(description="Model inference time per frame, ms.")
    cpu_temp_c: float | None = Field(description="CPU temperature, °C.")
    load1: float | None = Field(description="One-minute load average.")
    outbox_depth: int | None = Field(description="Events waiting on the terminal to be sent.")
    outbox_oldest_age_s: float | None = Field(
        description="Age of the oldest unsent event, seconds."
    )
    dropped: int | None = Field(description="Events dropped by the outbox cap since boot.")
    model_version: str | None
    config_version: str | None
    uptime_s: int | None = Field(description="Seconds since the terminal's agent started.")
    health_ms: TimeMs | None = Field(description="When the health message was taken, UTC ms.")


class GapOut(Out):
    """Device sequence numbers never received, ``from_seq``..``to_seq`` inclusive."""

    site: str
    window: str
    from_seq: int
    to_seq: int


class EventOut(Out):
    """A stored event; ``payload`` is the event message as the terminal sent it."""

    event_id: str
    site: str
    window: str
    seq: int = Field(description="The device's sequence number.")
    boot_id: str
    ts_ms: TimeMs = Field(description="When it happened, on the terminal's clock, UTC ms.")
    received_ms: TimeMs = Field(description="When the aggregator received it, UTC ms.")
    kind: str = Field(description="The message kind, e.g. session_summary, evaluated, away.")
    session_id: str | None
    historical: bool = Field(description="Sent late from the terminal's outbox backlog.")
    payload: JsonObject = Field(description="The event message (agent/protocol.py) as JSON.")


class StatsOut(Out):
    events: int = Field(description="Stored events in your units.")
    rejected: dict[str, int] | None = Field(
        description="Refused messages by reason, city-wide principals only (null otherwise)."
    )


# ----------------------------------------------------------------- alerts, audit, changes


class AlertOut(Out):
    alert_id: str = Field(description="The event id, or offline-<site>-<window>-<ms>.")
    site: str
    window: str
    kind: str = Field(
        description="e.g. away_without_sign, conduct, bad_review, offline, fault, "
        "sign_while_present, case_overdue, terminal_silent."
    )
    ts_ms: TimeMs
    detail: JsonObject = Field(description="What happened; its keys depend on the kind.")
    acked_by: str | None
    acked_ms: TimeMs | None
    note: str | None = Field(description="The acknowledgement's note.")


class AuditEntry(Out):
    id: int
    ts_ms: TimeMs
    username: str = Field(description="Who acted (a user, or a service token's name).")
    action: str
    target: str | None
    detail: JsonValue = Field(description="What changed (never a password or token value).")
    site: str | None = Field(description="The unit it concerns; null for accounts and tokens.")


class Acknowledged(Out):
    acknowledged: bool


class Closed(Out):
    closed: bool


class ClerkRef(Out):
    clerk_id: str


class Transferred(Out):
    clerk_id: str
    from_: str = Field(alias="from", description="The centre the clerk left.")
    to: str = Field(description="The centre the clerk moved to.")


class KpisStored(Out):
    day: date


# ----------------------------------------------------------------- measures


class RatingCounts(Out):
    """Evaluations per level of the 5-level scale (suspect presses not counted)."""

    very_satisfied: int
    satisfied: int
    basically_satisfied: int
    dissatisfied: int
    very_dissatisfied: int


class MeasuresOut(Out):
    """``server.metrics.measures.Measures``: compliance and satisfaction of a scope."""

    sessions: int
    stand_on_call_rate: Rate
    smile_at_greeting_rate: Rate
    farewell_stand_rate: Rate
    see_off_rate: Rate = Field(description="Stood to see off for at least 3 s; 0..1 or null.")
    too_broad_smiles: int
    evaluation_coverage: Rate = Field(description="Sessions with an evaluation; 0..1 or null.")
    ratings: RatingCounts
    evaluations: int = Field(description="Evaluations counted (suspect presses excluded).")
    good_review_rate: Rate = Field(description="Good (satisfied or better) / evaluations.")
    bad_reviews: int
    suspect_presses: int = Field(description="Evaluations set aside as suspect.")
    away_without_sign_min: float = Field(description="Minutes away without the sign up.")
    away_violations: int
    open_cases: int
    overdue_cases: int

    @classmethod
    def of(cls, m: Measures) -> MeasuresOut:
        return cls.model_validate(m.as_dict())


class MeasuresResponse(Out):
    period: str
    groups: dict[str, MeasuresOut] = Field(
        description='By group key (site/window, clerk id, site, district); "all" ungrouped.'
    )


class CompareResponse(Out):
    period: str
    by: GroupBy
    groups: dict[str, MeasuresOut]


class CallStep(Out):
    step: Literal["call"]
    at_ms: TimeMs


class StoodStep(Out):
    step: Literal["stood"]
    ok: bool
    after_ms: int | None = Field(description="Milliseconds after the call.")


class SmiledStep(Out):
    step: Literal["smiled"]
    ok: bool
    after_ms: int | None = Field(description="Milliseconds after the call.")
    too_broad: bool


class EvaluatedStep(Out):
    step: Literal["evaluated"]
    ok: bool
    rating: Rating | None


class FarewellStep(Out):
    step: Literal["farewell"]
    ok: bool
    see_off_ms: int | None = Field(description="How long the clerk stood to see off, ms.")


Step = Annotated[
    CallStep | StoodStep | SmiledStep | EvaluatedStep | FarewellStep,
    Field(discriminator="step"),
]


class SessionOut(Out):
    session_id: str
    event_id: str
    site: str
    window: str
    clerk_id: str | None
    opened_ms: TimeMs
    closed_ms: TimeMs
    closed_by: Literal["evaluation", "finish_key", "next_call", "timeout", "shutdown"]
    rating: Rating | None
    steps: list[Step] = Field(description="call, stood, smiled, evaluated, farewell.")


class TrendDay(Out):
    day: date = Field(description="The local day.")
    sessions: int
    stand_rate: Rate
    smile_rate: Rate
    farewell_rate: Rate
    evaluations: int
    good_rate: Rate
    bad_reviews: int


class HeatCell(Out):
    weekday: int = Field(ge=1, le=7, description="ISO weekday, 1 = Monday.")
    hour: int = Field(ge=0, le=23, description="Local hour.")
    sessions: int
    compliance: Rate = Field(description="Sessions with stand and smile at the call; 0..1.")


class RankingRow(Out):
    clerk_id: str
    sessions: int
    exemplary: int = Field(description="Stood, smiled (not too broad), saw off, not rated badly.")
    rate: float = Field(ge=0, le=1, description="exemplary / sessions.")
    score: float = Field(ge=0, le=1, description="Wilson lower bound of the exemplary rate.")
    eligible: bool = Field(description="Enough sessions (min_sessions) to be ranked.")
    rank: int | None = Field(description="1 = best; null when not eligible.")


# ----------------------------------------------------------------- assessment


class Failure(Out):
    criterion: Literal[
        "stand_on_call_rate",
        "smile_at_greeting_rate",
        "farewell_stand_rate",
        "evaluation_coverage",
        "good_review_rate",
        "away_without_sign_min",
        "overdue_cases",
    ]
    value: int | float = Field(description="The month's value: a rate 0..1, minutes or a count.")
    threshold: int | float = Field(description="The limit it missed, in the same unit.")
    evidence: list[str] = Field(description="Event ids behind the failure (capped).")


class VerdictOut(Out):
    clerk_id: str
    month: str
    result: Result
    measures: MeasuresOut
    failures: list[Failure]


ProbationStatus = Literal[
    "in_good_standing",
    "probation_next_month",
    "on_probation",
    "probation_passed",
    "replace_recommended",
]


class ProbationOut(Out):
    clerk_id: str
    month: str
    status: ProbationStatus
    previous: Result = Field(description="The previous month's result.")
    current: Result


class AssessmentRow(Out):
    clerk_id: str
    name: str
    site: str
    result: Result
    failures: list[Failure]
    probation: ProbationStatus
    measures: MeasuresOut


# ----------------------------------------------------------------- cases, clerks, KPIs


class CaseOut(Out):
    case_id: str = Field(description="The bad evaluation's event id.")
    site: str
    window: str
    clerk_id: str | None
    session_id: str | None
    rating: Rating
    opened_ms: TimeMs
    due_ms: TimeMs = Field(description="15 working days after it opened, UTC ms.")
    status: Literal["open", "closed"]
    closed_ms: TimeMs | None = Field(description="When it was rectified, UTC ms.")
    note: str | None


class ClerkOut(Out):
    clerk_id: str
    name: str
    site: str


class HelpdeskOut(Out):
    requests: int
    first_response_rate: Rate = Field(description="Answered within a minute / requests.")
    resolved_rate: Rate
    meets_standard: bool | None = Field(
        description="Every request answered within a minute and 90% resolved; null without any."
    )


# ----------------------------------------------------------------- health and the page's facts


class HealthOut(Out):
    """``/healthz``: the ingest's fields only when the server runs one (``mqtt`` set)."""

    status: Literal["ok", "unhealthy"]
    reason: str | None = Field(None, description='Why unhealthy; "" when healthy.')
    waiting: int | None = Field(None, description="Messages received, not yet stored.")
    last_commit_ms: TimeMs | None = Field(None, description="The ingest's last commit.")
    dead_letters: int | None = Field(None, description="Messages the store refused, set aside.")
    write_failures: int | None = None
    last_error: str | None = None
    ingest_connected: bool = Field(description="Connected to the MQTT broker.")


class RatingLevel(Out):
    code: Rating
    zh: str = Field(description="The standard's Chinese label.")
    bad: bool = Field(description="A bad review: opens a case.")


class MetaOut(Out):
    timezone: str = Field(description="IANA time zone of local days and the dashboard's clock.")
    ratings: list[RatingLevel] = Field(description="The 5-level scale, best first.")
    version: str = Field(description="The aggregator's version.")


class ErrorOut(Out):
    """Every refusal: a message, or (422 from request validation) FastAPI's list of what
    was wrong with which field."""

    detail: str | list[dict[str, JsonValue]] = Field(
        description="Why the request was refused; a list of field errors for a malformed request."
    )


def _error(text: str) -> dict[str, Any]:
    return {"model": ErrorOut, "description": text}


#: The refusals any route may answer (declared once, app-wide, so /openapi.json lists
#: them for every operation).
ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("A control character in the URL."),
    401: _error("Not signed in, or an unknown or revoked token."),
    403: _error("Outside your units, your role or your token's grants; or no CSRF token."),
    404: _error("No such object within your units."),
    409: _error("Conflicts with the current state (already closed, already in use, ...)."),
    422: _error("The request's values are not valid."),
    429: _error("Too many failed sign-ins: locked for a while (see Retry-After)."),
}
