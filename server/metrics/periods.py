"""Periods in a centre's local time: "2026-11-27" (day), "2026-11" (month), "2026-Q4"
(quarter) and "2026" (year)."""

from __future__ import annotations

import re
from datetime import date, datetime, time
from zoneinfo import ZoneInfo


def _ms(d: date, tz: ZoneInfo) -> int:
    return int(datetime.combine(d, time(0), tz).timestamp() * 1000)


def period_dates(period: str) -> tuple[date, date]:
    """The local days [first, after-last) a period names; ValueError if it names none."""
    if m := re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})", period):
        d = date(int(m[1]), int(m[2]), int(m[3]))
        return d, date.fromordinal(d.toordinal() + 1)
    if m := re.fullmatch(r"(\d{4})-(\d{2})", period):
        y, mo = int(m[1]), int(m[2])
        if not 1 <= mo <= 12:
            raise ValueError(f"bad month in {period!r}")
        return date(y, mo, 1), date(y + 1, 1, 1) if mo == 12 else date(y, mo + 1, 1)
    if m := re.fullmatch(r"(\d{4})-Q([1-4])", period):
        y, q = int(m[1]), int(m[2])
        return date(y, 3 * q - 2, 1), date(y + 1, 1, 1) if q == 4 else date(y, 3 * q + 1, 1)
    if m := re.fullmatch(r"(\d{4})", period):
        y = int(m[1])
        return date(y, 1, 1), date(y + 1, 1, 1)  # year 9999 has no next: ValueError
    raise ValueError(f"period must be YYYY-MM-DD, YYYY-MM, YYYY-Qn or YYYY, not {period!r}")


def period_bounds(period: str, tz: str = "Asia/Shanghai") -> tuple[int, int]:
    """Half-open [start_ms, end_ms) of a day, month, quarter or year; ValueError otherwise."""
    zone = ZoneInfo(tz)
    first, after = period_dates(period)
    return _ms(first, zone), _ms(after, zone)


def previous_month(period: str) -> str:
    y, m = (int(x) for x in period.split("-"))
    return f"{y - 1}-12" if m == 1 else f"{y}-{m - 1:02d}"


def next_month(period: str) -> str:
    y, m = (int(x) for x in period.split("-"))
    return f"{y + 1}-01" if m == 12 else f"{y}-{m + 1:02d}"
