"""Sign-in, sign-out, who am I; accounts and service tokens (district administrators).

An administrator sees and changes only the accounts and tokens whose scope lies within
their own (``Principal.covers``): a district administrator those of their district and
its sites, one with scope "all" everyone. Anything else answers 404, as if it did not
exist. Every change is audited (who, what, whom; never a password or a token value).

The response models here are closed like those of ``schemas.py`` (``schemas.Out``) and
are built from the records field by field (``UserOut.from_user``, ``TokenOut.from_row``),
so a field added to an account or token record stays internal until a field is added
here: nothing reaches a client by accident, least of all a password or token hash.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from agent.protocol import StorableText
from server.accounts import (
    PASSWORD_MAX,
    SESSION_S,
    LoginLocked,
    Principal,
    UnknownUser,
    User,
    UserExists,
)
from server.api.deps import (
    COOKIE,
    AccountsDep,
    PrincipalDep,
    SettingsDep,
    acting,
    get_tokens,
)
from server.api.schemas import Out, TimeMs
from server.tokens import GRANTS, Tokens

router = APIRouter(prefix="/api")

Admin = Annotated[Principal, acting("users")]
TokensDep = Annotated[Tokens, Depends(get_tokens)]


# ----------------------------------------------------------------- session


class LoginIn(BaseModel):
    username: StorableText = Field(max_length=64)
    password: StorableText = Field(max_length=PASSWORD_MAX)


ROLE = "district_admin, centre_manager, inspector, readonly or clerk"
SCOPE = '"all", "district:<name>" or "site:<slug>"'


class LoginOut(Out):
    """A new session; its cookie (httponly, same-site strict) comes with this answer."""

    username: str = Field(description="The account's user name.")
    role: str = Field(description=f"The account's role: {ROLE}.")
    csrf: str = Field(
        description="The session's CSRF token: send it as X-CSRF-Token on every change."
    )


class OkOut(Out):
    """What ``POST /api/logout`` did."""

    ok: bool = Field(description="A session was ended; false for a service token, which has none.")


class CanOut(Out):
    """What the caller may do beyond reading its units: its role's permissions, or a
    service token's grants."""

    acknowledge: bool = Field(description="May acknowledge alerts.")
    close_case: bool = Field(description="May close (rectify) bad-review cases.")
    roster: bool = Field(description="May add and transfer clerks and sign them in at windows.")
    kpis: bool = Field(description="May push help-desk daily figures (H-ONLINE).")
    users: bool = Field(description="May manage accounts and service tokens within its scope.")
    finding: bool = Field(description="May record and withdraw inspectors' findings.")
    sign_off: bool = Field(description="May confirm or override monthly verdicts.")
    probation: bool = Field(description="May start and end probations.")
    thresholds: bool = Field(description="May save thresholds versions.")
    appeal: bool = Field(description="May appeal its own sessions and verdicts (a clerk).")
    resolve_appeal: bool = Field(description="May uphold or reject appeals.")
    outbound: bool = Field(description="May resend dead outbound deliveries, switch targets.")
    window_settings: bool = Field(
        description="May push rule thresholds and camera rates to terminals (over the air)."
    )


class MeOut(Out):
    """Who is asking: the signed-in user or the service token, its units and rights."""

    username: str = Field(description="The user name; token:<token_id> for a service token.")
    display_name: str = Field(description="The name to show; a service token's name.")
    role: str = Field(description=f"{ROLE}; service for a service token.")
    scope: str = Field(description=f"The units it may reach: {SCOPE}.")
    sites: list[str] | None = Field(
        description="The site slugs the scope reaches, sorted; null: every site."
    )
    csrf: str | None = Field(
        description="The session's CSRF token (X-CSRF-Token); null for a service token."
    )
    clerk_id: str | None = Field(
        description="The clerk the account belongs to, whose own records alone it reads; "
        "null for other accounts."
    )
    can: CanOut = Field(description="What it may do beyond reading.")


@router.post(
    "/login",
    responses={401: {"description": "wrong name or password"}, 429: {"description": "locked"}},
)
def login(
    body: LoginIn,
    request: Request,
    response: Response,
    accounts: AccountsDep,
    settings: SettingsDep,
) -> LoginOut:
    """Sign in; the session cookie is httponly and same-site strict. Too many failures
    for the account or from the client address lock sign-in for a while (429)."""
    address = request.client.host if request.client is not None else None
    try:
        token = accounts.login(body.username, body.password, address=address)
    except LoginLocked as exc:
        raise HTTPException(
            429, str(exc), headers={"Retry-After": str(exc.retry_after_s)}
        ) from None
    if token is None:
        raise HTTPException(401, "wrong user name or password")
    p = accounts.principal(token)
    if p is None or p.csrf is None:  # disabled in the same instant
        raise HTTPException(401, "wrong user name or password")
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=settings.secure_cookies,
        max_age=SESSION_S,
    )
    return LoginOut(username=p.username, role=p.role, csrf=p.csrf)


