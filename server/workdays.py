"""China's official working days, for the 15-working-day bad-review rectification clock.

Which days are working days in mainland China is decided every year by the State
Council's notice on public holidays (国务院办公厅关于××××年部分节假日安排的通知): the
statutory holidays, and the adjusted working weekends (调休上班) that pay for the bridge
days. ``WorkCalendar`` answers for a day from, in this order:

1. an **override file** (TOML, ``firmware_config/calendar/cn-workdays.toml`` unless the
   server is given another): for a year it lists, its holidays and working days are the
   calendar, and the library is not asked about that year;
2. the **chinesecalendar** library (``chinese_calendar``), which ships each notice in a
   release (1.11.0: 2004 to 2026) and raises ``NotImplementedError`` for other years;
3. **nothing**: a day of a year neither knows counts Monday to Friday, and a due date
   whose span held such a day is *provisional* (``Due.provisional``). Its case carries
   the flag (``cases.due_provisional``) so the pages warn, and
   ``Store.refresh_provisional_dues`` counts it again once the year is known.

>>> cal = WorkCalendar()
>>> from datetime import date
>>> cal.is_workday(date(2026, 10, 10)), cal.is_workday(date(2026, 10, 5))  # 调休 Saturday
(True, False)

The override file, one table per year (dates are TOML local dates)::

    [2027]
    source = "国务院办公厅关于2027年部分节假日安排的通知 (国办发明电〔2026〕…号), <date>"
    holidays = [2027-01-01, ...]   # days off, weekdays or not
    workdays = [2027-02-20, ...]   # weekend days that are working days (调休)
"""

from __future__ import annotations

import threading
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Final, NamedTuple
from zoneinfo import ZoneInfo

import chinese_calendar

#: The override file of this repository (absent from an installed wheel: library only).
BUNDLED_OVERRIDES: Final = (
    Path(__file__).resolve().parents[1] / "firmware_config" / "calendar" / "cn-workdays.toml"
)

#: ``official(day)``: is it a working day; raises ``NotImplementedError`` for a year it
#: has no notice of (``chinese_calendar.is_workday``).
Official = Callable[[date], bool]


class CalendarError(ValueError):
    """An override file that cannot be used, naming the file and the year."""


class Due(NamedTuple):
    """The end (23:59:59.999 local) of the last working day, UTC ms, and whether a day
    on the way was counted Monday to Friday because no calendar knew its year."""

    ms: int
    provisional: bool


@dataclass(frozen=True, slots=True)
class YearDays:
    """One year's official calendar from the override file."""

    year: int
    holidays: frozenset[date]
    workdays: frozenset[date]
    source: str

    def is_workday(self, d: date) -> bool:
        return d in self.workdays or (d.isoweekday() <= 5 and d not in self.holidays)


class WorkCalendar:
    """Official working days: the override years, then ``official`` (the library)."""

    def __init__(
        self,
        years: Iterable[YearDays] = (),
        *,
        official: Official | None = chinese_calendar.is_workday,
        path: Path | None = None,
    ) -> None:
        self.years: Mapping[int, YearDays] = {y.year: y for y in years}
        self.path = path
        self._official = official
        self._library_years: dict[int, bool] = {}

    @classmethod
    def load(
        cls, path: Path | None, *, official: Official | None = chinese_calendar.is_workday
    ) -> WorkCalendar:
        """The library plus the override file at ``path`` (None: the library alone)."""
        return cls(read_overrides(path) if path is not None else (), official=official, path=path)

    def knows(self, year: int) -> bool:
        """Does the override file or the library hold the official calendar of ``year``?"""
        return year in self.years or self._library_knows(year)

    def is_workday(self, d: date) -> bool | None:
        """Whether ``d`` is an official working day; None when no calendar knows its year."""
        if d.year in self.years:
            return self.years[d.year].is_workday(d)
        if not self._library_knows(d.year):
            return None
        assert self._official is not None
        return bool(self._official(d))

    def add_working_days(self, ts_ms: int, days: int, tz: str) -> Due:
        """The end (23:59:59.999 in ``tz``) of the ``days``-th working day after the local
        day of ``ts_ms`` (that day itself does not count)."""
        zone = ZoneInfo(tz)
        d = datetime.fromtimestamp(ts_ms / 1000, zone).date()
        left, provisional = days, False
        while left > 0:
            d += timedelta(days=1)
            official = self.is_workday(d)
            if official is None:
                provisional = True
                official = d.isoweekday() <= 5
            if official:
                left -= 1
        end = datetime.combine(d, time(23, 59, 59, 999_000), zone)
        return Due(int(end.timestamp() * 1000), provisional)

    def _library_knows(self, year: int) -> bool:
        known = self._library_years.get(year)
        if known is None:
            known = self._official is not None and _answers(self._official, year)
            self._library_years[year] = known
        return known


