"""Window settings over the air, the server's side: record a push, sign each window's
bundle, publish it retained on the window's ``settings`` topic, and tell how it stands.

``Access`` (server/api/access.py) decides who may push what to which windows; this
module does the rest for the windows it is handed:

- ``record_push``: the push (scope, fields, note, who) on the record; withdrawn later,
  never deleted (``withdraw_push``).
- ``SettingsPublisher.publish``: for each window, every live push whose scope reaches it
  (``server/policy/window_settings.py``) becomes one ``Overrides`` document, signed as a
  settings bundle (``server/bundles.py``) with the next serial, published retained (the
  latest bundle alone says everything, so a terminal that was off needs only that one),
  and the publication recorded with what the broker answered.
- ``SettingsPublisher.sync_directory``: after a clerk's badge or PIN changes (or a clerk
  moves), the centre's windows get a new bundle carrying the new clerk directory
  (``clerks.json``, salted digests only), so a clerk enrolled now signs in now; a centre
  that has never enrolled anyone gets no directory (its terminals keep sign-in off).
- ``window_status``: per window, the serial last sent, the serial the terminal applied
  (its health report's ``settings_serial``) and its refusal, if any (``settings_error``):
  ``applied``, ``pending``, ``refused`` or ``not sent``.

Example::

    push_id = record_push(conn, "district:青浦区", {"rules.greet_within_s": 6.0}, "note", "ann")
    publisher = SettingsPublisher(engine, key, ingest_send)
    publisher.publish([("qingpu", "w01"), ("qingpu", "w02")], by="ann")
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection, Engine

from agent.directory import ClerkDirectory
from agent.overrides import DIRECTORY_FILE, OVERRIDES_FILE, Overrides
from agent.protocol import now_ms
from server.bundles import build_bundle
from server.policy.window_settings import compose
from server.store.schema import devices, settings_publications, settings_pushes, units

#: Publish one window's bundle: (site, window, payload) -> None when the broker took it,
#: else what went wrong.
Send = Callable[[str, str, bytes], str | None]
#: A centre's clerk directory as the store builds it (``Store.directory``).
Directory = Callable[[str], ClerkDirectory]

Status = Literal["applied", "pending", "refused", "not sent", "none"]


@dataclass(frozen=True)
class Publication:
    site: str
    window: str
    serial: int
    push_ids: list[int]
    published: bool
    error: str | None
    directory_clerks: int | None = None  # clerks in the directory it carried; None: none


def record_push(
    conn: Connection, scope: str, fields: dict[str, Any], note: str, by: str, at_ms: int
) -> int:
    """A new push on the record; its id."""
    result = conn.execute(
        insert(settings_pushes).values(scope=scope, fields=fields, note=note, by=by, at_ms=at_ms)
    )
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def push_row(conn: Connection, push_id: int) -> dict[str, Any] | None:
    row = conn.execute(select(settings_pushes).where(settings_pushes.c.id == push_id)).first()
    return dict(row._mapping) if row is not None else None


def withdraw_push(conn: Connection, push_id: int, by: str, reason: str, at_ms: int) -> bool:
    """Withdraw a live push; False when it is already withdrawn."""
    result = conn.execute(
        update(settings_pushes)
        .where(settings_pushes.c.id == push_id, settings_pushes.c.withdrawn_ms.is_(None))
        .values(withdrawn_ms=at_ms, withdrawn_by=by, withdraw_reason=reason)
    )
    return bool(result.rowcount)


def pushes(conn: Connection) -> list[dict[str, Any]]:
    """Every push, oldest first (a city has a few hundred over years)."""
    rows = conn.execute(select(settings_pushes).order_by(settings_pushes.c.id))
    return [dict(r._mapping) for r in rows]


def overrides_for(conn: Connection, site: str, window: str) -> Overrides:
    """The settings document one window should run with now."""
    district = conn.execute(select(units.c.district).where(units.c.site == site)).scalar()
    return compose(pushes(conn), site, window, district or "")


def window_status(conn: Connection, sites: Iterable[str] | None) -> list[dict[str, Any]]:
    """Per window of ``sites`` (None: all): what was last sent and what the terminal
    says it applied, from its latest health report."""
    q = select(devices.c.site, devices.c.window, devices.c.health).order_by(
        devices.c.site, devices.c.window
    )
    if sites is not None:
        q = q.where(devices.c.site.in_(list(sites)))
    last: dict[tuple[str, str], dict[str, Any]] = {}
    pubs = select(settings_publications).order_by(settings_publications.c.serial)
    if sites is not None:
        pubs = pubs.where(settings_publications.c.site.in_(list(sites)))
    for r in conn.execute(pubs):
        last[(r.site, r.window)] = dict(r._mapping)
    out = []
    for r in conn.execute(q):
        health = r.health or {}
        pub = last.get((r.site, r.window))
        applied = health.get("settings_serial")
        error = health.get("settings_error")
        out.append(
            {
                "site": r.site,
                "window": r.window,
                "sent_serial": pub["serial"] if pub else None,
                "sent_ms": pub["at_ms"] if pub else None,
                "sent_error": pub["error"] if pub else None,
                "push_ids": pub["push_ids"] if pub else [],
                "applied_serial": applied,
                "terminal_error": error,
                "status": _status(pub, applied, error),
            }
        )
    return out


def _status(pub: dict[str, Any] | None, applied: int | None, error: str | None) -> Status:
    if pub is None:
        return "none"
    if not pub["published"]:
        return "not sent"
    if applied == pub["serial"]:
        return "applied"
    if error and error.startswith(f"serial {pub['serial']} "):
        return "refused"
    return "pending"


class SettingsPublisher:
    """Signs and publishes each window's settings bundle (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
        key: Ed25519PrivateKey,
        send: Send,
        directory: Directory | None = None,
    ) -> None:
        self.engine = engine
        self.key = key
        self.send = send
        self.directory = directory

    def publish(self, windows: Iterable[tuple[str, str]], by: str) -> list[Publication]:
        """One bundle per window, in order; a window the broker did not take is recorded
        as not sent (publish again later) and the others go on."""
        return [self._one(site, window, by) for site, window in windows]

    def publish_document(self, overrides: Overrides, by: str) -> Publication:
        """Sign and publish ``overrides`` as they are, unchecked: for a test of what the
        terminal refuses, and for an operator's repair; recorded like any other."""
        return self._send(overrides, self._directory_of(overrides.site), by)

    def sync_directory(self, site: str, by: str) -> list[Publication]:
        """Publish again to each window of ``site`` whose last bundle does not carry the
        centre's current clerk directory."""
        current = self._directory_of(site)
        want = None if current is None else hashlib.sha256(current).hexdigest()
        with self.engine.connect() as conn:
            q = select(devices.c.window).where(devices.c.site == site)
            windows = [r.window for r in conn.execute(q.order_by(devices.c.window))]
            last: dict[str, str | None] = {}
            for r in conn.execute(
                select(settings_publications.c.window, settings_publications.c.directory_sha256)
                .where(settings_publications.c.site == site)
                .order_by(settings_publications.c.serial)
            ):
                last[r.window] = r.directory_sha256
        stale = [w for w in windows if last.get(w) != want]
        return self.publish([(site, w) for w in stale], by)

    def _directory_of(self, site: str) -> bytes | None:
        """``clerks.json`` for ``site``: None while the centre has enrolled nobody and
        none was ever sent (an empty directory then would turn sign-in on for nothing)."""
        if self.directory is None:
            return None
        directory = self.directory(site)
        if not directory.clerks:
            with self.engine.connect() as conn:
                sent = conn.execute(
                    select(settings_publications.c.serial).where(
                        settings_publications.c.site == site,
                        settings_publications.c.directory_sha256.is_not(None),
                    )
                ).first()
            if sent is None:
                return None
        return directory.model_dump_json().encode()

    def _one(self, site: str, window: str, by: str) -> Publication:
        with self.engine.connect() as conn:
            overrides = overrides_for(conn, site, window)
        return self._send(overrides, self._directory_of(site), by)

    def _send(self, overrides: Overrides, directory: bytes | None, by: str) -> Publication:
        site, window = overrides.site, overrides.window
        push_ids = [layer.push_id for layer in overrides.layers]
        files = {OVERRIDES_FILE: overrides.model_dump_json(indent=1).encode()}
        if directory is not None:
            files[DIRECTORY_FILE] = directory
        with self.engine.begin() as conn:
            inserted = conn.execute(
                insert(settings_publications).values(
                    site=site,
                    window=window,
                    push_ids=push_ids,
                    sha256="",
                    bytes=0,
                    by=by,
                    at_ms=now_ms(),
                    published=False,
                    error="being sent",
                )
            ).inserted_primary_key
            assert inserted is not None
            serial = int(inserted[0])
        data = build_bundle(
            files,
            version=f"settings-{serial}",
            serial=serial,
            key=self.key,
            targets=[f"{site}/{window}"],
            kind="settings",
        )
        try:
            error = self.send(site, window, data)
        except Exception as exc:  # the broker or the link: recorded, the next goes on
            error = f"{type(exc).__name__}: {exc}"[:200]
        with self.engine.begin() as conn:
            conn.execute(
                update(settings_publications)
                .where(settings_publications.c.serial == serial)
                .values(
                    sha256=hashlib.sha256(data).hexdigest(),
                    directory_sha256=None
                    if directory is None
                    else hashlib.sha256(directory).hexdigest(),
                    bytes=len(data),
                    published=error is None,
                    error=error,
                )
            )
        clerks = None
        if directory is not None:
            clerks = len(ClerkDirectory.model_validate_json(directory).clerks)
        return Publication(site, window, serial, push_ids, error is None, error, clerks)
