"""Working-day arithmetic for the 15-working-day bad-review rectification clock."""

from __future__ import annotations

from collections.abc import Collection
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo


def add_working_days(ts_ms: int, days: int, tz: str, holidays: Collection[date] = ()) -> int:
    """End (23:59:59.999 local) of the ``days``-th working day after ``ts_ms``.

    Working days are Monday to Friday minus ``holidays`` (the State Council's holiday
    calendar changes yearly; centres pass it in).
    """
    zone = ZoneInfo(tz)
    d = datetime.fromtimestamp(ts_ms / 1000, zone).date()
    left = days
    while left > 0:
        d += timedelta(days=1)
        if d.isoweekday() <= 5 and d not in holidays:
            left -= 1
    end = datetime.combine(d, time(23, 59, 59, 999_000), zone)
    return int(end.timestamp() * 1000)
