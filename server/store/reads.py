"""The raw record, read back: stored events, sequence gaps, rejects and dead letters."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import and_, func, select

from server.store.base import StoreBase
from server.store.schema import dead_letters, events, rejects, seq_floors


class Reads(StoreBase):
    def latest_events(
        self, limit: int = 50, site: str | None = None, *, sites: frozenset[str] | None = None
    ) -> list[dict[str, Any]]:
        """The newest received events, of one ``site`` or of ``sites`` (None: all)."""
        q = select(events).order_by(events.c.received_ms.desc())
        if site:
            q = q.where(events.c.site == site)
        if sites is not None:
            q = q.where(events.c.site.in_(sites))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q.limit(limit))]

    def event_count(self, sites: frozenset[str] | None = None) -> int:
        q = select(func.count()).select_from(events)
        if sites is not None:
            q = q.where(events.c.site.in_(sites))
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    def event_counts_by_device(self) -> dict[tuple[str, str], int]:
        q = select(events.c.site, events.c.window, func.count()).group_by(
            events.c.site, events.c.window
        )
        with self.engine.connect() as conn:
            return {(r[0], r[1]): int(r[2]) for r in conn.execute(q)}

    def event_ids(self) -> Iterable[str]:
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(select(events.c.event_id))]

    def sequence_gaps(self) -> list[dict[str, int | str]]:
        """Missing device sequence numbers below each device's highest one, above what
        retention deleted of it (``seq_floors``; 0 where it deleted nothing): a run of
        retention is not a gap from 1, a hole above its floor still is."""
        floor = func.coalesce(seq_floors.c.floor_seq, 0)
        kept = (
            select(events.c.site, events.c.window, events.c.seq, floor.label("floor"))
            .select_from(
                events.outerjoin(
                    seq_floors,
                    and_(
                        seq_floors.c.site == events.c.site,
                        seq_floors.c.window == events.c.window,
                    ),
                )
            )
            .where(events.c.seq > floor)
            .subquery()
        )
        prev = func.lag(kept.c.seq).over(
            partition_by=(kept.c.site, kept.c.window), order_by=kept.c.seq
        )
        inner = select(
            kept.c.site,
            kept.c.window,
            kept.c.seq,
            func.coalesce(prev, kept.c.floor).label("prev"),
        ).subquery()
        q = (
            select(inner.c.site, inner.c.window, inner.c.prev, inner.c.seq)
            .where(inner.c.seq - inner.c.prev > 1)
            .order_by(inner.c.site, inner.c.window, inner.c.seq)
        )
        with self.engine.connect() as conn:
            return [
                {
                    "site": r[0],
                    "window": r[1],
                    "from_seq": int(r[2]) + 1,
                    "to_seq": int(r[3]) - 1,
                }
                for r in conn.execute(q)
            ]

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest dead letters first."""
        q = select(dead_letters).order_by(dead_letters.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def reject_counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {
                r[0]: int(r[1]) for r in conn.execute(select(rejects.c.reason, rejects.c.count))
            }
