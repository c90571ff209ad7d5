"""The monthly reports' read model: a centre's month and one clerk's month.

A report puts side by side what the terminals measured (the verdicts, criterion by
criterion, with what could not be seen) and what people recorded about the month:
inspectors' findings, verdict sign-offs, probation decisions, appeals and the
bad-review cases with their workflow. The people's records are read here straight
from their tables (``findings``, ``verdict_decisions``, ``probation_decisions``,
``appeals``, the case columns of migration 0012), so a report shows a row as soon as
it exists, whoever wrote it.

Scope is not decided here: ``server.api.access.Access`` checks the principal, computes
the verdicts through its own reads and hands them in. Everything returned is plain
frozen data; ``server.api.report_render`` turns it into HTML and PDF.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from sqlalchemy import Engine, select

from server.metrics.assessment import SignOff, stands
from server.metrics.measures import Measures
from server.metrics.periods import next_month
from server.store.schema import (
    appeals,
    cases,
    findings,
    probation_decisions,
    verdict_decisions,
)

#: The conduct criteria: judged on the sessions where the camera could see the verdict.
CONDUCT: Final = frozenset({"stand_on_call_rate", "smile_at_greeting_rate", "farewell_stand_rate"})
CaseState = Literal["open", "assigned", "called_back", "rectified", "closed"]


@dataclass(frozen=True)
class Criterion:
    """One criterion of a verdict as it was judged."""

    name: str
    value: float | None
    threshold: float
    status: str  # pass, fail, insufficient_observed_sessions, insufficient_data, ...
    observed_sessions: int | None  # conduct criteria: sessions whose verdict was seen
    not_observed: int | None  # conduct criteria: sessions the camera could not see
    #: A failed criterion's evidence items (sessions, evaluations, absences, findings);
    #: None when it did not fail. ``evidence_capped``: the verdict lists at most
    #: ``evidence_limit`` of them, so there may be more.
    evidence: int | None
    evidence_capped: bool


@dataclass(frozen=True)
class Decision:
    """A person's sign-off of a monthly verdict (``verdict_decisions``)."""

    clerk_id: str
    action: str  # confirm, override
    result: str
    computed_result: str
    reason: str
    decided_by: str
    decided_ms: int


@dataclass(frozen=True)
class Verdict:
    """A clerk's month: the computed verdict, the decisions on it and what stands."""

    clerk_id: str
    name: str
    computed: str  # pass, fail, insufficient_data
    criteria: tuple[Criterion, ...]
    decisions: tuple[Decision, ...]  # oldest first
    stands: str
    sign_off: SignOff
    probation: str  # the recommendation: in_good_standing, probation_next_month, ...


@dataclass(frozen=True)
class Finding:
    finding_id: str
    clerk_id: str
    kind: str  # patrol, video_check, survey
    criterion: str  # a clause of the standard (G-SMILE, W-CALL, ...)
    outcome: str  # complied, not_complied
    observed_ms: int
    note: str
    attachments: int
    recorded_by: str
    withdrawn_ms: int | None
    withdrawn_by: str | None
    withdrawn_reason: str | None


@dataclass(frozen=True)
class ProbationDecision:
    clerk_id: str
    month: str  # the probation month
    action: str  # start, end
    outcome: str | None  # end: passed, returned_to_agency
    reason: str
    decided_by: str
    decided_ms: int


@dataclass(frozen=True)
class Appeal:
    appeal_id: str
    clerk_id: str
    session_id: str | None  # None: an appeal on the monthly verdict
    criterion: str | None
    note: str
    filed_by: str
    filed_ms: int
    status: str  # open, upheld, rejected
    resolution: str | None  # corrected, not_counted
    resolution_note: str | None
    resolved_by: str | None
    resolved_ms: int | None


@dataclass(frozen=True)
class Case:
    """A bad-review case and where its workflow stands."""

    case_id: str
    window: str
    clerk_id: str | None
    rating: str
    opened_ms: int
    due_ms: int
    state: CaseState
    overdue: bool  # open past its due time, or closed after it
    assigned_to: str | None
    callback_ms: int | None
    callback_outcome: str | None
    rectification: str | None
    closed_by: str | None
    closed_ms: int | None
    reopened: int
    note: str | None


@dataclass(frozen=True)
class Records:
    """What people recorded about the month, for a set of clerks."""

    findings: tuple[Finding, ...]
    decisions: tuple[Decision, ...]
    probation: tuple[ProbationDecision, ...]
    appeals: tuple[Appeal, ...]
    cases: tuple[Case, ...]


@dataclass(frozen=True)
class Unit:
    site: str
    name: str
    district: str


