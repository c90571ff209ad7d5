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
from server.metrics.assessment import PassThresholds
from server.metrics.measures import GroupBy, Measures

#: A JSON object as stored (a message payload, an alert's detail, a device document).
JsonObject = dict[str, JsonValue]

Rate = Annotated[
    float | None,
    Field(ge=0, le=1, description="A fraction 0..1; null when there is no denominator."),
]
TimeMs = Annotated[int, Field(description="UTC epoch milliseconds.")]
Result = Literal["pass", "fail", "insufficient_data"]

# Fields many models share, described once (a field may still say more of its own).
SiteSlug = Annotated[str, Field(description="The centre's slug (as in /api/units).")]
WindowSlug = Annotated[str, Field(description="The window's slug within its centre.")]
WindowLabel = Annotated[str, Field(description="The window's label shown to citizens.")]
WindowRole = Annotated[
    Literal["front_desk", "comprehensive", "help_desk"],
    Field(description="front_desk 总服务台, comprehensive 综合窗口 or help_desk 帮办窗口."),
]
ONLINE = "As the terminal's last online/offline message said; false before one."
LAST_SEEN = (
    "When an event, state or health message from the terminal last arrived (server "
    "clock), UTC ms; null before any."
)
AVAILABILITY = "When its last online/offline message arrived, UTC ms; null before one."
MAX_SEQ = "The highest device sequence number received; 0 before any event."
PERIOD = (
    "The period as asked: YYYY-MM-DD, YYYY-MM or YYYY-Qn, in local days of the server's "
    "time zone (/api/meta)."
)
GROUPS = 'By group key: "<site>/<window>", clerk id, site slug or district name as grouped.'
RESULT = (
    "pass or fail against the thresholds; insufficient_data below min_sessions sessions "
    "(no criterion checked), or when no conduct criterion (stand, smile, farewell) had "
    "min_sessions sessions where its verdict was observed and nothing failed."
)
NOT_OBSERVED = (
    "Not observed: the camera could not see what this verdict needed (mouth covered, "
    "face turned or lost with the clerk at the seat, view blocked or badly lit); never a "
    "failure, and out of the verdict's rate."
)
OBSERVED_OF = " / sessions where that verdict was observed (not-observed ones left out)."
FAILURES = "The criteria the month missed; empty unless the result is fail."
CRITERIA = "Every criterion as judged: value, threshold, status (and observed sessions)."
CLERK_MEASURES = "The clerk's measures for the month."


class Out(BaseModel):
    """Base of every response: closed, so the document lists every key a client gets."""

    model_config = ConfigDict(extra="forbid")


# ----------------------------------------------------------------- units, hall, fleet


class UnitOut(Out):
    """A service centre as its site configuration declares it."""

    site: str = Field(description="The centre's slug.")
    name: str = Field(description="The centre's display name.")
    district: str = Field(description="The district it belongs to.")
    unit_kind: Literal["district_centre", "branch_centre", "community_centre"] = Field(
        description="Its level in the rollout hierarchy (A-ROLLOUT)."
    )
    timezone: str = Field(
        description="IANA time zone of the centre: its daily rollups and cases' due times."
    )


class HallTile(Out):
    """One window of a centre with today's figures (today: the server's time zone)."""

    site: SiteSlug
    window: WindowSlug
    label: WindowLabel
    role: WindowRole
    online: bool = Field(description=ONLINE)
    last_seen_ms: TimeMs | None = Field(description=LAST_SEEN)
    availability_ms: TimeMs | None = Field(description=AVAILABILITY)
    state: JsonObject | None = Field(
        description="The window's last WindowState message (agent/protocol.py); null before one."
    )
    clerk_id: str | None = Field(
        description="The clerk signed in at the window now (POST /api/roster); null when nobody is."
    )
    sessions_today: int = Field(description="Sessions opened today.")
    stand_rate_today: Rate = Field(
        description="Today's sessions where the clerk stood on the call, of those where it "
        "was observed; null without any."
    )
    smile_rate_today: Rate = Field(
        description="Today's sessions with a smile at the greeting, of those where it was "
        "observed; null without any."
    )
    good_rate_today: Rate = Field(
        description="Today's good evaluations (basically satisfied or better) / evaluations; "
        "null without any."
    )


class WindowOut(Out):
    """A terminal as the store knows it, with its centre's name."""

    site: SiteSlug
    window: WindowSlug
    label: WindowLabel
    role: WindowRole
    online: bool = Field(description=ONLINE)
    availability_ms: TimeMs | None = Field(description=AVAILABILITY)
    last_seen_ms: TimeMs | None = Field(description=LAST_SEEN)
    state: JsonObject | None = Field(description="The last WindowState message; null before one.")
    health: JsonObject | None = Field(description="The last Health message; null before one.")
    max_seq: int = Field(description=MAX_SEQ)
    boot_id: str | None = Field(
        description="Not recorded by the store (always null): each event carries its boot_id."
    )
    site_name: str = Field(description="The centre's display name.")


