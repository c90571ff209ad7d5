"""Tables of the aggregator's store (SQLAlchemy Core; SQLite and PostgreSQL).

``events`` is the append-only record of everything the fleet sent, one row per event
id. ``sessions``, ``evaluations`` and ``away_periods`` are projections of it, written in
the same transaction, so the measures read narrow indexed tables instead of JSON.
Schema changes go through Alembic (``server/store/migrations``).
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    false,
)

from server.policy.rows import UNOBSERVED

metadata = MetaData()

#: Per verdict, the rollup column counting the sessions where it was not observed.
ROLLUP_UNOBSERVED: Final[dict[str, str]] = {
    "stood_on_call": "stood_unobserved",
    "smiled_at_greeting": "smiled_unobserved",
    "stood_at_farewell": "farewell_unobserved",
    "smiled_at_farewell": "farewell_smile_unobserved",
    "greeted_first": "greeted_first_unobserved",
}

units = Table(
    "units",
    metadata,
    Column("site", String(32), primary_key=True),
    Column("name", Text, nullable=False),
    Column("district", Text, nullable=False),
    Column("unit_kind", String(32), nullable=False),
    Column("timezone", String(64), nullable=False),
)

devices = Table(
    "devices",
    metadata,
    Column("site", String(32), primary_key=True),
    Column("window", String(32), primary_key=True),
    Column("label", Text, nullable=False),
    Column("role", String(32), nullable=False),
    Column("online", Boolean, nullable=False, default=False),
    Column("availability_ms", BigInteger, nullable=True),
    Column("last_seen_ms", BigInteger, nullable=True),
    Column("state", JSON, nullable=True),
    Column("health", JSON, nullable=True),
    Column("max_seq", BigInteger, nullable=False, default=0),
    Column("boot_id", String(36), nullable=True),
)

events = Table(
    "events",
    metadata,
    # The device's UUID makes every replay or duplicate collide here, across replicas too.
    Column("event_id", String(36), primary_key=True),
    Column("site", String(32), nullable=False),
    Column("window", String(32), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("boot_id", String(36), nullable=False),
    Column("ts_ms", BigInteger, nullable=False),
    Column("received_ms", BigInteger, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("session_id", String(36), nullable=True),
    Column("historical", Boolean, nullable=False, default=False),
    Column("payload", JSON, nullable=False),
    Index("ix_events_device_ts", "site", "window", "ts_ms"),
    Index("ix_events_device_seq", "site", "window", "seq"),
    Index("ix_events_received", "received_ms"),
    Index("ix_events_site_received", "site", "received_ms"),
    Index("ix_events_session", "session_id"),
)

# What retention deleted of each device's sequence: the highest seq among the events it
# deleted. Sequence gaps are looked for above it only (reads.sequence_gaps).
seq_floors = Table(
    "seq_floors",
    metadata,
    Column("site", String(32), primary_key=True),
    Column("window", String(32), primary_key=True),
    Column("floor_seq", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
)

clerks = Table(
    "clerks",
    metadata,
    Column("clerk_id", String(32), primary_key=True),
    Column("name", Text, nullable=False),
    Column("site", String(32), nullable=False),
)

# Shifts: who was signed in at which window when (server/policy/shifts.py keeps them
# from overlapping), from the queue system, a badge or PIN, or a manager; never faces.
roster = Table(
    "roster",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("clerk_id", String(32), nullable=False),
    Column("site", String(32), nullable=False),
    Column("window", String(32), nullable=False),
    Column("start_ms", BigInteger, nullable=False),
    Column("end_ms", BigInteger, nullable=True),
    # where the sign-in came from (policy.shifts.SOURCES) and who recorded it when
    Column("source", String(16), nullable=False, server_default="manager"),
    Column("recorded_ms", BigInteger, nullable=True),
    Column("recorded_by", String(64), nullable=True),
    Column("end_source", String(16), nullable=True),
    Index("ix_roster_device", "site", "window", "start_ms"),
    Index("ix_roster_clerk", "clerk_id", "start_ms"),
)

# Badge and PIN credentials (0009): digests only, salted per centre (site_salts), in the
# format of agent/directory.py; the terminals get them as the centre's clerk directory.
clerk_credentials = Table(
    "clerk_credentials",
    metadata,
    Column("clerk_id", String(32), primary_key=True),
    Column("site", String(32), nullable=False),
    Column("badges", JSON, nullable=False),  # list of digests
    Column("pin", String(64), nullable=True),  # digest
    Column("updated_ms", BigInteger, nullable=False),
    Column("updated_by", String(64), nullable=False),
    Index("ix_clerk_credentials_site", "site"),
)

site_salts = Table(
    "site_salts",
    metadata,
    Column("site", String(32), primary_key=True),
    Column("salt", String(128), nullable=False),
)

# The planned roster: who is expected at which window when. Shown beside the shifts
# ("rostered but not signed in"); never a sign-in, never attributes anything.
roster_plan = Table(
    "roster_plan",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("site", String(32), nullable=False),
    Column("window", String(32), nullable=False),
    Column("clerk_id", String(32), nullable=False),
    Column("from_ms", BigInteger, nullable=False),
    Column("to_ms", BigInteger, nullable=False),
    Column("created_by", String(64), nullable=False),
    Index("ix_roster_plan_site", "site", "from_ms"),
)

sessions = Table(
    "sessions",
    metadata,
    Column("session_id", String(36), primary_key=True),
    Column("event_id", String(36), nullable=False),
    Column("site", String(32), nullable=False),
    Column("window", String(32), nullable=False),
    Column("clerk_id", String(32), nullable=True),
    Column("opened_ms", BigInteger, nullable=False),
    Column("closed_ms", BigInteger, nullable=False),
    Column("closed_by", String(16), nullable=False),
    Column("stood_on_call", Boolean, nullable=False),
    Column("stand_after_ms", BigInteger, nullable=True),
    Column("smiled_at_greeting", Boolean, nullable=False),
    Column("smile_after_ms", BigInteger, nullable=True),
    Column("smile_peak", Float, nullable=True),
    Column("smile_too_broad", Boolean, nullable=False),
    # None: no farewell to judge (a front desk's reception, 0010)
    Column("stood_at_farewell", Boolean, nullable=True),
    Column("see_off_ms", BigInteger, nullable=True),
    Column("rating", String(24), nullable=True),
    Column("priority", Boolean, nullable=False),
    # contract version 2 (0008): what opened it, the queue call, the farewell smile, the
    # front desk's greeting; None from terminals that send version 1
    Column("source", String(16), nullable=True),
    Column("ticket", String(64), nullable=True),
    Column("call_id", String(64), nullable=True),
    Column("matter_code", String(64), nullable=True),
    Column("matter_name", String(64), nullable=True),
    Column("priority_category", String(16), nullable=True),
    Column("case_number", String(64), nullable=True),
    Column("smiled_at_farewell", Boolean, nullable=True),
    Column("farewell_smile_after_ms", BigInteger, nullable=True),
    Column("greeted_first", Boolean, nullable=True),
    # contract version 3 (0011): the verdicts the camera could not see. Their fields
    # above then say False, which means "not observed", never "did not": every rate
    # divides by the sessions where its verdict was observed. False from older terminals.
    *(
        Column(name, Boolean, nullable=False, default=False, server_default=false())
        for name in UNOBSERVED.values()
    ),
    # share of the session's time the clerk's face and mouth could be seen; None: all
    Column("observed_share", Float, nullable=True),
    # 0012: an upheld appeal took the session out of every measure (session_corrections
    # holds the appeal); a corrected verdict is written above, its old value kept there
    Column("not_counted", Boolean, nullable=False, default=False, server_default=false()),
    Index("ix_sessions_device_opened", "site", "window", "opened_ms"),
    Index("ix_sessions_clerk_opened", "clerk_id", "opened_ms"),
    Index("ix_sessions_opened", "opened_ms"),
    # unit comparisons: a few sites over a month, without reading every site's month
    Index("ix_sessions_site_opened", "site", "opened_ms"),
)

# The queue system's calls (0008), stored once by call id (the bridge's idempotency key):
# what the bridge told the terminal, and what a session's ticket is joined with.
queue_calls = Table(
    "queue_calls",
    metadata,
    Column("call_id", String(64), primary_key=True),
    Column("site", String(32), nullable=False),
    Column("window", String(32), nullable=False),
    Column("ticket", String(64), nullable=False),
    Column("matter_code", String(64), nullable=True),
    Column("matter_name", String(64), nullable=True),
    Column("priority_category", String(16), nullable=True),
    Column("clerk_id", String(32), nullable=True),
    Column("case_number", String(64), nullable=True),
    Column("called_ms", BigInteger, nullable=False),
    Column("received_ms", BigInteger, nullable=False),
    Column("cmd_id", String(36), nullable=False),
    Column("sent", Boolean, nullable=False),
    Column("token", String(64), nullable=True),
    Index("ix_queue_calls_window", "site", "window", "called_ms"),
)

evaluations = Table(
    "evaluations",
    metadata,
    Column("event_id", String(36), primary_key=True),
    Column("site", String(32), nullable=False),
    Column("window", String(32), nullable=False),
    Column("clerk_id", String(32), nullable=True),
    Column("session_id", String(36), nullable=True),
    Column("ts_ms", BigInteger, nullable=False),
    Column("rating", String(24), nullable=False),
    Column("suspect", Boolean, nullable=False),
    Column("suspect_reason", String(24), nullable=True),
    Index("ix_evaluations_device_ts", "site", "window", "ts_ms"),
    Index("ix_evaluations_clerk_ts", "clerk_id", "ts_ms"),
    Index("ix_evaluations_site_ts", "site", "ts_ms"),
)

away_periods = Table(
    "away_periods",
    metadata,
    Column("event_id", String(36), primary_key=True),
    Column("site", String(32), nullable=False),
    Column("window", String(32), nullable=False),
    Column("clerk_id", String(32), nullable=True),
    Column("started_ms", BigInteger, nullable=False),
    Column("ended_ms", BigInteger, nullable=True),
    Column("with_sign", Boolean, nullable=False),
    Column("violation", Boolean, nullable=False),
    Index("ix_away_device_started", "site", "window", "started_ms"),
)

# A bad review (不满意 / 非常不满意) opens a case the unit must rectify in 15 working days.
cases = Table(
    "cases",
    metadata,
    Column("case_id", String(36), primary_key=True),  # the evaluation's event id
    Column("site", String(32), nullable=False),
    Column("window", String(32), nullable=False),
    Column("clerk_id", String(32), nullable=True),
    Column("session_id", String(36), nullable=True),
    Column("rating", String(24), nullable=False),
    Column("opened_ms", BigInteger, nullable=False),
    Column("due_ms", BigInteger, nullable=False),
    # due_ms counted Monday to Friday over a year no official calendar knew (workdays.py)
    Column("due_provisional", Boolean, nullable=False, default=False, server_default=false()),
    Column("status", String(16), nullable=False, default="open"),
    Column("closed_ms", BigInteger, nullable=True),
    Column("note", Text, nullable=True),
    # 0012: the workflow (every step is also a case_actions row): who the case is
    # assigned to, the call-back to the citizen (every bad review gets one) and the
    # rectification; a reopened case counts its reopenings
    Column("assigned_to", String(64), nullable=True),
    Column("assigned_ms", BigInteger, nullable=True),
    Column("callback_ms", BigInteger, nullable=True),
    Column("callback_outcome", String(24), nullable=True),
    Column("callback_note", Text, nullable=True),
    Column("rectification", Text, nullable=True),
    Column("rectified_ms", BigInteger, nullable=True),
    Column("closed_by", String(64), nullable=True),
    Column("reopened", Integer, nullable=False, default=0, server_default="0"),
    Index("ix_cases_status_due", "status", "due_ms"),
    Index("ix_cases_site_status", "site", "status", "opened_ms"),
)

helpdesk_kpis = Table(
    "helpdesk_kpis",
    metadata,
    Column("site", String(32), primary_key=True),
    Column("window", String(32), primary_key=True),
    Column("day", String(10), primary_key=True),  # local date, YYYY-MM-DD
    Column("requests", Integer, nullable=False),
    Column("first_response_within_1min", Integer, nullable=False),
    Column("resolved", Integer, nullable=False),
)

rejects = Table(
    "rejects",
    metadata,
    Column("reason", String(32), primary_key=True),
    Column("count", Integer, nullable=False, default=0),
)

# ------------------------------------------------------------------ dashboard (0002)

# What needs a person's attention; acknowledged with a note, and the ack is audited.
alerts = Table(
    "alerts",
    metadata,
    Column(
        "alert_id", String(64), primary_key=True
    ),  # the event id, or offline-<site>-<window>-<ms>
    Column("site", String(32), nullable=False),
    Column("window", String(32), nullable=False),
    Column("kind", String(24), nullable=False),
    Column("ts_ms", BigInteger, nullable=False),
    Column("detail", JSON, nullable=False),
    Column("acked_by", String(64), nullable=True),
    Column("acked_ms", BigInteger, nullable=True),
    Column("note", Text, nullable=True),
    Index("ix_alerts_site_ts", "site", "ts_ms"),
    Index("ix_alerts_open", "acked_ms", "ts_ms"),
)

users = Table(
    "users",
    metadata,
    Column("username", String(64), primary_key=True),
    Column("password_hash", Text, nullable=False),
    Column("role", String(24), nullable=False),
    # "all", "district:<name>" or "site:<slug>": which units the user may see.
    Column("scope", String(96), nullable=False),
    Column("display_name", Text, nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    # The clerk whose own records a "clerk" account sees (0005); None for other roles.
    Column("clerk_id", String(32), nullable=True),
)

auth_sessions = Table(
    "auth_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),  # sha256 of the cookie value
    Column("username", String(64), nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts_ms", BigInteger, nullable=False),
    Column("username", String(64), nullable=False),
    Column("action", String(48), nullable=False),
    Column("target", String(96), nullable=True),
    Column("detail", JSON, nullable=True),
    # The unit the change concerns (0005): audit entries are scoped like everything else;
    # None for changes that concern no single unit (accounts, tokens, bundles).
    Column("site", String(32), nullable=True),
    Index("ix_audit_ts", "ts_ms"),
    Index("ix_audit_site_ts", "site", "ts_ms"),
)

# ------------------------------------------------------------------ rollups (0004)

# Per window, clerk and local day: the sums behind the measures, kept in the ingest
# transaction, so a district's or the city's month reads ~22 rows per window instead of
# every session (10M-event bench). ``clerk_id`` is "" when nobody was signed in.
daily_rollups = Table(
    "daily_rollups",
    metadata,
    Column("site", String(32), primary_key=True),
    Column("day_ms", BigInteger, primary_key=True),  # UTC ms of the site's local midnight
    Column("window", String(32), primary_key=True),
    Column("clerk_id", String(32), primary_key=True),
    Column("sessions", Integer, nullable=False, default=0),
    Column("stood", Integer, nullable=False, default=0),
    Column("smiled", Integer, nullable=False, default=0),
    Column("farewell", Integer, nullable=False, default=0),
    Column("see_off", Integer, nullable=False, default=0),  # stayed >= ROLLUP_SEE_OFF_MS
    Column("broad", Integer, nullable=False, default=0),
    Column("rated", Integer, nullable=False, default=0),
    Column("very_satisfied", Integer, nullable=False, default=0),
    Column("satisfied", Integer, nullable=False, default=0),
    Column("basically_satisfied", Integer, nullable=False, default=0),
    Column("dissatisfied", Integer, nullable=False, default=0),
    Column("very_dissatisfied", Integer, nullable=False, default=0),
    Column("suspect", Integer, nullable=False, default=0),
    Column("away_violations", Integer, nullable=False, default=0),
    Column("away_ms", BigInteger, nullable=False, default=0),
    # 0008: H-PRIORITY (priority citizens; of them, served to the end of their session
    # before the next call) and W-FAREWELL's smile (sessions that report it; smiled)
    Column("priority", Integer, nullable=False, default=0, server_default="0"),
    Column("priority_own", Integer, nullable=False, default=0, server_default="0"),
    Column("farewell_smile_seen", Integer, nullable=False, default=0, server_default="0"),
    Column("farewell_smiled", Integer, nullable=False, default=0, server_default="0"),
    # 0010: sessions with a farewell to judge (a front desk's receptions have none), and
    # F-RECEIVE: receptions and those where the clerk stood and smiled first
    Column("farewell_due", Integer, nullable=False, default=0, server_default="0"),
    Column("receptions", Integer, nullable=False, default=0, server_default="0"),
    Column("greeted_first", Integer, nullable=False, default=0, server_default="0"),
    # 0011: per verdict, the sessions where it was not observed (the camera could not
    # see: never a failure, and not in that verdict's denominator), and the sessions
    # with any verdict not observed
    *(
        Column(name, Integer, nullable=False, default=0, server_default="0")
        for name in ROLLUP_UNOBSERVED.values()
    ),
    Column("unobserved", Integer, nullable=False, default=0, server_default="0"),
    # 0013: A-STAR's exemplary sessions, of those with every verdict observed (the
    # ranking's "not too broad" flag on: ``exemplary_modest``)
    Column("exemplary", Integer, nullable=False, default=0, server_default="0"),
    Column("exemplary_modest", Integer, nullable=False, default=0, server_default="0"),
)

# ------------------------------------------------------------------ monthly rollups (0013)

# The daily rollups summed per local month (``month_ms``: UTC ms of the site's local
# midnight on the 1st), kept in the same transaction from the same increments and
# rebuilt from the daily rows: a city's year reads 12 rows per window instead of 365.
monthly_rollups = Table(
    "monthly_rollups",
    metadata,
    Column("site", String(32), primary_key=True),
    Column("month_ms", BigInteger, primary_key=True),
    Column("window", String(32), primary_key=True),
    Column("clerk_id", String(32), primary_key=True),
    *(
        Column(c.name, c.type, nullable=False, default=0, server_default="0")
        for c in daily_rollups.c
        if not c.primary_key
    ),
)

# ------------------------------------------------------------------ access and poison (0005)

# Messages that passed validation but that the store still refused (e.g. a value the
# database cannot hold): set aside so the rest of their batch is stored. Only a hash and
# a short excerpt of the payload are kept, never the payload itself.
dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("received_ms", BigInteger, nullable=False),
    Column("topic", String(160), nullable=False),
    Column("reason", String(200), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("excerpt", String(200), nullable=False),
    Column("size", Integer, nullable=False),
    Index("ix_dead_letters_received", "received_ms"),
)

# Wrong passwords, counted in the store so that every server replica sees the same count.
# ``key`` is "user:<name>" or "addr:<client address>".
login_failures = Table(
    "login_failures",
    metadata,
    Column("key", String(128), primary_key=True),
    Column("failures", Integer, nullable=False, default=0),
    Column("first_ms", BigInteger, nullable=False),  # start of the counting window
    Column("locked_until_ms", BigInteger, nullable=True),
)

# Machine clients (queue system, help-desk feed, integrations, Prometheus): a bearer
# token, stored only as its SHA-256, scoped to units and to named operations.
service_tokens = Table(
    "service_tokens",
    metadata,
    Column("token_id", String(16), primary_key=True),
    Column("name", String(64), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    # "all", "district:<name>" or "site:<slug>", as for users
    Column("scope", String(96), nullable=False),
    Column("grants", JSON, nullable=False),  # list of operation names
    Column("created_by", String(64), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("revoked_ms", BigInteger, nullable=True),
    Column("last_used_ms", BigInteger, nullable=True),
)


# ------------------------------------------------------------------ assessment (0012)

# A case's history: every step (assign, call-back, rectification, close, reopen), by whom
# and when (the server's clock), in order.
case_actions = Table(
    "case_actions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case_id", String(36), nullable=False),
    Column("site", String(32), nullable=False),
    Column("action", String(16), nullable=False),
    Column("by", String(64), nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Column("note", Text, nullable=True),
    Column("detail", JSON, nullable=True),
    Index("ix_case_actions_case", "case_id", "id"),
)

# The one thresholds model: each save is a new version (never edited) of one scope's
# values ("all", "district:<name>" or "site:<slug>"; only the fields it sets), in force
# from ``from_month``. A month's verdict is judged by the defaults overlaid with the
# latest version of the city, its district and its centre whose from_month <= the month.
threshold_sets = Table(
    "threshold_sets",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=True),
    Column("scope", String(96), nullable=False),
    Column("from_month", String(7), nullable=False),  # YYYY-MM
    Column("values", JSON, nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Index("ix_threshold_sets_scope", "scope", "from_month", "version"),
)

# An inspector's finding about a clerk (A-PASS): a patrol observation, a spot check of
# the dual-recording video (the session and the video time) or a survey result. Never
# deleted: withdrawn with a reason. Attachments are references (ids in another system),
# never files or images.
findings = Table(
    "findings",
    metadata,
    Column("finding_id", String(36), primary_key=True),
    Column("site", String(32), nullable=False),
    Column("clerk_id", String(32), nullable=False),
    Column("kind", String(16), nullable=False),  # patrol, video_check, survey
    Column("criterion", String(32), nullable=False),
    Column("outcome", String(16), nullable=False),  # complied, not_complied
    Column("observed_ms", BigInteger, nullable=False),
    Column("session_id", String(36), nullable=True),
    Column("video_ms", BigInteger, nullable=True),  # position in the session's recording
    Column("note", Text, nullable=False),
    Column("attachments", JSON, nullable=False),  # list of reference strings
    Column("recorded_by", String(64), nullable=False),
    Column("recorded_ms", BigInteger, nullable=False),
    Column("withdrawn_ms", BigInteger, nullable=True),
    Column("withdrawn_by", String(64), nullable=True),
    Column("withdrawn_reason", Text, nullable=True),
    Index("ix_findings_clerk_observed", "clerk_id", "observed_ms"),
    Index("ix_findings_site_observed", "site", "observed_ms"),
)

# A person's decision on a monthly verdict: confirmed, or overridden with a reason. The
# latest row per clerk and month stands; every row stays. ``computed`` is the automatic
# verdict the person saw (result, thresholds version, criteria), so a recomputation
# later (an upheld appeal) shows beside it.
verdict_decisions = Table(
    "verdict_decisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("clerk_id", String(32), nullable=False),
    Column("site", String(32), nullable=False),
    Column("month", String(7), nullable=False),
    Column("action", String(16), nullable=False),  # confirm, override
    Column("result", String(32), nullable=False),  # the result that stands
    Column("computed_result", String(32), nullable=False),
    Column("computed", JSON, nullable=False),
    Column("reason", Text, nullable=False),
    Column("decided_by", String(64), nullable=False),
    Column("decided_ms", BigInteger, nullable=False),
    Index("ix_verdict_decisions_clerk", "clerk_id", "month", "id"),
    Index("ix_verdict_decisions_site", "site", "month"),
)

# Probation (A-REVIEW) as decisions: started for a month, ended with an outcome
# (passed, returned_to_agency), by whom and when.
probation_decisions = Table(
    "probation_decisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("clerk_id", String(32), nullable=False),
    Column("site", String(32), nullable=False),
    Column("month", String(7), nullable=False),  # the probation month
    Column("action", String(16), nullable=False),  # start, end
    Column("outcome", String(24), nullable=True),  # end: passed, returned_to_agency
    Column("reason", Text, nullable=False),
    Column("decided_by", String(64), nullable=False),
    Column("decided_ms", BigInteger, nullable=False),
    Index("ix_probation_decisions_clerk", "clerk_id", "id"),
)

# A clerk's appeal on a session (one of its verdicts) or a monthly verdict, resolved by a
# manager: upheld (the session's verdict corrected, or the session not counted) or
# rejected, with a note. ``before`` / ``after``: the monthly result either side.
appeals = Table(
    "appeals",
    metadata,
    Column("appeal_id", String(36), primary_key=True),
    Column("site", String(32), nullable=False),
    Column("clerk_id", String(32), nullable=False),
    Column("month", String(7), nullable=False),
    Column("session_id", String(36), nullable=True),  # None: an appeal on the verdict
    Column("criterion", String(32), nullable=True),  # the session's verdict contested
    Column("note", Text, nullable=False),
    Column("filed_by", String(64), nullable=False),
    Column("filed_ms", BigInteger, nullable=False),
    Column("status", String(16), nullable=False, default="open"),  # open, upheld, rejected
    Column("resolution", String(16), nullable=True),  # corrected, not_counted
    Column("resolution_note", Text, nullable=True),
    Column("resolved_by", String(64), nullable=True),
    Column("resolved_ms", BigInteger, nullable=True),
    Column("before", JSON, nullable=True),
    Column("after", JSON, nullable=True),
    Index("ix_appeals_clerk", "clerk_id", "filed_ms"),
    Index("ix_appeals_site_status", "site", "status", "filed_ms"),
)

# What an upheld appeal changed on a session: the verdict field and its value before
# (``column`` "not_counted" when the session was taken out of the measures).
session_corrections = Table(
    "session_corrections",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("session_id", String(36), nullable=False),
    Column("appeal_id", String(36), nullable=False),
    Column("column", String(32), nullable=False),
    Column("before", Boolean, nullable=True),
    Column("after", Boolean, nullable=True),
    Column("by", String(64), nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Index("ix_session_corrections_session", "session_id"),
)

# ---------------------------------------------------------------- outbound (issue 18)
# The durable delivery queue (server/outbound/queue.py): one row per (target, key), so
# a key is queued once per target however often its cause is stored or replayed.
# ``status``: pending (due at ``due_ms``; a claim pushes that to the lease's end),
# delivered, dead (attempts spent or a permanent refusal; ``resend`` makes it pending).
outbound_deliveries = Table(
    "outbound_deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("target", String(48), nullable=False),
    Column("key", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("site", String(32), nullable=True),
    Column("body", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("due_ms", BigInteger, nullable=False),
    Column("last_attempt_ms", BigInteger, nullable=True),
    Column("delivered_ms", BigInteger, nullable=True),
    Column("last_error", Text, nullable=True),
    Index("ux_outbound_target_key", "target", "key", unique=True),
    Index("ix_outbound_status_due", "status", "due_ms"),
)

# Per target, what its last attempts did (shared by the replicas).
outbound_status = Table(
    "outbound_status",
    metadata,
    Column("target", String(48), primary_key=True),
    Column("last_success_ms", BigInteger, nullable=True),
    Column("last_error_ms", BigInteger, nullable=True),
    Column("last_error", Text, nullable=True),
)

# A district admin's switch of a configured target for one of its units: while off, that
# unit's deliveries to it wait (nothing is lost); the URL is never set here.
outbound_switches = Table(
    "outbound_switches",
    metadata,
    Column("target", String(48), primary_key=True),
    Column("site", String(32), primary_key=True),
    Column("enabled", Boolean, nullable=False),
    Column("by", String(64), nullable=False),
    Column("at_ms", BigInteger, nullable=False),
)

# ------------------------------------------------------------ alert push (issue 18)
# What each alerting target has had (server/outbound/alerts.py plans with
# server/policy/alert_push.py): one row per target and alert, so an alert goes to a
# target once. ``state``: sent (its own message), folded or held (waiting for a summary:
# the rate limit, a repeat, quiet hours), dropped (quiet hours that drop), summarised;
# ``message_key`` is the outbound queue key of the message that carried it.
alert_pushes = Table(
    "alert_pushes",
    metadata,
    Column("target", String(48), primary_key=True),
    Column("alert_id", String(64), primary_key=True),
    Column("site", String(32), nullable=False),
    Column("window", String(32), nullable=False),
    Column("kind", String(24), nullable=False),
    Column("ts_ms", BigInteger, nullable=False),
    Column("clerk_id", String(32), nullable=True),
    Column("state", String(12), nullable=False),
    Column("since_ms", BigInteger, nullable=False),
    Column("message_key", String(64), nullable=True),
    Column("message_ms", BigInteger, nullable=True),
    Index("ix_alert_pushes_target_state", "target", "state"),
    Index("ix_alert_pushes_target_message", "target", "message_ms"),
)

# One row per alerting target, locked while a replica plans for it (rate limit and
# summaries need the target's history to stay still until the plan commits).
alert_push_targets = Table(
    "alert_push_targets",
    metadata,
    Column("target", String(48), primary_key=True),
    Column("planned_ms", BigInteger, nullable=False),
)

# ------------------------------------------------------------ window settings (issue 19)
# What people push to the terminals over the air (agent/overrides.py): one row per push,
# for the city ("all"), a district, a centre or one window; withdrawn, never deleted.
settings_pushes = Table(
    "settings_pushes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("scope", String(128), nullable=False),
    Column("fields", JSON, nullable=False),
    Column("note", Text, nullable=False),
    Column("by", String(64), nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Column("withdrawn_ms", BigInteger, nullable=True),
    Column("withdrawn_by", String(64), nullable=True),
    Column("withdraw_reason", Text, nullable=True),
)

# Each signed settings bundle a window was sent: its serial (the terminal installs only a
# higher one), the pushes it composed, and whether the broker took it.
settings_publications = Table(
    "settings_publications",
    metadata,
    Column("serial", Integer, primary_key=True, autoincrement=True),
    Column("site", String(32), nullable=False),
    Column("window", String(32), nullable=False),
    Column("push_ids", JSON, nullable=False),
    Column("sha256", String(64), nullable=False),
    # the clerk directory it carried (SHA-256 of clerks.json); null: none
    Column("directory_sha256", String(64), nullable=True),
    Column("bytes", Integer, nullable=False),
    Column("by", String(64), nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Column("published", Boolean, nullable=False),
    Column("error", Text, nullable=True),
    Index("ix_settings_publications_window", "site", "window", "serial"),
)
