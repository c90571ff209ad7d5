"""Months, quarters and years: the year period, and the monthly rollups that serve them,
checked against the projection tables across a year's end (SQLite and PostgreSQL)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from agent import protocol as p
from server.api.app import ServerSettings, create_app
from server.metrics.measures import Scope, compute, rollup_parts, smile_star_ranking
from server.metrics.periods import period_bounds
from server.store import rollups
from server.store.db import Store, StoredEvent
from server.store.schema import daily_rollups, monthly_rollups
from tests.conftest import EXAMPLE_SITE
from tests.server.test_measures import Fleet, ms
from tests.server.test_measures import scenario as november

R = p.Rating


def test_a_year_is_its_quarters_and_its_months() -> None:
    start, end = period_bounds("2026")
    assert (start, end) == (ms(2026, 1, 1, 0, 0), ms(2027, 1, 1, 0, 0))
    quarters = [period_bounds(f"2026-Q{q}") for q in range(1, 5)]
    months = [period_bounds(f"2026-{m:02d}") for m in range(1, 13)]
    for parts in (quarters, months):
        assert parts[0][0] == start and parts[-1][1] == end
        assert all(a[1] == b[0] for a, b in itertools.pairwise(parts))
    assert period_bounds("2026", "Europe/London")[0] == 1767225600000  # 00:00 UTC
    for bad in ("26", "2026-Q5", "2026-00", "2026-1", "20261", "9999-12", "Y2026"):
        with pytest.raises(ValueError):
            period_bounds(bad)


def year_end() -> Fleet:
    """Sessions either side of 2026's last midnight (one opened before it and rated after
    it), a few in January, February and one in November 2026, with absences."""
    f = Fleet()
    opened = [
        ms(2026, 11, 20, 10, 0),
        ms(2026, 12, 1, 9, 0),
        ms(2026, 12, 15, 14, 0),
        ms(2026, 12, 31, 23, 50),  # rated at 00:00 on January 1st
        ms(2027, 1, 1, 0, 5),
        ms(2027, 1, 15, 11, 0),
        ms(2027, 1, 31, 16, 0),
        ms(2027, 2, 1, 9, 30),
        ms(2027, 2, 20, 10, 0),
    ]
    for i, t in enumerate(opened):
        for window in ("w03", "w04"):
            f.session(
                window,
                t,
                stood=i % 4 != 1,
                smiled=i % 3 != 2,
                broad=i % 5 == 0,
                farewell=i % 6 != 5,
                see_off=2000 if i % 7 == 3 else 4000,
                rating=[R.SATISFIED, R.DISSATISFIED, None, R.VERY_SATISFIED][i % 4],
            )
    for t in (ms(2026, 12, 31, 23, 40), ms(2027, 1, 20, 10, 0)):
        f.events.append(
            p.Away(
                **f.header("w03", t + 600_000, None),
                started_ms=t,
                ended_ms=t + 600_000,
                with_sign=False,
                violation=True,
            )
        )
    return f


@pytest.fixture
def loaded(store: Store) -> Store:
    store.add_clerk("c-li", "李敏", "qingpu")
    store.add_clerk("c-wang", "王芳", "qingpu")
    store.sign_in("c-li", "qingpu", "w03", ms(2026, 11, 1, 0, 0))
    received = [StoredEvent(e, e.ts_ms + 50) for e in year_end().events]
    store.insert_events(received[: len(received) // 2])
    # c-wang signs in late, from November on: the re-attributed months follow
    store.sign_in("c-wang", "qingpu", "w04", ms(2026, 11, 1, 0, 0))
    store.insert_events(received[len(received) // 2 :])
    assert store.insert_events(received) == []  # every duplicate skipped
    return store


def table(store: Store, t: Any) -> list[tuple[Any, ...]]:
    with store.engine.connect() as conn:
        return sorted(tuple(r) for r in conn.execute(select(t)))


def daily_by_month(store: Store) -> list[tuple[Any, ...]]:
    with store.engine.connect() as conn:
        days = [dict(r._mapping) for r in conn.execute(select(daily_rollups))]
    months = rollups.to_months({"qingpu": "Asia/Shanghai"}, days)
    return sorted(tuple(m[c.name] for c in monthly_rollups.c) for m in months)


WHOLE_DAYS = (ms(2026, 12, 15, 0, 0), ms(2027, 2, 2, 0, 0))  # Dec 15th - Feb 1st


def test_months_quarters_and_years_agree_with_the_projection_tables(loaded: Store) -> None:
    store = loaded
    periods: dict[str, tuple[int, int]] = {
        p: period_bounds(p)
        for p in ("2026-12", "2027-01", "2026-Q4", "2027-Q1", "2026", "2027", "2027-01-01")
    }
    periods["Dec 15th - Feb 1st"] = WHOLE_DAYS
    scopes: list[tuple[Scope, Any]] = [
        (Scope(), None),
        (Scope(), "clerk"),
        (Scope(), "window"),
        (Scope(district="青浦区"), "site"),
        (Scope(), "district"),
        (Scope(site="qingpu", window="w03"), None),
        (Scope(clerk_id="c-wang"), None),
    ]
    for name, (start, end) in periods.items():
        for scope, by in scopes:
            fast = compute(store.engine, scope, start, end, group_by=by)
            slow = compute(store.engine, scope, start, end, group_by=by, rollups=False)
            assert {k: m.as_dict() for k, m in fast.items()} == {
                k: m.as_dict() for k, m in slow.items()
            }, (name, scope, by)
        for flag in (False, True):
            args = (store.engine, Scope(site="qingpu"), start, end)
            fast_star = smile_star_ranking(*args, min_sessions=2, too_broad_counts=flag)
            slow_star = smile_star_ranking(
                *args, min_sessions=2, too_broad_counts=flag, rollups=False
            )
            assert fast_star == slow_star, (name, flag)
    year = compute(store.engine, Scope(), *periods["2027"], group_by="window")
    assert {k: m.sessions for k, m in year.items()} == {"qingpu/w03": 5, "qingpu/w04": 5}
    assert year["qingpu/w03"].away_violations == 1
    # the session opened on December 31st counts in 2026, its rating in 2027
    assert compute(store.engine, Scope(), *periods["2026"])[None].sessions == 8
    assert sum(compute(store.engine, Scope(), *periods["2027"])[None].ratings.values()) == 8


def test_which_rollups_a_period_reads(loaded: Store) -> None:
    with loaded.engine.connect() as conn:

        def parts(start: int, end: int) -> list[tuple[str, int, int]] | None:
            got = rollup_parts(conn, Scope(site="qingpu"), start, end)
            return None if got is None else [(t.name, lo, hi) for t, _, lo, hi in got]

        year = period_bounds("2026")
        assert parts(*year) == [("monthly_rollups", *year)]
        assert parts(*period_bounds("2026-Q4")) == [("monthly_rollups", *period_bounds("2026-Q4"))]
        jan = period_bounds("2027-01")
        assert parts(*WHOLE_DAYS) == [
            ("monthly_rollups", *jan),
            ("daily_rollups", WHOLE_DAYS[0], jan[0]),
            ("daily_rollups", jan[1], WHOLE_DAYS[1]),
        ]
        day = period_bounds("2027-01-01")
        assert parts(*day) == [("daily_rollups", *day)]
        assert parts(day[0] + 3_600_000, day[1]) is None  # part of a day: the projections


def test_monthly_rollups_are_the_daily_ones_summed_and_rebuilt_alike(loaded: Store) -> None:
    store = loaded
    kept = table(store, monthly_rollups)
    assert kept == daily_by_month(store)
    assert {r[3] for r in kept} == {"c-li", "c-wang"}  # the late sign-in moved them all
    assert len({r[1] for r in kept}) == 4  # November to February
    days = table(store, daily_rollups)
    # a rebuild from January on recomputes January's and February's months only
    assert store.rebuild_rollups(period_bounds("2027-01")[0]) > 0
    assert table(store, monthly_rollups) == kept and table(store, daily_rollups) == days
    with store.engine.begin() as conn:
        conn.execute(monthly_rollups.delete())
    assert store.rebuild_rollups() == len(days)
    assert table(store, monthly_rollups) == kept and table(store, daily_rollups) == days


def test_a_sign_in_on_one_window_rebuilds_only_its_months(store: Store) -> None:
    store.add_clerk("c-li", "李敏", "qingpu")
    f = year_end()
    store.insert_events([StoredEvent(e, e.ts_ms) for e in f.events])
    before = {r for r in table(store, monthly_rollups) if r[2] == "w04"}
    assert {r[3] for r in table(store, monthly_rollups)} == {""}  # nobody signed in yet
    store.sign_in("c-li", "qingpu", "w03", ms(2026, 12, 1, 0, 0), ms(2027, 1, 31, 0, 0))
    after = table(store, monthly_rollups)
    assert {r for r in after if r[2] == "w04"} == before
    w03 = {(r[1], r[3]): r[4] for r in after if r[2] == "w03"}  # (month, clerk): sessions
    dec, jan, feb = (period_bounds(m)[0] for m in ("2026-12", "2027-01", "2027-02"))
    assert w03 == {
        (period_bounds("2026-11")[0], ""): 1,
        (dec, "c-li"): 3,
        (jan, "c-li"): 2,  # January 1st and 15th
        (jan, ""): 1,  # January 31st, after the shift
        (feb, ""): 2,
    }
    assert after == daily_by_month(store)


def test_an_upheld_appeal_changes_the_month_and_the_year(loaded: Store) -> None:
    """The appeal's correction sums its day again; its month follows from the days, so
    the one ``not_counted`` filter of the daily sums serves the months too."""
    from server.store.assessment import correct_session
    from server.store.schema import sessions

    store = loaded
    year = period_bounds("2027")
    before = compute(store.engine, Scope(), *year)[None]
    with store.engine.connect() as conn:
        jan = conn.execute(
            select(sessions.c.session_id)
            .where(sessions.c.opened_ms >= year[0], sessions.c.stood_on_call.is_(False))
            .order_by(sessions.c.opened_ms)
        ).all()
    with store.engine.begin() as conn:
        correct_session(conn, jan[0][0], "a-1", "not_counted", "mgr", year[0])
        correct_session(conn, jan[1][0], "a-2", "stood_on_call", "mgr", year[0])
    after = compute(store.engine, Scope(), *year)[None]
    assert after.sessions == before.sessions - 1
    for period in ("2027-01", "2027-Q1", "2027", "2026"):
        fast = compute(store.engine, Scope(), *period_bounds(period), group_by="window")
        slow = compute(
            store.engine, Scope(), *period_bounds(period), group_by="window", rollups=False
        )
        assert {k: m.as_dict() for k, m in fast.items()} == {
            k: m.as_dict() for k, m in slow.items()
        }, period
        args = (store.engine, Scope(site="qingpu"), *period_bounds(period))
        assert smile_star_ranking(*args) == smile_star_ranking(*args, rollups=False), period
    assert table(store, monthly_rollups) == daily_by_month(store)


def test_duplicates_in_one_batch_count_once_in_the_months(store: Store) -> None:
    """Each event 1-5 times, shuffled, in three batches: the kept months are what a
    rebuild from the (deduplicated) projection tables gives."""
    import random

    rng = random.Random(17)
    copies = [e for e in year_end().events for _ in range(rng.randint(1, 5))]
    rng.shuffle(copies)
    third = len(copies) // 3
    for chunk in (copies[:third], copies[third : 2 * third], copies[2 * third :]):
        store.insert_events([StoredEvent(e, e.ts_ms) for e in chunk])
    kept = table(store, monthly_rollups)
    assert sum(r[4] for r in kept) == 18  # sessions: 9 per window
    store.rebuild_rollups()
    assert table(store, monthly_rollups) == kept


def test_retention_keeps_the_months_the_sums_of_the_days_left(loaded: Store) -> None:
    store = loaded
    days = 3 * 366
    feb = period_bounds("2027-02")[0]
    # February 20th's sessions are the last ones: everything before is past retention
    store.apply_retention(ms(2027, 2, 20, 0, 0) + days * 86_400_000, measures_days=days)
    left = table(store, monthly_rollups)
    assert {r[1] for r in left} == {feb} and sum(r[4] for r in left) == 2  # February 20th's
    assert left == daily_by_month(store)
    store.apply_retention(ms(2027, 3, 1, 0, 0) + (days + 31) * 86_400_000, measures_days=days)
    assert table(store, monthly_rollups) == []


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(
        ServerSettings(db_url=f"sqlite:///{tmp_path / 'api.db'}", sites=[EXAMPLE_SITE], mqtt=None)
    )
    with TestClient(app) as c:
        app.state.accounts.add_user("admin", "admin-pass-1", "district_admin", "district:青浦区")
        r = c.post("/api/login", json={"username": "admin", "password": "admin-pass-1"})
        c.headers["X-CSRF-Token"] = r.json()["csrf"]
        yield c


def test_every_period_parameter_takes_a_year(client: TestClient) -> None:
    store = client.app.state.store  # type: ignore[attr-defined]
    store.add_clerk("c-li", "李敏", "qingpu")
    store.sign_in("c-li", "qingpu", "w03", ms(2026, 11, 1, 0, 0))
    f, _ = november()
    store.insert_events([StoredEvent(e, e.ts_ms) for e in f.events])
    for period in ("2026", "2026-Q4", "2026-11"):
        m = client.get("/api/measures", params={"period": period, "site": "qingpu"})
        assert m.status_code == 200 and m.json()["groups"]["all"]["sessions"] == 43, m.text
        cmp = client.get("/api/units/compare", params={"period": period, "by": "site"})
        assert cmp.status_code == 200, cmp.text
        assert {g: v["sessions"] for g, v in cmp.json()["groups"].items()} == {"qingpu": 43}
        star = client.get("/api/ranking", params={"period": period, "site": "qingpu"})
        assert star.status_code == 200
        assert [r["clerk_id"] for r in star.json()] == ["c-li"]
        csv = client.get("/api/export/ranking.csv", params={"period": period, "site": "qingpu"})
        assert csv.status_code == 200 and "c-li" in csv.text
    empty = client.get("/api/measures", params={"period": "2025", "site": "qingpu"})
    assert empty.json()["groups"]["all"]["sessions"] == 0
    for bad in ("2026-Q5", "26", "2026-13"):
        assert client.get("/api/measures", params={"period": bad}).status_code == 422
        assert client.get("/api/export/ranking.csv", params={"period": bad}).status_code == 422
