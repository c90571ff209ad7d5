"""The ingest path: one batch of events and device status in one transaction.

What the new events cause is decided by ``server.policy.events``; this module reads what
that needs (time zones, the roster), writes the rows it returns and sums into the
rollups only the rows actually inserted, so a duplicate never counts twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Table, bindparam, func, select, tuple_, update

from agent.protocol import ClerkAtTerminal, EventHeader, Health, WindowState
from server.policy import events as policy
from server.policy.shifts import ShiftConflict
from server.store import rollups
from server.store.base import StoreBase
from server.store.calls import call_fields
from server.store.people import sign_in_at, sign_out_at
from server.store.schema import (
    alerts,
    audit_log,
    away_periods,
    cases,
    clerks,
    dead_letters,
    devices,
    evaluations,
    events,
    rejects,
    roster,
    sessions,
    units,
)


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


@dataclass
class Batch:
    """What one ingest batch writes: events plus the devices' latest status."""

    events: list[StoredEvent] = field(default_factory=list)
    availability: list[tuple[str, str, bool, int]] = field(default_factory=list)
    states: list[tuple[WindowState, int]] = field(default_factory=list)
    healths: list[tuple[Health, int]] = field(default_factory=list)
    rejects: dict[str, int] = field(default_factory=dict)


#: Called in the ingest transaction with the projection rows it newly inserted, by table
#: name; returns how many deliveries it queued (server/outbound: issue 18).
ProjectedHook = Callable[[Any, Mapping[str, Sequence[Mapping[str, Any]]]], int]


class Writes(StoreBase):
    """Ingest batches, device status, reject counters and dead letters."""

    #: What the app hangs on the ingest transaction (outbound forwarding); none by default.
    outbound_hooks: tuple[ProjectedHook, ...] = ()

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

    def set_availability(self, site: str, window: str, online: bool, at_ms: int) -> None:
        self.write_batch(Batch(availability=[(site, window, online, at_ms)]))

    def set_state(self, state: WindowState, at_ms: int) -> None:
        self.write_batch(Batch(states=[(state, at_ms)]))

    def set_health(self, health: Health, at_ms: int) -> None:
        self.write_batch(Batch(healths=[(health, at_ms)]))

    def count_rejects(self, counts: dict[str, int]) -> None:
        if counts:
            self.write_batch(Batch(rejects=counts))

    def set_aside(self, letters: Sequence[DeadLetter]) -> None:
        """Keep what the store refused as dead letters, counted under ``store_refused``
        in the reject counters (one transaction)."""
        if not letters:
            return
        with self.engine.begin() as conn:
            conn.execute(dead_letters.insert(), [asdict(d) for d in letters])
            self._count_rejects(conn, {STORE_REFUSED: len(letters)})

    # ----------------------------------------------------------------- in the transaction

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
        fresh = [i for i in batch if str(i.event.event_id) in new]
        # Sign-ins at the terminal first: the sessions of the same batch are attributed
        # by the shifts they make.
        apply_terminal_sign_ins(
            conn, [(i.event, i.received_ms) for i in fresh if isinstance(i.event, ClerkAtTerminal)]
        )
        # Only the rows this statement inserted, once each (``batch`` is deduplicated).
        self._project(conn, [i.event for i in fresh])
        return inserted

    def _timezones(self, conn: Any, sites: set[str]) -> dict[str, str]:
        """Sites' time zones, read once per site (units are registered, not edited)."""
        if not sites <= self._tz.keys():
            q = select(units.c.site, units.c.timezone)
            self._tz.update({r.site: r.timezone for r in conn.execute(q)})
        return self._tz

    def _project(self, conn: Any, new_events: list[EventHeader]) -> None:
        """Write what newly stored events cause (``server.policy.events``), in the same
        transaction; the rollups count only the rows actually inserted."""
        new_events = policy.projected(new_events)
        if not new_events:
            return  # e.g. session_opened: no lookups, no round trips
        tz = self._timezones(conn, {e.site for e in new_events})
        got = policy.derive(new_events, tz, ClerkLookup.read(conn, new_events))
        call_fields(conn, got.sessions)  # type: ignore[arg-type]
        inserted: dict[str, list[Mapping[str, Any]]] = {}
        writes: tuple[tuple[Table, Sequence[Mapping[str, Any]], str], ...] = (
            (sessions, got.sessions, "session_id"),
            (evaluations, got.evaluations, "event_id"),
            (away_periods, got.away_periods, "event_id"),
            (cases, got.cases, "case_id"),
            (alerts, got.alerts, "alert_id"),
        )
        for table, rows, key in writes:
            if rows:
                fresh = set(self._insert_new(conn, table, rows, key))
                inserted[table.name] = [r for r in rows if r[key] in fresh]
        self._run_hooks(conn, self.outbound_hooks, inserted)
        rollups.add(
            conn,
            rollups.from_projections(
                tz,
                inserted.get("sessions", ()),
                inserted.get("evaluations", ()),
                inserted.get("away_periods", ()),
            ),
            tz,
        )

    def _set_availability(
        self, conn: Any, site: str, window: str, online: bool, at_ms: int
    ) -> None:
        conn.execute(
            update(devices)
            .where(devices.c.site == site, devices.c.window == window)
            .values(online=online, availability_ms=at_ms)
        )
        if not online:
            row = policy.offline_alert(site, window, at_ms)
            if self._insert_new(conn, alerts, [row], "alert_id"):
                # Issue 18, alert push: a terminal's last will is pushed like the others.
                self._run_hooks(conn, self.outbound_hooks, {"alerts": [row]})

    def _set_device_doc(
        self, conn: Any, site: str, window: str, column: str, doc: WindowState | Health, at_ms: int
    ) -> None:
        conn.execute(
            update(devices)
            .where(devices.c.site == site, devices.c.window == window)
            .values({column: doc.model_dump(mode="json"), "last_seen_ms": at_ms})
        )

    def _count_rejects(self, conn: Any, counts: dict[str, int]) -> None:
        for reason, n in counts.items():
            ins = self._insert(rejects).values(reason=reason, count=n)
            conn.execute(
                ins.on_conflict_do_update(
                    index_elements=["reason"], set_={"count": rejects.c.count + n}
                )
            )