@router.post("/logout")
def logout(response: Response, accounts: AccountsDep, p: PrincipalDep) -> OkOut:
    """Sign out: the session is deleted on the server, so its cookie is dead everywhere.

    A service token has no session: ``ok`` is false and the token stays valid (revoke it
    with ``POST /api/tokens/{token_id}/revoke``)."""
    if p.session is None:
        return OkOut(ok=False)
    accounts.end_session(p.session, p.username)
    response.delete_cookie(COOKIE, httponly=True, samesite="strict")
    return OkOut(ok=True)


@router.get("/me")
def me(p: PrincipalDep) -> MeOut:
    return MeOut(
        username=p.username,
        display_name=p.display_name,
        role=p.role,
        scope=p.scope,
        sites=sorted(p.sites) if p.sites is not None else None,
        csrf=p.csrf,
        clerk_id=p.clerk_id,
        can=CanOut(
            acknowledge=p.can("acknowledge"),
            close_case=p.can("close_case"),
            roster=p.can("roster"),
            kpis=p.can("kpis"),
            users=p.can("users"),
            finding=p.can("finding"),
            sign_off=p.can("sign_off"),
            probation=p.can("probation"),
            thresholds=p.can("thresholds"),
            appeal=p.can("appeal"),
            resolve_appeal=p.can("resolve_appeal"),
            outbound=p.can("outbound"),
            window_settings=p.can("window_settings"),
        ),
    )


# ----------------------------------------------------------------- users

USERNAME = r"^[\w.@-]{1,64}$"
Username = Annotated[str, Field(pattern=USERNAME)]
ScopeStr = Annotated[StorableText, Field(min_length=3, max_length=96)]
Password = Annotated[StorableText, Field(max_length=PASSWORD_MAX)]
RoleStr = Annotated[StorableText, Field(max_length=32)]
#: A user name in a path: anything else is no user (422 before any query).
UserPath = Annotated[str, PathParam(pattern=USERNAME)]


class UserOut(Out):
    """An account within your scope, as ``GET /api/users`` lists it (never its password
    hash, sessions or sign-in failures)."""

    username: str = Field(description="The user name it signs in with.")
    display_name: str = Field(description="The name to show; may be empty.")
    role: str = Field(description=f"{ROLE}.")
    scope: str = Field(description=f"The units it may reach: {SCOPE}.")
    disabled: bool = Field(description="Disabled: it cannot sign in and has no sessions.")
    clerk_id: str | None = Field(
        description="The clerk the account belongs to, whose own records alone it reads; "
        "null for other accounts."
    )

    @classmethod
    def from_user(cls, u: User) -> UserOut:
        """The API's view of an account record: each field named here, so a field the
        record gains is not answered until this model documents it."""
        return cls(
            username=u.username,
            display_name=u.display_name,
            role=u.role,
            scope=u.scope,
            disabled=u.disabled,
            clerk_id=u.clerk_id,
        )


class UserIn(BaseModel):
    username: Username
    password: Password
    role: RoleStr
    scope: ScopeStr
    display_name: StorableText = Field("", max_length=96)
    clerk_id: StorableText | None = Field(
        None,
        max_length=32,
        description="A clerk account's clerk (role clerk, scope site:<the clerk's centre>).",
    )


class PasswordIn(BaseModel):
    password: Password


class RoleIn(BaseModel):
    role: RoleStr
    scope: ScopeStr


def _visible(p: Principal, accounts: AccountsDep, username: str) -> User:
    user = accounts.get_user(username)
    if user is None or not p.covers(user.scope):
        raise HTTPException(404, f"no user {username}")
    return user


def _grantable(p: Principal, scope: str) -> None:
    if not p.covers(scope):
        raise HTTPException(403, f"scope {scope} is wider than your own ({p.scope})")


def _not_self(p: Principal, username: str, what: str) -> None:
    if username == p.username:
        raise HTTPException(409, f"you cannot {what} your own account; ask another administrator")


@router.get("/users")
def list_users(p: PrincipalDep, accounts: AccountsDep) -> list[UserOut]:
    """The accounts within your scope (never their password hashes)."""
    if not p.can("users"):
        raise HTTPException(403, f"role {p.role} may not manage users")
    return [UserOut.from_user(u) for u in accounts.list_users() if p.covers(u.scope)]


@router.post("/users", status_code=201, responses={409: {"description": "exists"}})
def create_user(body: UserIn, p: Admin, accounts: AccountsDep) -> UserOut:
    _grantable(p, body.scope)
    try:
        user = accounts.create_user(
            body.username,
            body.password,
            body.role,
            body.scope,
            p.username,
            body.display_name,
            clerk_id=body.clerk_id,
        )
    except UserExists as exc:
        raise HTTPException(409, str(exc)) from None
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return UserOut.from_user(user)


