"""The bad-review case clock: 15 official working days, overdue only after them.

The 2026 dates below are those of the State Council's notice 国务院办公厅关于2026年部分节假日
安排的通知 (4 November 2025, www.gov.cn / Xinhua), as chinesecalendar 1.11.0 holds them
(checked in ``test_the_library_holds_the_2026_autumn_holidays``):

* 中秋节 Mid-Autumn: Friday 25 to Sunday 27 September off;
* 国庆节 National Day: Thursday 1 to Wednesday 7 October off; Sunday 20 September and
  Saturday 10 October are working days (调休上班).

The 2027 dates of the override files here are made up for the tests (no 2027 notice is
known to this repository): they only show what a year in the file does.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agent import protocol as p
from server.metrics.assessment import PassThresholds, verdict
from server.metrics.measures import Scope, compute
from server.metrics.periods import period_bounds
from server.policy.clock import OpenCase, overdue_cases
from server.policy.events import CASE_WORKING_DAYS, case_due, derive
from server.store.db import Store, StoredEvent
from server.workdays import (
    BUNDLED_OVERRIDES,
    CalendarError,
    WorkCalendar,
    default_calendar,
    read_overrides,
    use_calendar,
)

TZ = "Asia/Shanghai"
SH = ZoneInfo(TZ)
BOOT = uuid.UUID(int=11)

#: Illustrative 2027 override (NOT the 2027 notice): New Year's Day off, Saturday
#: 9 January a working day.
OVERRIDE_2027 = """
[2027]
source = "test fixture, not an official notice"
holidays = [2027-01-01]
workdays = [2027-01-09]
"""


def ms(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> int:
    return int(datetime(y, mo, d, h, mi, tzinfo=SH).timestamp() * 1000)


def end_of(y: int, mo: int, d: int) -> int:
    """23:59:59.999 Shanghai time of that day: when a case due that day falls due."""
    return ms(y, mo, d) + 86_400_000 - 1


def local_day(t_ms: int) -> date:
    return datetime.fromtimestamp(t_ms / 1000, SH).date()


@pytest.fixture
def library_only() -> Iterator[WorkCalendar]:
    """Cases counted with chinesecalendar alone (no override file) during the test."""
    cal = WorkCalendar()
    use_calendar(cal)
    yield cal
    use_calendar(None)


@pytest.fixture
def override_2027(tmp_path: Path) -> WorkCalendar:
    path = tmp_path / "cn-workdays.toml"
    path.write_text(OVERRIDE_2027, encoding="utf-8")
    return WorkCalendar.load(path)


_seq = iter(range(1, 1_000_000))


def bad_review(at_ms: int, window: str = "w03") -> p.Evaluated:
    return p.Evaluated(
        event_id=uuid.uuid4(),
        site="qingpu",
        window=window,
        seq=next(_seq),
        boot_id=BOOT,
        ts_ms=at_ms,
        rating=p.Rating.DISSATISFIED,
    )


def store_reviews(store: Store, *reviews: p.Evaluated) -> list[dict[str, Any]]:
    store.insert_events([StoredEvent(r, r.ts_ms + 50) for r in reviews])
    ids = {str(r.event_id) for r in reviews}
    return [c for c in store.list_cases() if c["case_id"] in ids]


# ---------------------------------------------------------------- the official calendar


def test_the_library_holds_the_2026_autumn_holidays() -> None:
    cal = WorkCalendar()
    off = [date(2026, 9, d) for d in (25, 26, 27)] + [date(2026, 10, d) for d in range(1, 8)]
    assert [cal.is_workday(d) for d in off] == [False] * len(off)
    # the adjusted working weekends: Sunday 20 September, Saturday 10 October
    assert date(2026, 9, 20).isoweekday() == 7 and cal.is_workday(date(2026, 9, 20))
    assert date(2026, 10, 10).isoweekday() == 6 and cal.is_workday(date(2026, 10, 10))
    assert cal.is_workday(date(2026, 10, 8)) and not cal.is_workday(date(2026, 10, 11))
    assert cal.knows(2026) and not cal.knows(2027)
    assert cal.is_workday(date(2027, 1, 4)) is None


def test_a_case_opened_the_friday_before_the_holidays_is_due_by_the_official_calendar() -> None:
    """Opened Friday 18 September 2026, 10:00. Its 15 working days: Sun 20 (调休), Mon 21
    to Thu 24 (5), [Mid-Autumn 25-27 off], Mon 28 to Wed 30 (8), [National Day 1-7 Oct
    off], Thu 8, Fri 9, Sat 10 (调休) (11), [Sun 11 off], Mon 12 to Thu 15 (15): due at
    the end of Thursday 15 October. Monday to Friday alone would say Friday 9 October."""
    opened = ms(2026, 9, 18, 10, 0)
    assert local_day(opened).isoweekday() == 5
    due = case_due(opened, TZ, WorkCalendar())
    assert (due.ms, due.provisional) == (end_of(2026, 10, 15), False)
    mon_fri = WorkCalendar(official=None).add_working_days(opened, CASE_WORKING_DAYS, TZ)
    assert (mon_fri.ms, mon_fri.provisional) == (end_of(2026, 10, 9), True)


def test_a_case_opened_on_the_mid_autumn_friday_before_national_day() -> None:
    """Opened Friday 25 September 2026 (itself a holiday): Mon 28 to Wed 30 (3), [1-7 Oct
    off], Thu 8, Fri 9, Sat 10 (调休) (6), Mon 12 to Fri 16 (11), Mon 19 to Thu 22 (15):
    due at the end of Thursday 22 October."""
    due = case_due(ms(2026, 9, 25, 15, 30), TZ, WorkCalendar())
    assert (due.ms, due.provisional) == (end_of(2026, 10, 22), False)


def test_derive_opens_the_case_with_the_official_due_time(library_only: WorkCalendar) -> None:
    bad = bad_review(ms(2026, 9, 18, 10, 0))
    [case] = derive([bad], {"qingpu": TZ}, lambda site, window, t: None).cases
    assert (case["due_ms"], case["due_provisional"]) == (end_of(2026, 10, 15), False)
    # the same with the calendar passed in, not the default one
    [again] = derive([bad], {"qingpu": TZ}, lambda *a: None, calendar=WorkCalendar()).cases
    assert again == case


# ---------------------------------------------------------------- overdue only after the due time


def test_no_case_inside_its_working_days_is_overdue_and_one_just_after_is(
    store: Store, library_only: WorkCalendar
) -> None:
    """Cases opened 18 Sep (due 15 Oct), 25 Sep (due 22 Oct) and Friday 9 Oct (Sat 10 is
    a working day: due Thursday 29 Oct)."""
    cases = store_reviews(
        store,
        bad_review(ms(2026, 9, 18, 10, 0), "w01"),
        bad_review(ms(2026, 9, 25, 15, 30), "w02"),
        bad_review(ms(2026, 10, 9, 9, 0), "w03"),
    )
    dues = sorted(c["due_ms"] for c in cases)
    assert dues == [end_of(2026, 10, 15), end_of(2026, 10, 22), end_of(2026, 10, 29)]
    assert not any(c["due_provisional"] for c in cases)
    start, end = period_bounds("2026-10")
    open_cases = [
        OpenCase(c["case_id"], c["site"], c["window"], c["due_ms"], c["status"]) for c in cases
    ]

    def overdue(now: int) -> tuple[int, int]:
        m = compute(store.engine, Scope(site="qingpu"), start, end, now_ms=now)[None]
        assert len(overdue_cases(now, open_cases)) == m.overdue_cases  # sweep and measures agree
        return m.open_cases, m.overdue_cases

    # 12 Oct: past the Monday-to-Friday count of the first case (9 Oct), inside the official one
    assert overdue(ms(2026, 10, 12, 12, 0)) == (3, 0)
    assert overdue(dues[0]) == (3, 0)  # due at this very ms: not yet
    assert overdue(dues[0] + 1) == (3, 1)  # just after the end of 15 October
    assert overdue(dues[1] + 1) == (3, 2)
    assert overdue(ms(2026, 11, 2, 9, 0)) == (3, 3)


def test_a_month_in_progress_counts_no_fresh_case_as_overdue(store: Store) -> None:
    """The demo's first day: with no time given, the measures and the verdict count
    overdue as of now, not as of the end of the month."""
    now = p.now_ms()
    month = datetime.fromtimestamp(now / 1000, SH).strftime("%Y-%m")
    start, end = period_bounds(month)
    opened = max(start, now - 3_600_000)
    store.add_clerk("c-li", "李娜", "qingpu")
    store.sign_in("c-li", "qingpu", "w03", start)
    session = p.SessionSummary(
        event_id=uuid.uuid4(),
        site="qingpu",
        window="w03",
        seq=next(_seq),
        boot_id=BOOT,
        ts_ms=opened,
        session_id=uuid.uuid4(),
        opened_ms=opened - 300_000,
        closed_ms=opened - 1_000,
        closed_by="finish_key",
        stood_on_call=True,
        smiled_at_greeting=True,
        stood_at_farewell=True,
        see_off_ms=4000,
    )
    store.insert_events([StoredEvent(session, opened)])
    [case] = store_reviews(store, bad_review(opened))
    assert case["due_ms"] > now
    m = compute(store.engine, Scope(site="qingpu"), start, end)[None]
    assert (m.open_cases, m.overdue_cases) == (1, 0)
    v = verdict(store.engine, "c-li", month, PassThresholds(min_sessions=1))
    assert v["measures"]["overdue_cases"] == 0
    assert "overdue_cases" not in {f["criterion"] for f in v["failures"]}


# ---------------------------------------------------------------- years the library does not know


def test_the_override_file_gives_2027(override_2027: WorkCalendar) -> None:
    """Opened Friday 18 December 2026: 21-25 Dec (5), 28-31 Dec (9), [1 Jan off by the
    file], Mon 4 to Fri 8 Jan (14), Sat 9 Jan (a working day by the file) (15)."""
    assert override_2027.knows(2027)
    assert override_2027.is_workday(date(2027, 1, 1)) is False
    assert override_2027.is_workday(date(2027, 1, 9)) is True
    assert override_2027.is_workday(date(2027, 1, 10)) is False  # a plain Sunday
    due = case_due(ms(2026, 12, 18, 10, 0), TZ, override_2027)
    assert (due.ms, due.provisional) == (end_of(2027, 1, 9), False)


def test_the_override_file_wins_over_the_library_for_its_years(tmp_path: Path) -> None:
    path = tmp_path / "cal.toml"
    path.write_text('[2026]\nsource = "a correction"\nholidays = [2026-10-12]\n')
    cal = WorkCalendar.load(path)
    assert cal.is_workday(date(2026, 10, 12)) is False
    # a year in the file is the file alone: 10 October is a Saturday again
    assert cal.is_workday(date(2026, 10, 10)) is False


def test_a_due_time_reaching_a_year_nobody_knows_is_provisional() -> None:
    """Library only. Opened Thursday 10 December 2026: due Thursday 31 December, all in
    2026. Opened Friday 11 December: the 15th day falls in 2027, counted Monday to Friday
    (Friday 1 January 2027 counts), so due Friday 1 January and provisional."""
    cal = WorkCalendar()
    assert case_due(ms(2026, 12, 10, 10, 0), TZ, cal) == (end_of(2026, 12, 31), False)
    assert case_due(ms(2026, 12, 11, 10, 0), TZ, cal) == (end_of(2027, 1, 1), True)
    assert case_due(ms(2026, 12, 18, 10, 0), TZ, cal) == (end_of(2027, 1, 8), True)


def test_the_store_keeps_the_flag_and_counts_again_once_the_year_is_known(
    store: Store, library_only: WorkCalendar, override_2027: WorkCalendar
) -> None:
    known, unknown = bad_review(ms(2026, 12, 2, 10, 0)), bad_review(ms(2026, 12, 18, 10, 0))
    cases = {c["case_id"]: c for c in store_reviews(store, known, unknown)}
    k, u = cases[str(known.event_id)], cases[str(unknown.event_id)]
    assert (k["due_ms"], k["due_provisional"]) == (end_of(2026, 12, 23), False)
    assert (u["due_ms"], u["due_provisional"]) == (end_of(2027, 1, 8), True)
    # nothing new known yet: nothing changes
    assert store.refresh_provisional_dues() == []
    # the year becomes known (the override file, or a newer chinesecalendar)
    assert store.refresh_provisional_dues(override_2027) == [u["case_id"]]
    after = {c["case_id"]: c for c in store.list_cases(status="open")}
    assert (after[u["case_id"]]["due_ms"], after[u["case_id"]]["due_provisional"]) == (
        end_of(2027, 1, 9),
        False,
    )
    assert after[k["case_id"]] == k
    assert store.refresh_provisional_dues(override_2027) == []


def test_a_closed_provisional_case_is_left_as_it_was(
    store: Store, library_only: WorkCalendar, override_2027: WorkCalendar
) -> None:
    [case] = store_reviews(store, bad_review(ms(2026, 12, 18, 10, 0)))
    assert store.close_case(case["case_id"], "called back", ms(2026, 12, 21, 9, 0))
    assert store.refresh_provisional_dues(override_2027) == []
    [closed] = store.list_cases()
    assert (closed["due_ms"], closed["due_provisional"]) == (end_of(2027, 1, 8), True)


# ---------------------------------------------------------------- the override file itself


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("[2027]\nholidays = [2027-01-01]\n", "'source'"),
        ('[2027]\nsource = "x"\nholidays = [2028-01-01]\n', "another year"),
        ('[2027]\nsource = "x"\nholidays = [2027-01-01T00:00:00]\n', "list of dates"),
        ('[2027]\nsource = "x"\nholidays = [2027-01-02]\nworkdays = [2027-01-02]\n', "both"),
        ('[next]\nsource = "x"\n', "each table is a year"),
        ('[2027]\nsource = "x"\nholiday = [2027-01-01]\n', "unknown keys"),
        ("[2027\n", "cn-workdays.toml"),
    ],
)
def test_a_bad_override_file_is_refused_naming_it(
    tmp_path: Path, text: str, complaint: str
) -> None:
    path = tmp_path / "cn-workdays.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CalendarError, match=complaint) as err:
        WorkCalendar.load(path)
    assert str(path) in str(err.value)


def test_the_bundled_override_file_reads() -> None:
    assert BUNDLED_OVERRIDES.is_file()
    years = read_overrides(BUNDLED_OVERRIDES)
    assert all(y.source for y in years)
    assert default_calendar().path in (BUNDLED_OVERRIDES, None)


def test_counting_never_stops_short_of_the_working_days() -> None:
    """Every opening day of 2026 (library) gives exactly 15 official working days."""
    cal = WorkCalendar()
    d = date(2026, 1, 1)
    while d < date(2026, 12, 1):
        opened = ms(d.year, d.month, d.day, 12, 0)
        due = local_day(cal.add_working_days(opened, CASE_WORKING_DAYS, TZ).ms)
        days = [d + timedelta(days=i) for i in range(1, (due - d).days + 1)]
        assert sum(bool(cal.is_workday(x)) for x in days) == CASE_WORKING_DAYS
        assert cal.is_workday(due)
        d += timedelta(days=1)
