"""H-ONLINE help-desk figures, as the help-desk system reports them per window and day."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from server.policy.helpdesk import HOnline
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
        """H-ONLINE over local days ``first_day``..``last_day`` of ``sites`` (None: all):
        the totals, and each window's days (by site, window, day)."""
        h = helpdesk_kpis
        q = (
            select(h.c.site, h.c.window, h.c.day, h.c.requests)
            .add_columns(h.c.first_response_within_1min, h.c.resolved)
            .where(h.c.day >= first_day, h.c.day <= last_day)
            .order_by(h.c.site, h.c.window, h.c.day)
        )
        if sites is not None:
            q = q.where(h.c.site.in_(sites))
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        total = HOnline(0, 0, 0)
        days = []
        for site, window, day, n, fast, resolved in rows:
            one = HOnline(int(n), int(fast), int(resolved))
            total += one
            days.append(
                {"site": site, "window": window, "day": day, **one.as_dict()}
                | {"first_response_within_1min": int(fast), "resolved": int(resolved)}
            )
        return total.as_dict() | {"days": days}
