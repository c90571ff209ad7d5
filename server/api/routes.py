"""API routes for the dashboard and for other systems (OpenAPI at /docs)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import Field

from agent.protocol import RATING_ZH, Rating, Slug
from server.api.access import Access, AccessDep, Period, changing, reading
from server.api.models import ApiModel, ClerkIn, HelpdeskKpiIn
from server.api.schemas import (
    Acknowledged,
    AlertOut,
    AssessmentRow,
    AuditEntry,
    ClerkOut,
    ClerkRef,
    CompareResponse,
    EventOut,
    FleetRow,
    GapOut,
    HallTile,
    HeatCell,
    HelpdeskOut,
    KpisStored,
    MeasuresOut,
    MeasuresResponse,
    MetaOut,
    ProbationOut,
    RankingRow,
    RatingLevel,
    SessionOut,
    StatsOut,
    Transferred,
    TrendDay,
    UnitOut,
    VerdictOut,
    WindowOut,
)
from server.api.window_settings import maybe_publisher
from server.metrics.measures import GroupBy, Scope

router = APIRouter(prefix="/api")


# ----------------------------------------------------------------- the page's facts


@router.get("/meta")
def meta(request: Request, a: AccessDep) -> MetaOut:
    """What the dashboard takes from the server instead of hard-coding it: the time zone
    of local days and the rating scale (which levels are bad reviews)."""
    return MetaOut(
        timezone=a.settings.timezone,
        ratings=[RatingLevel(code=r, zh=RATING_ZH[r], bad=r.is_bad) for r in Rating],
        version=request.app.version,
    )


# ----------------------------------------------------------------- live hall


@router.get("/units")
def list_units(a: AccessDep) -> list[UnitOut]:
    return [UnitOut.model_validate(u) for u in a.units()]


@router.get("/hall/{site}")
def hall(site: str, a: AccessDep) -> list[HallTile]:
    """Every window of a centre as a tile, with today's figures."""
    return [HallTile.model_validate(t) for t in a.hall(site)]


@router.get("/windows")
def windows(a: AccessDep, site: str | None = None) -> list[WindowOut]:
    return [WindowOut.model_validate(w) for w in a.windows(site)]


@router.get("/events")
def latest_events(
    a: AccessDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    site: str | None = None,
) -> list[EventOut]:
    """The most recently received events, newest first."""
    return [EventOut.model_validate(e) for e in a.latest_events(limit, site)]


@router.get("/stats")
def stats(a: AccessDep) -> StatsOut:
    """Stored events (in your units) and, city-wide, rejected messages by reason."""
    return StatsOut.model_validate(a.stats())


@router.get("/fleet")
def fleet(a: AccessDep) -> list[FleetRow]:
    """Each terminal's health, model and config versions, outbox backlog."""
    return [FleetRow.model_validate(f) for f in a.fleet()]


@router.get("/gaps")
def gaps(a: AccessDep) -> list[GapOut]:
    """Device sequence numbers never received (outbox cap drops or lost data)."""
    return [GapOut.model_validate(g) for g in a.gaps()]


# ----------------------------------------------------------------- alerts


class AckIn(ApiModel):
    note: str = Field(min_length=1, max_length=2000, pattern=r"^[^\x00]*$")


class TransferIn(ApiModel):
    site: Slug = Field(description="The centre the clerk moves to.")


