"""Every measure from a known scenario, hand-checked, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agent import protocol as p
from server.metrics.assessment import PassThresholds, probation, verdict
from server.metrics.measures import Scope, compute, smile_star_ranking, wilson_lower_bound
from server.metrics.periods import period_bounds
from server.store.db import Store, StoredEvent
from server.workdays import add_working_days

SH = ZoneInfo("Asia/Shanghai")
BOOT = uuid.UUID(int=7)


def ms(year: int, month: int, day: int, hour: int, minute: int) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=SH).timestamp() * 1000)


class Fleet:
    def __init__(self) -> None:
        self.seq: dict[str, int] = {}
        self.events: list[p.EventHeader] = []

    def header(self, window: str, ts: int, session: uuid.UUID | None) -> dict[str, Any]:
        self.seq[window] = self.seq.get(window, 0) + 1
        return {
            "event_id": uuid.uuid4(),
            "site": "qingpu",
            "window": window,
            "seq": self.seq[window],
            "boot_id": BOOT,
            "ts_ms": ts,
            "session_id": session,
        }

    def session(
        self,
        window: str,
        opened: int,
        *,
        stood: bool = True,
        smiled: bool = True,
        broad: bool = False,
        farewell: bool = True,
        see_off: int | None = 4000,
        rating: p.Rating | None = p.Rating.SATISFIED,
    ) -> p.SessionSummary:
        sid = uuid.uuid4()
        closed = opened + 300_000
        if rating is not None:
            self.events.append(p.Evaluated(**self.header(window, closed, sid), rating=rating))
        ev = p.SessionSummary(
            **self.header(window, closed + 5000, sid),
            opened_ms=opened,
            closed_ms=closed,
            closed_by="evaluation" if rating else "next_call",
            stood_on_call=stood,
            stand_after_ms=1500 if stood else None,
            smiled_at_greeting=smiled,
            smile_after_ms=2500 if smiled else None,
            smile_peak=0.99 if broad else 0.8,
            smile_too_broad=broad,
            stood_at_farewell=farewell,
            see_off_ms=see_off if farewell else None,
            rating=rating,
        )
        self.events.append(ev)
        return ev


R = p.Rating
DAY = ms(2026, 11, 2, 10, 0)  # Monday


def scenario() -> tuple[Fleet, dict[str, Any]]:
    f = Fleet()
    w03: list[p.SessionSummary] = []
    ratings = [R.VERY_SATISFIED] * 4 + [R.SATISFIED] * 2 + [R.BASIC, R.DISSATISFIED, None, None]
    for i in range(10):
        n = i + 1
        w03.append(
            f.session(
                "w03",
                DAY + i * 600_000,
                stood=n != 10,
                smiled=n not in (9, 10),
                broad=n == 1,
                farewell=n not in (8, 9, 10),
                see_off=2000 if n == 7 else 4000,
                rating=ratings[i],
            )
        )
    # two suspect presses, kept but not counted as evaluations
    for reason in ("no_session", "repeat"):
        f.events.append(
            p.Evaluated(
                **f.header("w03", DAY + 7_200_000, None),
                rating=R.VERY_SATISFIED,
                suspect=True,
                suspect_reason=reason,
            )
        )
    away_v = p.Away(
        **f.header("w03", DAY + 9_000_000, None),
        started_ms=DAY + 8_280_000,
        ended_ms=DAY + 9_000_000,  # 12 minutes
        with_sign=False,
        violation=True,
    )
    away_ok = p.Away(
        **f.header("w03", DAY + 11_000_000, None),
        started_ms=DAY + 9_800_000,
        ended_ms=DAY + 11_000_000,
        with_sign=True,
        violation=False,
    )
    f.events += [away_v, away_ok]
    for i in range(3):
        f.session("w04", DAY + i * 600_000)
    for i in range(30):
        f.session("w05", DAY + i * 600_000, stood=i >= 3)
    bad_eval = next(
        e for e in f.events if isinstance(e, p.Evaluated) and e.rating is R.DISSATISFIED
    )
    return f, {"w03": w03, "away": away_v, "bad_eval": bad_eval}


@pytest.fixture
def loaded(store: Store) -> tuple[Store, dict[str, Any]]:
    store.add_clerk("c-li", "李敏", "qingpu")
    store.add_clerk("c-wang", "王芳", "qingpu")
    store.add_clerk("c-zhao", "赵磊", "qingpu")
    nov1 = ms(2026, 11, 1, 0, 0)
    store.sign_in("c-li", "qingpu", "w03", nov1)
    store.sign_in("c-wang", "qingpu", "w04", nov1)
    f, refs = scenario()
    received = [StoredEvent(e, e.ts_ms + 50) for e in f.events]
    store.insert_events(received[: len(received) // 2])
    # c-zhao signs in after half the events are stored: attribution must catch up
    store.sign_in("c-zhao", "qingpu", "w05", nov1)
    store.insert_events(received[len(received) // 2 :])
    assert store.insert_events(received) == []  # every duplicate skipped
    return store, refs


def test_window_measures(loaded: tuple[Store, dict[str, Any]]) -> None:
    store, _ = loaded
    start, end = period_bounds("2026-11")
    m = compute(
        store.engine, Scope(site="qingpu", window="w03"), start, end, now_ms=ms(2026, 11, 30, 12, 0)
    )[None]
    assert m.sessions == 10
    assert m.stand_on_call_rate == 0.9
    assert m.smile_at_greeting_rate == 0.8
    assert m.farewell_stand_rate == 0.7
    assert m.see_off_rate == 0.6
    assert m.too_broad_smiles == 1
    assert m.evaluation_coverage == 0.8
    assert m.evaluations == 8
    assert m.ratings == {
        "very_satisfied": 4,
        "satisfied": 2,
        "basically_satisfied": 1,
        "dissatisfied": 1,
        "very_dissatisfied": 0,
    }
    assert m.good_review_rate == 0.875
    assert m.bad_reviews == 1
    assert m.suspect_presses == 2
    assert m.away_without_sign_min == 12.0
    assert m.away_violations == 1
    assert m.open_cases == 1
    assert m.overdue_cases == 1
    early = compute(store.engine, Scope(window="w03"), start, end, now_ms=ms(2026, 11, 20, 12, 0))
    assert early[None].overdue_cases == 0


def test_bad_review_case_clock_is_15_working_days(loaded: tuple[Store, dict[str, Any]]) -> None:
    # opened Mon 2 Nov 2026; 15 working days later is Mon 23 Nov, end of day
    assert (
        add_working_days(ms(2026, 11, 2, 10, 0), 15, "Asia/Shanghai")
        == ms(2026, 11, 23, 23, 59) + 59_999
    )
    store, refs = loaded
    assert store.close_case(
        str(refs["bad_eval"].event_id), "talked to citizen", ms(2026, 11, 5, 9, 0)
    )
    start, end = period_bounds("2026-11")
    m = compute(store.engine, Scope(window="w03"), start, end, now_ms=ms(2026, 11, 30, 12, 0))
    assert (m[None].open_cases, m[None].overdue_cases) == (0, 0)


def test_grouped_by_clerk_and_unit(loaded: tuple[Store, dict[str, Any]]) -> None:
    store, _ = loaded
    start, end = period_bounds("2026-Q4")
    by_clerk = compute(store.engine, Scope(), start, end, group_by="clerk")
    assert {k: v.sessions for k, v in by_clerk.items()} == {"c-li": 10, "c-wang": 3, "c-zhao": 30}
    assert by_clerk["c-zhao"].stand_on_call_rate == 0.9
    by_site = compute(store.engine, Scope(district="青浦区"), start, end, group_by="site")
    assert by_site["qingpu"].sessions == 43
    by_window = compute(store.engine, Scope(), start, end, group_by="window")
    assert by_window["qingpu/w04"].good_review_rate == 1.0
    # nothing in October
    oct_start, oct_end = period_bounds("2026-10")
    assert compute(store.engine, Scope(), oct_start, oct_end)[None].sessions == 0
    assert compute(store.engine, Scope(), oct_start, oct_end)[None].stand_on_call_rate is None


def test_monthly_verdict_with_evidence(loaded: tuple[Store, dict[str, Any]]) -> None:
    store, refs = loaded
    t = PassThresholds(min_sessions=5)
    v = verdict(store.engine, "c-li", "2026-11", t, now_ms=ms(2026, 11, 30, 12, 0))
    assert v["result"] == "fail"
    failed = {f["criterion"]: f for f in v["failures"]}
    assert set(failed) == {
        "smile_at_greeting_rate",
        "farewell_stand_rate",
        "good_review_rate",
        "overdue_cases",
    }
    w03 = refs["w03"]
    assert set(failed["smile_at_greeting_rate"]["evidence"]) == {
        str(w03[8].event_id),
        str(w03[9].event_id),
    }
    assert set(failed["farewell_stand_rate"]["evidence"]) == {
        str(w03[i].event_id) for i in (7, 8, 9)
    }
    assert failed["good_review_rate"]["evidence"] == [str(refs["bad_eval"].event_id)]
    assert verdict(store.engine, "c-wang", "2026-11", t)["result"] == "insufficient_data"
    assert (
        verdict(store.engine, "c-wang", "2026-11", PassThresholds(min_sessions=3))["result"]
        == "pass"
    )
    zhao = verdict(store.engine, "c-zhao", "2026-11", t)
    assert zhao["result"] == "pass"  # 27/30 = 0.9 meets 0.90 exactly
    pr = probation(store.engine, "c-li", "2026-12", t)
    assert pr["status"] == "on_probation" and pr["previous"] == "fail"


def test_smile_star_is_fair_to_small_samples(loaded: tuple[Store, dict[str, Any]]) -> None:
    # hand-computed Wilson 95 % lower bounds
    assert wilson_lower_bound(27, 30) == pytest.approx(0.7438, abs=1e-4)
    assert wilson_lower_bound(3, 3) == pytest.approx(0.4385, abs=1e-4)
    assert wilson_lower_bound(5, 10) == pytest.approx(0.2366, abs=1e-4)
    store, _ = loaded
    start, end = period_bounds("2026-11")
    ranking = smile_star_ranking(store.engine, Scope(site="qingpu"), start, end, min_sessions=3)
    assert [(r["clerk_id"], r["exemplary"], r["sessions"], r["rank"]) for r in ranking] == [
        ("c-zhao", 27, 30, 1),  # 90 % of 30 beats 100 % of 3
        ("c-wang", 3, 3, 2),
        ("c-li", 6, 10, 3),  # the "too broad" session counts: the flag is not validated
    ]
    strict = smile_star_ranking(store.engine, Scope(site="qingpu"), start, end, min_sessions=5)
    assert [r["rank"] for r in strict] == [1, 2, None]
    # Only once a centre turns the flag on (a validated intensity) does it drop a session.
    flagged = smile_star_ranking(
        store.engine, Scope(site="qingpu"), start, end, min_sessions=3, too_broad_counts=True
    )
    assert [(r["clerk_id"], r["exemplary"]) for r in flagged][2] == ("c-li", 5)


def test_sequence_gaps_reported(store: Store) -> None:
    f = Fleet()
    evs = [f.session("w06", DAY + i * 1000) for i in range(5)]  # seqs 1..10
    keep = [e for e in f.events if e.seq not in (4, 5, 9)]
    store.insert_events([StoredEvent(e, 0) for e in keep])
    assert store.sequence_gaps() == [
        {"site": "qingpu", "window": "w06", "from_seq": 4, "to_seq": 5},
        {"site": "qingpu", "window": "w06", "from_seq": 9, "to_seq": 9},
    ]
    assert len(evs) == 5


def test_migrations_match_models(store: Store) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from server.store.schema import metadata

    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_retention_keeps_open_cases(loaded: tuple[Store, dict[str, Any]]) -> None:
    store, _ = loaded
    total = store.event_count()
    later = ms(2026, 11, 30, 0, 0) + 401 * 86_400_000
    assert store.apply_retention(later)["events"] == total
    assert store.event_count() == 0
    much_later = ms(2026, 11, 30, 0, 0) + 3 * 366 * 86_400_000 + 86_400_000
    removed = store.apply_retention(much_later)
    assert removed["sessions"] == 43 and removed["cases"] == 0
    assert len(store.list_cases("open")) == 1


def test_rollups_agree_with_the_projection_tables(loaded: tuple[Store, dict[str, Any]]) -> None:
    """Whole-day periods read the daily and monthly rollups (kept in the ingest
    transaction and re-attributed by the late sign-in above); they must say what the
    projection tables say, the ranking too, and a rebuild from those tables must give
    the same rows (tests/server/test_periods.py: across months and years)."""
    from sqlalchemy import select

    from server.store.schema import daily_rollups, monthly_rollups

    store, _ = loaded
    day = datetime.fromtimestamp(DAY / 1000, SH).strftime("%Y-%m-%d")
    cases: list[tuple[Scope, Any]] = [
        (Scope(), None),
        (Scope(), "clerk"),
        (Scope(), "window"),
        (Scope(district="青浦区"), "site"),
        (Scope(), "district"),
        (Scope(site="qingpu", window="w03"), None),
        (Scope(clerk_id="c-zhao"), None),
    ]
    for period in ("2026-11", "2026-Q4", "2026", day):
        start, end = period_bounds(period)
        for scope, by in cases:
            fast = compute(store.engine, scope, start, end, group_by=by)
            slow = compute(store.engine, scope, start, end, group_by=by, rollups=False)
            assert {k: m.as_dict() for k, m in fast.items()} == {
                k: m.as_dict() for k, m in slow.items()
            }, (period, scope, by)
        for flag in (False, True):
            args = (store.engine, Scope(site="qingpu"), start, end)
            assert smile_star_ranking(*args, min_sessions=3, too_broad_counts=flag) == (
                smile_star_ranking(*args, min_sessions=3, too_broad_counts=flag, rollups=False)
            ), (period, flag)
    assert compute(store.engine, Scope(), *period_bounds("2026-11"))[None].sessions == 43
    by_district = compute(store.engine, Scope(), *period_bounds("2026-11"), group_by="district")
    assert {k: m.sessions for k, m in by_district.items()} == {"青浦区": 43}

    def rows(table: Any = daily_rollups) -> list[Any]:
        with store.engine.connect() as conn:
            return sorted(tuple(r) for r in conn.execute(select(table)))

    kept, months = rows(), rows(monthly_rollups)
    assert {r[3] for r in kept} == {"c-li", "c-wang", "c-zhao"}  # nobody left unattributed
    # November's one day of sessions is November's month, row for row
    assert [r[:1] + r[2:] for r in months] == [r[:1] + r[2:] for r in kept]
    assert {r[1] for r in months} == {period_bounds("2026-11")[0]}
    assert store.rebuild_rollups() == len(kept)
    assert rows() == kept and rows(monthly_rollups) == months


def test_part_of_a_day_reads_the_projection_tables(loaded: tuple[Store, dict[str, Any]]) -> None:
    store, _ = loaded
    # w05's sessions start every 10 minutes from DAY; from DAY + 50 min on there are 25
    m = compute(store.engine, Scope(site="qingpu", window="w05"), DAY + 3_000_000, DAY + 86_400_000)
    assert m[None].sessions == 25


def test_retention_trims_audit_log_acked_alerts_closed_roster_and_dead_letters(
    loaded: tuple[Store, dict[str, Any]],
) -> None:
    """The audit log after 3 years, acknowledged alerts and ended roster rows after the
    measures' retention (each configurable), dead letters after 90 days; open alerts and
    roster rows still running are kept however old."""
    from sqlalchemy import func, select

    from server.store.db import DeadLetter
    from server.store.schema import alerts, audit_log, roster

    store, _ = loaded
    day = 86_400_000
    t0 = ms(2026, 11, 30, 0, 0)
    store.sign_in("c-li", "qingpu", "w06", ms(2026, 10, 1, 9, 0), ms(2026, 10, 1, 17, 0))
    with store.engine.begin() as conn:
        conn.execute(
            audit_log.insert(),
            [
                {"ts_ms": t0 - 10 * day, "username": "admin", "action": "case.close"},
                {"ts_ms": t0, "username": "admin", "action": "alert.ack"},
            ],
        )
    open_alerts = store.list_alerts()
    assert len(open_alerts) >= 2
    acked = str(open_alerts[0]["alert_id"])
    assert store.ack_alert(acked, "admin", "seen", t0)
    store.set_aside([DeadLetter.of("ww/v1/qingpu/w01/event", b"{}", "DataError: x", t0)])

    def count(table: Any) -> int:
        with store.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar_one())

    alerts_before, roster_before = count(alerts), count(roster)
    soon = store.apply_retention(t0 + 30 * day)
    assert (soon["audit_log"], soon["alerts"], soon["roster"], soon["dead_letters"]) == (0,) * 4
    later = store.apply_retention(t0 + 91 * day)
    assert (later["dead_letters"], later["alerts"], later["audit_log"]) == (1, 0, 0)
    assert store.dead_letters() == []
    # a shorter alert and roster retention, asked for
    short = store.apply_retention(t0 + 100 * day, alerts_days=60, roster_days=60)
    assert (short["alerts"], short["roster"], short["audit_log"]) == (1, 1, 0)
    assert count(alerts) == alerts_before - 1 and count(roster) == roster_before - 1
    assert acked not in {a["alert_id"] for a in store.list_alerts()}
    # by default: 3 years of audit log; open alerts and running sign-ins stay
    much_later = t0 + 3 * 366 * day - 5 * day  # the entry of 10 days before t0 goes
    removed = store.apply_retention(much_later)
    assert removed["audit_log"] == 1 and count(audit_log) == 1
    assert removed["alerts"] == 0 and count(alerts) == alerts_before - 1
    assert removed["roster"] == 0 and count(roster) == roster_before - 1
    assert store.apply_retention(much_later + 20 * day)["audit_log"] == 1
