"""API routes for the dashboard and for other systems (OpenAPI at /docs)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Query, Response
from pydantic import BaseModel, Field

from server.accounts import Principal
from server.api.deps import (
    COOKIE,
    AccountsDep,
    PrincipalDep,
    SettingsDep,
    StoreDep,
    acting,
    bounds,
    check_site,
)
from server.api.models import CaseClose, ClerkIn, HelpdeskKpiIn, SignIn
from server.metrics.assessment import probation, verdict
from server.metrics.measures import GroupBy, Scope, compute, smile_star_ranking
from server.store import views
from server.store.db import Store

router = APIRouter(prefix="/api")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def scoped(
    p: Principal,
    store: Store,
    district: str | None = None,
    site: str | None = None,
    window: str | None = None,
    clerk_id: str | None = None,
) -> Scope:
    """The request's scope, narrowed to what the principal may see."""
    check_site(p, site)
    if clerk_id is not None and p.sites is not None:
        home = store.clerk_site(clerk_id)
        if home is None or not p.sees(home):
            raise HTTPException(403, "outside your units")
    if p.sites is not None and site is None and clerk_id is None:
        if p.scope.startswith("district:"):
            wanted = p.scope.removeprefix("district:")
            if district not in (None, wanted):
                raise HTTPException(403, "outside your units")
            district = wanted
        else:
            site = next(iter(p.sites), "-")
    return Scope(district, site, window, clerk_id)


# ----------------------------------------------------------------- session


class LoginIn(BaseModel):
    username: str = Field(max_length=64)
    password: str = Field(max_length=256)


@router.post("/login")
def login(
    body: LoginIn, response: Response, accounts: AccountsDep, settings: SettingsDep
) -> dict[str, Any]:
    token = accounts.login(body.username, body.password)
    if token is None:
        raise HTTPException(401, "wrong user name or password")
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=settings.secure_cookies,
        max_age=8 * 3600,
    )
    p = accounts.principal(token)
    assert p is not None
    return {"username": p.username, "role": p.role, "csrf": p.csrf}


@router.post("/logout")
def logout(response: Response, accounts: AccountsDep, p: PrincipalDep) -> dict[str, bool]:
    response.delete_cookie(COOKIE)
    accounts.audit(p.username, "logout")
    return {"ok": True}


@router.get("/me")
def me(p: PrincipalDep) -> dict[str, Any]:
    return {
        "username": p.username,
        "display_name": p.display_name,
        "role": p.role,
        "scope": p.scope,
        "sites": sorted(p.sites) if p.sites is not None else None,
        "csrf": p.csrf,
        "can": {a: p.can(a) for a in ("acknowledge", "close_case", "roster", "kpis", "users")},
    }


# ----------------------------------------------------------------- live hall


@router.get("/units")
def list_units(p: PrincipalDep, store: StoreDep) -> list[dict[str, Any]]:
    return views.site_units(store.engine, p.sites)


@router.get("/hall/{site}")
def hall(
    site: str, p: PrincipalDep, store: StoreDep, settings: SettingsDep
) -> list[dict[str, Any]]:
    """Every window of a centre as a tile, with today's figures."""
    check_site(p, site)
    now = now_ms()
    day = bounds(settings, views_day(now, settings.timezone))
    return views.hall(store.engine, site, day, now)


def views_day(at_ms: int, tz: str) -> str:
    return datetime.fromtimestamp(at_ms / 1000, ZoneInfo(tz)).date().isoformat()


@router.get("/windows")
def windows(p: PrincipalDep, store: StoreDep, site: str | None = None) -> list[dict[str, Any]]:
    check_site(p, site)
    return [w for w in store.windows(site) if p.sees(w["site"])]


@router.get("/events")
def latest_events(
    p: PrincipalDep,
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    site: str | None = None,
) -> list[dict[str, Any]]:
    """The most recently received events, newest first."""
    check_site(p, site)
    if site is None and p.sites is not None:
        return [e for s in sorted(p.sites) for e in store.latest_events(limit, s)][:limit]
    return store.latest_events(limit, site)


@router.get("/stats")
def stats(p: PrincipalDep, store: StoreDep) -> dict[str, Any]:
    """Stored events and rejected messages by reason."""
    return {"events": store.event_count(), "rejected": store.reject_counts()}


@router.get("/fleet")
def fleet(p: PrincipalDep, store: StoreDep) -> list[dict[str, Any]]:
    """Each terminal's health, model and config versions, outbox backlog."""
    return views.fleet(store.engine, p.sites)


