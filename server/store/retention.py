"""Retention: how long each kind of record is kept, and what is never deleted."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, case, func, select

from server.store import rollups
from server.store.base import StoreBase
from server.store.schema import (
    alerts,
    audit_log,
    away_periods,
    cases,
    daily_rollups,
    dead_letters,
    evaluations,
    events,
    monthly_rollups,
    roster,
    seq_floors,
    sessions,
)


class Retention(StoreBase):
    def apply_retention(
        self,
        now_ms: int,
        raw_events_days: int = 400,
        measures_days: int = 3 * 366,
        *,
        audit_days: int = 3 * 366,
        alerts_days: int | None = None,
        roster_days: int | None = None,
        dead_letters_days: int = 90,
    ) -> dict[str, int]:
        """Delete raw events after ``raw_events_days`` (they are the evidence behind a
        month's verdict and its review, so keep them past a year) and the measure
        tables after ``measures_days``. Open bad-review cases are never deleted.

        Also the audit log after ``audit_days``, acknowledged alerts after
        ``alerts_days`` (open ones are kept), roster rows that ended more than
        ``roster_days`` ago (both default to ``measures_days``: the measures they
        attribute or explain are gone by then) and dead letters after
        ``dead_letters_days``.

        Per device, the highest seq among the raw events deleted becomes its floor
        (``seq_floors``, in the same transaction): sequence gaps are looked for above it."""
        day = 86_400_000
        raw_cut = now_ms - raw_events_days * day
        cut = now_ms - measures_days * day
        audit_cut = now_ms - audit_days * day
        alerts_cut = now_ms - (measures_days if alerts_days is None else alerts_days) * day
        roster_cut = now_ms - (measures_days if roster_days is None else roster_days) * day
        dead_cut = now_ms - dead_letters_days * day
        deletes = {
            "events": events.delete().where(events.c.received_ms < raw_cut),
            "sessions": sessions.delete().where(sessions.c.opened_ms < cut),
            "evaluations": evaluations.delete().where(evaluations.c.ts_ms < cut),
            "away_periods": away_periods.delete().where(away_periods.c.started_ms < cut),
            "cases": cases.delete().where(cases.c.opened_ms < cut, cases.c.status != "open"),
            "daily_rollups": daily_rollups.delete().where(daily_rollups.c.day_ms < cut),
            # months that ended before the cut (a month is at most 31 days); the one it
            # runs through is summed again from the days left, below
            "monthly_rollups": monthly_rollups.delete().where(
                monthly_rollups.c.month_ms < cut - 31 * day
            ),
            "audit_log": audit_log.delete().where(audit_log.c.ts_ms < audit_cut),
            "alerts": alerts.delete().where(
                alerts.c.acked_ms.is_not(None), alerts.c.ts_ms < alerts_cut
            ),
            "roster": roster.delete().where(
                roster.c.end_ms.is_not(None), roster.c.end_ms < roster_cut
            ),
            "dead_letters": dead_letters.delete().where(dead_letters.c.received_ms < dead_cut),
        }
        with self.engine.begin() as conn:
            self._raise_seq_floors(conn, raw_cut, now_ms)
            removed = {name: conn.execute(stmt).rowcount for name, stmt in deletes.items()}
            rollups.resum_months(conn, cut - 31 * day, cut)
            return removed

    def _raise_seq_floors(self, conn: Connection, raw_cut: int, now_ms: int) -> None:
        """Record, per device, the highest seq of the events about to be deleted; a floor
        only rises (a later run deleting less, or two replicas at once, lowers nothing)."""
        q = (
            select(events.c.site, events.c.window, func.max(events.c.seq))
            .where(events.c.received_ms < raw_cut)
            .group_by(events.c.site, events.c.window)
        )
        rows = [
            {"site": r[0], "window": r[1], "floor_seq": int(r[2]), "updated_ms": now_ms}
            for r in conn.execute(q)
        ]
        if not rows:
            return
        ins: Any = self._insert(seq_floors)
        higher = ins.excluded.floor_seq > seq_floors.c.floor_seq
        conn.execute(
            ins.on_conflict_do_update(
                index_elements=[seq_floors.c.site, seq_floors.c.window],
                set_={
                    "floor_seq": case(
                        (higher, ins.excluded.floor_seq), else_=seq_floors.c.floor_seq
                    ),
                    "updated_ms": ins.excluded.updated_ms,
                },
            ),
            rows,
        )