class FleetRow(Out):
    """A terminal's health: the fields of its last Health message, null before one."""

    site: SiteSlug
    site_name: str = Field(description="The centre's display name.")
    window: WindowSlug
    label: WindowLabel
    online: bool = Field(description=ONLINE)
    last_seen_ms: TimeMs | None = Field(description=LAST_SEEN)
    max_seq: int = Field(description=MAX_SEQ)
    fps: float | None = Field(description="Camera frames analysed per second (a 5 s average).")
    inference_ms: float | None = Field(
        description="Vision processing time of the latest frame, ms (0 when scripted)."
    )
    cpu_temp_c: float | None = Field(description="CPU temperature, °C; null where unreadable.")
    load1: float | None = Field(description="One-minute load average.")
    outbox_depth: int | None = Field(
        description="Events stored on the terminal, not yet acknowledged by the broker."
    )
    outbox_oldest_age_s: float | None = Field(
        description="Age of the oldest unsent event, seconds; null when the outbox is empty."
    )
    dropped: int | None = Field(
        description="Events the outbox's disk cap has dropped, in all (kept across reboots)."
    )
    model_version: str | None = Field(
        description="The vision models' version (their manifest); the perception kind when "
        "simulated."
    )
    config_version: str | None = Field(
        description="The configuration the agent runs: <window>-<WW_CONFIG_VERSION>."
    )
    settings_serial: int | None = Field(
        None, description="The settings bundle the terminal applied (null: window file only)."
    )
    settings_error: str | None = Field(
        None, description="Why the terminal refused or rolled back its last settings bundle."
    )
    uptime_s: int | None = Field(description="Seconds since the terminal's agent started.")
    health_ms: TimeMs | None = Field(
        description="When the terminal took the health report (its clock), UTC ms."
    )


class GapOut(Out):
    """Device sequence numbers never received, ``from_seq``..``to_seq`` inclusive."""

    site: SiteSlug
    window: WindowSlug
    from_seq: int = Field(description="The first missing sequence number.")
    to_seq: int = Field(description="The last missing one (to_seq + 1 was received).")


class EventOut(Out):
    """A stored event; ``payload`` is the event message as the terminal sent it."""

    event_id: str = Field(description="The event's UUID, given by the terminal.")
    site: SiteSlug
    window: WindowSlug
    seq: int = Field(description="The device's sequence number.")
    boot_id: str = Field(description="The UUID of the agent run that made it (new each start).")
    ts_ms: TimeMs = Field(description="When it happened, on the terminal's clock, UTC ms.")
    received_ms: TimeMs = Field(description="When the aggregator received it, UTC ms.")
    kind: str = Field(
        description="The message kind: session_opened, stood_up, smiled, evaluated, "
        "session_summary, away, sign_while_present or fault."
    )
    session_id: str | None = Field(
        description="The service session it belongs to; null outside a session."
    )
    historical: bool = Field(description="Sent late from the terminal's outbox backlog.")
    payload: JsonObject = Field(
        description="The event message (agent/protocol.py) as validated, defaults filled in."
    )


class StatsOut(Out):
    events: int = Field(description="Stored events in your units.")
    rejected: dict[str, int] | None = Field(
        description="Refused messages by reason, city-wide principals only (null otherwise)."
    )


# ----------------------------------------------------------------- alerts, audit, changes


class AlertOut(Out):
    """Something that needs a person's attention, until acknowledged with a note."""

    alert_id: str = Field(
        description="The event id; away-<site>-<window>-<started_ms>, "
        "offline-<site>-<window>-<ms>, overdue-<case_id>, or a UUID for terminal_silent "
        "and not_observed."
    )
    site: SiteSlug
    window: WindowSlug
    kind: str = Field(
        description="One of away_without_sign, conduct, bad_review, offline, fault, "
        "sign_while_present, case_overdue, terminal_silent, not_observed (camera placement "
        "or lighting: too many of the window's sessions not observed)."
    )
    ts_ms: TimeMs = Field(
        description="When it happened: the event's time on the terminal; for offline the "
        "message's arrival, case_overdue the case's due time, terminal_silent when the "
        "silence limit passed, not_observed when the share was found too high."
    )
    detail: JsonObject = Field(
        description="What happened, by kind: conduct {misses, session_id}; bad_review "
        "{rating}; away_without_sign {started_ms, ended_ms}; fault {code, detail}; "
        "sign_while_present {duration_ms}; offline {}; case_overdue {case_id, due_ms, "
        "clerk_id, rating}; terminal_silent {last_heard_ms, silent_after_ms}; not_observed "
        "{sessions, not_observed, share, since_ms}."
    )
    acked_by: str | None = Field(description="Who acknowledged it; null while open.")
    acked_ms: TimeMs | None = Field(
        description="When it was acknowledged, UTC ms; null while open."
    )
    note: str | None = Field(description="The acknowledgement's note; null while open.")


