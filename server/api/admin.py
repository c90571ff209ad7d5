"""Sign-in, sign-out, who am I; accounts and service tokens (district administrators).

An administrator sees and changes only the accounts and tokens whose scope lies within
their own (``Principal.covers``): a district administrator those of their district and
its sites, one with scope "all" everyone. Anything else answers 404, as if it did not
exist. Every change is audited (who, what, whom; never a password or a token value).
"""

from __future__ import annotations

from collections.abc import Callable
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
from server.tokens import GRANTS, Tokens

router = APIRouter(prefix="/api")

Admin = Annotated[Principal, acting("users")]
TokensDep = Annotated[Tokens, Depends(get_tokens)]


# ----------------------------------------------------------------- session


class LoginIn(BaseModel):
    username: StorableText = Field(max_length=64)
    password: StorableText = Field(max_length=PASSWORD_MAX)


class LoginOut(BaseModel):
    username: str
    role: str
    csrf: str


class OkOut(BaseModel):
    ok: bool


class CanOut(BaseModel):
    acknowledge: bool
    close_case: bool
    roster: bool
    kpis: bool
    users: bool


class MeOut(BaseModel):
    username: str
    display_name: str
    role: str
    scope: str
    sites: list[str] | None  # None: every site
    csrf: str | None  # None for a service token
    clerk_id: str | None
    can: CanOut


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


class UserOut(BaseModel):
    username: str
    display_name: str
    role: str
    scope: str
    disabled: bool
    clerk_id: str | None

    @classmethod
    def of(cls, u: User) -> UserOut:
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
    return [UserOut.of(u) for u in accounts.list_users() if p.covers(u.scope)]


@router.post("/users", status_code=201, responses={409: {"description": "exists"}})
def create_user(body: UserIn, p: Admin, accounts: AccountsDep) -> UserOut:
    _grantable(p, body.scope)
    try:
        user = accounts.create_user(
            body.username, body.password, body.role, body.scope, p.username, body.display_name
        )
    except UserExists as exc:
        raise HTTPException(409, str(exc)) from None
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return UserOut.of(user)


@router.post("/users/{username}/disable")
def disable_user(username: UserPath, p: Admin, accounts: AccountsDep) -> UserOut:
    """Disable the account; its sessions end at once."""
    _visible(p, accounts, username)
    _not_self(p, username, "disable")
    return UserOut.of(_changed(lambda: accounts.set_disabled(username, True, p.username)))


@router.post("/users/{username}/enable")
def enable_user(username: UserPath, p: Admin, accounts: AccountsDep) -> UserOut:
    _visible(p, accounts, username)
    return UserOut.of(_changed(lambda: accounts.set_disabled(username, False, p.username)))


@router.post("/users/{username}/password")
def reset_password(
    username: UserPath, body: PasswordIn, p: Admin, accounts: AccountsDep
) -> UserOut:
    """A new password; the user's sessions end (yours too, if it is your own)."""
    _visible(p, accounts, username)
    return UserOut.of(
        _changed(lambda: accounts.reset_password(username, body.password, p.username))
    )


@router.post("/users/{username}/role")
def change_role(username: UserPath, body: RoleIn, p: Admin, accounts: AccountsDep) -> UserOut:
    """A new role and scope (within your own); the user's sessions end."""
    _visible(p, accounts, username)
    _not_self(p, username, "change the role of")
    _grantable(p, body.scope)
    return UserOut.of(
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


class TokenOut(BaseModel):
    token_id: str
    name: str
    scope: str
    grants: list[str]
    created_by: str
    created_ms: int
    revoked_ms: int | None
    last_used_ms: int | None


class TokenIn(BaseModel):
    name: str = Field(pattern=r"^[\w.-]{1,64}$")
    scope: ScopeStr
    grants: list[StorableText] = Field(min_length=1, max_length=len(GRANTS))


TokenPath = Annotated[str, PathParam(pattern=r"^[a-z0-9]{12}$")]


class TokenCreated(BaseModel):
    token_id: str
    token: str  # the bearer value: shown once, never stored


def _token_out(row: dict[str, object]) -> TokenOut:
    return TokenOut.model_validate(row)


@router.get("/tokens")
def list_tokens(p: PrincipalDep, tokens: TokensDep) -> list[TokenOut]:
    """The service tokens within your scope, revoked ones included (never their values)."""
    if not p.can("users"):
        raise HTTPException(403, f"role {p.role} may not manage tokens")
    return [_token_out(t) for t in tokens.list() if p.covers(str(t["scope"]))]


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
    return _token_out(revoked)
