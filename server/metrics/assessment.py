"""Monthly pass/fail per clerk with the evidence behind it (A-PASS) and probation (A-REVIEW)."""

from __future__ import annotations

from typing import Any, Final, Literal

from sqlalchemy import Engine, and_, select

from server.metrics.measures import BAD, Measures, Scope, compute
from server.metrics.periods import next_month, period_bounds, previous_month
from server.policy.rows import UNOBSERVED
from server.policy.thresholds import PassThresholds, Resolved
from server.store.assessment import finding_rows, probation_decision_rows, verdict_decision_rows
from server.store.schema import away_periods, evaluations, sessions

#: The conduct criteria: judged only on the sessions where their verdict was observed.
#: Per criterion: the session column it reads, and the measure counting it not observed.
CONDUCT: Final = {
    "stand_on_call_rate": ("stood_on_call", "stand_on_call_not_observed"),
    "smile_at_greeting_rate": ("smiled_at_greeting", "smile_at_greeting_not_observed"),
    "farewell_stand_rate": ("stood_at_farewell", "farewell_stand_not_observed"),
}
Status = Literal[
    "pass", "fail", "insufficient_observed_sessions", "insufficient_data", "no_data", "not_counted"
]
#: The criterion inspectors' findings are judged by (A-PASS, beside the automatic ones).
FINDINGS: Final = "inspector_findings"


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
    in_s = and_(
        s.c.clerk_id == clerk_id, s.c.opened_ms >= start, s.c.opened_ms < end, ~s.c.not_counted
    )
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


def _findings(engine: Engine, clerk_id: str, start: int, end: int) -> list[dict[str, Any]]:
    """The month's findings about the clerk that stand (withdrawn ones are shown apart)."""
    with engine.connect() as conn:
        return finding_rows(conn, [clerk_id], start, end)


def verdict(
    engine: Engine,
    clerk_id: str,
    month: str,
    thresholds: PassThresholds,
    tz: str = "Asia/Shanghai",
    now_ms: int | None = None,
    resolved: Resolved | None = None,
) -> dict[str, Any]:
    """A clerk's month (A-PASS): every criterion with its value, the threshold it was
    judged by and its status, the failures with their evidence, and the result.

    Fewer than ``min_sessions`` sessions: ``insufficient_data``, nothing judged. A
    conduct criterion with fewer than ``min_sessions`` sessions whose verdict was
    observed gives no judgement (``insufficient_observed_sessions``): a clerk the camera
    could not see is neither failed nor passed on it. Any failure: ``fail``; otherwise
    ``pass`` if a conduct criterion was judged, else ``insufficient_data`` (the month's
    conduct could not be seen: no pass is claimed on it).

    Inspectors' findings are one more criterion (``inspector_findings``): more than
    ``max_findings_not_complied`` findings of "not complied" fail the month, whatever the
    number of sessions (a person saw it); with ``findings_count`` off they are listed,
    not judged. ``resolved``: the thresholds' versions, named in the verdict."""
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
    standing = _findings(engine, clerk_id, start, end)
    kept = [f for f in standing if f["withdrawn_ms"] is None]
    against = [f for f in kept if f["outcome"] == "not_complied"]
    entry: dict[str, Any] = {
        "criterion": FINDINGS,
        "value": len(against),
        "threshold": t.max_findings_not_complied,
        "findings": len(kept),
        "withdrawn": len(standing) - len(kept),
    }
    status: Status
    if not t.findings_count:
        status = "not_counted"
    elif len(against) > t.max_findings_not_complied:
        status = "fail"
        failures.append(
            {
                "criterion": FINDINGS,
                "value": len(against),
                "threshold": t.max_findings_not_complied,
                "evidence": [f["finding_id"] for f in against][: t.evidence_limit],
            }
        )
    else:
        status = "pass" if kept else "no_data"
    criteria.append(entry | {"status": status})
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
        "thresholds_version": (resolved or Resolved(t, (), {})).as_dict(),
        "findings": [_finding_out(f) for f in standing],
    }


