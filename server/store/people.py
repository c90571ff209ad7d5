"""Clerks and the roster: who works where, and who staffed a window when."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from server.store import rollups
from server.store.base import StoreBase
from server.store.schema import away_periods, cases, clerks, evaluations, roster, sessions, units


class People(StoreBase):
    def add_clerk(self, clerk_id: str, name: str, site: str) -> None:
        row = {"clerk_id": clerk_id, "name": name, "site": site}
        with self.engine.begin() as conn:
            ins = self._insert(clerks).values(**row)
            conn.execute(ins.on_conflict_do_update(index_elements=["clerk_id"], set_=row))

    def clerk_site(self, clerk_id: str) -> str | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(clerks.c.site).where(clerks.c.clerk_id == clerk_id)).first()
        return row[0] if row else None

    def clerks(self, site: str | None, district: str | None) -> list[dict[str, Any]]:
        q = select(clerks).order_by(clerks.c.site, clerks.c.clerk_id)
        if site:
            q = q.where(clerks.c.site == site)
        if district:
            q = q.where(clerks.c.site.in_(select(units.c.site).where(units.c.district == district)))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def sign_in(
        self, clerk_id: str, site: str, window: str, start_ms: int, end_ms: int | None = None
    ) -> None:
        """Record who staffed a window when, and attribute what is already stored."""
        with self.engine.begin() as conn:
            conn.execute(
                roster.insert().values(
                    clerk_id=clerk_id, site=site, window=window, start_ms=start_ms, end_ms=end_ms
                )
            )
            end = end_ms if end_ms is not None else 2**62
            for table, col in (
                (sessions, sessions.c.opened_ms),
                (evaluations, evaluations.c.ts_ms),
                (away_periods, away_periods.c.started_ms),
                (cases, cases.c.opened_ms),
            ):
                conn.execute(
                    update(table)
                    .where(
                        table.c.site == site,
                        table.c.window == window,
                        col >= start_ms,
                        col < end,
                    )
                    .values(clerk_id=clerk_id)
                )
            # the re-attributed days' rollups move to the clerk
            rollups.rebuild(conn, start_ms, end_ms, site=site, window=window)