class ClerkLookup:
    """Which clerk was signed in at a window at a time: the roster spans that can
    matter to one batch, read once, then answered without the database."""

    def __init__(self, spans: Mapping[tuple[str, str], Sequence[tuple[int, int, str]]]) -> None:
        self._spans = spans

    @classmethod
    def read(cls, conn: Any, evs: Sequence[EventHeader]) -> ClerkLookup:
        keys = {(e.site, e.window) for e in evs}
        lo = min(e.ts_ms for e in evs) - 86_400_000 * 2
        spans: dict[tuple[str, str], list[tuple[int, int, str]]] = {}
        q = select(roster).where(
            roster.c.site.in_({k[0] for k in keys}),
            (roster.c.end_ms.is_(None)) | (roster.c.end_ms >= lo),
        )
        for r in conn.execute(q):
            if (r.site, r.window) in keys:
                end = r.end_ms if r.end_ms is not None else 2**62
                spans.setdefault((r.site, r.window), []).append((r.start_ms, end, r.clerk_id))
        return cls(spans)

    def __call__(self, site: str, window: str, t_ms: int) -> str | None:
        for start, end, clerk in self._spans.get((site, window), ()):
            if start <= t_ms < end:
                return clerk
        return None


def apply_terminal_sign_ins(conn: Any, signed: Sequence[tuple[EventHeader, int]]) -> None:
    """Badge and PIN sign-ins from the terminals, through the one attribution rule, in
    the transaction that stores them. What the rule refuses (or a clerk of another centre,
    which the terminal should have refused) is kept as the event and put on the record
    for the centre's manager; refusals the terminal made are counted from the events."""
    for ev, received_ms in sorted(signed, key=lambda x: x[0].ts_ms):
        assert isinstance(ev, ClerkAtTerminal)
        if ev.refused is not None or ev.clerk_id is None:
            continue
        who = f"terminal:{ev.site}/{ev.window}"
        home = conn.execute(select(clerks.c.site).where(clerks.c.clerk_id == ev.clerk_id)).scalar()
        try:
            if home != ev.site:
                raise ShiftConflict(f"{ev.clerk_id} is not a clerk of {ev.site}")
            with conn.begin_nested():  # a refusal undoes only its own writes
                if ev.action == "sign_in":
                    sign_in_at(
                        conn,
                        ev.clerk_id,
                        ev.site,
                        ev.window,
                        ev.ts_ms,
                        None,
                        source=ev.method,
                        recorded_by=who,
                        recorded_ms=received_ms,
                    )
                else:
                    sign_out_at(
                        conn, ev.site, ev.ts_ms, window=None, clerk_id=ev.clerk_id, source=ev.method
                    )
        except ShiftConflict as exc:
            conn.execute(
                audit_log.insert().values(
                    ts_ms=received_ms,
                    username=who,
                    action=f"terminal_{ev.action}_refused",
                    target=f"{ev.site}/{ev.window}",
                    detail={"clerk_id": ev.clerk_id, "event_id": str(ev.event_id), "why": str(exc)},
                    site=ev.site,
                )
            )