@router.get("/gaps")
def gaps(p: PrincipalDep, store: StoreDep) -> list[dict[str, Any]]:
    """Device sequence numbers never received (outbox cap drops or lost data)."""
    return [g for g in store.sequence_gaps() if p.sees(str(g["site"]))]


# ----------------------------------------------------------------- alerts


class AckIn(BaseModel):
    note: str = Field(min_length=1, max_length=2000)


@router.get("/alerts")
def alerts(
    p: PrincipalDep,
    store: StoreDep,
    open_only: bool = False,
    site: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[dict[str, Any]]:
    """Away without sign, missed stand or greeting, bad reviews, offline, faults."""
    check_site(p, site)
    sites = frozenset({site}) if site else p.sites
    return store.list_alerts(sites, open_only=open_only, limit=limit)


@router.post("/alerts/{alert_id}/ack")
def ack_alert(
    alert_id: str,
    body: AckIn,
    store: StoreDep,
    accounts: AccountsDep,
    p: Annotated[Principal, acting("acknowledge")],
) -> dict[str, bool]:
    site = store.alert_site(alert_id)
    if site is None:
        raise HTTPException(404, "no such alert")
    check_site(p, site)
    if not store.ack_alert(alert_id, p.username, body.note, now_ms()):
        raise HTTPException(409, "already acknowledged")
    accounts.audit(p.username, "ack_alert", alert_id, {"note": body.note})
    return {"acknowledged": True}


@router.get("/audit")
def audit(p: Annotated[Principal, acting("users")], accounts: AccountsDep) -> list[dict[str, Any]]:
    return accounts.audit_entries()


# ----------------------------------------------------------------- measures


@router.get("/measures")
def measures(
    period: str,
    p: PrincipalDep,
    store: StoreDep,
    settings: SettingsDep,
    district: str | None = None,
    site: str | None = None,
    window: str | None = None,
    clerk_id: str | None = None,
    group_by: GroupBy | None = None,
) -> dict[str, Any]:
    """Compliance and satisfaction for a scope and period (day, month or quarter)."""
    start, end = bounds(settings, period)
    scope = scoped(p, store, district, site, window, clerk_id)
    result = compute(store.engine, scope, start, end, group_by=group_by)
    return {
        "period": period,
        "groups": {str(k) if k is not None else "all": m.as_dict() for k, m in result.items()},
    }


@dataclass(frozen=True)
class Detail:
    """A window's or a clerk's page: scope and period, checked against the principal."""

    scope: Scope
    start_ms: int
    end_ms: int


def detail(
    period: str,
    p: PrincipalDep,
    store: StoreDep,
    settings: SettingsDep,
    site: str | None = None,
    window: str | None = None,
    clerk_id: str | None = None,
) -> Detail:
    start, end = bounds(settings, period)
    return Detail(scoped(p, store, None, site, window, clerk_id), start, end)


DetailDep = Annotated[Detail, Depends(detail)]


@router.get("/timeline")
def timeline(d: DetailDep, store: StoreDep) -> list[dict[str, Any]]:
    """Session-by-session steps, for the window and clerk pages."""
    return views.timeline(store.engine, d.scope, d.start_ms, d.end_ms)


@router.get("/trend")
def trend(d: DetailDep, store: StoreDep, settings: SettingsDep) -> list[dict[str, Any]]:
    """Per local day: sessions and the stand, smile, farewell and good-review rates."""
    return views.trend(store.engine, d.scope, d.start_ms, d.end_ms, settings.timezone)


@router.get("/heatmap")
def heatmap(d: DetailDep, store: StoreDep, settings: SettingsDep) -> list[dict[str, Any]]:
    """Sessions and compliance by weekday and local hour."""
    return views.heatmap(store.engine, d.scope, d.start_ms, d.end_ms, settings.timezone)


@router.get("/assessment/{clerk_id}")
def assessment(
    clerk_id: str, month: str, p: PrincipalDep, store: StoreDep, settings: SettingsDep
) -> dict[str, Any]:
    """Monthly pass/fail with the evidence (event ids) behind each failed criterion."""
    bounds(settings, month)
    scoped(p, store, clerk_id=clerk_id)
    return verdict(store.engine, clerk_id, month, settings.thresholds, settings.timezone)


@router.get("/assessments")
def assessments(
    month: str, p: PrincipalDep, store: StoreDep, settings: SettingsDep, site: str | None = None
) -> list[dict[str, Any]]:
    """Every clerk's verdict and probation status for a month."""
    bounds(settings, month)
    scope = scoped(p, store, None, site)
    out = []
    for clerk in store.clerks(scope.site, scope.district):
        v = verdict(store.engine, clerk["clerk_id"], month, settings.thresholds, settings.timezone)
        pr = probation(
            store.engine, clerk["clerk_id"], month, settings.thresholds, settings.timezone
        )
        out.append(
            clerk
            | {
                "result": v["result"],
                "failures": v["failures"],
                "probation": pr["status"],
                "measures": v["measures"],
            }
        )
    return out


@router.get("/probation/{clerk_id}")
def probation_status(
    clerk_id: str, month: str, p: PrincipalDep, store: StoreDep, settings: SettingsDep
) -> dict[str, Any]:
    bounds(settings, month)
    scoped(p, store, clerk_id=clerk_id)
    return probation(store.engine, clerk_id, month, settings.thresholds, settings.timezone)


@router.get("/ranking")
def ranking(
    period: str,
    p: PrincipalDep,
    store: StoreDep,
    settings: SettingsDep,
    site: str | None = None,
    district: str | None = None,
    min_sessions: int = 20,
) -> list[dict[str, Any]]:
    """Smile-star ranking by the Wilson lower bound of exemplary sessions."""
    start, end = bounds(settings, period)
    scope = scoped(p, store, district, site)
    return smile_star_ranking(store.engine, scope, start, end, min_sessions=min_sessions)


@router.get("/units/compare")
def compare_units(
    period: str,
    p: PrincipalDep,
    store: StoreDep,
    settings: SettingsDep,
    by: GroupBy = "site",
    district: str | None = None,
) -> dict[str, Any]:
    """A-ROLLOUT: the same measures side by side per site or district."""
    start, end = bounds(settings, period)
    scope = scoped(p, store, district)
    result = compute(store.engine, scope, start, end, group_by=by)
    return {"period": period, "by": by, "groups": {str(k): m.as_dict() for k, m in result.items()}}


# ----------------------------------------------------------------- cases, roster, KPIs


@router.get("/cases")
def list_cases(
    p: PrincipalDep, store: StoreDep, status: str | None = None, site: str | None = None
) -> list[dict[str, Any]]:
    """Bad-review cases with their 15-working-day due time."""
    check_site(p, site)
    return [c for c in store.list_cases(status, site) if p.sees(c["site"])]


@router.post("/cases/{case_id}/close")
def close_case(
    case_id: str,
    body: CaseClose,
    store: StoreDep,
    accounts: AccountsDep,
    p: Annotated[Principal, acting("close_case")],
) -> dict[str, bool]:
    if not store.close_case(case_id, body.note, body.at_ms):
        raise HTTPException(404, "no open case with that id")
    accounts.audit(p.username, "close_case", case_id, {"note": body.note})
    return {"closed": True}


@router.post("/clerks", status_code=201)
def add_clerk(
    body: ClerkIn, store: StoreDep, accounts: AccountsDep, p: Annotated[Principal, acting("roster")]
) -> dict[str, str]:
    check_site(p, body.site)
    store.add_clerk(body.clerk_id, body.name, body.site)
    accounts.audit(p.username, "add_clerk", body.clerk_id)
    return {"clerk_id": body.clerk_id}


@router.get("/clerks")
def clerks(p: PrincipalDep, store: StoreDep, site: str | None = None) -> list[dict[str, Any]]:
    check_site(p, site)
    return [c for c in store.clerks(site, None) if p.sees(c["site"])]


@router.post("/roster", status_code=201)
def sign_in(
    body: SignIn, store: StoreDep, accounts: AccountsDep, p: Annotated[Principal, acting("roster")]
) -> dict[str, str]:
    """Which clerk staffs a window from when (sign-in or roster; never faces)."""
    check_site(p, body.site)
    store.sign_in(body.clerk_id, body.site, body.window, body.start_ms, body.end_ms)
    accounts.audit(p.username, "roster", f"{body.site}/{body.window}", body.model_dump())
    return {"clerk_id": body.clerk_id}


@router.post("/helpdesk/kpis", status_code=201)
def put_kpis(
    body: HelpdeskKpiIn, store: StoreDep, p: Annotated[Principal, acting("kpis")]
) -> dict[str, str]:
    """H-ONLINE: daily figures from the help-desk system."""
    check_site(p, body.site)
    store.put_helpdesk_kpis(
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
    first_day: str, last_day: str, p: PrincipalDep, store: StoreDep, site: str | None = None
) -> dict[str, Any]:
    check_site(p, site)
    return store.helpdesk_summary(first_day, last_day, site)
