"""The store: idempotent writes and the queries behind the dashboard.

Same code on SQLite (default, one file) and PostgreSQL (production).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import (
    Engine,
    Table,
    TextClause,
    bindparam,
    create_engine,
    event,
    func,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.pool import StaticPool

from agent.config import Site
from agent.protocol import (
    Away,
    Evaluated,
    EventHeader,
    Fault,
    Health,
    SessionSummary,
    SignWhilePresent,
    WindowState,
)
from server.store import migrate, rollups
from server.store.schema import (
    alerts,
    audit_log,
    away_periods,
    cases,
    clerks,
    daily_rollups,
    dead_letters,
    devices,
    evaluations,
    events,
    helpdesk_kpis,
    rejects,
    roster,
    sessions,
    units,
)
from server.workdays import add_working_days


@dataclass(frozen=True)
class StoredEvent:
    event: EventHeader
    received_ms: int


#: The reject reason under which messages the store refused are counted.
STORE_REFUSED = "store_refused"


def printable(text: str) -> str:
    """``text`` with NUL and every other control character escaped (``\\x00``)."""
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
    )


@dataclass(frozen=True)
class DeadLetter:
    """A message that passed validation but that the store refused, set aside: where it
    came from, why, its SHA-256, size and a short escaped excerpt; never the payload."""

    received_ms: int
    topic: str
    reason: str
    sha256: str
    excerpt: str
    size: int

    @classmethod
    def of(cls, topic: str, payload: bytes, reason: str, received_ms: int) -> DeadLetter:
        return cls(
            received_ms=received_ms,
            topic=printable(topic)[:160],
            reason=printable(reason)[:200],
            sha256=hashlib.sha256(payload).hexdigest(),
            excerpt=printable(payload[:200].decode("utf-8", "replace"))[:200],
            size=len(payload),
        )


@functools.cache
def _sqlite_insert_new(table: Table, key: str) -> Any:
    return sqlite.insert(table).on_conflict_do_nothing(index_elements=[key]).returning(table.c[key])


@functools.cache
def _pg_recordset_insert(table: Table, columns: tuple[str, ...], key: str) -> TextClause:
    """``INSERT .. SELECT FROM json_populate_recordset(rows) ON CONFLICT DO NOTHING``.

    A multi-row VALUES list has a new text for every batch size, so SQLAlchemy and psycopg
    render and parse it anew each time, and per-column arrays are escaped element by
    element in Python: each cost about half the CPU of an ingest batch (py-spy on
    bench.ingest). One JSON document per batch is encoded in C and parsed by PostgreSQL,
    and the statement text never changes."""
    cols = ", ".join(f'"{c}"' for c in columns)
    return text(
        f"INSERT INTO {table.name} ({cols}) SELECT {cols}"
        f" FROM json_populate_recordset(NULL::{table.name}, CAST(:rows AS json))"
        f' ON CONFLICT ("{key}") DO NOTHING RETURNING "{key}"'
    )


# The event kinds that feed a measure table or an alert.
_PROJECTED = (SessionSummary, Evaluated, Away, Fault, SignWhilePresent)


@dataclass
class Batch:
    """What one ingest batch writes: events plus the devices' latest status."""

    events: list[StoredEvent] = field(default_factory=list)
    availability: list[tuple[str, str, bool, int]] = field(default_factory=list)
    states: list[tuple[WindowState, int]] = field(default_factory=list)
    healths: list[tuple[Health, int]] = field(default_factory=list)
    rejects: dict[str, int] = field(default_factory=dict)


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
    # JIT compilation costs PostgreSQL hundreds of ms on the dashboard's aggregate
    # queries and saves nothing at their size (measured on the 10M-event bench).
    return create_engine(url, pool_pre_ping=True, connect_args={"options": "-c jit=off"})


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._dialect = self.engine.dialect.name
        self._tz: dict[str, str] = {}

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

    def close(self) -> None:
        self.engine.dispose()

    def _insert(self, table: Any) -> Any:
        return (postgresql if self._dialect == "postgresql" else sqlite).insert(table)

    def _insert_new(
        self, conn: Any, table: Table, rows: list[dict[str, Any]], key: str
    ) -> list[Any]:
        """Insert rows, skipping any whose ``key`` exists; return the keys inserted."""
        if self._dialect != "postgresql":
            return [r[0] for r in conn.execute(_sqlite_insert_new(table, key), rows)]
        stmt = _pg_recordset_insert(table, tuple(rows[0]), key)
        return [r[0] for r in conn.execute(stmt, {"rows": json.dumps(rows)})]

    # ----------------------------------------------------------------- registry

    def register_site(self, site: Site) -> None:
        """Upsert a site's unit and windows from its configuration."""
        s = site.site
        self._tz.pop(s.site, None)
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
        return self.write_batch(Batch(events=list(batch)))

    def write_batch(self, batch: Batch) -> list[str]:
        """Everything one ingest batch carries, in one transaction (one commit, one
        fsync); return the ids of the events that were new."""
        with self.engine.begin() as conn:
            self._lock_devices(conn, batch)
            inserted = self._insert_events(conn, batch.events) if batch.events else []
            for site, window, online, at_ms in batch.availability:
                self._set_availability(conn, site, window, online, at_ms)
            for state, at_ms in batch.states:
                self._set_device_doc(conn, state.site, state.window, "state", state, at_ms)
            for health, at_ms in batch.healths:
                self._set_device_doc(conn, health.site, health.window, "health", health, at_ms)
            if batch.rejects:
                self._count_rejects(conn, batch.rejects)
        return inserted

    def _lock_devices(self, conn: Any, batch: Batch) -> None:
        """Replicas write the same device rows; taking them in one order first (and the
        rollups, sorted, after) keeps their transactions from deadlocking (city run).
        Locks the rows when device status rides along with events."""
        if self._dialect != "postgresql":
            return  # SQLite has one writer at a time
        if not (batch.availability or batch.states or batch.healths):
            return  # events alone: their sorted device update comes first anyway
        keys = {(e.event.site, e.event.window) for e in batch.events}
        keys.update((site, window) for site, window, _, _ in batch.availability)
        keys.update((d.site, d.window) for d, _ in batch.states)
        keys.update((d.site, d.window) for d, _ in batch.healths)
        if keys:
            conn.execute(
                select(devices.c.site)
                .where(tuple_(devices.c.site, devices.c.window).in_(sorted(keys)))
                .order_by(devices.c.site, devices.c.window)
                .with_for_update()
            )

    def _insert_events(self, conn: Any, batch: Sequence[StoredEvent]) -> list[str]:
        # One item per event id, the first received: a terminal's replay can put the same
        # event in one batch several times, and the projections below must see it once.
        firsts: dict[str, StoredEvent] = {}
        for item in batch:
            firsts.setdefault(str(item.event.event_id), item)
        batch = list(firsts.values())
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
        last: dict[tuple[str, str], tuple[int, int]] = {}
        for item in batch:
            key = (item.event.site, item.event.window)
            seq, seen = last.get(key, (0, 0))
            last[key] = (max(seq, item.event.seq), max(seen, item.received_ms))
        # First, sorted: the device rows are what replicas contend for (see
        # _lock_devices). One executemany: psycopg pipelines it, one round trip.
        greatest = func.max if self._dialect == "sqlite" else func.greatest
        conn.execute(
            update(devices)
            .where(devices.c.site == bindparam("k_site"), devices.c.window == bindparam("k_win"))
            .values(
                max_seq=greatest(devices.c.max_seq, bindparam("k_seq")),
                last_seen_ms=bindparam("k_seen"),
            ),
            [
                {"k_site": s, "k_win": w, "k_seq": seq, "k_seen": seen}
                for (s, w), (seq, seen) in sorted(last.items())
            ],
        )
        inserted = self._insert_new(conn, events, rows, "event_id")
        new = set(inserted)
        # Only the rows this statement inserted, once each (``batch`` is deduplicated).
        self._project(conn, [i.event for i in batch if str(i.event.event_id) in new])
        return inserted

    def _timezones(self, conn: Any, sites: set[str]) -> dict[str, str]:
        """Sites' time zones, read once per site (units are registered, not edited)."""
        if not sites <= self._tz.keys():
            q = select(units.c.site, units.c.timezone)
            self._tz.update({r.site: r.timezone for r in conn.execute(q)})
        return self._tz

    def _project(self, conn: Any, new_events: list[EventHeader]) -> None:
        """Write the measure tables for newly stored events (same transaction)."""
        new_events = [e for e in new_events if isinstance(e, _PROJECTED)]
        if not new_events:
            return  # e.g. session_opened: no lookups, no round trips
        tz = self._timezones(conn, {e.site for e in new_events})
        clerk_at = _ClerkLookup(conn, new_events)
        sess, evals, aways, new_cases = [], [], [], []
        new_alerts: list[dict[str, Any]] = []

        def alert(ev: EventHeader, kind: str, detail: dict[str, Any], key: str = "") -> None:
            new_alerts.append(
                {
                    "alert_id": key or str(ev.event_id),
                    "site": ev.site,
                    "window": ev.window,
                    "kind": kind,
                    "ts_ms": ev.ts_ms,
                    "detail": detail,
                }
            )

        for ev in new_events:
            clerk = clerk_at(ev.site, ev.window, ev.ts_ms)
            if isinstance(ev, SessionSummary):
                misses = [
                    name
                    for name, ok in (
                        ("stand_on_call", ev.stood_on_call),
                        ("smile_at_greeting", ev.smiled_at_greeting),
                        ("stand_at_farewell", ev.stood_at_farewell),
                    )
                    if not ok
                ]
                if misses:
                    alert(ev, "conduct", {"misses": misses, "session_id": str(ev.session_id)})
            elif isinstance(ev, Evaluated) and ev.rating.is_bad and not ev.suspect:
                alert(ev, "bad_review", {"rating": ev.rating.value})
            elif isinstance(ev, Away) and ev.violation:
                # open and closing records of one absence share started_ms: one alert
                alert(
                    ev,
                    "away_without_sign",
                    {"started_ms": ev.started_ms, "ended_ms": ev.ended_ms},
                    key=f"away-{ev.site}-{ev.window}-{ev.started_ms}",
                )
            elif isinstance(ev, Fault) and not ev.cleared:
                alert(ev, "fault", {"code": ev.code, "detail": ev.detail})
            elif isinstance(ev, SignWhilePresent):
                alert(ev, "sign_while_present", {"duration_ms": ev.duration_ms})
            if isinstance(ev, SessionSummary):
                sess.append(
                    {
                        "session_id": str(ev.session_id or ev.event_id),
                        "event_id": str(ev.event_id),
                        "site": ev.site,
                        "window": ev.window,
                        "clerk_id": clerk_at(ev.site, ev.window, ev.opened_ms),
                        "opened_ms": ev.opened_ms,
                        "closed_ms": ev.closed_ms,
                        "closed_by": ev.closed_by,
                        "stood_on_call": ev.stood_on_call,
                        "stand_after_ms": ev.stand_after_ms,
                        "smiled_at_greeting": ev.smiled_at_greeting,
                        "smile_after_ms": ev.smile_after_ms,
                        "smile_peak": ev.smile_peak,
                        "smile_too_broad": ev.smile_too_broad,
                        "stood_at_farewell": ev.stood_at_farewell,
                        "see_off_ms": ev.see_off_ms,
                        "rating": ev.rating.value if ev.rating else None,
                        "priority": ev.priority,
                    }
                )
            elif isinstance(ev, Evaluated):
                evals.append(
                    {
                        "event_id": str(ev.event_id),
                        "site": ev.site,
                        "window": ev.window,
                        "clerk_id": clerk,
                        "session_id": str(ev.session_id) if ev.session_id else None,
                        "ts_ms": ev.ts_ms,
                        "rating": ev.rating.value,
                        "suspect": ev.suspect,
                        "suspect_reason": ev.suspect_reason,
                    }
                )
                if ev.rating.is_bad and not ev.suspect:
                    new_cases.append(
                        {
                            "case_id": str(ev.event_id),
                            "site": ev.site,
                            "window": ev.window,
                            "clerk_id": clerk,
                            "session_id": str(ev.session_id) if ev.session_id else None,
                            "rating": ev.rating.value,
                            "opened_ms": ev.ts_ms,
                            "due_ms": add_working_days(
                                ev.ts_ms, 15, tz.get(ev.site, "Asia/Shanghai")
                            ),
                            "status": "open",
                        }
                    )
            elif isinstance(ev, Away) and ev.ended_ms is not None:
                aways.append(
                    {
                        "event_id": str(ev.event_id),
                        "site": ev.site,
                        "window": ev.window,
                        "clerk_id": clerk_at(ev.site, ev.window, ev.started_ms),
                        "started_ms": ev.started_ms,
                        "ended_ms": ev.ended_ms,
                        "with_sign": ev.with_sign,
                        "violation": ev.violation,
                    }
                )
        inserted: dict[str, list[dict[str, Any]]] = {}
        for table, rows, key in (
            (sessions, sess, "session_id"),
            (evaluations, evals, "event_id"),
            (away_periods, aways, "event_id"),
            (cases, new_cases, "case_id"),
            (alerts, new_alerts, "alert_id"),
        ):
            # One row per key, the first (two summaries of one session, the open and
            # closing records of one absence): a key inserted counts once.
            firsts: dict[Any, dict[str, Any]] = {}
            for r in rows:
                firsts.setdefault(r[key], r)
            rows = list(firsts.values())
            if rows:
                fresh = set(self._insert_new(conn, table, rows, key))
                inserted[table.name] = [r for r in rows if r[key] in fresh]
        rollups.add(
            conn,
            rollups.from_projections(
                tz,
                inserted.get("sessions", ()),
                inserted.get("evaluations", ()),
                inserted.get("away_periods", ()),
            ),
        )

    # ----------------------------------------------------------------- people

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

    def close_case(self, case_id: str, note: str, at_ms: int) -> bool:
        with self.engine.begin() as conn:
            res = conn.execute(
                update(cases)
                .where(cases.c.case_id == case_id, cases.c.status == "open")
                .values(status="closed", closed_ms=at_ms, note=note)
            )
            return bool(res.rowcount)

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

    def set_availability(self, site: str, window: str, online: bool, at_ms: int) -> None:
        self.write_batch(Batch(availability=[(site, window, online, at_ms)]))

    def _set_availability(
        self, conn: Any, site: str, window: str, online: bool, at_ms: int
    ) -> None:
        conn.execute(
            update(devices)
            .where(devices.c.site == site, devices.c.window == window)
            .values(online=online, availability_ms=at_ms)
        )
        if not online:
            conn.execute(
                self._insert(alerts)
                .values(
                    alert_id=f"offline-{site}-{window}-{at_ms}",
                    site=site,
                    window=window,
                    kind="offline",
                    ts_ms=at_ms,
                    detail={},
                )
                .on_conflict_do_nothing(index_elements=["alert_id"])
            )

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

    def set_state(self, state: WindowState, at_ms: int) -> None:
        self.write_batch(Batch(states=[(state, at_ms)]))

    def set_health(self, health: Health, at_ms: int) -> None:
        self.write_batch(Batch(healths=[(health, at_ms)]))

    def _set_device_doc(
        self, conn: Any, site: str, window: str, column: str, doc: WindowState | Health, at_ms: int
    ) -> None:
        conn.execute(
            update(devices)
            .where(devices.c.site == site, devices.c.window == window)
            .values({column: doc.model_dump(mode="json"), "last_seen_ms": at_ms})
        )

    def count_rejects(self, counts: dict[str, int]) -> None:
        if counts:
            self.write_batch(Batch(rejects=counts))

    def _count_rejects(self, conn: Any, counts: dict[str, int]) -> None:
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
        q = select(events).order_by(events.c.received_ms.desc())
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

    def set_aside(self, letters: Sequence[DeadLetter]) -> None:
        """Keep what the store refused as dead letters, counted under ``store_refused``
        in the reject counters (one transaction)."""
        if not letters:
            return
        with self.engine.begin() as conn:
            conn.execute(dead_letters.insert(), [asdict(d) for d in letters])
            self._count_rejects(conn, {STORE_REFUSED: len(letters)})

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
        ``dead_letters_days``."""
        day = 86_400_000
        raw_cut = now_ms - raw_events_days * day
        cut = now_ms - measures_days * day
        audit_cut = now_ms - audit_days * day
        alerts_cut = now_ms - (measures_days if alerts_days is None else alerts_days) * day
        roster_cut = now_ms - (measures_days if roster_days is None else roster_days) * day
        dead_cut = now_ms - dead_letters_days * day
        with self.engine.begin() as conn:
            return {
                "events": conn.execute(
                    events.delete().where(events.c.received_ms < raw_cut)
                ).rowcount,
                "sessions": conn.execute(
                    sessions.delete().where(sessions.c.opened_ms < cut)
                ).rowcount,
                "evaluations": conn.execute(
                    evaluations.delete().where(evaluations.c.ts_ms < cut)
                ).rowcount,
                "away_periods": conn.execute(
                    away_periods.delete().where(away_periods.c.started_ms < cut)
                ).rowcount,
                "cases": conn.execute(
                    cases.delete().where(cases.c.opened_ms < cut, cases.c.status != "open")
                ).rowcount,
                "daily_rollups": conn.execute(
                    daily_rollups.delete().where(daily_rollups.c.day_ms < cut)
                ).rowcount,
                "audit_log": conn.execute(
                    audit_log.delete().where(audit_log.c.ts_ms < audit_cut)
                ).rowcount,
                "alerts": conn.execute(
                    alerts.delete().where(
                        alerts.c.acked_ms.is_not(None), alerts.c.ts_ms < alerts_cut
                    )
                ).rowcount,
                "roster": conn.execute(
                    roster.delete().where(
                        roster.c.end_ms.is_not(None), roster.c.end_ms < roster_cut
                    )
                ).rowcount,
                "dead_letters": conn.execute(
                    dead_letters.delete().where(dead_letters.c.received_ms < dead_cut)
                ).rowcount,
            }

    def sequence_gaps(self) -> list[dict[str, int | str]]:
        """Missing device sequence numbers below each device's highest one."""
        prev = func.lag(events.c.seq).over(
            partition_by=(events.c.site, events.c.window), order_by=events.c.seq
        )
        inner = select(events.c.site, events.c.window, events.c.seq, prev.label("prev")).subquery()
        q = (
            select(inner.c.site, inner.c.window, inner.c.prev, inner.c.seq)
            .where(inner.c.seq - func.coalesce(inner.c.prev, 0) > 1)
            .order_by(inner.c.site, inner.c.window, inner.c.seq)
        )
        with self.engine.connect() as conn:
            return [
                {
                    "site": r[0],
                    "window": r[1],
                    "from_seq": int(r[2] or 0) + 1,
                    "to_seq": int(r[3]) - 1,
                }
                for r in conn.execute(q)
            ]

    def event_ids(self) -> Iterable[str]:
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(select(events.c.event_id))]


class _ClerkLookup:
    """Which clerk was signed in at a window at a time, for one batch of events."""

    def __init__(self, conn: Any, evs: list[EventHeader]) -> None:
        keys = {(e.site, e.window) for e in evs}
        lo = min(e.ts_ms for e in evs) - 86_400_000 * 2
        self._spans: dict[tuple[str, str], list[tuple[int, int, str]]] = {}
        q = select(roster).where(
            roster.c.site.in_({k[0] for k in keys}),
            (roster.c.end_ms.is_(None)) | (roster.c.end_ms >= lo),
        )
        for r in conn.execute(q):
            if (r.site, r.window) in keys:
                end = r.end_ms if r.end_ms is not None else 2**62
                self._spans.setdefault((r.site, r.window), []).append((r.start_ms, end, r.clerk_id))

    def __call__(self, site: str, window: str, t_ms: int) -> str | None:
        for start, end, clerk in self._spans.get((site, window), ()):
            if start <= t_ms < end:
                return clerk
        return None
