"""Outbox unit tests: stamping, sequence persistence, cap policy, WAL, locking, crashes."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from agent.events import Draft
from agent.outbox import Outbox, OutboxLocked
from agent.protocol import (
    CONTRACT,
    Away,
    EventHeader,
    SessionOpened,
    Smiled,
    StoodUp,
    parse_event,
)
from tests.agent import draft

REPO = Path(__file__).resolve().parents[2]


def opened(ts: int = 1_700_000_000_000) -> Draft:
    return Draft(kind=SessionOpened, ts_ms=ts, fields={"source": "queue", "ticket": "A012"})


def away(ts: int = 1_700_000_000_000) -> Draft:
    return Draft(
        kind=Away, ts_ms=ts, fields={"started_ms": ts, "with_sign": False, "violation": True}
    )


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Outbox]:
    b = Outbox(tmp_path / "outbox.db", site="qingpu", window="w03")
    yield b
    b.close()


def test_add_stamps_a_valid_event_and_stores_exactly_it(box: Outbox) -> None:
    session = uuid.uuid4()
    d = Draft(
        kind=StoodUp,
        ts_ms=1_700_000_000_123,
        session_id=session,
        fields={"phase": "greeting", "on_time": False, "after_ms": 7200},
    )
    ev = box.add(d)
    assert isinstance(ev, StoodUp)
    assert (ev.site, ev.window, ev.seq, ev.boot_id) == ("qingpu", "w03", 1, box.boot_id)
    assert ev.session_id == session and ev.after_ms == 7200
    assert ev.historical is False and ev.sent_ms is None
    [row] = box.peek(10)
    assert row.seq == 1 and row.kind == "stood_up"
    assert parse_event(row.payload) == ev


def test_fields_a_later_version_added_cost_nothing_when_unused(box: Outbox) -> None:
    """The outbox writes the newest version; what it adds and this event leaves unset
    stays out of the JSON, so a plain bell session is no bigger than in version 1."""
    plain = box.add(opened())
    queued = box.add(
        Draft(
            kind=SessionOpened,
            ts_ms=1_700_000_000_500,
            fields={"source": "queue", "ticket": "B22", "priority_category": "elderly"},
        )
    )
    first, second = box.peek(10)
    assert plain.schema_version == CONTRACT.newest and '"call_id"' not in first.payload
    assert '"priority_category":"elderly"' in second.payload
    assert '"matter_code"' not in second.payload
    assert parse_event(first.payload) == plain and parse_event(second.payload) == queued
    as_v1 = SessionOpened.model_validate(
        {k: getattr(plain, k) for k in SessionOpened.model_fields} | {"schema_version": 1}
    )
    assert len(first.payload) == len(as_v1.model_dump_json())  # "2" for "1", nothing more


def test_seqs_are_consecutive_and_ids_unique(box: Outbox) -> None:
    events = [box.add(draft(i)) for i in range(50)]
    assert [e.seq for e in events] == list(range(1, 51))
    assert len({e.event_id for e in events}) == 50
    assert box.last_seq == 50 and box.depth == 50


def test_seq_survives_reopen_even_when_the_queue_was_emptied(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with Outbox(path, "qingpu", "w03") as first:
        for i in range(5):
            first.add(draft(i))
        first.ack(r.seq for r in first.peek(10))
        assert first.depth == 0
        boot1 = first.boot_id
    with Outbox(path, "qingpu", "w03") as second:
        ev = second.add(draft(5))
        assert ev.seq == 6, "the counter must not restart from the (empty) queue"
        assert ev.boot_id != boot1


def test_unsent_rows_survive_reopen_in_order(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with Outbox(path, "qingpu", "w03") as first:
        ids = [first.add(draft(i)).event_id for i in range(10)]
        first.ack([2, 5])
    with Outbox(path, "qingpu", "w03") as second:
        rows = second.peek(100)
        assert [r.seq for r in rows] == [1, 3, 4, 6, 7, 8, 9, 10]
        assert [parse_event(r.payload).event_id for r in rows] == [
            ids[s - 1] for s in (1, 3, 4, 6, 7, 8, 9, 10)
        ]
        assert second.depth == 8


def test_invalid_draft_raises_and_consumes_no_seq(box: Outbox) -> None:
    box.add(opened())
    with pytest.raises(ValidationError):
        box.add(Draft(kind=StoodUp, ts_ms=1, fields={"phase": "lunch", "on_time": True}))
    with pytest.raises(ValidationError):  # unknown field: nothing may ride along
        box.add(Draft(kind=SessionOpened, ts_ms=1, fields={"source": "bell", "jpeg": "..."}))
    with pytest.raises(TypeError):
        box.add(Draft(kind=EventHeader, ts_ms=1))
    assert box.add(opened()).seq == 2


def test_peek_after_and_ack(box: Outbox) -> None:
    for i in range(10):
        box.add(draft(i))
    assert [r.seq for r in box.peek(3)] == [1, 2, 3]
    assert [r.seq for r in box.peek(3, after_seq=3)] == [4, 5, 6]
    assert box.ack([1, 2, 3, 99]) == 3
    assert box.ack([1]) == 0  # a second ack (re-delivered PUBACK) is harmless
    assert box.ack([]) == 0
    assert [r.seq for r in box.peek(100)] == list(range(4, 11))
    assert box.depth == 7


def test_ack_ranges_deletes_inclusive_ranges(box: Outbox) -> None:
    """The aggregator's Stored: whole ranges, however far they reach past the rows."""
    for i in range(10):
        box.add(draft(i))
    assert box.ack_ranges([(2, 3), (6, 6), (9, 2**63 - 1)]) == 5
    assert [r.seq for r in box.peek(20)] == [1, 4, 5, 7, 8]
    assert box.depth == 5
    assert box.ack_ranges([(2, 3)]) == 0 and box.ack_ranges([]) == 0