class AuditEntry(Out):
    """One entry of the audit log: who did what to which object."""

    id: int = Field(description="The entry's number, increasing as entries are written.")
    ts_ms: TimeMs = Field(description="When it was done (server clock), UTC ms.")
    username: str = Field(description="Who acted: a user name, or token:<token_id>.")
    action: str = Field(
        description="e.g. login, ack_alert, close_case, add_clerk, transfer_clerk, helpdesk_kpis, "
        "export, user_add, token_use."
    )
    target: str | None = Field(
        description="What it was done to (an alert, case or clerk id, <site>/<window>, a "
        "user name, ...); null when nothing in particular."
    )
    detail: JsonValue = Field(
        description="What changed (never a password or token value); null when nothing more."
    )
    site: str | None = Field(
        description="The unit it concerns; null when none (accounts, tokens, sign-ins)."
    )


class Acknowledged(Out):
    acknowledged: bool = Field(description="Always true: the alert is acknowledged now.")


class Closed(Out):
    closed: bool = Field(description="Always true: the case is closed now.")


class ClerkRef(Out):
    clerk_id: str = Field(description="The clerk registered, renamed or signed in.")


class Transferred(Out):
    clerk_id: str = Field(description="The clerk moved.")
    from_: str = Field(alias="from", description="The centre the clerk left.")
    to: str = Field(description="The centre the clerk moved to.")


class KpisStored(Out):
    day: date = Field(description="The local day whose help-desk figures were stored.")


# ----------------------------------------------------------------- measures


class RatingCounts(Out):
    """Evaluations per level of the 5-level scale (suspect presses not counted)."""

    very_satisfied: int = Field(description="非常满意 evaluations.")
    satisfied: int = Field(description="满意 evaluations.")
    basically_satisfied: int = Field(description="基本满意 evaluations.")
    dissatisfied: int = Field(description="不满意 evaluations (bad reviews).")
    very_dissatisfied: int = Field(description="非常不满意 evaluations (bad reviews).")


class MeasuresOut(Out):
    """``server.metrics.measures.Measures``: compliance and satisfaction of a scope.

    Sessions count by their opening time, evaluations by theirs, absences by their start;
    the limits (by default: stand within 5 s, smile within 8 s) are the terminal's rules.
    """

    sessions: int = Field(description="Service sessions opened in the period.")
    stand_on_call_rate: Rate = Field(
        description="Sessions where the clerk stood within the limit after the call" + OBSERVED_OF
    )
    smile_at_greeting_rate: Rate = Field(
        description="Sessions where the clerk smiled within the greeting window" + OBSERVED_OF
    )
    farewell_stand_rate: Rate = Field(
        description="Sessions where the clerk stood at the farewell and did not sit down "
        "before the see-off time" + OBSERVED_OF
    )
    see_off_rate: Rate = Field(
        description="Sessions where the clerk stood to see off for at least 3 s / sessions "
        "where the farewell stand was observed."
    )
    too_broad_smiles: int = Field(description="Sessions with a smile beyond 'not too broad'.")
    evaluation_coverage: Rate = Field(description="Sessions with an evaluation / sessions.")
    ratings: RatingCounts = Field(description="Evaluations per level.")
    evaluations: int = Field(description="Evaluations counted (suspect presses excluded).")
    good_review_rate: Rate = Field(
        description="Good (basically satisfied or better) / evaluations."
    )
    bad_reviews: int = Field(description="Evaluations rated dissatisfied or very dissatisfied.")
    suspect_presses: int = Field(description="Evaluations set aside as suspect.")
    away_without_sign_min: float = Field(
        description="Minutes of absences that were violations (away without the sign up)."
    )
    away_violations: int = Field(description="Absences without the sign up (violations).")
    open_cases: int = Field(
        description="Bad-review cases opened before the period's end and still open now."
    )
    overdue_cases: int = Field(
        description="Open cases past their due time: now, or at the period's end for a "
        "period that is over."
    )
    priority_sessions: int = Field(
        description="H-PRIORITY: sessions of priority citizens (elderly, military, "
        "disabled, sick, pregnant, other), from the queue ticket."
    )
    priority_share: Rate = Field(description="Priority sessions / sessions.")
    priority_own_session_rate: Rate = Field(
        description="Of the priority sessions, those served to their own end (evaluation or "
        "finish key), not cut short by the next call; null without priority sessions."
    )
    farewell_smile_rate: Rate = Field(
        description="W-FAREWELL: smiled while seeing the citizen off, of the sessions whose "
        "terminal reports it (contract version 2) and where it was observed; null when none."
    )
    receptions: int = Field(
        description="F-RECEIVE: a front desk's receptions (a citizen walking up); they "
        "have no farewell and count in neither farewell rate."
    )
    greeted_first_rate: Rate = Field(
        description="Of the receptions where it was observed, those where the clerk stood "
        "and smiled within the limits of the approach; null without any."
    )
    stand_on_call_not_observed: int = Field(
        description="Sessions whose stand on call was not observed (contract version 3)."
    )
    smile_at_greeting_not_observed: int = Field(
        description="Sessions whose greeting smile was not observed."
    )
    farewell_stand_not_observed: int = Field(
        description="Sessions whose farewell stand was not observed."
    )
    farewell_smile_not_observed: int = Field(
        description="Sessions whose farewell smile was not observed."
    )
    greeted_first_not_observed: int = Field(
        description="Receptions whose greeting first was not observed."
    )
    not_observed_sessions: int = Field(
        description="Sessions with any verdict not observed. " + NOT_OBSERVED
    )
    not_observed_share: Rate = Field(
        description="not_observed_sessions / sessions: how well the cameras see (a high "
        "share is a placement or lighting problem, raised as a not_observed alert)."
    )

    @classmethod
    def of(cls, m: Measures) -> MeasuresOut:
        return cls.model_validate(m.as_dict())


