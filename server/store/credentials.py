"""Clerks' badge and PIN credentials, kept as salted digests, and the clerk directory a
centre's terminals check them against (``agent/directory.py``, the shared format).

Plain badge numbers and PINs exist only in the request that enrols them: the digest is
made with the centre's salt (``site_salts``, made once per centre) and the plain value is
dropped. A clerk moved to another centre loses their credentials (the digests are of the
old centre) and enrols again there. Two clerks of a centre cannot share a PIN or a badge:
the terminal could not tell who typed it.
"""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import delete, select

from agent.directory import (
    PIN_KEYS,
    PIN_LENGTHS,
    ClerkDirectory,
    credential_digest,
    valid_badge,
    valid_pin,
)
from agent.protocol import now_ms
from server.store.base import StoreBase
from server.store.schema import clerk_credentials, site_salts


class CredentialError(ValueError):
    """A badge or PIN that cannot be enrolled; the message says why (never the value)."""


def _salt(conn: Any, site: str) -> str:
    salt = conn.execute(select(site_salts.c.salt).where(site_salts.c.site == site)).scalar()
    if salt is None:
        salt = secrets.token_hex(16)
        conn.execute(site_salts.insert().values(site=site, salt=salt))
    return str(salt)


def clear_credentials(conn: Any, clerk_id: str) -> None:
    """Forget a clerk's credentials (in the caller's transaction: a transfer)."""
    conn.execute(delete(clerk_credentials).where(clerk_credentials.c.clerk_id == clerk_id))


class Credentials(StoreBase):
    def set_credentials(
        self,
        clerk_id: str,
        site: str,
        *,
        badges: list[str],
        pin: str | None,
        by: str,
    ) -> tuple[int, bool]:
        """Enrol a clerk's badges (replacing any before) and PIN; ``(badges, has_pin)``.
        Raises ``CredentialError``."""
        if len(badges) > 8:
            raise CredentialError("at most 8 badges per clerk")
        if not all(valid_badge(b) for b in badges):
            raise CredentialError("a badge number is 1-32 letters or digits")
        if pin is not None and not valid_pin(pin):
            raise CredentialError(
                f"a PIN is {PIN_LENGTHS.start}-{PIN_LENGTHS.stop - 1} of the keys {PIN_KEYS}"
            )
        with self.engine.begin() as conn:
            salt = _salt(conn, site)
            digests = [credential_digest(site, salt, "badge", b) for b in badges]
            pin_digest = None if pin is None else credential_digest(site, salt, "pin", pin)
            others = conn.execute(
                select(clerk_credentials).where(
                    clerk_credentials.c.site == site, clerk_credentials.c.clerk_id != clerk_id
                )
            )
            for other in others:
                if pin_digest is not None and other.pin == pin_digest:
                    raise CredentialError("another clerk of this centre has that PIN")
                if set(digests) & set(other.badges or []):
                    raise CredentialError("that badge is another clerk's")
            conn.execute(delete(clerk_credentials).where(clerk_credentials.c.clerk_id == clerk_id))
            conn.execute(
                clerk_credentials.insert().values(
                    clerk_id=clerk_id,
                    site=site,
                    badges=digests,
                    pin=pin_digest,
                    updated_ms=now_ms(),
                    updated_by=by,
                )
            )
        return len(digests), pin_digest is not None

    def directory(self, site: str) -> ClerkDirectory:
        """The centre's clerk directory for its terminals: digests only. ``elsewhere`` is
        left empty: other centres' digests are salted for them, so their badges read as
        unknown here (refused either way)."""
        with self.engine.begin() as conn:
            salt = _salt(conn, site)
            rows = conn.execute(
                select(clerk_credentials)
                .where(clerk_credentials.c.site == site)
                .order_by(clerk_credentials.c.clerk_id)
            ).all()
        return ClerkDirectory.model_validate(
            {
                "site": site,
                "salt": salt,
                "clerks": [
                    {"clerk_id": r.clerk_id, "badges": tuple(r.badges or ()), "pin": r.pin}
                    for r in rows
                ],
            }
        )