def test_wal_and_full_sync(box: Outbox) -> None:
    box.add(opened())
    assert box.durability() == ("wal", "FULL")
    assert Path(f"{box.path}-wal").exists()
    with sqlite3.connect(box.path) as other:  # WAL is a property of the file
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_cap_drops_summarised_kinds_first_then_oldest_and_counts(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with Outbox(path, "qingpu", "w03", max_rows=4) as b:
        b.add(away())  # 1: kept, not summarised
        b.add(opened())  # 2: summarised
        b.add(away())  # 3
        b.add(
            Draft(kind=Smiled, ts_ms=1, fields={"phase": "greeting", "on_time": True})
        )  # 4: summarised
        b.add(away())  # 5 -> drops 2
        assert [r.seq for r in b.peek(10)] == [1, 3, 4, 5]
        b.add(away())  # 6 -> drops 4
        assert [r.seq for r in b.peek(10)] == [1, 3, 5, 6]
        b.add(away())  # 7 -> nothing summarised left: drops the oldest, 1
        assert [r.seq for r in b.peek(10)] == [3, 5, 6, 7]
        assert (b.dropped, b.depth, b.last_seq) == (3, 4, 7)
        assert b.stats().dropped == 3
    with Outbox(path, "qingpu", "w03", max_rows=4) as again:
        assert again.dropped == 3, "Health.dropped must survive a reboot"


def test_lowering_the_cap_trims_on_next_add(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with Outbox(path, "qingpu", "w03") as b:
        for _ in range(6):
            b.add(away())
    with Outbox(path, "qingpu", "w03", max_rows=3) as b:
        b.add(away())
        assert [r.seq for r in b.peek(10)] == [5, 6, 7]
        assert b.dropped == 4


def test_oldest_age_uses_the_injected_clock(tmp_path: Path) -> None:
    now = [1_000_000]
    with Outbox(tmp_path / "o.db", "qingpu", "w03", clock_ms=lambda: now[0]) as b:
        assert b.oldest_age_s() is None
        b.add(opened())
        now[0] += 2500
        b.add(opened())
        assert b.oldest_age_s() == 2.5
        b.ack([1])
        assert b.oldest_age_s() == 0.0
        now[0] -= 60_000  # NTP stepped the clock back
        assert b.oldest_age_s() == 0.0


def test_second_process_on_the_same_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with Outbox(path, "qingpu", "w03"), pytest.raises(OutboxLocked):
        Outbox(path, "qingpu", "w03")
    Outbox(path, "qingpu", "w03").close()  # released on close


def test_rejects_bad_slugs_and_caps(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        Outbox(tmp_path / "o.db", "Qingpu Centre", "w03")
    with pytest.raises(ValueError):
        Outbox(tmp_path / "o.db", "qingpu", "w03", max_rows=0)


def test_concurrent_adds_and_acks(box: Outbox) -> None:
    n_threads, per_thread = 4, 150
    seqs: list[int] = []
    lock = threading.Lock()
    done = threading.Event()

    def producer() -> None:
        for _ in range(per_thread):
            ev = box.add(opened())
            with lock:
                seqs.append(ev.seq)

    acked = 0

    def acker() -> None:
        nonlocal acked
        while not done.is_set() or box.depth:
            acked += box.ack(r.seq for r in box.peek(20))

    t_ack = threading.Thread(target=acker)
    t_ack.start()
    producers = [threading.Thread(target=producer) for _ in range(n_threads)]
    for t in producers:
        t.start()
    for t in producers:
        t.join()
    done.set()
    t_ack.join(30)
    assert sorted(seqs) == list(range(1, n_threads * per_thread + 1))
    assert acked == n_threads * per_thread and box.depth == 0


_ADDER = """
import sys
from agent.outbox import Outbox
from tests.agent import draft
box = Outbox(sys.argv[1], "qingpu", "w03")
i = 0
while True:
    ev = box.add(draft(i))
    i += 1
    if i == 50:
        print("ready", flush=True)
"""


def test_sigkill_during_adds_leaves_no_gap_or_reuse(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", _ADDER, str(path)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    os.kill(proc.pid, signal.SIGKILL)  # somewhere inside some transaction
    proc.wait()
    with Outbox(path, "qingpu", "w03") as b:
        rows = b.peek(1_000_000)
        assert rows, "the child stored nothing"
        assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
        assert b.last_seq == len(rows), "counter and queue must commit together"
        ids = {parse_event(r.payload).event_id for r in rows}
        assert len(ids) == len(rows)
        assert b.add(opened()).seq == len(rows) + 1
