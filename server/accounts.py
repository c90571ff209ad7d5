"""Dashboard accounts: hashed passwords, roles scoped to units, sessions, audit log.

Passwords are hashed with scrypt (stdlib); session cookies are random tokens stored
only as their SHA-256; every session carries its own CSRF token, which state-changing
requests must echo in the ``X-CSRF-Token`` header.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any, Final, Literal

from sqlalchemy import Engine, delete, select, update

from server.store.schema import audit_log, auth_sessions, units, users

Role = Literal["district_admin", "centre_manager", "inspector", "readonly"]
ROLES: Final[tuple[Role, ...]] = ("district_admin", "centre_manager", "inspector", "readonly")
#: What each role may do beyond reading what its scope shows.
CAN: Final[dict[str, set[Role]]] = {
    "acknowledge": {"district_admin", "centre_manager", "inspector"},
    "close_case": {"district_admin", "centre_manager", "inspector"},
    "roster": {"district_admin", "centre_manager"},
    "kpis": {"district_admin", "centre_manager"},
    "users": {"district_admin"},
}
SESSION_S: Final = 8 * 3600  # one working day; then log in again
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)
    return f"scrypt${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, salt_hex, digest_hex = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    digest = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt_hex), **_SCRYPT)
    return hmac.compare_digest(digest.hex(), digest_hex)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who is asking: a signed-in user or a service token, and what they may reach.

    ``sites`` None means every site. A ``clerk_id`` narrows reads to that clerk's own
    records. A service token has ``grants`` (named operations) instead of a role's
    permissions, and no CSRF token (it is sent as a bearer header, never a cookie).
    """

    username: str
    display_name: str
    role: str  # a Role, or "service" for a token
    scope: str
    sites: frozenset[str] | None  # None: every site
    csrf: str | None
    clerk_id: str | None = None
    grants: frozenset[str] | None = None  # service tokens only
    session: str | None = None  # sha256 of the cookie token, for logout

    @property
    def is_token(self) -> bool:
        return self.grants is not None

    def can(self, action: str) -> bool:
        if self.grants is not None:
            return action in self.grants
        return self.role in CAN.get(action, set())

    def sees(self, site: str) -> bool:
        return self.sites is None or site in self.sites


def scope_sites(conn: Any, scope: str) -> frozenset[str] | None:
    """The sites a scope string reaches ("all", "district:<name>", "site:<slug>")."""
    if scope.startswith("site:"):
        return frozenset({scope.removeprefix("site:")})
    if scope.startswith("district:"):
        district = scope.removeprefix("district:")
        found = conn.execute(select(units.c.site).where(units.c.district == district))
        return frozenset(r[0] for r in found)
    if scope == "all":
        return None
    return frozenset()  # an unknown scope reaches nothing


def write_audit(
    conn: Any,
    username: str,
    action: str,
    target: str | None = None,
    detail: Any = None,
    site: str | None = None,
    at_ms: int | None = None,
) -> None:
    """Append one audit entry inside the caller's transaction."""
    conn.execute(
        audit_log.insert().values(
            ts_ms=at_ms if at_ms is not None else now_ms(),
            username=username[:64],
            action=action[:48],
            target=None if target is None else target[:96],
            detail=detail,
            site=site,
        )
    )


class Accounts:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add_user(
        self, username: str, password: str, role: Role, scope: str = "all", display_name: str = ""
    ) -> None:
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}")
        if not (scope == "all" or scope.startswith(("district:", "site:"))):
            raise ValueError("scope must be 'all', 'district:<name>' or 'site:<slug>'")
        if len(password) < 8:
            raise ValueError("password must have at least 8 characters")
        row = {
            "password_hash": hash_password(password),
            "role": role,
            "scope": scope,
            "display_name": display_name or username,
            "disabled": False,
        }
        with self.engine.begin() as conn:
            exists = conn.execute(select(users.c.username).where(users.c.username == username))
            if exists.first():
                conn.execute(update(users).where(users.c.username == username).values(**row))
            else:
                conn.execute(users.insert().values(username=username, **row))

    def login(self, username: str, password: str, at_ms: int | None = None) -> str | None:
        """A new session token, or None. Timing does not reveal whether the user exists."""
        at = at_ms if at_ms is not None else now_ms()
        with self.engine.begin() as conn:
            row = conn.execute(select(users).where(users.c.username == username)).first()
            stored = row.password_hash if row is not None else hash_password("x" * 12)
            ok = verify_password(password, stored) and row is not None and not row.disabled
            if not ok:
                return None
            token = secrets.token_urlsafe(32)
            conn.execute(delete(auth_sessions).where(auth_sessions.c.expires_ms < at))
            conn.execute(
                auth_sessions.insert().values(
                    token_hash=_token_hash(token),
                    username=username,
                    csrf=secrets.token_urlsafe(24),
                    created_ms=at,
                    expires_ms=at + SESSION_S * 1000,
                )
            )
        self.audit(username, "login")
        return token

    def logout(self, token: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                delete(auth_sessions).where(auth_sessions.c.token_hash == _token_hash(token))
            )

    def principal(self, token: str, at_ms: int | None = None) -> Principal | None:
        at = at_ms if at_ms is not None else now_ms()
        q = (
            select(users, auth_sessions.c.csrf, auth_sessions.c.expires_ms)
            .join(auth_sessions, auth_sessions.c.username == users.c.username)
            .where(auth_sessions.c.token_hash == _token_hash(token))
        )
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
            if row is None or row.expires_ms <= at or row.disabled:
                return None
            sites = scope_sites(conn, row.scope)
        return Principal(
            row.username,
            row.display_name,
            row.role,
            row.scope,
            sites,
            row.csrf,
            clerk_id=row.clerk_id,
            session=_token_hash(token),
        )

    def audit(
        self,
        username: str,
        action: str,
        target: str | None = None,
        detail: Any = None,
        site: str | None = None,
    ) -> None:
        """One audit entry; ``site`` is the unit the change concerns (scopes who sees it)."""
        with self.engine.begin() as conn:
            write_audit(conn, username, action, target, detail, site)

    def audit_entries(self, limit: int = 200) -> list[dict[str, Any]]:
        q = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]
