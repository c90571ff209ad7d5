"""Who served: the attribution rule (server/policy/shifts.py), pure, then end to end on
SQLite and PostgreSQL: a shift change mid-day, a late sign-in, unattributed sessions."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from agent import protocol as p
from server import views
from server.metrics.assessment import PassThresholds, verdict
from server.metrics.measures import Scope, compute, smile_star_ranking
from server.metrics.periods import period_bounds
from server.policy.shifts import Shift, ShiftConflict, plan_sign_in, plan_sign_out
from server.store.db import Store, StoredEvent
from tests.server.test_measures import Fleet, ms

H = 3_600_000


def nobody_served(_c: str, _w: str, _t: int) -> int | None:
    return None


def served(at: dict[tuple[str, str], int]) -> Callable[[str, str, int], int | None]:
    def f(clerk: str, window: str, t: int) -> int | None:
        last = at.get((clerk, window))
        return last if last is not None and last >= t else None

    return f


# ------------------------------------------------------------------------ the rule, pure


def test_a_sign_in_closes_the_previous_clerks_shift_at_its_own_time() -> None:
    li = Shift(1, "c-li", "w03", 9 * H, None)
    plan = plan_sign_in(
        "c-wang", "w03", 12 * H, until_ms=None, at_window=[li], own=[], served_after=nobody_served
    )
    assert (plan.start_ms, plan.end_ms, plan.close) == (12 * H, None, ((1, 12 * H),))


def test_signing_in_elsewhere_closes_the_clerks_own_shift() -> None:
    at_w03 = Shift(1, "c-li", "w03", 9 * H, None)
    plan = plan_sign_in(
        "c-li", "w05", 11 * H, until_ms=None, at_window=[], own=[at_w03], served_after=nobody_served
    )
    assert plan.close == ((1, 11 * H),)


def test_a_repeated_sign_in_changes_nothing() -> None:
    li = Shift(1, "c-li", "w03", 9 * H, None)
    plan = plan_sign_in(
        "c-li", "w03", 10 * H, until_ms=None, at_window=[li], own=[], served_after=nobody_served
    )
    assert plan.noop and plan.start_ms == 9 * H


def test_a_late_sign_in_takes_only_the_unattributed_time() -> None:
    # Li 8-10 (signed out), Wang from 13: a late sign-in for Zhao "from 9" gets 10-13.
    li = Shift(1, "c-li", "w03", 8 * H, 10 * H)
    wang = Shift(2, "c-wang", "w03", 13 * H, None)
    plan = plan_sign_in(
        "c-zhao",
        "w03",
        9 * H,
        until_ms=None,
        at_window=[li, wang],
        own=[],
        served_after=nobody_served,
    )
    assert (plan.start_ms, plan.end_ms, plan.close) == (10 * H, 13 * H, ())


def test_no_unattributed_time_is_refused() -> None:
    li = Shift(1, "c-li", "w03", 8 * H, 10 * H)
    wang = Shift(2, "c-wang", "w03", 10 * H, None)
    with pytest.raises(ShiftConflict, match="no unattributed time"):
        plan_sign_in(
            "c-zhao",
            "w03",
            9 * H,
            until_ms=None,
            at_window=[li, wang],
            own=[],
            served_after=nobody_served,
        )


def test_a_session_someone_served_is_never_taken_from_them() -> None:
    li = Shift(1, "c-li", "w03", 8 * H, None)
    li_served = served({("c-li", "w03"): 11 * H})
    with pytest.raises(ShiftConflict, match="c-li served a session at w03"):
        plan_sign_in(
            "c-wang", "w03", 10 * H, until_ms=None, at_window=[li], own=[], served_after=li_served
        )
    with pytest.raises(ShiftConflict, match="c-li served"):
        plan_sign_out(li, 10 * H, served_after=li_served)
    assert plan_sign_out(li, 12 * H, served_after=li_served) == (1, 12 * H)


def test_a_clerk_is_at_one_window_at_a_time() -> None:
    # Li was at w05 9-11 (closed); a late record of Li at w03 from 10 overlaps it.
    w05 = Shift(1, "c-li", "w05", 9 * H, 11 * H)
    with pytest.raises(ShiftConflict, match="one window at a time"):
        plan_sign_in(
            "c-li",
            "w03",
            10 * H,
            until_ms=None,
            at_window=[],
            own=[w05],
            served_after=nobody_served,
        )


# ------------------------------------------------------------------- end to end, stored


MON = ms(2026, 11, 2, 0, 0)


def _day(store: Store) -> tuple[Fleet, dict[str, list[p.SessionSummary]]]:
    """w03 on Monday 2 Nov: two sessions before anyone signs in (07:30, 07:45), Li from
    08:00 (sessions 08:30..11:30, every one complied), Wang from 12:00 (13:00..16:00,
    none stood on call)."""
    for clerk, name in (("c-li", "李敏"), ("c-wang", "王芳"), ("c-zhao", "赵磊")):
        store.add_clerk(clerk, name, "qingpu")
    f = Fleet()
    early = [f.session("w03", ms(2026, 11, 2, 7, m)) for m in (30, 45)]
    li = [f.session("w03", ms(2026, 11, 2, h, 30)) for h in range(8, 12)]
    wang = [f.session("w03", ms(2026, 11, 2, h, 0), stood=False) for h in range(13, 17)]
    return f, {"early": early, "li": li, "wang": wang}


def _insert(store: Store, evs: list[p.EventHeader]) -> None:
    store.insert_events([StoredEvent(e, e.ts_ms + 50) for e in evs])


def _clerk_of(store: Store, evs: list[p.SessionSummary]) -> set[str | None]:
    from sqlalchemy import select

    from server.store.schema import sessions

    ids = [str(e.session_id) for e in evs]
    with store.engine.connect() as conn:
        q = select(sessions.c.clerk_id).where(sessions.c.session_id.in_(ids))
        return {r[0] for r in conn.execute(q)}


def test_a_shift_change_mid_day_attributes_every_session_to_its_clerk(store: Store) -> None:
    f, s = _day(store)
    store.sign_in("c-li", "qingpu", "w03", ms(2026, 11, 2, 8, 0))
    # The morning arrives live; Wang signs in at noon (the second clerk at the window);
    # the afternoon's events arrive after that.
    morning = [e for e in f.events if e.ts_ms < ms(2026, 11, 2, 12, 0)]
    afternoon = [e for e in f.events if e.ts_ms >= ms(2026, 11, 2, 12, 0)]
    _insert(store, morning)
    done = store.sign_in("c-wang", "qingpu", "w03", ms(2026, 11, 2, 12, 0))
    assert done.closed and done.sessions_taken == 0
    _insert(store, afternoon)

    assert _clerk_of(store, s["li"]) == {"c-li"}
    assert _clerk_of(store, s["wang"]) == {"c-wang"}
    assert _clerk_of(store, s["early"]) == {None}  # nobody signed in: never guessed

    start, end = period_bounds("2026-11")
    by_clerk = compute(store.engine, Scope(site="qingpu"), start, end, group_by="clerk")
    assert by_clerk["c-li"].sessions == 4 and by_clerk["c-li"].stand_on_call_rate == 1.0
    assert by_clerk["c-wang"].sessions == 4 and by_clerk["c-wang"].stand_on_call_rate == 0.0
    assert "c-zhao" not in by_clerk
    # the hall wall shows who is on shift now, the day view both shifts and the gap
    assert views.clerks_on_duty(store.engine, "qingpu", ms(2026, 11, 2, 15, 0)) == {"w03": "c-wang"}
    assert views.clerks_on_duty(store.engine, "qingpu", ms(2026, 11, 2, 10, 0)) == {"w03": "c-li"}
    day = views.roster_day(store.engine, "qingpu", MON, MON + 24 * H, MON + 20 * H)
    assert [(x["clerk_id"], x["start_ms"], x["end_ms"]) for x in day["shifts"]] == [
        ("c-li", ms(2026, 11, 2, 8, 0), ms(2026, 11, 2, 12, 0)),
        ("c-wang", ms(2026, 11, 2, 12, 0), None),
    ]
    assert day["unattributed"] == [{"window": "w03", "sessions": 2}]

    # The monthly verdicts: Li passes stand-on-call, Wang fails it; the two unattributed
    # sessions (which complied) count for nobody.
    t = PassThresholds(min_sessions=4)
    li, wang = (verdict(store.engine, c, "2026-11", t) for c in ("c-li", "c-wang"))
    assert li["measures"]["sessions"] == 4 and wang["measures"]["sessions"] == 4
    assert li["result"] == "pass", li["failures"]
    assert [x["criterion"] for x in wang["failures"]] == ["stand_on_call_rate"]
    # the evidence is Wang's own four sessions, nobody else's
    assert set(wang["failures"][0]["evidence"]) == {str(e.event_id) for e in s["wang"]}
    ranked = smile_star_ranking(store.engine, Scope(site="qingpu"), start, end, min_sessions=1)
    assert {r["clerk_id"] for r in ranked} == {"c-li", "c-wang"}


def test_a_late_sign_in_takes_only_unattributed_sessions_and_says_so(store: Store) -> None:
    f, s = _day(store)
    store.sign_in("c-li", "qingpu", "w03", ms(2026, 11, 2, 8, 0), ms(2026, 11, 2, 12, 0))
    store.sign_in("c-wang", "qingpu", "w03", ms(2026, 11, 2, 12, 0))
    _insert(store, f.events)
    # A manager records that Zhao was there from 07:00: only 07:00-08:00 is free.
    done = store.sign_in("c-zhao", "qingpu", "w03", ms(2026, 11, 2, 7, 0))
    assert (done.start_ms, done.end_ms) == (ms(2026, 11, 2, 7, 0), ms(2026, 11, 2, 8, 0))
    assert done.sessions_taken == 2
    assert _clerk_of(store, s["early"]) == {"c-zhao"}
    assert _clerk_of(store, s["li"]) == {"c-li"}
    # Recording Zhao from 10:00 would take Li's or Wang's sessions: refused.
    with pytest.raises(ShiftConflict):
        store.sign_in("c-zhao", "qingpu", "w03", ms(2026, 11, 2, 10, 0), ms(2026, 11, 2, 11, 0))
    with pytest.raises(ShiftConflict, match="c-wang served"):
        store.sign_out("qingpu", ms(2026, 11, 2, 14, 0), window="w03")
    assert store.sign_out("qingpu", ms(2026, 11, 2, 17, 0), clerk_id="c-wang") == (
        "c-wang",
        "w03",
    )
    start, end = period_bounds("2026-11")
    by_clerk = compute(store.engine, Scope(site="qingpu"), start, end, group_by="clerk")
    assert {k: m.sessions for k, m in by_clerk.items()} == {"c-li": 4, "c-wang": 4, "c-zhao": 2}
