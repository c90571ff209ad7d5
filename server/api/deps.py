"""Request dependencies: the store, the signed-in principal, permission and CSRF checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from server.accounts import Accounts, Principal
from server.ingest import IngestSettings
from server.metrics.assessment import PassThresholds
from server.metrics.periods import period_bounds
from server.store.db import Store

COOKIE = "ww_session"


@dataclass
class ServerSettings:
    db_url: str = "sqlite:///var/warmwindow.db"
    sites: list[Path] = field(default_factory=list)
    mqtt: IngestSettings | None = field(default_factory=IngestSettings)
    thresholds: PassThresholds = field(default_factory=PassThresholds)
    timezone: str = "Asia/Shanghai"
    secure_cookies: bool = False  # True behind HTTPS
    metrics_token: str | None = None  # Bearer token /metrics requires; None = open


def get_store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def get_accounts(request: Request) -> Accounts:
    accounts: Accounts = request.app.state.accounts
    return accounts


def get_settings(request: Request) -> ServerSettings:
    settings: ServerSettings = request.app.state.settings
    return settings


def get_principal(request: Request) -> Principal:
    token = request.cookies.get(COOKIE)
    principal = get_accounts(request).principal(token) if token else None
    if principal is None:
        raise HTTPException(401, "sign in first")
    return principal


StoreDep = Annotated[Store, Depends(get_store)]
AccountsDep = Annotated[Accounts, Depends(get_accounts)]
SettingsDep = Annotated[ServerSettings, Depends(get_settings)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]


def acting(action: str) -> object:
    """Dependency for state-changing routes: permission plus CSRF token."""

    def check(request: Request, principal: PrincipalDep) -> Principal:
        if not principal.can(action):
            raise HTTPException(403, f"role {principal.role} may not {action.replace('_', ' ')}")
        if request.headers.get("x-csrf-token") != principal.csrf:
            raise HTTPException(403, "missing or wrong CSRF token")
        return principal

    return Depends(check)


def check_site(principal: Principal, site: str | None) -> None:
    if site is not None and not principal.sees(site):
        raise HTTPException(403, "outside your units")


def bounds(settings: ServerSettings, period: str) -> tuple[int, int]:
    try:
        return period_bounds(period, settings.timezone)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