class MeasuresResponse(Out):
    period: str = Field(description=PERIOD)
    groups: dict[str, MeasuresOut] = Field(
        description=GROUPS + ' Ungrouped, the one entry "all"; grouped by clerk, records '
        'without a clerk fall under "unattributed" (in no clerk\'s verdict).'
    )


class CompareResponse(Out):
    period: str = Field(description=PERIOD)
    by: GroupBy = Field(description="What the groups are.")
    groups: dict[str, MeasuresOut] = Field(
        description=GROUPS + ' Grouped by clerk, records without a clerk fall under "unattributed".'
    )


class CallStep(Out):
    step: Literal["call"] = Field(description="The number was called: the session opened.")
    at_ms: TimeMs = Field(description="When, on the terminal's clock (the session's opened_ms).")


class StoodStep(Out):
    step: Literal["stood"] = Field(description="The greeting stand.")
    ok: bool = Field(description="The clerk stood within the limit after the call.")
    after_ms: int | None = Field(
        description="Milliseconds after the call (late ones too); null if the clerk never stood."
    )
    not_observed: bool = Field(description="True: ok is false and means nothing. " + NOT_OBSERVED)


class SmiledStep(Out):
    step: Literal["smiled"] = Field(description="The greeting smile.")
    ok: bool = Field(description="The clerk smiled within the greeting window.")
    after_ms: int | None = Field(
        description="Milliseconds after the call; null when there was no smile."
    )
    too_broad: bool = Field(
        description="A smile beyond 'not too broad', at the greeting or the farewell."
    )
    not_observed: bool = Field(description="True: ok is false and means nothing. " + NOT_OBSERVED)


class EvaluatedStep(Out):
    step: Literal["evaluated"] = Field(description="The citizen's evaluation.")
    ok: bool = Field(description="The session was rated.")
    rating: Rating | None = Field(description="The rating; null when not rated.")


class FarewellStep(Out):
    step: Literal["farewell"] = Field(description="The farewell stand.")
    ok: bool = Field(description="The clerk stood at the farewell and saw the citizen off.")
    see_off_ms: int | None = Field(
        description="How long the clerk stood to see off, ms; null when they did not stand."
    )
    smiled: bool | None = Field(
        description="W-FAREWELL: smiled while seeing the citizen off; null from a terminal "
        "that does not report it (contract version 1)."
    )
    not_observed: bool = Field(description="True: ok is false and means nothing. " + NOT_OBSERVED)
    smile_not_observed: bool = Field(
        description="True: smiled is false because the farewell smile was not observed."
    )


Step = Annotated[
    CallStep | StoodStep | SmiledStep | EvaluatedStep | FarewellStep,
    Field(discriminator="step"),
]


class NotObservedOut(Out):
    """Per verdict of a session: true when it was not observed (contract version 3; false
    from older terminals). Its field then says false, which means nothing."""

    stood_on_call: bool = Field(description="The stand on call was not observed.")
    smiled_at_greeting: bool = Field(description="The greeting smile was not observed.")
    stood_at_farewell: bool = Field(description="The farewell stand was not observed.")
    smiled_at_farewell: bool = Field(description="The farewell smile was not observed.")
    greeted_first: bool = Field(description="A reception's greeting first was not observed.")