@router.get("/alerts")
def alerts(
    a: AccessDep,
    open_only: bool = False,
    site: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[AlertOut]:
    """Away without sign, missed stand or greeting, bad reviews, offline, faults."""
    return [AlertOut.model_validate(x) for x in a.alerts(site, open_only=open_only, limit=limit)]


@router.post("/alerts/{alert_id}/ack")
def ack_alert(
    alert_id: str, body: AckIn, a: Annotated[Access, changing("acknowledge")]
) -> Acknowledged:
    a.ack_alert(alert_id, body.note)
    return Acknowledged(acknowledged=True)


@router.get("/audit")
def audit(
    a: Annotated[Access, reading("users")],
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    site: str | None = None,
) -> list[AuditEntry]:
    """Who changed what, newest first: entries about your units and your own actions."""
    return [AuditEntry.model_validate(e) for e in a.audit_entries(limit, site)]


# ----------------------------------------------------------------- measures


#: The group of records no clerk was signed in for: shown, never in a clerk's verdict.
UNATTRIBUTED = "unattributed"


def _group_key(group_by: GroupBy | None, key: str | None) -> str:
    """``all`` for an ungrouped result; a grouped row with no key is unattributed."""
    if group_by is None:
        return "all"
    return key if key is not None else UNATTRIBUTED


@router.get("/measures")
def measures(
    period: str,
    a: AccessDep,
    district: str | None = None,
    site: str | None = None,
    window: str | None = None,
    clerk_id: str | None = None,
    group_by: GroupBy | None = None,
) -> MeasuresResponse:
    """Compliance and satisfaction for a scope and period (day, month or quarter)."""
    pd = a.period(period)
    result = a.measures(a.scope(district, site, window, clerk_id), pd, group_by)
    return MeasuresResponse(
        period=period,
        groups={_group_key(group_by, k): MeasuresOut.of(m) for k, m in result.items()},
    )


@dataclass(frozen=True)
class Detail:
    """A window's or a clerk's page: scope and period, checked against the principal."""

    access: Access
    scope: Scope
    period: Period


def detail(
    period: str,
    a: AccessDep,
    site: str | None = None,
    window: str | None = None,
    clerk_id: str | None = None,
) -> Detail:
    pd = a.period(period)
    return Detail(a, a.scope(None, site, window, clerk_id), pd)


DetailDep = Annotated[Detail, Depends(detail)]


@router.get("/timeline")
def timeline(d: DetailDep) -> list[SessionOut]:
    """Session-by-session steps, for the window and clerk pages (at most 2000 sessions)."""
    return [SessionOut.model_validate(s) for s in d.access.timeline(d.scope, d.period)]


@router.get("/trend")
def trend(d: DetailDep) -> list[TrendDay]:
    """Per local day: sessions and the stand, smile, farewell and good-review rates."""
    return [TrendDay.model_validate(t) for t in d.access.trend(d.scope, d.period)]


@router.get("/heatmap")
def heatmap(d: DetailDep) -> list[HeatCell]:
    """Sessions and compliance by weekday and local hour."""
    return [HeatCell.model_validate(c) for c in d.access.heatmap(d.scope, d.period)]


@router.get("/assessment/{clerk_id}")
def assessment(clerk_id: str, month: str, a: AccessDep) -> VerdictOut:
    """Monthly pass/fail with the evidence (event ids) behind each failed criterion."""
    return VerdictOut.model_validate(a.verdict(clerk_id, month))


@router.get("/assessments")
def assessments(month: str, a: AccessDep, site: str | None = None) -> list[AssessmentRow]:
    """Every clerk's verdict and probation status for a month."""
    return [AssessmentRow.model_validate(r) for r in a.assessments(month, site)]


@router.get("/probation/{clerk_id}")
def probation_status(clerk_id: str, month: str, a: AccessDep) -> ProbationOut:
    """A-REVIEW: failing a month puts the clerk on probation for the next one."""
    return ProbationOut.model_validate(a.probation(clerk_id, month))


@router.get("/ranking")
def ranking(
    period: str,
    a: AccessDep,
    site: str | None = None,
    district: str | None = None,
    min_sessions: Annotated[int, Query(ge=1, le=100_000)] = 20,
) -> list[RankingRow]:
    """Smile-star ranking by the Wilson lower bound of exemplary sessions."""
    pd = a.period(period)
    rows = a.ranking(a.scope(district, site), pd, min_sessions=min_sessions)
    return [RankingRow.model_validate(r) for r in rows]


@router.get("/units/compare")
def compare_units(
    period: str,
    a: AccessDep,
    by: GroupBy = "site",
    district: str | None = None,
) -> CompareResponse:
    """A-ROLLOUT: the same measures side by side per site or district."""
    pd = a.period(period)
    result = a.measures(a.scope(district), pd, group_by=by)
    groups = {_group_key(by, k): MeasuresOut.of(m) for k, m in result.items()}
    return CompareResponse(period=period, by=by, groups=groups)


# ----------------------------------------------------------------- clerks, KPIs
# (bad-review cases: server/api/cases.py)


@router.post(
    "/clerks",
    status_code=201,
    responses={200: {"model": ClerkRef, "description": "An existing clerk renamed."}},
)
def add_clerk(
    body: ClerkIn, response: Response, a: Annotated[Access, changing("roster")]
) -> ClerkRef:
    """Register a clerk at a centre (or rename one of its clerks: 200). A clerk id
    used at another centre is refused (409): moving a clerk is a transfer."""
    if not a.add_clerk(body.clerk_id, body.name, body.site):
        response.status_code = 200
    return ClerkRef(clerk_id=body.clerk_id)


@router.post("/clerks/{clerk_id}/transfer")
def transfer_clerk(
    clerk_id: str, body: TransferIn, request: Request, a: Annotated[Access, changing("roster")]
) -> Transferred:
    """Move a clerk to another centre; needs a principal that sees both (audited in both).
    Where the server pushes settings, the old centre's terminals get a clerk directory
    without the clerk at once (their badge and PIN are cleared: enrol them again)."""
    was = a.transfer_clerk(clerk_id, body.site)
    pub = maybe_publisher(request, a)
    if pub is not None:
        pub.sync_directory(was, a.p.username)
    return Transferred.model_validate({"clerk_id": clerk_id, "from": was, "to": body.site})


@router.get("/clerks")
def clerks(a: AccessDep, site: str | None = None) -> list[ClerkOut]:
    return [ClerkOut.model_validate(c) for c in a.clerks(site)]


@router.post("/helpdesk/kpis", status_code=201)
def put_kpis(body: HelpdeskKpiIn, a: Annotated[Access, changing("kpis")]) -> KpisStored:
    """H-ONLINE: daily figures from the help-desk system (a person, or a token granted kpis)."""
    a.put_kpis(
        body.site,
        body.window,
        body.day.isoformat(),
        body.requests,
        body.first_response_within_1min,
        body.resolved,
    )
    return KpisStored(day=body.day)


@router.get("/helpdesk")
def helpdesk(first_day: date, last_day: date, a: AccessDep, site: str | None = None) -> HelpdeskOut:
    """H-ONLINE over the local days first_day..last_day (inclusive)."""
    return HelpdeskOut.model_validate(a.helpdesk(first_day.isoformat(), last_day.isoformat(), site))
