"""The store: idempotent writes and the queries behind the dashboard.

Same code on SQLite (default, one file) and PostgreSQL (production).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, create_engine, event, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.pool import StaticPool

from agent.config import Site
from agent.protocol import EventHeader, WindowState
from server.store.schema import devices, events, metadata, rejects, units


@dataclass(frozen=True)
class StoredEvent:
    event: EventHeader
    received_ms: int


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False}}
        if url in ("sqlite://", "sqlite:///:memory:"):
            kwargs["poolclass"] = StaticPool
        engine = create_engine(url, **kwargs)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=5000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._dialect = self.engine.dialect.name

    def create(self) -> None:
        metadata.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def _insert(self, table: Any) -> Any:
        return (postgresql if self._dialect == "postgresql" else sqlite).insert(table)

    # ----------------------------------------------------------------- registry

    def register_site(self, site: Site) -> None:
        """Upsert a site's unit and windows from its configuration."""
        s = site.site
        unit = {
            "site": s.site,
            "name": s.name,
            "district": s.district,
            "unit_kind": s.unit_kind,
            "timezone": s.timezone,
        }
        with self.engine.begin() as conn:
            ins = self._insert(units).values(**unit)
            conn.execute(ins.on_conflict_do_update(index_elements=["site"], set_=unit))
            for w in site.windows:
                row = {"site": s.site, "window": w.window, "label": w.label, "role": w.role}
                ins = self._insert(devices).values(**row, online=False, max_seq=0)
                conn.execute(
                    ins.on_conflict_do_update(
                        index_elements=["site", "window"],
                        set_={"label": w.label, "role": w.role},
                    )
                )

    def known_devices(self) -> set[tuple[str, str]]:
        with self.engine.connect() as conn:
            return {
                (r.site, r.window) for r in conn.execute(select(devices.c.site, devices.c.window))
            }

    # ----------------------------------------------------------------- writes

    def insert_events(self, batch: Sequence[StoredEvent]) -> list[str]:
        """Store a batch; return the ids that were new (duplicates are skipped)."""
        if not batch:
            return []
        rows = [
            {
                "event_id": str(item.event.event_id),
                "site": item.event.site,
                "window": item.event.window,
                "seq": item.event.seq,
                "boot_id": str(item.event.boot_id),
                "ts_ms": item.event.ts_ms,
                "received_ms": item.received_ms,
                "kind": getattr(item.event, "kind", "unknown"),
                "session_id": str(item.event.session_id) if item.event.session_id else None,
                "historical": item.event.historical,
                "payload": item.event.model_dump(mode="json"),
            }
            for item in batch
        ]
        stmt = (
            self._insert(events)
            .on_conflict_do_nothing(index_elements=["event_id"])
            .returning(events.c.event_id)
        )
        last: dict[tuple[str, str], tuple[int, int]] = {}
        for item in batch:
            key = (item.event.site, item.event.window)
            seq, seen = last.get(key, (0, 0))
            last[key] = (max(seq, item.event.seq), max(seen, item.received_ms))
        with self.engine.begin() as conn:
            inserted = [r[0] for r in conn.execute(stmt, rows)]
            for (site, window), (seq, seen) in last.items():
                conn.execute(
                    update(devices)
                    .where(devices.c.site == site, devices.c.window == window)
                    .values(
                        max_seq=func.max(devices.c.max_seq, seq)
                        if self._dialect == "sqlite"
                        else func.greatest(devices.c.max_seq, seq),
                        last_seen_ms=seen,
                    )
                )
        return inserted

    def set_availability(self, site: str, window: str, online: bool, at_ms: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(devices)
                .where(devices.c.site == site, devices.c.window == window)
                .values(online=online, availability_ms=at_ms)
            )

    def set_state(self, state: WindowState, at_ms: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(devices)
                .where(devices.c.site == state.site, devices.c.window == state.window)
                .values(state=state.model_dump(mode="json"), last_seen_ms=at_ms)
            )

    def count_rejects(self, counts: dict[str, int]) -> None:
        if not counts:
            return
        with self.engine.begin() as conn:
            for reason, n in counts.items():
                ins = self._insert(rejects).values(reason=reason, count=n)
                conn.execute(
                    ins.on_conflict_do_update(
                        index_elements=["reason"], set_={"count": rejects.c.count + n}
                    )
                )

    # ----------------------------------------------------------------- reads

    def windows(self, site: str | None = None) -> list[dict[str, Any]]:
        q = select(devices, units.c.name.label("site_name")).join(
            units, units.c.site == devices.c.site
        )
        if site:
            q = q.where(devices.c.site == site)
        q = q.order_by(devices.c.site, devices.c.window)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def latest_events(self, limit: int = 50, site: str | None = None) -> list[dict[str, Any]]:
        q = select(events).order_by(events.c.received_ms.desc(), events.c.ts_ms.desc())
        if site:
            q = q.where(events.c.site == site)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q.limit(limit))]

    def event_count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(events)).scalar_one())

    def event_counts_by_device(self) -> dict[tuple[str, str], int]:
        q = select(events.c.site, events.c.window, func.count()).group_by(
            events.c.site, events.c.window
        )
        with self.engine.connect() as conn:
            return {(r[0], r[1]): int(r[2]) for r in conn.execute(q)}

    def reject_counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {
                r[0]: int(r[1]) for r in conn.execute(select(rejects.c.reason, rejects.c.count))
            }

    def event_ids(self) -> Iterable[str]:
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(select(events.c.event_id))]