def _answers(official: Official, year: int) -> bool:
    try:
        official(date(year, 1, 1))
    except NotImplementedError:
        return False
    return True


def read_overrides(path: Path) -> list[YearDays]:
    """The years of an override file, checked: a year per table, a ``source``, dates of
    that year only, and no day both a holiday and a working day."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CalendarError(f"{path}: {exc}") from exc
    return [_year(path, key, table) for key, table in doc.items()]


def _year(path: Path, key: str, table: Any) -> YearDays:
    where = f"{path}: [{key}]"
    if not (key.isdigit() and len(key) == 4) or not isinstance(table, dict):
        raise CalendarError(f"{where}: each table is a year, e.g. [2027]")
    unknown = set(table) - {"source", "holidays", "workdays"}
    if unknown:
        raise CalendarError(f"{where}: unknown keys {sorted(unknown)}")
    source = table.get("source")
    if not isinstance(source, str) or not source.strip():
        raise CalendarError(f"{where}: 'source' (the notice the dates come from) is required")
    year = int(key)
    holidays = _dates(where, "holidays", table.get("holidays", []), year)
    workdays = _dates(where, "workdays", table.get("workdays", []), year)
    both = holidays & workdays
    if both:
        raise CalendarError(f"{where}: both a holiday and a working day: {sorted(both)}")
    return YearDays(year, holidays, workdays, source.strip())


def _dates(where: str, name: str, value: Any, year: int) -> frozenset[date]:
    # datetime is a date too; a date-time here is a mistake in the file.
    if not isinstance(value, list) or any(type(v) is not date for v in value):
        raise CalendarError(f"{where}: '{name}' is a list of dates like 2027-01-01")
    stray = [v for v in value if v.year != year]
    if stray:
        raise CalendarError(f"{where}: '{name}' holds dates of another year: {stray}")
    return frozenset(value)


_default: WorkCalendar | None = None
_default_lock = threading.Lock()


def default_calendar() -> WorkCalendar:
    """The calendar cases are counted with: the one ``use_calendar`` set, else the library
    and this repository's override file (read once, on first use)."""
    global _default
    with _default_lock:
        if _default is None:
            bundled = BUNDLED_OVERRIDES if BUNDLED_OVERRIDES.is_file() else None
            _default = WorkCalendar.load(bundled)
        return _default


def use_calendar(calendar: WorkCalendar | None) -> None:
    """Count cases with ``calendar`` from now on (None: back to the bundled default);
    the server sets it at start from its configured override file."""
    global _default
    with _default_lock:
        _default = calendar


def use_calendar_file(path: Path | None) -> WorkCalendar:
    """Load the override file at ``path`` (None: the bundled one) and count cases with it;
    a bad file raises ``CalendarError`` here, at start, not at the first bad review."""
    calendar = WorkCalendar.load(path) if path is not None else None
    use_calendar(calendar)
    return default_calendar()


def add_working_days(ts_ms: int, days: int, tz: str, calendar: WorkCalendar | None = None) -> int:
    """``(calendar or default_calendar()).add_working_days(...).ms``: the due time alone."""
    return (calendar or default_calendar()).add_working_days(ts_ms, days, tz).ms
