"""A front desk's receptions (F-RECEIVE): judged on standing and smiling first, never on
a farewell they do not have; on SQLite and PostgreSQL, from the rollups and the rows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from agent import protocol as p
from server import views
from server.metrics.measures import Scope, compute, smile_star_ranking
from server.metrics.periods import period_bounds
from server.store.db import Store, StoredEvent
from server.store.schema import alerts, sessions
from tests.server.test_measures import Fleet, ms

SUMMARY_V2: Any = p.V2_CONTRACT.model_for("session_summary")


def reception(f: Fleet, opened: int, greeted: bool) -> Any:
    """A front desk's summary as the terminal sends it: no farewell (stood_at_farewell is
    a required version 1 field, so False), greeted_first set."""
    base = f.session("w01", opened, stood=greeted, smiled=greeted, rating=None)
    f.events.remove(base)
    ev = SUMMARY_V2.model_validate(
        base.model_dump()
        | {
            "schema_version": 2,
            "stood_at_farewell": False,
            "see_off_ms": None,
            "source": "presence",
            "greeted_first": greeted,
            "closed_by": "finish_key",
        }
    )
    f.events.append(ev)
    return ev


def test_receptions_never_fail_a_farewell(store: Store) -> None:
    store.add_clerk("c-desk", "前台", "qingpu")
    store.sign_in("c-desk", "qingpu", "w01", ms(2026, 11, 3, 8, 0))
    f = Fleet()
    greeted = reception(f, ms(2026, 11, 3, 9, 0), True)
    missed = reception(f, ms(2026, 11, 3, 9, 30), False)
    f.session("w03", ms(2026, 11, 3, 10, 0))  # a window's session, farewell and all
    store.insert_events([StoredEvent(e, e.ts_ms) for e in f.events])

    start, end = period_bounds("2026-11")
    for use_rollups in (True, False):
        m = compute(store.engine, Scope(site="qingpu"), start, end, rollups=use_rollups)[None]
        assert m.sessions == 3 and m.receptions == 2
        assert m.greeted_first_rate == 0.5
        assert m.farewell_stand_rate == 1.0 and m.see_off_rate == 1.0  # the window's only
        desk = compute(
            store.engine, Scope(site="qingpu", window="w01"), start, end, rollups=use_rollups
        )[None]
        assert desk.farewell_stand_rate is None  # nothing to judge, not 0 %
    with store.engine.connect() as conn:
        rows = {r.session_id: r for r in conn.execute(select(sessions))}
        conduct = [dict(a._mapping) for a in conn.execute(select(alerts))]
    assert rows[str(greeted.session_id)].stood_at_farewell is None
    # the missed greeting raises its alert; no reception ever misses a farewell
    misses = [a["detail"]["misses"] for a in conduct if a["kind"] == "conduct"]
    assert misses == [["stand_on_call", "smile_at_greeting"]]
    assert str(missed.session_id) in {a["detail"]["session_id"] for a in conduct}
    tl = views.timeline(store.engine, Scope(site="qingpu", window="w01"), start, end)
    assert all("farewell" not in [s["step"] for s in t["steps"]] for t in tl)
    ranked = {r["clerk_id"]: r for r in smile_star_ranking(store.engine, Scope(), start, end, 1)}
    assert (ranked["c-desk"]["exemplary"], ranked["c-desk"]["sessions"]) == (1, 2)
