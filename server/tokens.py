"""Service tokens: how machine clients (queue system, help-desk feed, integrations,
Prometheus) call the API.

A token is sent as ``Authorization: Bearer wwt_<id>_<secret>``; no cookie, no CSRF.
Only its SHA-256 is stored. Each token is scoped to units like a user ("all",
"district:<name>", "site:<slug>") and to named operations (``GRANTS``); it is revocable,
and every use is audited.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Any, Final

from sqlalchemy import Engine, select, update

from agent.protocol import now_ms
from server.accounts import Principal, scope_sites, write_audit
from server.store.schema import service_tokens

#: What a token may be allowed to do. ``read`` covers every GET of the API within its
#: scope; the others are the writes and feeds named after what uses them.
GRANTS: Final[dict[str, str]] = {
    "read": "read the API within the token's units",
    "kpis": "push help-desk daily figures (H-ONLINE)",
    "metrics": "scrape /metrics (Prometheus)",
    "queue": "the queue system: calls and tickets",
    "callbacks": "outbound-integration callbacks",
}
PREFIX: Final = "wwt_"
_FORMAT = re.compile(r"^wwt_([a-z0-9]{12})_([A-Za-z0-9_-]{20,64})$")
_NAME = re.compile(r"^[\w.-]{1,64}$")
_SCOPE = re.compile(r"^(district:[^\x00-\x1f\x7f]{1,80}|site:[a-z0-9][a-z0-9-]{0,31})$")


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_scope(scope: str) -> None:
    if not (scope == "all" or _SCOPE.match(scope)):
        raise ValueError("scope must be 'all', 'district:<name>' or 'site:<slug>'")


class Tokens:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(
        self,
        name: str,
        scope: str,
        grants: list[str] | tuple[str, ...] | frozenset[str],
        created_by: str,
        at_ms: int | None = None,
    ) -> tuple[str, str]:
        """A new token: (token_id, the bearer value). The value is shown once, never stored."""
        if not _NAME.match(name):
            raise ValueError("name: 1-64 letters, digits, '.', '_' or '-'")
        check_scope(scope)
        unknown = set(grants) - GRANTS.keys()
        if unknown or not grants:
            raise ValueError(f"grants must be a non-empty subset of {sorted(GRANTS)}")
        at = at_ms if at_ms is not None else now_ms()
        token_id = secrets.token_hex(6)
        value = f"{PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
        with self.engine.begin() as conn:
            conn.execute(
                service_tokens.insert().values(
                    token_id=token_id,
                    name=name,
                    token_hash=_hash(value),
                    scope=scope,
                    grants=sorted(set(grants)),
                    created_by=created_by,
                    created_ms=at,
                )
            )
            write_audit(
                conn,
                created_by,
                "token_create",
                token_id,
                {"name": name, "scope": scope, "grants": sorted(set(grants))},
                at_ms=at,
            )
        return token_id, value

    def list(self) -> list[dict[str, Any]]:
        q = select(service_tokens).order_by(service_tokens.c.created_ms)
        with self.engine.connect() as conn:
            return [
                {k: v for k, v in r._mapping.items() if k != "token_hash"} for r in conn.execute(q)
            ]

    def get(self, token_id: str) -> dict[str, Any] | None:
        q = select(service_tokens).where(service_tokens.c.token_id == token_id)
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        return None if row is None else {k: v for k, v in row._mapping.items() if k != "token_hash"}

    def revoke(self, token_id: str, by: str, at_ms: int | None = None) -> bool:
        at = at_ms if at_ms is not None else now_ms()
        with self.engine.begin() as conn:
            done = conn.execute(
                update(service_tokens)
                .where(service_tokens.c.token_id == token_id, service_tokens.c.revoked_ms.is_(None))
                .values(revoked_ms=at)
            ).rowcount
            if done:
                write_audit(conn, by, "token_revoke", token_id, at_ms=at)
        return bool(done)

    def principal(
        self, value: str, method: str = "", path: str = "", at_ms: int | None = None
    ) -> Principal | None:
        """The principal a bearer value stands for, or None (unknown, malformed, revoked).

        Every successful use is audited (method and path) and stamps ``last_used_ms``."""
        m = _FORMAT.match(value)
        if m is None:
            return None
        at = at_ms if at_ms is not None else now_ms()
        q = select(service_tokens).where(service_tokens.c.token_hash == _hash(value))
        with self.engine.begin() as conn:
            row = conn.execute(q).first()
            if row is None or row.token_id != m.group(1) or row.revoked_ms is not None:
                return None
            conn.execute(
                update(service_tokens)
                .where(service_tokens.c.token_id == row.token_id)
                .values(last_used_ms=at)
            )
            write_audit(
                conn,
                f"token:{row.token_id}",
                "token_use",
                f"{method} {path}"[:96],
                {"name": row.name},
                at_ms=at,
            )
            sites = scope_sites(conn, row.scope)
        return Principal(
            username=f"token:{row.token_id}",
            display_name=row.name,
            role="service",
            scope=row.scope,
            sites=sites,
            csrf=None,
            grants=frozenset(row.grants),
        )