def _finding_out(f: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in f.items() if k != "site"}


SignOff = Literal["provisional", "confirmed", "overridden", "recomputed"]


def stands(computed: str, last: tuple[str, str, str] | None) -> tuple[str, SignOff]:
    """The result that stands and how, from the computed result and the last decision
    on the month (its action, result and the computed result it saw); the one rule the
    pages, the API and the reports follow (``standing``)."""
    if last is None:
        return computed, "provisional"
    action, result, seen = last
    if action == "override":
        return result, "overridden"
    if seen == computed:
        return result, "confirmed"
    return computed, "recomputed"


def standing(engine: Engine, computed: dict[str, Any]) -> dict[str, Any]:
    """The month's verdict as it stands: the computed one until a person decides.

    A confirmation stands while the computed result is the one it confirmed; once it
    changed (an upheld appeal recomputed the month) the new computed result stands and
    is ``recomputed``, to be signed off again. An override stands whatever is computed
    since. Every decision stays listed, with the computed result it saw."""
    with engine.connect() as conn:
        decisions = verdict_decision_rows(conn, [computed["clerk_id"]], computed["month"])
    last = decisions[-1] if decisions else None
    result, sign_off = stands(
        computed["result"],
        None if last is None else (last["action"], last["result"], last["computed_result"]),
    )
    return {
        "result": result,
        "computed_result": computed["result"],
        "sign_off": sign_off,
        "changed_since_decision": last is not None
        and last["computed_result"] != computed["result"],
        "decisions": [
            {k: v for k, v in d.items() if k not in ("site", "computed")} for d in decisions
        ],
    }


def probation(
    engine: Engine,
    clerk_id: str,
    month: str,
    thresholds: PassThresholds,
    tz: str = "Asia/Shanghai",
    previous_thresholds: PassThresholds | None = None,
    current: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A-PASS / A-REVIEW: failing a month recommends probation for the next one; failing
    again while on probation recommends returning the clerk to the agency. Judged on the
    verdicts as they stand (sign-offs and overrides included). The recommendation is not
    the decision: probation starts and ends only by a recorded decision (listed here, as
    ``decided``: the probation month's start and end, who and when). ``current``: this
    month's verdict when the caller has it already."""
    prev_v = verdict(engine, clerk_id, previous_month(month), previous_thresholds or thresholds, tz)
    cur_v = current if current is not None else verdict(engine, clerk_id, month, thresholds, tz)
    prev, cur = standing(engine, prev_v)["result"], standing(engine, cur_v)["result"]
    on_probation = prev == "fail"
    if on_probation and cur == "fail":
        status = "replace_recommended"
    elif on_probation and cur == "pass":
        status = "probation_passed"
    elif on_probation:
        status = "on_probation"
    elif cur == "fail":
        status = "probation_next_month"
    else:
        status = "in_good_standing"
    with engine.connect() as conn:
        decisions = probation_decision_rows(conn, [clerk_id])
    return {
        "clerk_id": clerk_id,
        "month": month,
        "status": status,
        "previous": prev,
        "current": cur,
        "decided": decided_probation(decisions, month),
        "decisions": [{k: v for k, v in d.items() if k != "site"} for d in decisions],
    }


def decided_probation(decisions: list[dict[str, Any]], month: str) -> dict[str, Any] | None:
    """The recorded probation that concerns ``month`` (it is the probation month, or the
    month before it): the last start and, if any, the end recorded after it."""
    start = next(
        (
            d
            for d in reversed(decisions)
            if d["action"] == "start" and d["month"] in (month, next_month(month))
        ),
        None,
    )
    if start is None:
        return None
    end = next(
        (
            d
            for d in decisions
            if d["action"] == "end" and d["month"] == start["month"] and d["id"] > start["id"]
        ),
        None,
    )
    return {
        "month": start["month"],
        "started_by": start["decided_by"],
        "started_ms": start["decided_ms"],
        "outcome": end["outcome"] if end else None,
        "ended_by": end["decided_by"] if end else None,
        "ended_ms": end["decided_ms"] if end else None,
    }
