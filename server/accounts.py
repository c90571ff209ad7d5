"""Dashboard accounts: hashed passwords, roles scoped to units, sessions, audit log.

Passwords are hashed with scrypt (stdlib); session cookies are random tokens stored
only as their SHA-256; every session carries its own CSRF token, which state-changing
requests must echo in the ``X-CSRF-Token`` header.

Sign-in is throttled in the database (``login_failures``), so every replica of the
server shares the count: ``THROTTLE.user_failures`` wrong passwords for one account
within ``THROTTLE.window_s`` lock that account for ``THROTTLE.lock_s`` (even the right
password is refused meanwhile), and one client address has a higher limit of its own.

Account changes made through ``create_user``, ``set_disabled``, ``reset_password`` and
``set_role`` are audited in the same transaction, and the last three end the user's
sessions. New passwords set through them must pass ``check_password``; ``add_user``
(seeding, tests, the demo) only asks for 8 characters.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import math
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from agent.protocol import now_ms
from server.store.schema import audit_log, auth_sessions, clerks, login_failures, units, users

Role = Literal["district_admin", "centre_manager", "inspector", "readonly", "clerk"]
ROLES: Final[tuple[Role, ...]] = (
    "district_admin",
    "centre_manager",
    "inspector",
    "readonly",
    "clerk",
)
#: What each role may do beyond reading what its scope shows.
CAN: Final[dict[str, set[Role]]] = {
    "acknowledge": {"district_admin", "centre_manager", "inspector"},
    "close_case": {"district_admin", "centre_manager", "inspector"},
    "roster": {"district_admin", "centre_manager"},
    "kpis": {"district_admin", "centre_manager"},
    "users": {"district_admin"},
    # the assessment (A-PASS, A-REVIEW): the window-management section's inspectors
    # record findings and sign verdicts and probation off; the district sets thresholds;
    # a clerk appeals, the centre's manager (or the district) resolves the appeal
    "finding": {"district_admin", "inspector"},
    "sign_off": {"district_admin", "inspector"},
    "probation": {"district_admin", "inspector"},
    "thresholds": {"district_admin"},
    "appeal": {"clerk"},
    "resolve_appeal": {"district_admin", "centre_manager"},
    "outbound": {"district_admin"},  # resend a dead outbound delivery (issue 18)
    # push rule thresholds and camera rates to terminals over the air (issue 19): the
    # district, like the assessment thresholds; a centre may not loosen its own
    "window_settings": {"district_admin"},
}
SESSION_S: Final = 8 * 3600  # one working day; then log in again
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}
_USERNAME = re.compile(r"^[\w.@-]{1,64}$")
_SCOPE = re.compile(r"^(all|district:[^\x00-\x1f]{1,80}|site:[a-z0-9][a-z0-9-]{0,31})$")


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


@functools.cache
def _dummy_hash() -> str:
    """A hash to check unknown user names against: one scrypt, as for a real user."""
    return hash_password(secrets.token_urlsafe(16))


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# ----------------------------------------------------------------- password policy

PASSWORD_MIN: Final = 12
#: A password this long may use fewer character classes (a passphrase).
PASSPHRASE_MIN: Final = 16
PASSWORD_MAX: Final = 256
#: Passwords (lower-cased) and, stripped of digits and symbols, words that are the
#: first guesses of any spray; the length and class rules catch the shorter ones.
COMMON_PASSWORDS: Final = frozenset(
    {
        "password1234",
        "password12345",
        "password123456",
        "passw0rd1234",
        "p@ssw0rd1234",
        "qwerty123456",
        "qwertyuiop123",
        "1q2w3e4r5t6y",
        "1qaz2wsx3edc",
        "123456789012",
        "1234567890123456",
        "1234567890ab",
        "abc123456789",
        "abcdefghijkl",
        "iloveyou1234",
        "welcome12345",
        "changeme1234",
        "letmein12345",
        "administrator",
        "administrator1",
        "admin1234567",
        "admin@123456",
        "passwordpassword",
        "qwertyqwerty",
        "woaini1314520",
        "aa123456789a",
    }
)
COMMON_WORDS: Final = frozenset(
    {
        "password",
        "passwd",
        "qwerty",
        "qwertyuiop",
        "welcome",
        "changeme",
        "letmein",
        "iloveyou",
        "admin",
        "administrator",
        "warmwindow",
        "woaini",
        "abc",
        "qaz",
        "qazwsx",
    }
)
_LEET: Final = str.maketrans("@4310$5!7", "aaeiossit")


def check_password(password: str, username: str = "") -> None:
    """Raise ValueError, saying why, unless ``password`` is acceptable for ``username``.

    At least 12 characters; at least three of lower case, upper case, digits and other
    characters unless it has 16 or more; not the user name nor containing it; not a
    common password (nor a common word dressed up with digits and symbols)."""
    if len(password) < PASSWORD_MIN:
        raise ValueError(f"password must have at least {PASSWORD_MIN} characters")
    if len(password) > PASSWORD_MAX:
        raise ValueError(f"password must have at most {PASSWORD_MAX} characters")
    classes = sum(
        (
            any(c.islower() for c in password),
            any(c.isupper() for c in password),
            any(c.isdigit() for c in password),
            any(not c.isalnum() for c in password),
        )
    )
    if classes < 3 and len(password) < PASSPHRASE_MIN:
        raise ValueError(
            "password must mix at least three of lower case, upper case, digits and "
            f"other characters, or have at least {PASSPHRASE_MIN} characters"
        )
    lowered = password.lower()
    name = username.lower()
    if name and (lowered == name or (len(name) >= 3 and name in lowered)):
        raise ValueError("password must not contain the user name")
    letters = "".join(c for c in lowered if c.isalpha())
    # "P@ssw0rd-2026": digits and symbols around a common word, some standing for letters
    core = lowered.strip("".join({c for c in lowered if not c.isalpha()})).translate(_LEET)
    core = "".join(c for c in core if c.isalpha())
    common = {letters, core} & COMMON_WORDS
    if lowered in COMMON_PASSWORDS or common or len(set(lowered)) <= 3:
        raise ValueError("password is too common; choose another")


def check_scope(scope: str) -> None:
    if not _SCOPE.match(scope):
        raise ValueError("scope must be 'all', 'district:<name>' or 'site:<slug>'")


def check_role(role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")


# ----------------------------------------------------------------- principals


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

    def covers(self, scope: str) -> bool:
        """Whether ``scope`` lies within this principal's own: what an administrator may
        see of accounts and tokens, and grant. "all" covers everything; a district covers
        itself and its sites; a site covers itself."""
        if self.sites is None:
            return True
        if scope == self.scope:
            return True
        return scope.startswith("site:") and scope.removeprefix("site:") in self.sites


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


# ----------------------------------------------------------------- throttling


@dataclass(frozen=True)
class Throttle:
    user_failures: int = 5  # wrong passwords for one account ...
    address_failures: int = 20  # ... or from one client address ...
    window_s: int = 15 * 60  # ... within this long ...
    lock_s: int = 15 * 60  # ... lock it for this long


THROTTLE: Final = Throttle()


class LoginLocked(Exception):
    """Sign-in refused without checking the password: too many recent failures."""

    def __init__(self, retry_after_s: int) -> None:
        self.retry_after_s = max(1, retry_after_s)
        minutes = math.ceil(self.retry_after_s / 60)
        unit = "minute" if minutes == 1 else "minutes"
        super().__init__(f"too many failed sign-ins; try again in {minutes} {unit}")


# ----------------------------------------------------------------- users


@dataclass(frozen=True)
class User:
    """An account as listed: never its password hash."""

    username: str
    display_name: str
    role: str
    scope: str
    disabled: bool
    clerk_id: str | None


class UnknownUser(LookupError):
    def __init__(self, username: str) -> None:
        super().__init__(f"no user {username}")


class UserExists(Exception):
    def __init__(self, username: str) -> None:
        super().__init__(f"user {username} exists")


def _user(row: Any) -> User:
    return User(
        row.username, row.display_name, row.role, row.scope, bool(row.disabled), row.clerk_id
    )


class Accounts:
    def __init__(
        self, engine: Engine, throttle: Throttle = THROTTLE, clock: Callable[[], int] = now_ms
    ) -> None:
        self.engine = engine
        self.throttle = throttle
        #: Milliseconds now; tests move it to let locks and sessions expire.
        self.clock = clock

    def _at(self, at_ms: int | None) -> int:
        return at_ms if at_ms is not None else self.clock()

    def _insert(self, table: Any) -> Any:
        return (postgresql if self.engine.dialect.name == "postgresql" else sqlite).insert(table)

    def add_user(
        self,
        username: str,
        password: str,
        role: Role,
        scope: str = "all",
        display_name: str = "",
        by: str | None = None,
        clerk_id: str | None = None,
    ) -> None:
        """Add or update a user (seeding, tests, ``warmwindow user add``). Audited as
        ``user_add`` when ``by`` says who; the password policy is the caller's to apply
        (``check_password``): this asks only for 8 characters. A ``clerk`` account names
        its clerk (``clerk_id``), whose own records alone it reads."""
        check_role(role)
        check_scope(scope)
        self._check_clerk(role, scope, clerk_id)
        if len(password) < 8:
            raise ValueError("password must have at least 8 characters")
        if not _USERNAME.match(username):
            raise ValueError("user name: 1-64 letters, digits, '.', '@', '_' or '-'")
        row = {
            "password_hash": hash_password(password),
            "role": role,
            "scope": scope,
            "display_name": display_name or username,
            "disabled": False,
            "clerk_id": clerk_id,
        }
        with self.engine.begin() as conn:
            exists = conn.execute(select(users.c.username).where(users.c.username == username))
            updated = exists.first() is not None
            if updated:
                conn.execute(update(users).where(users.c.username == username).values(**row))
                # a new password or role: the old sessions must not outlive them
                conn.execute(delete(auth_sessions).where(auth_sessions.c.username == username))
            else:
                conn.execute(users.insert().values(username=username, **row))
            if by is not None:
                detail = {"role": role, "scope": scope, "updated": updated}
                write_audit(conn, by, "user_add", username, detail, at_ms=self.clock())

    def create_user(
        self,
        username: str,
        password: str,
        role: str,
        scope: str,
        by: str,
        display_name: str = "",
        at_ms: int | None = None,
        clerk_id: str | None = None,
    ) -> User:
        """A new user (never overwrites one), its password checked against the policy."""
        if not _USERNAME.match(username):
            raise ValueError("user name: 1-64 letters, digits, '.', '@', '_' or '-'")
        check_role(role)
        check_scope(scope)
        self._check_clerk(role, scope, clerk_id)
        check_password(password, username)
        at = self._at(at_ms)
        shown = display_name or username
        row = {
            "username": username,
            "password_hash": hash_password(password),
            "role": role,
            "scope": scope,
            "display_name": shown,
            "disabled": False,
            "clerk_id": clerk_id,
        }
        with self.engine.begin() as conn:
            done = conn.execute(
                self._insert(users)
                .values(**row)
                .on_conflict_do_nothing(index_elements=["username"])
            ).rowcount
            if not done:
                raise UserExists(username)
            detail = {"role": role, "scope": scope, "clerk_id": clerk_id}
            write_audit(conn, by, "user_add", username, detail, at_ms=at)
        return User(username, shown, role, scope, False, clerk_id)

    def _check_clerk(self, role: str, scope: str, clerk_id: str | None) -> None:
        """A clerk account belongs to one clerk of its centre; no other account to one."""
        if role != "clerk":
            if clerk_id is not None:
                raise ValueError("clerk_id: only a clerk account belongs to a clerk")
            return
        if clerk_id is None:
            raise ValueError("clerk_id: a clerk account names its clerk")
        if not scope.startswith("site:"):
            raise ValueError("scope: a clerk account's scope is its centre, site:<slug>")
        with self.engine.connect() as conn:
            home = conn.execute(select(clerks.c.site).where(clerks.c.clerk_id == clerk_id)).first()
        if home is None or f"site:{home.site}" != scope:
            raise ValueError(f"clerk_id: no clerk {clerk_id} at {scope}")

    def list_users(self) -> list[User]:
        with self.engine.connect() as conn:
            return [_user(r) for r in conn.execute(select(users).order_by(users.c.username))]

    def get_user(self, username: str) -> User | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(users).where(users.c.username == username)).first()
        return None if row is None else _user(row)

    def _change(
        self,
        username: str,
        values: dict[str, Any],
        by: str,
        action: str,
        detail: Any,
        at_ms: int | None,
        end_sessions: bool = True,
        clear_lock: bool = False,
    ) -> User:
        at = self._at(at_ms)
        with self.engine.begin() as conn:
            q = select(users).where(users.c.username == username).with_for_update()
            before = conn.execute(q).first()
            if before is None:
                raise UnknownUser(username)
            conn.execute(update(users).where(users.c.username == username).values(**values))
            ended = 0
            if end_sessions:
                ended = conn.execute(
                    delete(auth_sessions).where(auth_sessions.c.username == username)
                ).rowcount
            if clear_lock:
                conn.execute(
                    delete(login_failures).where(login_failures.c.key == f"user:{username}")
                )
            entry = dict(detail or {})
            if end_sessions:
                entry["sessions_ended"] = ended
            write_audit(conn, by, action, username, entry, at_ms=at)
            after = conn.execute(select(users).where(users.c.username == username)).one()
        return _user(after)

    def set_disabled(
        self, username: str, disabled: bool, by: str, at_ms: int | None = None
    ) -> User:
        """Disable (ending every session) or enable an account."""
        action = "user_disable" if disabled else "user_enable"
        return self._change(
            username, {"disabled": disabled}, by, action, {}, at_ms, end_sessions=disabled
        )

    def reset_password(
        self, username: str, password: str, by: str, at_ms: int | None = None
    ) -> User:
        """A new password (checked against the policy); the user's sessions end, and the
        account's sign-in lock, if any, is lifted."""
        check_password(password, username)
        values = {"password_hash": hash_password(password)}
        return self._change(username, values, by, "user_password", {}, at_ms, clear_lock=True)

    def set_role(
        self, username: str, role: str, scope: str, by: str, at_ms: int | None = None
    ) -> User:
        """A new role and scope; the user's sessions end (they carried the old ones)."""
        check_role(role)
        check_scope(scope)
        old = self.get_user(username)
        if old is None:
            raise UnknownUser(username)
        # a clerk account stays its clerk's; another account never becomes one this way
        clerk = old.clerk_id if role == "clerk" else None
        self._check_clerk(role, scope, clerk)
        detail = {"role": role, "scope": scope, "was": {"role": old.role, "scope": old.scope}}
        values = {"role": role, "scope": scope, "clerk_id": clerk}
        return self._change(username, values, by, "user_role", detail, at_ms)

    # ------------------------------------------------------------- sessions

    def login(
        self,
        username: str,
        password: str,
        at_ms: int | None = None,
        address: str | None = None,
    ) -> str | None:
        """A new session token, or None for a wrong name or password.

        Raises ``LoginLocked`` while the account or the client ``address`` has had too
        many failures: then the password is not even checked. Timing does not reveal
        whether the user exists: an unknown name costs one scrypt like a known one."""
        at = self._at(at_ms)
        keys = [f"user:{username[:64]}"]
        if address:
            keys.append(f"addr:{address[:96]}")
        with self.engine.connect() as conn:
            q = select(login_failures.c.locked_until_ms).where(login_failures.c.key.in_(keys))
            until = [r[0] for r in conn.execute(q) if r[0] is not None and r[0] > at]
        if until:
            raise LoginLocked(math.ceil((max(until) - at) / 1000))
        with self.engine.connect() as conn:
            row = conn.execute(select(users).where(users.c.username == username)).first()
        stored = row.password_hash if row is not None else _dummy_hash()
        ok = verify_password(password, stored) and row is not None and not row.disabled
        if not ok:
            self._failed(username, keys, at)
            return None
        token = secrets.token_urlsafe(32)
        with self.engine.begin() as conn:
            conn.execute(delete(login_failures).where(login_failures.c.key == keys[0]))
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
            detail = {"address": address} if address else None
            write_audit(conn, username, "login", None, detail, at_ms=at)
        return token

    def _failed(self, username: str, keys: list[str], at: int) -> None:
        """Count one failure against each key (row-locked: replicas share the count)."""
        t = self.throttle
        with self.engine.begin() as conn:
            for key in keys:
                limit = t.user_failures if key.startswith("user:") else t.address_failures
                conn.execute(
                    self._insert(login_failures)
                    .values(key=key, failures=0, first_ms=at, locked_until_ms=None)
                    .on_conflict_do_nothing(index_elements=["key"])
                )
                q = select(login_failures).where(login_failures.c.key == key).with_for_update()
                row = conn.execute(q).one()
                stale = row.first_ms <= at - t.window_s * 1000 or (
                    row.locked_until_ms is not None and row.locked_until_ms <= at
                )
                failures, first = (1, at) if stale else (row.failures + 1, row.first_ms)
                locked = at + t.lock_s * 1000 if failures >= limit else None
                conn.execute(
                    update(login_failures)
                    .where(login_failures.c.key == key)
                    .values(failures=failures, first_ms=first, locked_until_ms=locked)
                )
                if locked is not None:
                    detail = {"failures": failures, "locked_until_ms": locked}
                    write_audit(conn, username, "login_locked", key, detail, at_ms=at)

    def unlock(self, username: str, by: str, at_ms: int | None = None) -> bool:
        """Lift an account's sign-in lock (audited); whether there was a count to clear."""
        with self.engine.begin() as conn:
            done = conn.execute(
                delete(login_failures).where(login_failures.c.key == f"user:{username}")
            ).rowcount
            if done:
                write_audit(conn, by, "user_unlock", username, at_ms=self._at(at_ms))
        return bool(done)

    def logout(self, token: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                delete(auth_sessions).where(auth_sessions.c.token_hash == _token_hash(token))
            )

    def end_session(self, session: str, by: str, at_ms: int | None = None) -> bool:
        """Sign out: delete the session whose cookie hashes to ``session`` (audited)."""
        with self.engine.begin() as conn:
            done = conn.execute(
                delete(auth_sessions).where(auth_sessions.c.token_hash == session)
            ).rowcount
            write_audit(conn, by, "logout", at_ms=self._at(at_ms))
        return bool(done)

    def principal(self, token: str, at_ms: int | None = None) -> Principal | None:
        at = self._at(at_ms)
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
