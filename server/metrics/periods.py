"""Periods in a centre's local time: "2026-11-27" (day), "2026-11" (month), "2026-Q4"."""

from __future__ import annotations

import re
from datetime import date, datetime, time
from zoneinfo import ZoneInfo


def _ms(d: date, tz: ZoneInfo) -> int:
    return int(datetime.combine(d, time(0), tz).timestamp() * 1000)


def period_bounds(period: str, tz: str = "Asia/Shanghai") -> tuple[int, int]:
    """Half-open [start_ms, end_ms) of a day, month or quarter; ValueError otherwise."""
    zone = ZoneInfo(tz)
    if m := re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})", period):
        d = date(int(m[1]), int(m[2]), int(m[3]))
        return _ms(d, zone), _ms(date.fromordinal(d.toordinal() + 1), zone)
    if m := re.fullmatch(r"(\d{4})-(\d{2})", period):
        y, mo = int(m[1]), int(m[2])
        if not 1 <= mo <= 12:
            raise ValueError(f"bad month in {period!r}")
        nxt = date(y + 1, 1, 1) if mo == 12 else date(y, mo + 1, 1)
        return _ms(date(y, mo, 1), zone), _ms(nxt, zone)
    if m := re.fullmatch(r"(\d{4})-Q([1-4])", period):
        y, q = int(m[1]), int(m[2])
        start = date(y, 3 * q - 2, 1)
        end = date(y + 1, 1, 1) if q == 4 else date(y, 3 * q + 1, 1)
        return _ms(start, zone), _ms(end, zone)
    raise ValueError(f"period must be YYYY-MM-DD, YYYY-MM or YYYY-Qn, not {period!r}")


def previous_month(period: str) -> str:
    y, m = (int(x) for x in period.split("-"))
    return f"{y - 1}-12" if m == 1 else f"{y}-{m - 1:02d}"