@dataclass(frozen=True)
class CentreReport:
    unit: Unit
    month: str
    generated_ms: int
    total: Measures
    by_window: tuple[tuple[str, Measures], ...]
    verdicts: tuple[Verdict, ...]
    ranking: tuple[Mapping[str, Any], ...]
    records: Records
    names: Mapping[str, str]  # clerk id -> name, for the records' rows


@dataclass(frozen=True)
class ClerkReport:
    unit: Unit
    month: str
    generated_ms: int
    clerk_id: str
    name: str
    measures: Measures
    verdict: Verdict
    records: Records


# ------------------------------------------------------------------ pure parts


def criteria(verdict: Mapping[str, Any]) -> tuple[Criterion, ...]:
    """A computed verdict's criteria (``server.metrics.assessment.verdict``), each with
    the number of evidence items listed for it when it failed."""
    limit = int(verdict.get("thresholds", {}).get("evidence_limit", 0)) or None
    failed = {f["criterion"]: len(f["evidence"]) for f in verdict["failures"]}
    out = []
    for c in verdict["criteria"]:
        n = failed.get(c["criterion"])
        out.append(
            Criterion(
                name=c["criterion"],
                value=c["value"],
                threshold=c["threshold"],
                status=c["status"],
                observed_sessions=c.get("observed_sessions"),
                not_observed=c.get("not_observed"),
                evidence=n,
                evidence_capped=n is not None and limit is not None and n >= limit,
            )
        )
    return tuple(out)


def signed_off(computed: str, decisions: Sequence[Decision]) -> tuple[str, SignOff]:
    """The result that stands and how (``server.metrics.assessment.stands``: the rule
    the pages and the API follow)."""
    last = decisions[-1] if decisions else None
    return stands(
        computed, None if last is None else (last.action, last.result, last.computed_result)
    )


def case_state(row: Mapping[str, Any]) -> CaseState:
    """The furthest step a case's workflow has reached."""
    if row["status"] == "closed":
        return "closed"
    if row.get("rectified_ms") is not None:
        return "rectified"
    if row.get("callback_ms") is not None:
        return "called_back"
    if row.get("assigned_to") is not None:
        return "assigned"
    return "open"


def verdict_of(
    clerk: Mapping[str, Any],
    computed: Mapping[str, Any],
    probation: Mapping[str, Any],
    decisions: Sequence[Decision],
) -> Verdict:
    mine = tuple(d for d in decisions if d.clerk_id == clerk["clerk_id"])
    stands, sign_off = signed_off(computed["result"], mine)
    return Verdict(
        clerk_id=clerk["clerk_id"],
        name=clerk["name"],
        computed=computed["result"],
        criteria=criteria(computed),
        decisions=mine,
        stands=stands,
        sign_off=sign_off,
        probation=probation["status"],
    )


# ------------------------------------------------------------------ the records


def records(
    engine: Engine,
    clerk_ids: Sequence[str],
    month: str,
    start_ms: int,
    end_ms: int,
    now_ms: int,
    *,
    sites: frozenset[str] | None,
    centre: str | None = None,
) -> Records:
    """What people recorded about ``month`` for these clerks, at the ``sites`` the
    reader sees (None: every site): findings observed in the month, the month's verdict
    decisions and appeals, probation decisions for this month or the next (a failed
    month's probation), and the cases opened in the month. With a ``centre``, the rows
    made there and every case of that centre (a centre's report); without, the clerks'
    own wherever they worked (a clerk's report)."""
    ids = list(clerk_ids)
    within = frozenset({centre}) if centre is not None else sites

    def where(table: Any) -> list[Any]:
        conds = [table.c.clerk_id.in_(ids)]
        if within is not None:
            conds.append(table.c.site.in_(within))
        return conds

    with engine.connect() as conn:
        f_rows = conn.execute(
            select(findings)
            .where(
                *where(findings),
                findings.c.observed_ms >= start_ms,
                findings.c.observed_ms < end_ms,
            )
            .order_by(findings.c.observed_ms, findings.c.finding_id)
        ).all()
        d_rows = conn.execute(
            select(verdict_decisions)
            .where(*where(verdict_decisions), verdict_decisions.c.month == month)
            .order_by(verdict_decisions.c.id)
        ).all()
        p_rows = conn.execute(
            select(probation_decisions)
            .where(
                *where(probation_decisions),
                probation_decisions.c.month.in_((month, next_month(month))),
            )
            .order_by(probation_decisions.c.id)
        ).all()
        a_rows = conn.execute(
            select(appeals)
            .where(*where(appeals), appeals.c.month == month)
            .order_by(appeals.c.filed_ms, appeals.c.appeal_id)
        ).all()
        q = select(cases).where(cases.c.opened_ms >= start_ms, cases.c.opened_ms < end_ms)
        q = q.where(*where(cases)) if centre is None else q.where(cases.c.site == centre)
        c_rows = conn.execute(q.order_by(cases.c.opened_ms, cases.c.case_id)).all()
    return Records(
        findings=tuple(
            Finding(
                finding_id=r.finding_id,
                clerk_id=r.clerk_id,
                kind=r.kind,
                criterion=r.criterion,
                outcome=r.outcome,
                observed_ms=r.observed_ms,
                note=r.note,
                attachments=len(r.attachments or ()),
                recorded_by=r.recorded_by,
                withdrawn_ms=r.withdrawn_ms,
                withdrawn_by=r.withdrawn_by,
                withdrawn_reason=r.withdrawn_reason,
            )
            for r in f_rows
        ),
        decisions=tuple(
            Decision(
                clerk_id=r.clerk_id,
                action=r.action,
                result=r.result,
                computed_result=r.computed_result,
                reason=r.reason,
                decided_by=r.decided_by,
                decided_ms=r.decided_ms,
            )
            for r in d_rows
        ),
        probation=tuple(
            ProbationDecision(
                clerk_id=r.clerk_id,
                month=r.month,
                action=r.action,
                outcome=r.outcome,
                reason=r.reason,
                decided_by=r.decided_by,
                decided_ms=r.decided_ms,
            )
            for r in p_rows
        ),
        appeals=tuple(
            Appeal(
                appeal_id=r.appeal_id,
                clerk_id=r.clerk_id,
                session_id=r.session_id,
                criterion=r.criterion,
                note=r.note,
                filed_by=r.filed_by,
                filed_ms=r.filed_ms,
                status=r.status,
                resolution=r.resolution,
                resolution_note=r.resolution_note,
                resolved_by=r.resolved_by,
                resolved_ms=r.resolved_ms,
            )
            for r in a_rows
        ),
        cases=tuple(_case(dict(r._mapping), now_ms) for r in c_rows),
    )