class SessionOut(Out):
    """One service session, from the call to the farewell (its session_summary event)."""

    session_id: str = Field(
        description="The session's UUID (the summary's event id when it had none)."
    )
    event_id: str = Field(description="The id of the session_summary event it comes from.")
    site: SiteSlug
    window: WindowSlug
    clerk_id: str | None = Field(
        description="The clerk signed in at the window when it opened; null when nobody was."
    )
    opened_ms: TimeMs = Field(description="The call, on the terminal's clock, UTC ms.")
    closed_ms: TimeMs = Field(
        description="The end of service (before the farewell), terminal's clock, UTC ms."
    )
    closed_by: Literal["evaluation", "finish_key", "next_call", "timeout", "shutdown"] = Field(
        description="What ended it."
    )
    rating: Rating | None = Field(description="The session's evaluation; null when not rated.")
    source: Literal["bell", "queue", "presence"] | None = Field(
        description="What opened it: the bell, a queue call, a citizen at the front desk; "
        "null from a version 1 terminal."
    )
    ticket: str | None = Field(description="The queue ticket number.")
    call_id: str | None = Field(description="The queue system's call id.")
    matter_code: str | None = Field(description="Service matter (事项) code, from the call.")
    matter_name: str | None = Field(description="Service matter name, from the call.")
    priority: bool = Field(description="H-PRIORITY: a priority citizen, served first.")
    priority_category: str | None = Field(
        description="elderly, military, disabled, sick, pregnant or other; null: none given."
    )
    case_number: str | None = Field(description="Service case number (办件编号), if given.")
    greeted_first: bool | None = Field(
        description="F-RECEIVE (front desk): stood and smiled within the limits of the "
        "citizen's approach; null at other windows."
    )
    not_observed: NotObservedOut = Field(description="Which verdicts were not observed.")
    observed_share: Rate = Field(
        description="Share of the session's time the clerk's face and mouth could be seen "
        "(or the seat was seen empty); null: not reported (fully observed, or an older "
        "terminal)."
    )
    steps: list[Step] = Field(description="call, stood, smiled, evaluated, farewell.")
    verdicts: dict[str, bool | None] = Field(
        description="The session's verdicts as they stand (an upheld appeal's correction "
        "included): stood_on_call, smiled_at_greeting, stood_at_farewell, "
        "smiled_at_farewell, greeted_first; null: not judged for this session."
    )
    not_counted: bool = Field(description="An upheld appeal took the session out of every measure.")
    corrected: list[str] = Field(
        description="The verdicts an upheld appeal corrected (the old values: the appeal)."
    )


class TrendDay(Out):
    """One local day (the server's time zone) of the period, empty days included."""

    day: date = Field(description="The local day.")
    sessions: int = Field(description="Sessions opened that day.")
    stand_rate: Rate = Field(description="Sessions where the clerk stood on the call" + OBSERVED_OF)
    smile_rate: Rate = Field(description="Sessions with a smile at the greeting" + OBSERVED_OF)
    farewell_rate: Rate = Field(description="Sessions with the farewell stand" + OBSERVED_OF)
    evaluations: int = Field(description="Evaluations that day (suspect presses excluded).")
    good_rate: Rate = Field(description="Good (basically satisfied or better) / evaluations.")
    bad_reviews: int = Field(description="Evaluations rated dissatisfied or very dissatisfied.")
    not_observed_sessions: int = Field(description="Sessions with any verdict not observed.")


class HeatCell(Out):
    """Sessions of one weekday and hour (the server's time zone); only cells with any."""

    weekday: int = Field(ge=1, le=7, description="ISO weekday, 1 = Monday.")
    hour: int = Field(ge=0, le=23, description="Local hour.")
    sessions: int = Field(description="Sessions opened in that hour of that weekday.")
    compliance: Rate = Field(
        description="Sessions with stand and smile at the call / sessions where both were "
        "observed; 0..1."
    )


class RankingRow(Out):
    """A clerk in the smile-star ranking (A-STAR), best first, ineligible clerks last."""

    clerk_id: str = Field(description="The clerk.")
    sessions: int = Field(
        description="The clerk's sessions in the period and scope where every verdict was "
        "observed: the ranking's sessions (min_sessions counts these)."
    )
    exemplary: int = Field(
        description="Stood, smiled (not too broad), saw off for 3 s, not rated badly."
    )
    rate: float = Field(ge=0, le=1, description="exemplary / sessions.")
    score: float = Field(
        ge=0, le=1, description="Wilson lower bound (95%) of the exemplary rate: sorts the ranking."
    )
    eligible: bool = Field(description="Enough sessions (min_sessions) to be ranked.")
    not_observed: int = Field(
        description="Sessions with a verdict not observed: in neither sessions nor "
        "exemplary (neither helped nor harmed)."
    )
    rank: int | None = Field(description="1 = best; null when not eligible.")


# ----------------------------------------------------------------- assessment


Criterion = Literal[
    "stand_on_call_rate",
    "smile_at_greeting_rate",
    "farewell_stand_rate",
    "evaluation_coverage",
    "good_review_rate",
    "away_without_sign_min",
    "overdue_cases",
    "inspector_findings",
]


class Failure(Out):
    """A criterion a clerk's month missed (A-PASS)."""

    criterion: Criterion = Field(description="The measure (MeasuresOut) that missed its threshold.")
    value: int | float = Field(description="The month's value: a rate 0..1, minutes or a count.")
    threshold: int | float = Field(description="The limit it missed, in the same unit.")
    evidence: list[str] = Field(
        description="Event ids behind the failure (session summaries, bad evaluations or "
        "absences), by id, capped (50 by default); empty for overdue_cases; finding ids "
        "for inspector_findings. A session whose verdict was not observed is never evidence."
    )


