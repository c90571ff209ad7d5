"""Clerks and the roster: who works where, and who staffed a window when."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update

from server.policy.shifts import Shift, Source, plan_sign_in, plan_sign_out
from server.store import rollups
from server.store.base import StoreBase
from server.store.schema import (
    away_periods,
    cases,
    clerks,
    evaluations,
    roster,
    roster_plan,
    sessions,
    units,
)


@dataclass(frozen=True, slots=True)
class SignedIn:
    """What a sign-in did: the shift it made, the shifts it closed and how many
    unattributed sessions it took."""

    start_ms: int
    end_ms: int | None
    closed: tuple[tuple[int, int], ...]
    sessions_taken: int
    noop: bool = False


def _served_after(conn: Any, site: str, clerk: str, window: str, t_ms: int) -> int | None:
    q = select(func.max(sessions.c.opened_ms)).where(
        sessions.c.site == site,
        sessions.c.window == window,
        sessions.c.clerk_id == clerk,
        sessions.c.opened_ms >= t_ms,
    )
    got = conn.execute(q).scalar()
    return int(got) if got is not None else None


def _attribute(
    conn: Any, clerk_id: str, site: str, window: str, start_ms: int, end_ms: int | None
) -> int:
    """Give the clerk the window's unattributed rows inside the shift; returns the
    sessions taken. Rows already attributed are never touched."""
    end = end_ms if end_ms is not None else 2**62
    taken = 0
    for table, col in (
        (sessions, sessions.c.opened_ms),
        (evaluations, evaluations.c.ts_ms),
        (away_periods, away_periods.c.started_ms),
        (cases, cases.c.opened_ms),
    ):
        n = conn.execute(
            update(table)
            .where(
                table.c.site == site,
                table.c.window == window,
                table.c.clerk_id.is_(None),
                col >= start_ms,
                col < end,
            )
            .values(clerk_id=clerk_id)
        ).rowcount
        if table is sessions:
            taken = int(n or 0)
    return taken


def _shifts(conn: Any, site: str, which: Any, from_ms: int) -> list[Shift]:
    """The shifts at ``site`` matching ``which`` that are open or end after ``from_ms``."""
    q = (
        select(roster)
        .where(
            roster.c.site == site,
            which,
            roster.c.end_ms.is_(None) | (roster.c.end_ms > from_ms),
        )
        .order_by(roster.c.start_ms, roster.c.id)
    )
    return [Shift(r.id, r.clerk_id, r.window, r.start_ms, r.end_ms) for r in conn.execute(q)]


def sign_in_at(
    conn: Any,
    clerk_id: str,
    site: str,
    window: str,
    start_ms: int,
    end_ms: int | None,
    *,
    source: Source,
    recorded_by: str | None,
    recorded_ms: int | None,
) -> SignedIn:
    """``People.sign_in`` inside the caller's transaction (the ingest applies a terminal's
    sign-in in the batch that stores it)."""
    at_window = _shifts(conn, site, roster.c.window == window, start_ms)
    mine = _shifts(conn, site, roster.c.clerk_id == clerk_id, start_ms)
    own = [s for s in mine if s.window != window]
    plan = plan_sign_in(
        clerk_id,
        window,
        start_ms,
        until_ms=end_ms,
        at_window=at_window,
        own=own,
        served_after=lambda c, w, t: _served_after(conn, site, c, w, t),
    )
    if plan.noop:
        return SignedIn(plan.start_ms, None, (), 0, noop=True)
    for shift_id, end in plan.close:
        conn.execute(
            update(roster).where(roster.c.id == shift_id).values(end_ms=end, end_source=source)
        )
    conn.execute(
        roster.insert().values(
            clerk_id=clerk_id,
            site=site,
            window=window,
            start_ms=plan.start_ms,
            end_ms=plan.end_ms,
            source=source,
            recorded_ms=recorded_ms,
            recorded_by=recorded_by,
        )
    )
    taken = _attribute(conn, clerk_id, site, window, plan.start_ms, plan.end_ms)
    if taken:  # the re-attributed days' rollups move to the clerk
        rollups.rebuild(conn, plan.start_ms, plan.end_ms, site=site, window=window)
    return SignedIn(plan.start_ms, plan.end_ms, plan.close, taken)


def sign_out_at(
    conn: Any,
    site: str,
    at_ms: int,
    *,
    window: str | None,
    clerk_id: str | None,
    source: Source,
) -> tuple[str, str]:
    """``People.sign_out`` inside the caller's transaction."""
    if (window is None) == (clerk_id is None):
        raise ValueError("give a window or a clerk")
    which = roster.c.window == window if window is not None else roster.c.clerk_id == clerk_id
    open_ = [s for s in _shifts(conn, site, which, at_ms) if s.end_ms is None]
    shift = open_[-1] if open_ else None
    shift_id, end = plan_sign_out(
        shift, at_ms, served_after=lambda c, w, t: _served_after(conn, site, c, w, t)
    )
    conn.execute(
        update(roster).where(roster.c.id == shift_id).values(end_ms=end, end_source=source)
    )
    assert shift is not None
    return shift.clerk_id, shift.window


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
        self,
        clerk_id: str,
        site: str,
        window: str,
        start_ms: int,
        end_ms: int | None = None,
        *,
        source: Source = "manager",
        recorded_by: str | None = None,
        recorded_ms: int | None = None,
    ) -> SignedIn:
        """Sign a clerk in at a window from ``start_ms`` by the one attribution rule
        (``server.policy.shifts``), and give the new shift the window's unattributed
        sessions, evaluations, away periods and cases inside it. Raises
        ``ShiftConflict``."""
        with self.engine.begin() as conn:
            return sign_in_at(
                conn,
                clerk_id,
                site,
                window,
                start_ms,
                end_ms,
                source=source,
                recorded_by=recorded_by,
                recorded_ms=recorded_ms,
            )

    def sign_out(
        self,
        site: str,
        at_ms: int,
        *,
        window: str | None = None,
        clerk_id: str | None = None,
        source: Source = "manager",
    ) -> tuple[str, str]:
        """End the open shift at ``window`` (or ``clerk_id``'s, wherever it is) at
        ``at_ms``; returns ``(clerk_id, window)``. Raises ``ShiftConflict``."""
        with self.engine.begin() as conn:
            return sign_out_at(conn, site, at_ms, window=window, clerk_id=clerk_id, source=source)

    def plan_roster(
        self, site: str, window: str, clerk_id: str, from_ms: int, to_ms: int, created_by: str
    ) -> None:
        """Add who is expected at a window when (a plan: it attributes nothing)."""
        with self.engine.begin() as conn:
            conn.execute(
                roster_plan.insert().values(
                    site=site,
                    window=window,
                    clerk_id=clerk_id,
                    from_ms=from_ms,
                    to_ms=to_ms,
                    created_by=created_by,
                )
            )
