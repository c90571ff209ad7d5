"""Sequence gaps after retention, on SQLite and PostgreSQL.

Retention deletes raw events by the time they were received; what it deleted of a
device's sequence is not a gap. It records per device the highest seq it deleted
(``seq_floors``) and gaps are looked for above it only; a hole above still shows.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select

from agent import protocol as p
from server.store.db import Store, StoredEvent
from server.store.schema import seq_floors

DAY = 86_400_000
NOW = 1_800_000_000_000  # 2027-01-15, UTC
BOOT = uuid.UUID(int=5)
WINDOWS = ("w01", "w02", "w03")


def event(window: str, seq: int, at_ms: int) -> StoredEvent:
    ev = p.Evaluated(
        event_id=uuid.uuid4(),
        site="qingpu",
        window=window,
        seq=seq,
        boot_id=BOOT,
        ts_ms=at_ms,
        rating=p.Rating.SATISFIED,
    )
    return StoredEvent(ev, at_ms + 50)


def fleet(
    store: Store, seqs: range = range(1, 21), skip: frozenset[tuple[str, int]] = frozenset()
) -> None:
    """Every window sends ``seqs``; the first half 500 days ago, the rest 10 days ago."""
    half = seqs.start + len(seqs) // 2
    store.insert_events(
        [
            event(w, s, NOW - (500 if s < half else 10) * DAY + s * 1000)
            for w in WINDOWS
            for s in seqs
            if (w, s) not in skip
        ]
    )


def floors(store: Store) -> dict[str, int]:
    with store.engine.connect() as conn:
        return {r.window: r.floor_seq for r in conn.execute(select(seq_floors))}


def test_a_fleet_that_lost_nothing_has_no_gap_after_retention(store: Store) -> None:
    fleet(store)
    assert store.sequence_gaps() == []
    deleted = store.apply_retention(NOW, raw_events_days=400)
    assert deleted["events"] == 3 * 10
    assert store.event_count() == 3 * 10
    assert store.sequence_gaps() == []  # not 1..10 for every window
    assert floors(store) == dict.fromkeys(WINDOWS, 10)


def test_a_hole_above_the_retained_floor_is_still_reported(store: Store) -> None:
    # w01 lost 15 and 16 (kept half); w02 lost 11, right above what retention deletes;
    # w03 lost 4, in the half retention deletes: that evidence is gone with it.
    fleet(store, skip=frozenset({("w01", 15), ("w01", 16), ("w02", 11), ("w03", 4)}))
    before = store.sequence_gaps()
    assert {(g["window"], g["from_seq"], g["to_seq"]) for g in before} == {
        ("w01", 15, 16),
        ("w02", 11, 11),
        ("w03", 4, 4),
    }
    store.apply_retention(NOW, raw_events_days=400)
    assert floors(store) == {"w01": 10, "w02": 10, "w03": 10}
    assert store.sequence_gaps() == [
        {"site": "qingpu", "window": "w01", "from_seq": 15, "to_seq": 16},
        {"site": "qingpu", "window": "w02", "from_seq": 11, "to_seq": 11},
    ]


def test_a_floor_only_rises_and_a_device_retention_never_touched_counts_from_zero(
    store: Store,
) -> None:
    fleet(store)
    store.apply_retention(NOW, raw_events_days=400)
    # a later run that deletes nothing (a longer retention) lowers nothing
    assert store.apply_retention(NOW, raw_events_days=1000)["events"] == 0
    assert floors(store) == dict.fromkeys(WINDOWS, 10)
    # a run that deletes more raises the floor; still no gap
    store.apply_retention(NOW, raw_events_days=5)
    assert store.event_count() == 0
    assert floors(store) == dict.fromkeys(WINDOWS, 20)
    assert store.sequence_gaps() == []
    # the fleet goes on: 21.. are above the floor; a new device without a floor
    # starting at 3 misses 1 and 2
    store.insert_events([event("w01", 21, NOW), event("w01", 23, NOW), event("w04", 3, NOW)])
    assert store.sequence_gaps() == [
        {"site": "qingpu", "window": "w01", "from_seq": 22, "to_seq": 22},
        {"site": "qingpu", "window": "w04", "from_seq": 1, "to_seq": 2},
    ]


def test_an_old_seq_received_late_stays_but_opens_no_gap(store: Store) -> None:
    """Seq 3 arrived late (kept) while 1, 2 and 4..10 were deleted: below the floor."""
    fleet(store, skip=frozenset({("w01", 3)}))
    store.insert_events([StoredEvent(event("w01", 3, NOW).event, NOW - DAY)])
    store.apply_retention(NOW, raw_events_days=400)
    assert store.event_count() == 3 * 10 + 1
    assert store.sequence_gaps() == []
