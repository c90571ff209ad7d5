"""H-ONLINE help-desk figures, as the help-desk system reports them per window and day."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from server.store.base import StoreBase
from server.store.schema import helpdesk_kpis


class Kpis(StoreBase):
    def put_helpdesk_kpis(
        self,
        site: str,
        window: str,
        day: str,
        requests: int,
        first_response_within_1min: int,
        resolved: int,
    ) -> None:
        """H-ONLINE figures for one day, as reported by the help-desk system (upsert)."""
        row = {
            "requests": requests,
            "first_response_within_1min": first_response_within_1min,
            "resolved": resolved,
        }
        with self.engine.begin() as conn:
            ins = self._insert(helpdesk_kpis).values(site=site, window=window, day=day, **row)
            conn.execute(
                ins.on_conflict_do_update(index_elements=["site", "window", "day"], set_=row)
            )

    def helpdesk_summary(
        self, first_day: str, last_day: str, sites: frozenset[str] | None = None
    ) -> dict[str, Any]:
        """H-ONLINE over local days ``first_day``..``last_day`` of ``sites`` (None: all)."""
        h = helpdesk_kpis
        q = select(
            func.coalesce(func.sum(h.c.requests), 0),
            func.coalesce(func.sum(h.c.first_response_within_1min), 0),
            func.coalesce(func.sum(h.c.resolved), 0),
        ).where(h.c.day >= first_day, h.c.day <= last_day)
        if sites is not None:
            q = q.where(h.c.site.in_(sites))
        with self.engine.connect() as conn:
            n, fast, resolved = (int(x) for x in conn.execute(q).one())
        return {
            "requests": n,
            "first_response_rate": round(fast / n, 4) if n else None,
            "resolved_rate": round(resolved / n, 4) if n else None,
            "meets_standard": (fast == n and resolved >= 0.9 * n) if n else None,
        }