def _case(row: dict[str, Any], now_ms: int) -> Case:
    closed = row["closed_ms"]
    overdue = closed > row["due_ms"] if closed is not None else now_ms > row["due_ms"]
    return Case(
        case_id=row["case_id"],
        window=row["window"],
        clerk_id=row["clerk_id"],
        rating=row["rating"],
        opened_ms=row["opened_ms"],
        due_ms=row["due_ms"],
        state=case_state(row),
        overdue=overdue,
        assigned_to=row["assigned_to"],
        callback_ms=row["callback_ms"],
        callback_outcome=row["callback_outcome"],
        rectification=row["rectification"],
        closed_by=row["closed_by"],
        closed_ms=closed,
        reopened=row["reopened"] or 0,
        note=row["note"],
    )


# ------------------------------------------------------------------ the reports


def centre_month(
    engine: Engine,
    unit: Mapping[str, Any],
    month: str,
    bounds: tuple[int, int],
    now_ms: int,
    *,
    clerks: Sequence[Mapping[str, Any]],
    verdicts: Mapping[str, Mapping[str, Any]],
    probations: Mapping[str, Mapping[str, Any]],
    total: Measures,
    by_window: Mapping[str | None, Measures],
    ranking: Sequence[Mapping[str, Any]],
) -> CentreReport:
    """A centre's month from the verdicts ``Access`` computed for its clerks."""
    ids = [c["clerk_id"] for c in clerks]
    recs = records(engine, ids, month, *bounds, now_ms, sites=None, centre=unit["site"])
    return CentreReport(
        unit=Unit(unit["site"], unit["name"], unit["district"]),
        month=month,
        generated_ms=now_ms,
        total=total,
        by_window=tuple(sorted(((k or "", m) for k, m in by_window.items()))),
        verdicts=tuple(
            verdict_of(c, verdicts[c["clerk_id"]], probations[c["clerk_id"]], recs.decisions)
            for c in clerks
        ),
        ranking=tuple(ranking),
        records=recs,
        names={c["clerk_id"]: c["name"] for c in clerks},
    )


def clerk_month(
    engine: Engine,
    unit: Mapping[str, Any],
    clerk: Mapping[str, Any],
    month: str,
    bounds: tuple[int, int],
    now_ms: int,
    *,
    measures: Measures,
    verdict: Mapping[str, Any],
    probation: Mapping[str, Any],
    sites: frozenset[str] | None,
) -> ClerkReport:
    """One clerk's month from the verdict ``Access`` computed; the records of the
    ``sites`` the reader sees (a clerk who moved brings none of a centre it cannot)."""
    recs = records(engine, [clerk["clerk_id"]], month, *bounds, now_ms, sites=sites)
    return ClerkReport(
        unit=Unit(unit["site"], unit["name"], unit["district"]),
        month=month,
        generated_ms=now_ms,
        clerk_id=clerk["clerk_id"],
        name=clerk["name"],
        measures=measures,
        verdict=verdict_of(clerk, verdict, probation, recs.decisions),
        records=recs,
    )
