"""What needs a person's attention: bad-review cases and alerts.

Which events open a case or raise an alert, and which become due with time, is decided
in ``server.policy``; here they are read, raised (each id once), closed and acknowledged,
and the workflow's steps written (``take_step``: the row and its ``case_actions`` history
entry in the caller's transaction, guarded so that two people cannot both close one
case). A case row carries ``due_provisional``: its due time was counted Monday to Friday over a
year no official calendar knew (``server.workdays``); ``refresh_provisional_dues``
counts the open ones again once the calendar knows that year.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, func, select, update

from server.policy.events import DEFAULT_TIMEZONE, case_due
from server.policy.rows import AlertRow
from server.store.base import StoreBase
from server.store.rollups import any_unobserved, count_true
from server.store.schema import alerts, case_actions, cases, sessions, units
from server.store.writes import ProjectedHook
from server.workdays import WorkCalendar


def close_open_case(conn: Connection, case_id: str, note: str, at_ms: int) -> bool:
    """Close the case if it is open, in the caller's transaction; False when it was not."""
    res = conn.execute(
        update(cases)
        .where(cases.c.case_id == case_id, cases.c.status == "open")
        .values(status="closed", closed_ms=at_ms, note=note)
    )
    return bool(res.rowcount)


def case_row(conn: Connection, case_id: str) -> dict[str, Any] | None:
    """One case with its centre's time zone (``tz``); None when there is no such case."""
    q = (
        select(cases, units.c.timezone.label("tz"))
        .select_from(cases.outerjoin(units, units.c.site == cases.c.site))
        .where(cases.c.case_id == case_id)
    )
    row = conn.execute(q).first()
    return None if row is None else dict(row._mapping)


def case_history(conn: Connection, case_id: str) -> list[dict[str, Any]]:
    """A case's steps in the order they were taken."""
    q = select(case_actions).where(case_actions.c.case_id == case_id).order_by(case_actions.c.id)
    return [dict(r._mapping) for r in conn.execute(q)]


def take_step(
    conn: Connection,
    row: dict[str, Any],
    action: str,
    values: dict[str, Any],
    by: str,
    at_ms: int,
    note: str | None = None,
    detail: dict[str, Any] | None = None,
) -> bool:
    """Write one workflow step on the case ``row`` was read as, in the caller's
    transaction: its columns, and its history entry. The update holds only while the
    case is still in the status it was read in (and, for a close, still has its
    call-back and rectification), so of two people closing at once one wins; False for
    the other, and nothing is written."""
    guard: list[ColumnElement[bool]] = [
        cases.c.case_id == row["case_id"],
        cases.c.status == row["status"],
    ]
    if action == "close":
        guard += [cases.c.callback_ms.is_not(None), cases.c.rectification.is_not(None)]
    changes = dict(values)
    if action == "reopen":
        changes["reopened"] = cases.c.reopened + 1
    res = conn.execute(update(cases).where(*guard).values(**changes))
    if not res.rowcount:
        return False
    conn.execute(
        case_actions.insert().values(
            case_id=row["case_id"],
            site=row["site"],
            action=action,
            by=by,
            at_ms=at_ms,
            note=note,
            detail=detail,
        )
    )
    return True


def acknowledge(conn: Connection, alert_id: str, username: str, note: str, at_ms: int) -> bool:
    """Acknowledge the alert if it is not yet, in the caller's transaction."""
    res = conn.execute(
        update(alerts)
        .where(alerts.c.alert_id == alert_id, alerts.c.acked_ms.is_(None))
        .values(acked_by=username, acked_ms=at_ms, note=note)
    )
    return bool(res.rowcount)


