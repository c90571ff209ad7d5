"""The store: idempotent writes and the queries behind the dashboard.

Same code on SQLite (default, one file) and PostgreSQL (production). ``Store`` is the
one object the rest of the server holds; each concern is a part of its own, sharing
one engine (``server.store.base``):

==========================  =====================================================
``writes.Writes``           ingest batches, device status, rejects, dead letters
``registry.Registry``       units and window terminals from the site files
``people.People``           clerks, shifts (sign-ins) and the planned roster
``calls.Calls``             the queue system's calls, joined to their sessions
``credentials.Credentials`` clerks' badge and PIN digests, the terminals' directory
``cases.Cases``             bad-review cases and alerts
``kpis.Kpis``               help-desk (H-ONLINE) figures
``reads.Reads``             stored events, sequence gaps, rejects, dead letters
``retention.Retention``     what is deleted when
==========================  =====================================================

The store decides nothing: which events raise which alerts and open which cases, and
what the clock makes due, is ``server.policy``.
"""

from __future__ import annotations

from sqlalchemy import select

from server.store import migrate, rollups
from server.store.base import make_engine
from server.store.calls import Calls
from server.store.cases import Cases
from server.store.credentials import Credentials
from server.store.kpis import Kpis
from server.store.people import People
from server.store.reads import Reads
from server.store.registry import Registry
from server.store.retention import Retention
from server.store.schema import daily_rollups, sessions
from server.store.writes import STORE_REFUSED, Batch, DeadLetter, StoredEvent, Writes, printable

__all__ = [
    "STORE_REFUSED",
    "Batch",
    "DeadLetter",
    "Store",
    "StoredEvent",
    "make_engine",
    "printable",
]


class Store(Writes, Registry, People, Calls, Credentials, Cases, Kpis, Reads, Retention):
    """The store: ``Store(url)``, then ``create()`` once before use.

    >>> store = Store("sqlite://")
    >>> store.create()
    >>> store.event_count()
    0
    >>> store.close()
    """

    def create(self) -> None:
        """Bring the schema to the latest migration (idempotent)."""
        migrate.upgrade(self.engine)
        with self.engine.begin() as conn:
            # A store that had measures before the rollups existed (migration 0004).
            has = conn.execute(select(daily_rollups.c.site).limit(1)).first()
            if has is None and conn.execute(select(sessions.c.site).limit(1)).first():
                rollups.rebuild(conn)

    def rebuild_rollups(self, since_ms: int | None = None) -> int:
        with self.engine.begin() as conn:
            return rollups.rebuild(conn, since_ms)
