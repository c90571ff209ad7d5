"""Request dependencies: the store, the signed-in principal, permission and CSRF checks."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from server.accounts import Accounts, Principal
from server.ingest import IngestSettings
from server.metrics.assessment import PassThresholds
from server.metrics.periods import period_bounds
from server.policy.clock import NotObservedLimits
from server.store.db import Store
from server.tokens import Tokens

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
    #: When a window's sessions not observed raise a camera alert (server/policy/clock.py).
    not_observed: NotObservedLimits = field(default_factory=NotObservedLimits)
    #: The outbound targets file (server/outbound/targets.py); None: all outbound off.
    outbound_file: Path | None = None
    #: The Ed25519 key that signs settings bundles (server/settings_push.py); None: the
    #: server cannot push settings to terminals.
    bundle_signing_key: Path | None = None


def get_store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def get_accounts(request: Request) -> Accounts:
    accounts: Accounts = request.app.state.accounts
    return accounts


def get_settings(request: Request) -> ServerSettings:
    settings: ServerSettings = request.app.state.settings
    return settings


def get_tokens(request: Request) -> Tokens:
    tokens: Tokens = request.app.state.tokens
    return tokens


def bearer(request: Request) -> str | None:
    """The bearer value of an ``Authorization`` header, if there is one."""
    kind, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if kind.lower() == "bearer" and value.strip() else None


def get_principal(request: Request) -> Principal:
    """A service token (``Authorization: Bearer``) or a user's session cookie; else 401.

    A request that presents a bearer header is judged by it alone, never by a cookie."""
    value = bearer(request)
    if value is not None:
        principal = get_tokens(request).principal(value, request.method, request.url.path)
        if principal is None:
            raise HTTPException(
                401, "unknown or revoked token", headers={"WWW-Authenticate": "Bearer"}
            )
        return principal
    token = request.cookies.get(COOKIE)
    principal = get_accounts(request).principal(token) if token else None
    if principal is None:
        raise HTTPException(401, "sign in first")
    return principal


AccountsDep = Annotated[Accounts, Depends(get_accounts)]
SettingsDep = Annotated[ServerSettings, Depends(get_settings)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]


def acting(action: str) -> object:
    """Dependency for state-changing routes: permission plus, for a cookie session, the
    CSRF token. A service token carries no cookie, so it needs its grant only."""

    def check(request: Request, principal: PrincipalDep) -> Principal:
        if not principal.can(action):
            who = "this token" if principal.is_token else f"role {principal.role}"
            raise HTTPException(403, f"{who} may not {action.replace('_', ' ')}")
        if not principal.is_token:
            given = request.headers.get("x-csrf-token") or ""
            if principal.csrf is None or not hmac.compare_digest(
                given.encode(), principal.csrf.encode()
            ):
                raise HTTPException(403, "missing or wrong CSRF token")
        return principal

    return Depends(check)


def bounds(settings: ServerSettings, period: str) -> tuple[int, int]:
    """A ``period=`` parameter's UTC bounds in the server's time zone: a day, month,
    quarter or year ("2026-11-27", "2026-11", "2026-Q4", "2026"); 422 for anything else."""
    try:
        return period_bounds(period, settings.timezone)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