@router.post("/users/{username}/disable")
def disable_user(username: UserPath, p: Admin, accounts: AccountsDep) -> UserOut:
    """Disable the account; its sessions end at once."""
    _visible(p, accounts, username)
    _not_self(p, username, "disable")
    return UserOut.from_user(_changed(lambda: accounts.set_disabled(username, True, p.username)))


@router.post("/users/{username}/enable")
def enable_user(username: UserPath, p: Admin, accounts: AccountsDep) -> UserOut:
    _visible(p, accounts, username)
    return UserOut.from_user(_changed(lambda: accounts.set_disabled(username, False, p.username)))


@router.post("/users/{username}/password")
def reset_password(
    username: UserPath, body: PasswordIn, p: Admin, accounts: AccountsDep
) -> UserOut:
    """A new password; the user's sessions end (yours too, if it is your own)."""
    _visible(p, accounts, username)
    return UserOut.from_user(
        _changed(lambda: accounts.reset_password(username, body.password, p.username))
    )


@router.post("/users/{username}/role")
def change_role(username: UserPath, body: RoleIn, p: Admin, accounts: AccountsDep) -> UserOut:
    """A new role and scope (within your own); the user's sessions end."""
    _visible(p, accounts, username)
    _not_self(p, username, "change the role of")
    _grantable(p, body.scope)
    return UserOut.from_user(
        _changed(lambda: accounts.set_role(username, body.role, body.scope, p.username))
    )


def _changed(change: Callable[[], User]) -> User:
    try:
        return change()
    except UnknownUser as exc:
        raise HTTPException(404, str(exc)) from None
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None


# ----------------------------------------------------------------- service tokens


class TokenOut(Out):
    """A service token within your scope (never its value or its hash)."""

    token_id: str = Field(
        description="12 lower-case letters or digits: the <id> of wwt_<id>_<secret>."
    )
    name: str = Field(description="What uses it, as its creator named it.")
    scope: str = Field(description=f"The units it may reach: {SCOPE}.")
    grants: list[str] = Field(description=f"What it may call: some of {', '.join(GRANTS)}.")
    created_by: str = Field(description="The administrator who created it.")
    created_ms: TimeMs = Field(description="When it was created, UTC ms.")
    revoked_ms: TimeMs | None = Field(description="When it was revoked, UTC ms; null while valid.")
    last_used_ms: TimeMs | None = Field(
        description="Its last accepted use, UTC ms; null if never used."
    )

    @classmethod
    def from_row(cls, row: Mapping[str, object]) -> TokenOut:
        """The API's view of a ``service_tokens`` row: the columns named here, no others."""
        return cls.model_validate({name: row[name] for name in cls.model_fields})


class TokenIn(BaseModel):
    name: str = Field(pattern=r"^[\w.-]{1,64}$")
    scope: ScopeStr
    grants: list[StorableText] = Field(min_length=1, max_length=len(GRANTS))


TokenPath = Annotated[str, PathParam(pattern=r"^[a-z0-9]{12}$")]


class TokenCreated(Out):
    """A new service token; its value is in this answer only."""

    token_id: str = Field(description="The new token's id (12 lower-case letters or digits).")
    token: str = Field(
        description="The bearer value for Authorization: Bearer; shown once, never stored."
    )


@router.get("/tokens")
def list_tokens(p: PrincipalDep, tokens: TokensDep) -> list[TokenOut]:
    """The service tokens within your scope, revoked ones included (never their values)."""
    if not p.can("users"):
        raise HTTPException(403, f"role {p.role} may not manage tokens")
    return [TokenOut.from_row(t) for t in tokens.list() if p.covers(str(t["scope"]))]


@router.post("/tokens", status_code=201)
def create_token(body: TokenIn, p: Admin, tokens: TokensDep) -> TokenCreated:
    """A new token; its value is in this answer only."""
    _grantable(p, body.scope)
    try:
        token_id, value = tokens.create(body.name, body.scope, body.grants, p.username)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return TokenCreated(token_id=token_id, token=value)


@router.post("/tokens/{token_id}/revoke", responses={409: {"description": "already revoked"}})
def revoke_token(token_id: TokenPath, p: Admin, tokens: TokensDep) -> TokenOut:
    row = tokens.get(token_id)
    if row is None or not p.covers(str(row["scope"])):
        raise HTTPException(404, f"no token {token_id}")
    if row["revoked_ms"] is not None or not tokens.revoke(token_id, p.username):
        raise HTTPException(409, f"token {token_id} is already revoked")
    revoked = tokens.get(token_id)
    assert revoked is not None
    return TokenOut.from_row(revoked)
