"""Monthly pass/fail per clerk with the evidence behind it (A-PASS) and probation (A-REVIEW)."""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine, and_, select

from server.metrics.measures import BAD, Measures, Scope, compute
from server.metrics.periods import period_bounds, previous_month
from server.policy.rows import UNOBSERVED
from server.store.schema import away_periods, evaluations, sessions


class PassThresholds(BaseModel):
    """What a clerk must reach in a month; each centre may set its own. Every verdict
    lists the thresholds it was judged by."""

    model_config = ConfigDict(extra="forbid")

    min_sessions: int = Field(
        20,
        ge=1,
        description="Fewer sessions in the month: no verdict. A conduct criterion (stand, "
        "smile, farewell) also needs this many sessions where its verdict was observed; "
        "with fewer it gives no judgement (insufficient observed sessions).",
    )
    stand_on_call_rate: float = Field(
        0.90, ge=0, le=1, description="Least stand-on-call rate (of the observed sessions)."
    )
    smile_at_greeting_rate: float = Field(
        0.85, ge=0, le=1, description="Least smile-at-greeting rate (of the observed sessions)."
    )
    farewell_stand_rate: float = Field(
        0.80, ge=0, le=1, description="Least farewell-stand rate (of the observed sessions)."
    )
    evaluation_coverage: float = Field(
        0.70, ge=0, le=1, description="Least share of sessions with an evaluation."
    )
    good_review_rate: float = Field(
        0.95, ge=0, le=1, description="Least share of good evaluations (basically satisfied+)."
    )
    max_away_without_sign_min: float = Field(
        30.0, ge=0, description="Most minutes away without the sign up in the month."
    )
    max_overdue_cases: int = Field(0, ge=0, description="Most bad-review cases overdue.")
    evidence_limit: int = Field(50, ge=1, le=1000, description="Event ids listed per failure.")
    too_broad_counts: bool = Field(
        False,
        description="Whether the 'smile too broad' flag counts against a session in the "
        "smile-star ranking (A-STAR). Off: the flag is a classifier probability, not a "
        "validated intensity, so it is shown as information only until it is validated.",
    )


#: The conduct criteria: judged only on the sessions where their verdict was observed.
#: Per criterion: the session column it reads, and the measure counting it not observed.
CONDUCT: Final = {
    "stand_on_call_rate": ("stood_on_call", "stand_on_call_not_observed"),
    "smile_at_greeting_rate": ("smiled_at_greeting", "smile_at_greeting_not_observed"),
    "farewell_stand_rate": ("stood_at_farewell", "farewell_stand_not_observed"),
}
Status = Literal["pass", "fail", "insufficient_observed_sessions", "insufficient_data", "no_data"]


def _evidence(
    engine: Engine,
    criterion: str,
    clerk_id: str,
    start: int,
    end: int,
    limit: int,
    *,
    not_observed: bool = False,
) -> list[str]:
    """Event ids of the sessions/evaluations/absences that made a criterion fail; a
    session whose verdict was not observed is never among them. ``not_observed``: the
    ids of those sessions instead (a conduct criterion's), to be looked at apart."""
    s, e, a = sessions, evaluations, away_periods
    in_s = and_(s.c.clerk_id == clerk_id, s.c.opened_ms >= start, s.c.opened_ms < end)
    q: Any
    if criterion in CONDUCT:
        column = CONDUCT[criterion][0]
        unseen = s.c[UNOBSERVED[column]]
        q = select(s.c.event_id).where(in_s, unseen if not_observed else ~s.c[column] & ~unseen)
    elif not_observed:
        return []
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
    """A clerk's month (A-PASS): every criterion with its value, the threshold it was
    judged by and its status, the failures with their evidence, and the result.

    Fewer than ``min_sessions`` sessions: ``insufficient_data``, nothing judged. A
    conduct criterion with fewer than ``min_sessions`` sessions whose verdict was
    observed gives no judgement (``insufficient_observed_sessions``): a clerk the camera
    could not see is neither failed nor passed on it. Any failure: ``fail``; otherwise
    ``pass`` if a conduct criterion was judged, else ``insufficient_data`` (the month's
    conduct could not be seen: no pass is claimed on it)."""
    start, end = period_bounds(month, tz)
    m: Measures = compute(engine, Scope(clerk_id=clerk_id), start, end, now_ms=now_ms)[None]
    t = thresholds
    enough = m.sessions >= t.min_sessions
    observed = {
        "stand_on_call_rate": m.sessions - m.stand_on_call_not_observed,
        "smile_at_greeting_rate": m.sessions - m.smile_at_greeting_not_observed,
        # a reception has no farewell to judge
        "farewell_stand_rate": m.sessions - m.receptions - m.farewell_stand_not_observed,
    }
    criteria: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []

    def check(name: str, value: float | None, limit: float, higher_is_better: bool) -> None:
        entry: dict[str, Any] = {"criterion": name, "value": value, "threshold": limit}
        status: Status
        if name in CONDUCT:
            unseen = int(getattr(m, CONDUCT[name][1]))
            entry |= {
                "observed_sessions": observed[name],
                "not_observed": unseen,
                "not_observed_evidence": _evidence(
                    engine, name, clerk_id, start, end, t.evidence_limit, not_observed=True
                )
                if unseen
                else [],
            }
        if not enough:
            status = "insufficient_data"
        elif name in CONDUCT and observed[name] < t.min_sessions:
            status = "insufficient_observed_sessions"
        elif value is None:
            status = "no_data"
        elif value >= limit if higher_is_better else value <= limit:
            status = "pass"
        else:
            status = "fail"
            failures.append(
                {
                    "criterion": name,
                    "value": value,
                    "threshold": limit,
                    "evidence": _evidence(engine, name, clerk_id, start, end, t.evidence_limit),
                }
            )
        criteria.append(entry | {"status": status})

    check("stand_on_call_rate", m.stand_on_call_rate, t.stand_on_call_rate, True)
    check("smile_at_greeting_rate", m.smile_at_greeting_rate, t.smile_at_greeting_rate, True)
    check("farewell_stand_rate", m.farewell_stand_rate, t.farewell_stand_rate, True)
    check("evaluation_coverage", m.evaluation_coverage, t.evaluation_coverage, True)
    check("good_review_rate", m.good_review_rate, t.good_review_rate, True)
    check("away_without_sign_min", m.away_without_sign_min, t.max_away_without_sign_min, False)
    check("overdue_cases", m.overdue_cases, t.max_overdue_cases, False)
    conduct_judged = any(
        c["status"] in ("pass", "fail") for c in criteria if c["criterion"] in CONDUCT
    )
    result = "fail" if failures else "pass" if conduct_judged else "insufficient_data"
    return {
        "clerk_id": clerk_id,
        "month": month,
        "result": result,
        "measures": m.as_dict(),
        "failures": failures,
        "criteria": criteria,
        "thresholds": t.model_dump(),
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
