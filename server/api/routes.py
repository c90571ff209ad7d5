"""API routes for the dashboard and for other systems (OpenAPI at /docs)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import Field

from agent.protocol import Slug
from server.api.access import Access, AccessDep, Period, changing, reading
from server.api.models import ApiModel, CaseClose, ClerkIn, HelpdeskKpiIn, SignIn
from server.metrics.measures import GroupBy, Scope

router = APIRouter(prefix="/api")


# ----------------------------------------------------------------- live hall


@router.get("/units")
def list_units(a: AccessDep) -> list[dict[str, Any]]:
    return a.units()


@router.get("/hall/{site}")
def hall(site: str, a: AccessDep) -> list[dict[str, Any]]:
    """Every window of a centre as a tile, with today's figures."""
    return a.hall(site)


@router.get("/windows")
def windows(a: AccessDep, site: str | None = None) -> list[dict[str, Any]]:
    return a.windows(site)


@router.get("/events")
def latest_events(
    a: AccessDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    site: str | None = None,
) -> list[dict[str, Any]]:
    """The most recently received events, newest first."""
    return a.latest_events(limit, site)


@router.get("/stats")
def stats(a: AccessDep) -> dict[str, Any]:
    """Stored events (in your units) and, city-wide, rejected messages by reason."""
    return a.stats()


@router.get("/fleet")
def fleet(a: AccessDep) -> list[dict[str, Any]]:
    """Each terminal's health, model and config versions, outbox backlog."""
    return a.fleet()


@router.get("/gaps")
def gaps(a: AccessDep) -> list[dict[str, Any]]:
    """Device sequence numbers never received (outbox cap drops or lost data)."""
    return a.gaps()


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
) -> list[dict[str, Any]]:
    """Away without sign, missed stand or greeting, bad reviews, offline, faults."""
    return a.alerts(site, open_only=open_only, limit=limit)


@router.post("/alerts/{alert_id}/ack")
def ack_alert(
    alert_id: str, body: AckIn, a: Annotated[Access, changing("acknowledge")]
) -> dict[str, bool]:
    a.ack_alert(alert_id, body.note)
    return {"acknowledged": True}


@router.get("/audit")
def audit(
    a: Annotated[Access, reading("users")],
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    site: str | None = None,
) -> list[dict[str, Any]]:
    """Who changed what, newest first: entries about your units and your own actions."""
    return a.audit_entries(limit, site)


# ----------------------------------------------------------------- measures


@router.get("/measures")
def measures(
    period: str,
    a: AccessDep,
    district: str | None = None,
    site: str | None = None,
    window: str | None = None,
    clerk_id: str | None = None,
    group_by: GroupBy | None = None,
) -> dict[str, Any]:
    """Compliance and satisfaction for a scope and period (day, month or quarter)."""
    pd = a.period(period)
    result = a.measures(a.scope(district, site, window, clerk_id), pd, group_by)
    return {
        "period": period,
        "groups": {str(k) if k is not None else "all": m.as_dict() for k, m in result.items()},
    }


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
def timeline(d: DetailDep) -> list[dict[str, Any]]:
    """Session-by-session steps, for the window and clerk pages."""
    return d.access.timeline(d.scope, d.period)


@router.get("/trend")
def trend(d: DetailDep) -> list[dict[str, Any]]:
    """Per local day: sessions and the stand, smile, farewell and good-review rates."""
    return d.access.trend(d.scope, d.period)


@router.get("/heatmap")
def heatmap(d: DetailDep) -> list[dict[str, Any]]:
    """Sessions and compliance by weekday and local hour."""
    return d.access.heatmap(d.scope, d.period)


@router.get("/assessment/{clerk_id}")
def assessment(clerk_id: str, month: str, a: AccessDep) -> dict[str, Any]:
    """Monthly pass/fail with the evidence (event ids) behind each failed criterion."""
    return a.verdict(clerk_id, month)


