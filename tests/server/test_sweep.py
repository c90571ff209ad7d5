"""The clock's sweep against a real store, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

from agent import protocol as p
from agent.config import load_site
from server.policy.clock import SILENT_AFTER_MS, silent_alert_id
from server.policy.rows import AlertRow
from server.store.db import Store, StoredEvent
from server.sweep import Sweeper, run_once
from tests.conftest import EXAMPLE_SITE
from tests.server.test_measures import ms
from tests.waiting import wait_until

MIN = 60_000
REVIEWED = ms(2026, 11, 2, 10, 0)  # Monday; due at the end of Monday 23 Nov
DUE = ms(2026, 11, 23, 23, 59) + 59_999


def bad_review(store: Store, window: str = "w03", at_ms: int = REVIEWED) -> str:
    ev = p.Evaluated(
        event_id=uuid.uuid4(),
        site="qingpu",
        window=window,
        seq=1,
        boot_id=uuid.UUID(int=1),
        ts_ms=at_ms,
        rating=p.Rating.DISSATISFIED,
    )
    store.insert_events([StoredEvent(ev, at_ms + 50)])
    return str(ev.event_id)


def kinds(store: Store) -> list[tuple[str, str]]:
    return sorted((a["kind"], a["alert_id"]) for a in store.list_alerts())


def test_an_open_case_past_due_is_alerted_once(store: Store) -> None:
    case_id = bad_review(store)
    closed_id = bad_review(store, "w04")
    assert store.close_case(closed_id, "called the citizen back", REVIEWED + 3_600_000)
    before = kinds(store)
    assert run_once(store, DUE) == []  # due at this very ms: not yet
    raised = run_once(store, DUE + MIN)
    assert [(a["kind"], a["alert_id"], a["ts_ms"]) for a in raised] == [
        ("case_overdue", f"overdue-{case_id}", DUE)
    ]
    assert run_once(store, DUE + 2 * MIN) == []  # the next minute raises nothing again
    assert kinds(store) == sorted([*before, ("case_overdue", f"overdue-{case_id}")])
    [alert] = [a for a in store.list_alerts() if a["kind"] == "case_overdue"]
    assert alert["detail"] == {
        "case_id": case_id,
        "due_ms": DUE,
        "clerk_id": None,
        "rating": "dissatisfied",
    }


def test_an_online_terminal_gone_quiet_is_alerted_once_per_silence(store: Store) -> None:
    t0 = ms(2026, 11, 2, 9, 0)
    store.set_availability("qingpu", "w03", True, t0)
    bad_review(store, "w03", t0 + MIN)  # heard from at t0 + 1 min + 50 ms
    heard = t0 + MIN + 50
    assert run_once(store, heard + SILENT_AFTER_MS) == []
    [alert] = run_once(store, heard + SILENT_AFTER_MS + MIN)
    assert (alert["kind"], alert["window"]) == ("terminal_silent", "w03")
    assert alert["alert_id"] == silent_alert_id("qingpu", "w03", heard)
    assert run_once(store, heard + SILENT_AFTER_MS + 2 * MIN) == []
    # it speaks again, then falls quiet again: a second silence, a second alert
    call = p.SessionOpened(
        event_id=uuid.uuid4(),
        site="qingpu",
        window="w03",
        seq=2,
        boot_id=uuid.UUID(int=1),
        ts_ms=heard + 20 * MIN,
        source="bell",
    )
    store.insert_events([StoredEvent(call, heard + 20 * MIN)])
    assert run_once(store, heard + 21 * MIN) == []
    [again] = run_once(store, heard + 20 * MIN + SILENT_AFTER_MS + MIN)
    assert again["alert_id"] == silent_alert_id("qingpu", "w03", heard + 20 * MIN)
    # offline terminals (every other window here) are the offline alert's business
    store.set_availability("qingpu", "w03", False, heard + 40 * MIN)
    assert run_once(store, heard + 60 * MIN) == []
    assert [k for k, _ in kinds(store)].count("terminal_silent") == 2


def test_the_sweeper_runs_every_interval_and_survives_a_failed_sweep(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'late.db'}")  # no schema yet: sweeps fail
    seen: list[list[AlertRow]] = []
    got = threading.Event()

    def on_raised(alerts: list[AlertRow]) -> None:
        seen.append(alerts)
        got.set()

    sweeper = Sweeper(store, every_s=0.02, clock=lambda: DUE + MIN, on_raised=on_raised)
    try:
        with sweeper:
            wait_until(lambda: sweeper.failures >= 2)
            store.create()
            store.register_site(load_site(EXAMPLE_SITE))
            case_id = bad_review(store)
            assert got.wait(5)
            done = sweeper.sweeps
            wait_until(lambda: sweeper.sweeps >= done + 3)
        stopped_at = sweeper.sweeps
        assert [[a["alert_id"] for a in s] for s in seen] == [[f"overdue-{case_id}"]]
        assert not any(t.name == "ww-sweeper" for t in threading.enumerate())
        assert sweeper.sweeps == stopped_at
    finally:
        store.close()