class Cases(StoreBase):
    def list_cases(
        self,
        status: str | None = None,
        site: str | None = None,
        *,
        sites: frozenset[str] | None = None,
        clerk_id: str | None = None,
        due_before_ms: int | None = None,
    ) -> list[dict[str, Any]]:
        """Cases by due time, of one ``site`` or of ``sites`` (None: all), or one clerk's;
        ``due_before_ms``: only those due before it (with status "open": the overdue)."""
        q = select(cases).order_by(cases.c.due_ms)
        if status:
            q = q.where(cases.c.status == status)
        if due_before_ms is not None:
            q = q.where(cases.c.due_ms < due_before_ms)
        if site:
            q = q.where(cases.c.site == site)
        if sites is not None:
            q = q.where(cases.c.site.in_(sites))
        if clerk_id is not None:
            q = q.where(cases.c.clerk_id == clerk_id)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def refresh_provisional_dues(self, calendar: WorkCalendar | None = None) -> list[str]:
        """Count the due time of every open provisional case again with ``calendar``
        (None: the default one) and store what changed; return the ids whose due time or
        flag changed. A case stays provisional while a year on its way is still unknown.
        Cheap when there is nothing to do: one indexed-column read of the open cases."""
        q = select(cases.c.case_id, cases.c.site, cases.c.opened_ms, cases.c.due_ms).where(
            cases.c.status == "open", cases.c.due_provisional
        )
        changed: list[str] = []
        with self.engine.begin() as conn:
            rows = conn.execute(q).all()
            if not rows:
                return changed
            zones = {
                r.site: r.timezone for r in conn.execute(select(units.c.site, units.c.timezone))
            }
            for r in rows:
                due = case_due(r.opened_ms, zones.get(r.site, DEFAULT_TIMEZONE), calendar)
                if due.provisional and due.ms == r.due_ms:
                    continue
                conn.execute(
                    update(cases)
                    .where(cases.c.case_id == r.case_id, cases.c.due_provisional)
                    .values(due_ms=due.ms, due_provisional=due.provisional)
                )
                changed.append(str(r.case_id))
        return changed

    def close_case(self, case_id: str, note: str, at_ms: int) -> bool:
        with self.engine.begin() as conn:
            return close_open_case(conn, case_id, note, at_ms)

    #: The app's outbound hooks (server/store/writes.py ``Writes.outbound_hooks``).
    outbound_hooks: tuple[ProjectedHook, ...]

    def raise_alerts(self, rows: Sequence[AlertRow]) -> list[str]:
        """Insert alerts whose id is new (one transaction); return the ids inserted.

        Issue 18, alert push: the outbound hooks run in that transaction with the new
        ones, also with none (the sweep's minute is when waiting alerts are summarised)."""
        if not rows and not self.outbound_hooks:
            return []
        with self.engine.begin() as conn:
            new = [str(i) for i in self._insert_new(conn, alerts, rows, "alert_id")] if rows else []
            fresh = set(new)
            self._run_hooks(
                conn, self.outbound_hooks, {"alerts": [r for r in rows if r["alert_id"] in fresh]}
            )
            return new

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

    def window_views(self, since_ms: int, until_ms: int) -> list[dict[str, Any]]:
        """Per window: its sessions opened in ``[since_ms, until_ms)`` and those with a
        verdict not observed (the clock's view of what the cameras could see)."""
        s = sessions
        q = (
            select(
                s.c.site,
                s.c.window,
                func.count().label("sessions"),
                count_true(any_unobserved()).label("not_observed"),
            )
            .where(s.c.opened_ms >= since_ms, s.c.opened_ms < until_ms)
            .group_by(s.c.site, s.c.window)
            .order_by(s.c.site, s.c.window)
        )
        with self.engine.connect() as conn:
            return [
                {
                    "site": r.site,
                    "window": r.window,
                    "sessions": int(r.sessions),
                    "not_observed": int(r.not_observed or 0),
                }
                for r in conn.execute(q)
            ]

    def alerted_windows(self, kind: str, since_ms: int) -> set[tuple[str, str]]:
        """The windows with an alert of ``kind`` stamped at ``since_ms`` or later."""
        q = (
            select(alerts.c.site, alerts.c.window)
            .where(alerts.c.kind == kind, alerts.c.ts_ms >= since_ms)
            .distinct()
        )
        with self.engine.connect() as conn:
            return {(r.site, r.window) for r in conn.execute(q)}

    def ack_alert(self, alert_id: str, username: str, note: str, at_ms: int) -> bool:
        with self.engine.begin() as conn:
            return acknowledge(conn, alert_id, username, note, at_ms)