@router.get("/assessments")
def assessments(month: str, a: AccessDep, site: str | None = None) -> list[dict[str, Any]]:
    """Every clerk's verdict and probation status for a month."""
    return a.assessments(month, site)


@router.get("/probation/{clerk_id}")
def probation_status(clerk_id: str, month: str, a: AccessDep) -> dict[str, Any]:
    return a.probation(clerk_id, month)


@router.get("/ranking")
def ranking(
    period: str,
    a: AccessDep,
    site: str | None = None,
    district: str | None = None,
    min_sessions: Annotated[int, Query(ge=1, le=100_000)] = 20,
) -> list[dict[str, Any]]:
    """Smile-star ranking by the Wilson lower bound of exemplary sessions."""
    pd = a.period(period)
    return a.ranking(a.scope(district, site), pd, min_sessions=min_sessions)


@router.get("/units/compare")
def compare_units(
    period: str,
    a: AccessDep,
    by: GroupBy = "site",
    district: str | None = None,
) -> dict[str, Any]:
    """A-ROLLOUT: the same measures side by side per site or district."""
    pd = a.period(period)
    result = a.measures(a.scope(district), pd, group_by=by)
    return {"period": period, "by": by, "groups": {str(k): m.as_dict() for k, m in result.items()}}


# ----------------------------------------------------------------- cases, roster, KPIs


@router.get("/cases")
def list_cases(
    a: AccessDep, status: Literal["open", "closed"] | None = None, site: str | None = None
) -> list[dict[str, Any]]:
    """Bad-review cases with their 15-working-day due time."""
    return a.cases(status, site)


@router.post("/cases/{case_id}/close")
def close_case(
    case_id: str, body: CaseClose, a: Annotated[Access, changing("close_case")]
) -> dict[str, bool]:
    a.close_case(case_id, body.note, body.at_ms)
    return {"closed": True}


@router.post("/clerks", status_code=201)
def add_clerk(
    body: ClerkIn, response: Response, a: Annotated[Access, changing("roster")]
) -> dict[str, str]:
    """Register a clerk at a centre (or rename one of its clerks: 200). A clerk id
    used at another centre is refused (409): moving a clerk is a transfer."""
    if not a.add_clerk(body.clerk_id, body.name, body.site):
        response.status_code = 200
    return {"clerk_id": body.clerk_id}


@router.post("/clerks/{clerk_id}/transfer")
def transfer_clerk(
    clerk_id: str, body: TransferIn, a: Annotated[Access, changing("roster")]
) -> dict[str, str]:
    """Move a clerk to another centre; needs a principal that sees both (audited in both)."""
    was = a.transfer_clerk(clerk_id, body.site)
    return {"clerk_id": clerk_id, "from": was, "to": body.site}


@router.get("/clerks")
def clerks(a: AccessDep, site: str | None = None) -> list[dict[str, Any]]:
    return a.clerks(site)


@router.post("/roster", status_code=201)
def sign_in(body: SignIn, a: Annotated[Access, changing("roster")]) -> dict[str, str]:
    """Which clerk staffs a window from when (sign-in or roster; never faces)."""
    a.sign_in(body.clerk_id, body.site, body.window, body.start_ms, body.end_ms)
    return {"clerk_id": body.clerk_id}


@router.post("/helpdesk/kpis", status_code=201)
def put_kpis(body: HelpdeskKpiIn, a: Annotated[Access, changing("kpis")]) -> dict[str, str]:
    """H-ONLINE: daily figures from the help-desk system (a person, or a token granted kpis)."""
    a.put_kpis(
        body.site,
        body.window,
        body.day.isoformat(),
        body.requests,
        body.first_response_within_1min,
        body.resolved,
    )
    return {"day": body.day.isoformat()}


@router.get("/helpdesk")
def helpdesk(
    first_day: date, last_day: date, a: AccessDep, site: str | None = None
) -> dict[str, Any]:
    return a.helpdesk(first_day.isoformat(), last_day.isoformat(), site)