class CriterionOut(Out):
    """One criterion of the month as judged, with the threshold used (traceable)."""

    criterion: Criterion = Field(description="The measure (MeasuresOut) judged.")
    value: int | float | None = Field(
        description="The month's value (a rate 0..1, minutes or a count); null: nothing to "
        "divide by."
    )
    threshold: int | float = Field(description="The limit it was judged by, in the same unit.")
    observed_sessions: int | None = Field(
        None,
        description="Conduct criteria: the sessions where its verdict was observed (what "
        "min_sessions counts); null for the others.",
    )
    not_observed: int | None = Field(
        None, description="Conduct criteria: the sessions where it was not observed."
    )
    not_observed_evidence: list[str] | None = Field(
        None,
        description="Conduct criteria: the session summaries' event ids where it was not "
        "observed (to be looked at, never a failure), capped like the evidence.",
    )
    findings: int | None = Field(
        None, description="inspector_findings: the month's findings that stand (any outcome)."
    )
    withdrawn: int | None = Field(
        None, description="inspector_findings: the month's findings withdrawn (not judged)."
    )
    status: Literal[
        "pass",
        "fail",
        "insufficient_observed_sessions",
        "insufficient_data",
        "no_data",
        "not_counted",
    ] = Field(
        description="pass or fail; insufficient_observed_sessions: a conduct criterion with "
        "fewer than min_sessions observed sessions (no judgement); insufficient_data: the "
        "month had fewer than min_sessions sessions; no_data: nothing to divide by (no "
        "finding recorded); not_counted: findings listed, not judged (thresholds setting)."
    )


SignOff = Literal["provisional", "confirmed", "overridden", "recomputed"]
SIGN_OFF = (
    "provisional: nobody has decided yet; confirmed: an inspector confirmed the computed "
    "result; overridden: a person set the result with a reason; recomputed: the computed "
    "result changed after a confirmation (an upheld appeal), to be signed off again."
)


class ThresholdsUsed(Out):
    """Which saved thresholds versions a verdict used (city, district, centre)."""

    versions: list[int] = Field(
        description="The versions that applied, broadest first; empty: the defaults."
    )
    source: dict[str, int | None] = Field(
        description="Per threshold, the version that set it; null: the server's default."
    )


class FindingOut(Out):
    """An inspector's finding about a clerk (A-PASS)."""

    finding_id: str = Field(description="The finding's id.")
    clerk_id: str = Field(description="The clerk it concerns.")
    kind: Literal["patrol", "video_check", "survey"] = Field(
        description="patrol observation, dual-recording (双录) spot check or survey result."
    )
    criterion: str = Field(description="The clause of the standard (e.g. W-CALL, G-SMILE).")
    outcome: Literal["complied", "not_complied"] = Field(description="What was found.")
    observed_ms: int = Field(description="When it was observed (UTC ms).")
    session_id: str | None = Field(description="The session it refers to; null: none.")
    video_ms: int | None = Field(
        description="The position in the session's recording it refers to (ms); null: none."
    )
    note: str = Field(description="What the inspector saw.")
    attachments: list[str] = Field(
        description="References to evidence kept elsewhere (e.g. a recording id); never files."
    )
    recorded_by: str = Field(description="Who recorded it.")
    recorded_ms: int = Field(description="When it was recorded (server time, UTC ms).")
    withdrawn_ms: int | None = Field(description="When it was withdrawn; null: it stands.")
    withdrawn_by: str | None = Field(description="Who withdrew it.")
    withdrawn_reason: str | None = Field(description="Why it was withdrawn.")


class DecisionOut(Out):
    """A person's decision on a monthly verdict."""

    id: int = Field(description="The decision's number.")
    clerk_id: str = Field(description="The clerk.")
    month: str = Field(description="The month, YYYY-MM.")
    action: Literal["confirm", "override"] = Field(description="Confirmed or overridden.")
    result: Result = Field(description="The result it set.")
    computed_result: Result = Field(description="The computed result the person saw.")
    reason: str = Field(description="Why.")
    decided_by: str = Field(description="Who decided.")
    decided_ms: int = Field(description="When (server time, UTC ms).")


class StandingOut(Out):
    """A month's verdict as it stands: computed, then signed off by a person."""

    result: Result = Field(description="The result that stands.")
    computed_result: Result = Field(description="The result computed from the events.")
    sign_off: SignOff = Field(description=SIGN_OFF)
    changed_since_decision: bool = Field(
        description="The computed result differs from the one the last decision saw."
    )
    decisions: list[DecisionOut] = Field(description="Every decision, oldest first.")


class ProbationDecided(Out):
    """A probation as recorded: its month, who started it, and how it ended."""

    month: str = Field(description="The probation month, YYYY-MM.")
    started_by: str = Field(description="Who started it.")
    started_ms: int = Field(description="When it was started (UTC ms).")
    outcome: Literal["passed", "returned_to_agency"] | None = Field(
        description="How it ended; null: not ended yet."
    )
    ended_by: str | None = Field(description="Who ended it.")
    ended_ms: int | None = Field(description="When it was ended (UTC ms).")


class ProbationDecisionOut(Out):
    """A recorded probation decision (A-REVIEW)."""

    id: int = Field(description="The decision's number.")
    clerk_id: str = Field(description="The clerk.")
    month: str = Field(description="The probation month, YYYY-MM.")
    action: Literal["start", "end"] = Field(description="Started or ended.")
    outcome: Literal["passed", "returned_to_agency"] | None = Field(
        description="An end's outcome; null for a start."
    )
    reason: str = Field(description="Why.")
    decided_by: str = Field(description="Who decided.")
    decided_ms: int = Field(description="When (server time, UTC ms).")


