"""What the store holds against what the devices generated, per window.

A device's outbox hands out sequence numbers 1..last_seq with no reuse, so "nothing lost,
nothing duplicated" is, per window: the store holds exactly last_seq rows, with last_seq
distinct seqs, the highest being last_seq, and ``Store.sequence_gaps()`` finds no hole.
Duplicates are counted as rows beyond one per seq: the store de-duplicates by event_id,
so a duplicate here would be one seq stored under two event ids (a seq reused).
"""

from __future__ import annotations

import sqlite3
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, func, select, text

from server.store.db import Store
from server.store.schema import events

Device = tuple[str, str]


@dataclass(frozen=True)
class Stored:
    rows: int
    distinct_seq: int
    max_seq: int


@dataclass(frozen=True)
class Verdict:
    devices: int
    generated: int
    stored_rows: int
    lost: int  #: generated seqs the store does not hold
    duplicates: int  #: rows beyond one per (device, seq)
    unexpected: int  #: stored seqs above the device's last_seq, or unknown devices
    gaps: int  #: holes Store.sequence_gaps() reports
    worst: list[str]  #: a few devices that are off, for the report

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicates or self.unexpected or self.gaps)

    def line(self) -> str:
        return (
            f"generated {self.generated}  stored {self.stored_rows}  lost {self.lost}  "
            f"duplicates {self.duplicates}  unexpected {self.unexpected}  gaps {self.gaps}"
        )


def stored_by_device(
    store: Store, up_to: Mapping[Device, int] | None = None
) -> dict[Device, Stored]:
    """Rows, distinct seqs and max seq per device; only seqs <= up_to[device] if given."""
    if up_to is None:
        q = select(
            events.c.site,
            events.c.window,
            func.count(),
            func.count(events.c.seq.distinct()),
            func.max(events.c.seq),
        ).group_by(events.c.site, events.c.window)
        with store.engine.connect() as conn:
            return {
                (site, window): Stored(int(n), int(d), int(m or 0))
                for site, window, n, d, m in conn.execute(q)
            }
    # Per-device bounds (the chaos checks: a few windows, thousands of rows).
    rows: Counter[Device] = Counter()
    seqs: dict[Device, set[int]] = {}
    with store.engine.connect() as conn:
        for site, window, seq in conn.execute(select(events.c.site, events.c.window, events.c.seq)):
            key = (site, window)
            if int(seq) <= up_to.get(key, 0):
                rows[key] += 1
                seqs.setdefault(key, set()).add(int(seq))
    return {k: Stored(rows[k], len(v), max(v)) for k, v in seqs.items()}


def _distinct_up_to(store: Store, dev: Device, last: int) -> int:
    q = select(func.count(events.c.seq.distinct())).where(
        events.c.site == dev[0], events.c.window == dev[1], events.c.seq <= last
    )
    with store.engine.connect() as conn:
        return int(conn.execute(q).scalar_one())


def verify(store: Store, generated: Mapping[Device, int], gaps: bool = True) -> Verdict:
    """Compare each device's last_seq with the store (see the module docstring)."""
    held = stored_by_device(store)
    lost = dup = unexpected = 0
    worst: list[str] = []
    for dev, last in generated.items():
        s = held.get(dev, Stored(0, 0, 0))
        if s.max_seq <= last:
            in_range = s.distinct_seq
        else:  # rare: seqs beyond what the device says it made; count only 1..last
            in_range = _distinct_up_to(store, dev, last)
            unexpected += s.distinct_seq - in_range
        d_lost = last - in_range
        d_dup = s.rows - s.distinct_seq
        lost += d_lost
        dup += d_dup
        if (d_lost or d_dup or s.max_seq > last) and len(worst) < 5:
            worst.append(f"{dev[0]}/{dev[1]}: last_seq {last}, stored {s}")
    for dev, s in held.items():
        if dev not in generated:
            unexpected += s.rows
            if len(worst) < 5:
                worst.append(f"{dev[0]}/{dev[1]}: not a simulated device, stored {s}")
    n_gaps = len(store.sequence_gaps()) if gaps else 0
    return Verdict(
        devices=len(generated),
        generated=sum(generated.values()),
        stored_rows=sum(s.rows for s in held.values()),
        lost=lost,
        duplicates=dup,
        unexpected=unexpected,
        gaps=n_gaps,
        worst=worst,
    )


def outbox_last_seq(path: Path) -> tuple[int, int]:
    """(last_seq, depth) of an outbox file, read without its lock (readers are fine in WAL)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        last = int(db.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()[0])
        depth = int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
    except sqlite3.OperationalError as exc:
        if "no such table" not in str(exc):
            raise
        return 0, 0  # created a moment ago; its schema is not committed yet
    finally:
        db.close()
    return last, depth


def fresh_pg(base: str) -> tuple[str, Callable[[], None]]:
    """Create a new PostgreSQL database next to ``base``; return its URL and a dropper."""
    name = f"ww_city_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return base.rsplit("/", 1)[0] + f"/{name}", drop
