"""What needs a person's attention: bad-review cases and alerts.

Which events open a case or raise an alert, and which become due with time, is decided
in ``server.policy``; here they are read, raised (each id once), closed and acknowledged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update

from server.policy.rows import AlertRow
from server.store.base import StoreBase
from server.store.schema import alerts, cases


class Cases(StoreBase):
    def list_cases(
        self, status: str | None = None, site: str | None = None
    ) -> list[dict[str, Any]]:
        q = select(cases).order_by(cases.c.due_ms)
        if status:
            q = q.where(cases.c.status == status)
        if site:
            q = q.where(cases.c.site == site)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def close_case(self, case_id: str, note: str, at_ms: int) -> bool:
        with self.engine.begin() as conn:
            res = conn.execute(
                update(cases)
                .where(cases.c.case_id == case_id, cases.c.status == "open")
                .values(status="closed", closed_ms=at_ms, note=note)
            )
            return bool(res.rowcount)

    def raise_alerts(self, rows: Sequence[AlertRow]) -> list[str]:
        """Insert alerts whose id is new (one transaction); return the ids inserted."""
        if not rows:
            return []
        with self.engine.begin() as conn:
            return [str(i) for i in self._insert_new(conn, alerts, rows, "alert_id")]

    def list_alerts(
        self,
        sites: frozenset[str] | None = None,
        open_only: bool = False,
        since_ms: int = 0,
        limit: int = 200,
    ) -> list[dict[str, Any]]:
        q = select(alerts).where(alerts.c.ts_ms >= since_ms)
        if sites is not None:
            q = q.where(alerts.c.site.in_(sites))
        if open_only:
            q = q.where(alerts.c.acked_ms.is_(None))
        q = q.order_by(alerts.c.ts_ms.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def alert_site(self, alert_id: str) -> str | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(alerts.c.site).where(alerts.c.alert_id == alert_id)).first()
        return row[0] if row else None

    def ack_alert(self, alert_id: str, username: str, note: str, at_ms: int) -> bool:
        with self.engine.begin() as conn:
            res = conn.execute(
                update(alerts)
                .where(alerts.c.alert_id == alert_id, alerts.c.acked_ms.is_(None))
                .values(acked_by=username, acked_ms=at_ms, note=note)
            )
            return bool(res.rowcount)