class VerdictOut(Out):
    """A clerk's monthly pass/fail (A-PASS)."""

    clerk_id: str = Field(description="The clerk assessed.")
    month: str = Field(description="The month, YYYY-MM (the server's time zone).")
    result: Result = Field(description=RESULT)
    measures: MeasuresOut = Field(description=CLERK_MEASURES)
    failures: list[Failure] = Field(description=FAILURES)
    criteria: list[CriterionOut] = Field(description=CRITERIA)
    thresholds: PassThresholds = Field(description="The thresholds the month was judged by.")
    thresholds_version: ThresholdsUsed = Field(
        description="The saved thresholds versions the month was judged by."
    )
    findings: list[FindingOut] = Field(
        description="The inspectors' findings of the month, withdrawn ones included (marked)."
    )
    standing: StandingOut = Field(description="The verdict as it stands after sign-off.")


ProbationStatus = Literal[
    "in_good_standing",
    "probation_next_month",
    "on_probation",
    "probation_passed",
    "replace_recommended",
]
PROBATION = (
    "From the previous and this month's results: failing a month puts the clerk on "
    "probation for the next; failing on probation recommends replacement."
)


class ProbationOut(Out):
    """A clerk's probation status for a month (A-REVIEW)."""

    clerk_id: str = Field(description="The clerk.")
    month: str = Field(description="The month, YYYY-MM (the server's time zone).")
    status: ProbationStatus = Field(description=PROBATION)
    previous: Result = Field(description="The previous month's result (as it stands).")
    current: Result = Field(description="This month's result (as it stands).")
    decided: ProbationDecided | None = Field(
        description="The probation a person recorded for this month or the next; null: none."
    )
    decisions: list[ProbationDecisionOut] = Field(
        description="Every probation decision on the clerk, oldest first."
    )


class ThresholdVersionOut(Out):
    """One saved version of one scope's thresholds (never edited)."""

    version: int = Field(description="The version number (one sequence for all scopes).")
    scope: str = Field(description="all, district:<name> or site:<slug>.")
    from_month: str = Field(description="The first month it applies to, YYYY-MM.")
    values: dict[str, bool | int | float] = Field(description="The thresholds it sets.")
    reason: str = Field(description="Why it was saved.")
    created_by: str = Field(description="Who saved it.")
    created_ms: int = Field(description="When (server time, UTC ms).")


class ThresholdsOut(Out):
    """A centre's thresholds for a month and where each value came from."""

    site: SiteSlug
    month: str = Field(description="The month, YYYY-MM.")
    thresholds: PassThresholds = Field(description="The thresholds the month is judged by.")
    defaults: PassThresholds = Field(description="The server's defaults (no version).")
    versions: list[int] = Field(description="The versions that apply, broadest first.")
    source: dict[str, int | None] = Field(
        description="Per threshold, the version that set it; null: the default."
    )
    history: list[ThresholdVersionOut] = Field(
        description="Every version of the city's, the district's and the centre's, newest first."
    )


class ThresholdsSaved(Out):
    version: int = Field(description="The new version's number.")


class AppealOut(Out):
    """A clerk's appeal on a session's verdict or on a monthly verdict."""

    appeal_id: str = Field(description="The appeal's id.")
    site: SiteSlug
    clerk_id: str = Field(description="The clerk who appealed.")
    month: str = Field(description="The month it concerns, YYYY-MM.")
    session_id: str | None = Field(description="The session contested; null: the month's verdict.")
    criterion: str | None = Field(description="The session's verdict contested.")
    note: str = Field(description="The clerk's reason.")
    filed_by: str = Field(description="The account that filed it.")
    filed_ms: int = Field(description="When (server time, UTC ms).")
    status: Literal["open", "upheld", "rejected"] = Field(description="Where it stands.")
    resolution: Literal["corrected", "not_counted", "overridden"] | None = Field(
        description="An upheld appeal: the session's verdict corrected, the session not "
        "counted, or the monthly result overridden."
    )
    resolution_note: str | None = Field(description="The resolver's note.")
    resolved_by: str | None = Field(description="Who resolved it.")
    resolved_ms: int | None = Field(description="When (server time, UTC ms).")
    before: dict[str, str] | None = Field(
        description="The monthly result and sign-off when it was filed."
    )
    after: dict[str, str] | None = Field(
        description="The monthly result and sign-off after it was resolved."
    )


class AppealEvent(Out):
    event_id: str = Field(description="The event's id.")
    kind: str = Field(description="The event's kind (wire contract).")
    ts_ms: int = Field(description="When it happened on the terminal (UTC ms).")
    payload: dict[str, Any] = Field(description="The event as the terminal sent it (no image).")


class CorrectionOut(Out):
    id: int = Field(description="The correction's number.")
    session_id: str = Field(description="The session corrected.")
    appeal_id: str = Field(description="The appeal that made it.")
    column: str = Field(description="The verdict corrected, or not_counted.")
    before: bool | None = Field(description="The value before.")
    after: bool | None = Field(description="The value after.")
    by: str = Field(description="Who.")
    at_ms: int = Field(description="When (UTC ms).")


