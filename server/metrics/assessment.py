"""Monthly pass/fail per clerk with the evidence behind it (A-PASS) and probation (A-REVIEW)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine, and_, select

from server.metrics.measures import BAD, Measures, Scope, compute
from server.metrics.periods import period_bounds, previous_month
from server.store.schema import away_periods, evaluations, sessions


class PassThresholds(BaseModel):
    """What a clerk must reach in a month; each centre may set its own."""

    model_config = ConfigDict(extra="forbid")

    min_sessions: int = Field(20, ge=1, description="Fewer sessions: no verdict.")
    stand_on_call_rate: float = Field(0.90, ge=0, le=1)
    smile_at_greeting_rate: float = Field(0.85, ge=0, le=1)
    farewell_stand_rate: float = Field(0.80, ge=0, le=1)
    evaluation_coverage: float = Field(0.70, ge=0, le=1)
    good_review_rate: float = Field(0.95, ge=0, le=1)
    max_away_without_sign_min: float = Field(30.0, ge=0)
    max_overdue_cases: int = Field(0, ge=0)
    evidence_limit: int = Field(50, ge=1, le=1000, description="Event ids listed per failure.")
    too_broad_counts: bool = Field(
        False,
        description="Whether the 'smile too broad' flag counts against a session in the "
        "smile-star ranking (A-STAR). Off: the flag is a classifier probability, not a "
        "validated intensity, so it is shown as information only until it is validated.",
    )


def _evidence(
    engine: Engine, criterion: str, clerk_id: str, start: int, end: int, limit: int
) -> list[str]:
    """Event ids of the sessions/evaluations/absences that made a criterion fail."""
    s, e, a = sessions, evaluations, away_periods
    in_s = and_(s.c.clerk_id == clerk_id, s.c.opened_ms >= start, s.c.opened_ms < end)
    q: Any
    if criterion == "stand_on_call_rate":
        q = select(s.c.event_id).where(in_s, ~s.c.stood_on_call)
    elif criterion == "smile_at_greeting_rate":
        q = select(s.c.event_id).where(in_s, ~s.c.smiled_at_greeting)
    elif criterion == "farewell_stand_rate":
        q = select(s.c.event_id).where(in_s, ~s.c.stood_at_farewell)
    elif criterion == "evaluation_coverage":
        q = select(s.c.event_id).where(in_s, s.c.rating.is_(None))
    elif criterion == "good_review_rate":
        q = select(e.c.event_id).where(
            e.c.clerk_id == clerk_id,
            e.c.ts_ms >= start,
            e.c.ts_ms < end,
            ~e.c.suspect,
            e.c.rating.in_(BAD),
        )
    elif criterion == "away_without_sign_min":
        q = select(a.c.event_id).where(
            a.c.clerk_id == clerk_id, a.c.started_ms >= start, a.c.started_ms < end, a.c.violation
        )
    else:
        return []
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(q.order_by(q.selected_columns[0]).limit(limit))]


def verdict(
    engine: Engine,
    clerk_id: str,
    month: str,
    thresholds: PassThresholds,
    tz: str = "Asia/Shanghai",
    now_ms: int | None = None,
) -> dict[str, Any]:
    start, end = period_bounds(month, tz)
    m: Measures = compute(engine, Scope(clerk_id=clerk_id), start, end, now_ms=now_ms)[None]
    t = thresholds
    failures: list[dict[str, Any]] = []

    def check(name: str, value: float | None, limit: float, higher_is_better: bool) -> None:
        if value is None:
            return
        ok = value >= limit if higher_is_better else value <= limit
        if not ok:
            failures.append(
                {
                    "criterion": name,
                    "value": value,
                    "threshold": limit,
                    "evidence": _evidence(engine, name, clerk_id, start, end, t.evidence_limit),
                }
            )

    if m.sessions < t.min_sessions:
        result = "insufficient_data"
    else:
        check("stand_on_call_rate", m.stand_on_call_rate, t.stand_on_call_rate, True)
        check("smile_at_greeting_rate", m.smile_at_greeting_rate, t.smile_at_greeting_rate, True)
        check("farewell_stand_rate", m.farewell_stand_rate, t.farewell_stand_rate, True)
        check("evaluation_coverage", m.evaluation_coverage, t.evaluation_coverage, True)
        check("good_review_rate", m.good_review_rate, t.good_review_rate, True)
        check("away_without_sign_min", m.away_without_sign_min, t.max_away_without_sign_min, False)
        check("overdue_cases", m.overdue_cases, t.max_overdue_cases, False)
        result = "fail" if failures else "pass"
    return {
        "clerk_id": clerk_id,
        "month": month,
        "result": result,
        "measures": m.as_dict(),
        "failures": failures,
    }


def probation(
    engine: Engine,
    clerk_id: str,
    month: str,
    thresholds: PassThresholds,
    tz: str = "Asia/Shanghai",
) -> dict[str, Any]:
    """A-PASS / A-REVIEW: failing a month puts the clerk on probation for the next one;
    failing again while on probation recommends replacement."""
    prev = verdict(engine, clerk_id, previous_month(month), thresholds, tz)
    cur = verdict(engine, clerk_id, month, thresholds, tz)
    on_probation = prev["result"] == "fail"
    if on_probation and cur["result"] == "fail":
        status = "replace_recommended"
    elif on_probation and cur["result"] == "pass":
        status = "probation_passed"
    elif on_probation:
        status = "on_probation"
    elif cur["result"] == "fail":
        status = "probation_next_month"
    else:
        status = "in_good_standing"
    return {
        "clerk_id": clerk_id,
        "month": month,
        "status": status,
        "previous": prev["result"],
        "current": cur["result"],
    }