class AppealDetail(AppealOut):
    """An appeal with what the resolver looks at."""

    session: dict[str, Any] | None = Field(description="The session's stored row; null: none.")
    events: list[AppealEvent] = Field(description="The session's events, in order.")
    corrections: list[CorrectionOut] = Field(description="What upheld appeals changed on it.")


class AssessmentRow(Out):
    """One clerk's month: verdict, probation status and measures."""

    clerk_id: str = Field(description="The clerk.")
    name: str = Field(description="The clerk's name.")
    site: str = Field(description="The clerk's centre.")
    result: Result = Field(description=RESULT)
    failures: list[Failure] = Field(description=FAILURES)
    criteria: list[CriterionOut] = Field(description=CRITERIA)
    probation: ProbationStatus = Field(description=PROBATION)
    probation_decided: ProbationDecided | None = Field(
        description="The probation recorded for this month or the next; null: none."
    )
    measures: MeasuresOut = Field(description=CLERK_MEASURES)
    computed_result: Result = Field(description="The result computed from the events.")
    sign_off: SignOff = Field(description=SIGN_OFF)
    findings: int = Field(description="The month's findings that stand.")
    open_appeals: int = Field(description="The clerk's open appeals on the month.")


# ----------------------------------------------------------------- cases, clerks, KPIs


class CaseOut(Out):
    """A bad review (不满意 / 非常不满意) the centre must rectify in 15 working days."""

    case_id: str = Field(description="The bad evaluation's event id.")
    site: SiteSlug
    window: WindowSlug
    clerk_id: str | None = Field(
        description="The clerk signed in at the window at the evaluation; null when nobody was."
    )
    session_id: str | None = Field(
        description="The session evaluated; null when the press had none."
    )
    rating: Rating = Field(description="dissatisfied or very_dissatisfied.")
    opened_ms: TimeMs = Field(description="The evaluation's time on the terminal, UTC ms.")
    due_ms: TimeMs = Field(
        description="End (23:59:59.999 local) of the 15th official working day after it "
        "opened (holidays and adjusted working weekends as the State Council's notice "
        "sets them), UTC ms."
    )
    due_provisional: bool = Field(
        description="True when due_ms was counted Monday to Friday because no official "
        "calendar knew a year on the way; show a warning. Counted again once it is known."
    )
    status: Literal["open", "closed"] = Field(description="closed once rectified.")
    closed_ms: TimeMs | None = Field(
        description="When it was rectified (as the closer said), UTC ms; null while open."
    )
    note: str | None = Field(description="What was done about it; null while open.")


class ClerkOut(Out):
    clerk_id: str = Field(description="The clerk's id.")
    name: str = Field(description="The clerk's name.")
    site: str = Field(description="The centre the clerk belongs to.")


class HelpdeskDayOut(Out):
    """One window's day of H-ONLINE, as the help-desk feed last sent it."""

    site: SiteSlug
    window: WindowSlug
    day: date = Field(description="The local day.")
    requests: int = Field(description="Help-desk requests.")
    first_response_within_1min: int = Field(description="Requests answered within a minute.")
    resolved: int = Field(description="Requests resolved.")
    first_response_rate: Rate = Field(description="Answered within a minute / requests.")
    resolved_rate: Rate = Field(description="Resolved / requests; null without requests.")
    meets_standard: bool | None = Field(
        description="Every request answered within a minute and 90% resolved; null without any."
    )


class HelpdeskOut(Out):
    """H-ONLINE over the days asked, as the help-desk system reported them."""

    requests: int = Field(description="Help-desk requests.")
    first_response_rate: Rate = Field(description="Answered within a minute / requests.")
    resolved_rate: Rate = Field(description="Resolved / requests; null without requests.")
    meets_standard: bool | None = Field(
        description="Every request answered within a minute and 90% resolved; null without any."
    )
    days: list[HelpdeskDayOut] = Field(description="Each window's days, by centre, window, day.")


# ----------------------------------------------------------------- health and the page's facts


class HealthOut(Out):
    """``/healthz``: the ingest's fields only when the server runs one (``mqtt`` set)."""

    status: Literal["ok", "unhealthy"] = Field(description="ok, or unhealthy (answered 503).")
    reason: str | None = Field(None, description='Why unhealthy; "" when healthy.')
    waiting: int | None = Field(None, description="Messages received, not yet stored.")
    last_commit_ms: TimeMs | None = Field(
        None, description="The ingest's last commit, UTC ms; null before one."
    )
    dead_letters: int | None = Field(
        None, description="Messages the store refused, set aside (since the server started)."
    )
    write_failures: int | None = Field(
        None, description="Store write attempts that failed since the server started."
    )
    last_error: str | None = Field(
        None, description="The last failed write's error (class: first line); null before one."
    )
    ingest_connected: bool = Field(description="Connected to the MQTT broker.")


class RatingLevel(Out):
    code: Rating = Field(description="The level's code.")
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
