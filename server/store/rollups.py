"""Daily and monthly rollups: per window, clerk and local day (and month), the sums the
measures divide.

The daily increments are summed from the projection rows that were actually inserted
(so a duplicate never counts twice), in the ingest transaction; the monthly increments
are those daily increments summed per local month (``to_months``), written in the same
statement's transaction. ``rebuild`` recomputes the daily rows from the projections and
then each month it touched from its daily rows (after a migration that changes them, a
late sign-in's re-attribution, or ``warmwindow rollups``). So whatever decides what a
day counts (``from_projections`` and ``_day_query``) decides what a month counts too.
Measures over whole local months read the monthly rows, the whole days around them the
daily rows; any other range reads the projection tables (``server.metrics.measures``).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, time, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from sqlalchemy import BigInteger, Connection, and_, case, func, literal, or_, select, text, true
from sqlalchemy.dialects import sqlite

from agent.protocol import Rating
from server.policy.rows import UNOBSERVED
from server.store.schema import (
    ROLLUP_UNOBSERVED,
    away_periods,
    daily_rollups,
    evaluations,
    monthly_rollups,
    sessions,
    units,
)

#: H-PRIORITY's "served one-to-one": the session ended by its own evaluation or the finish
#: key, not cut short by the next call (nor by a timeout or a shutdown).
OWN_SESSION_ENDS: Final = ("evaluation", "finish_key")

#: The see-off threshold the rollup counts against (the measures' default).
ROLLUP_SEE_OFF_MS: Final = 3000
KEY: Final = ("site", "day_ms", "window", "clerk_id")
MONTH_KEY: Final = ("site", "month_ms", "window", "clerk_id")
SUMS: Final = tuple(c.name for c in daily_rollups.c if c.name not in KEY)
DAY_MS: Final = 86_400_000
#: A bad review (A-STAR: an exemplary session is not rated badly).
BAD_RATINGS: Final = (Rating.DISSATISFIED.value, Rating.VERY_DISSATISFIED.value)


@functools.lru_cache(maxsize=4096)
def _midnight(tz: str, hour_index: int) -> int:
    zone = ZoneInfo(tz)
    local = datetime.fromtimestamp(hour_index * 3600, UTC).astimezone(zone)
    return int(datetime.combine(local.date(), time(0), zone).timestamp() * 1000)


def day_start_ms(t_ms: int, tz: str) -> int:
    """UTC ms of the local midnight that starts ``t_ms``'s day in ``tz``."""
    return _midnight(tz, t_ms // 3_600_000)


def is_midnight(t_ms: int, tz: str) -> bool:
    return day_start_ms(t_ms, tz) == t_ms


@functools.lru_cache(maxsize=65536)
def month_start_ms(day_ms: int, tz: str) -> int:
    """UTC ms of the local midnight on the 1st of the month ``day_ms`` is in, in ``tz``."""
    zone = ZoneInfo(tz)
    first = datetime.fromtimestamp(day_ms / 1000, zone).date().replace(day=1)
    return _local_ms(first, zone)


def next_month_ms(month_ms: int, tz: str) -> int:
    """The month after the one that starts at ``month_ms``."""
    return month_start_ms(month_ms + 32 * DAY_MS, tz)


def is_month_start(t_ms: int, tz: str) -> bool:
    return is_midnight(t_ms, tz) and month_start_ms(t_ms, tz) == t_ms


def exemplary(see_off_ms: int, *, too_broad_counts: bool) -> Any:
    """A-STAR's exemplary session (SQL): stood, smiled, stood to see off long enough (a
    reception has no farewell: stand and smile first is what it asks), and not rated
    badly; not too broad as well only when ``too_broad_counts``. Counted only where every
    verdict was observed (``any_unobserved``): see ``_is_exemplary`` for the same in Python."""
    s = sessions
    return and_(
        s.c.stood_on_call,
        s.c.smiled_at_greeting,
        ~s.c.smile_too_broad if too_broad_counts else true(),
        s.c.stood_at_farewell.is_(None) | and_(s.c.stood_at_farewell, s.c.see_off_ms >= see_off_ms),
        s.c.greeted_first.is_(None) | s.c.greeted_first,
        s.c.rating.is_(None) | s.c.rating.not_in(BAD_RATINGS),
        ~any_unobserved(),
    )


def _is_exemplary(s: Mapping[str, Any], unseen: bool, *, too_broad_counts: bool) -> bool:
    """``exemplary`` for one projection row (the ingest's increments)."""
    farewell = s["stood_at_farewell"]
    greeted = s.get("greeted_first")
    return bool(
        not unseen
        and s["stood_on_call"]
        and s["smiled_at_greeting"]
        and not (too_broad_counts and s["smile_too_broad"])
        and (farewell is None or (farewell and (s["see_off_ms"] or 0) >= ROLLUP_SEE_OFF_MS))
        and (greeted is None or greeted)
        and (s["rating"] is None or s["rating"] not in BAD_RATINGS)
    )


def _blank(site: str, day: int, window: str, clerk: str | None) -> dict[str, Any]:
    return {"site": site, "day_ms": day, "window": window, "clerk_id": clerk or ""} | dict.fromkeys(
        SUMS, 0
    )


def from_projections(
    tz: dict[str, str],
    session_rows: Iterable[Mapping[str, Any]],
    evaluation_rows: Iterable[Mapping[str, Any]],
    away_rows: Iterable[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """Sum newly inserted projection rows into rollup increments, sorted by key (so
    replicas writing the same rows lock them in one order and cannot deadlock)."""
    out: dict[tuple[str, int, str, str], dict[str, Any]] = {}

    def row(site: str, window: str, clerk: str | None, t_ms: int) -> dict[str, Any]:
        day = day_start_ms(t_ms, tz.get(site, "Asia/Shanghai"))
        key = (site, day, window, clerk or "")
        if key not in out:
            out[key] = _blank(site, day, window, clerk)
        return out[key]

    for s in session_rows:
        r = row(s["site"], s["window"], s["clerk_id"], s["opened_ms"])
        r["sessions"] += 1
        r["stood"] += bool(s["stood_on_call"])
        r["smiled"] += bool(s["smiled_at_greeting"])
        r["farewell"] += bool(s["stood_at_farewell"])
        r["farewell_due"] += s["stood_at_farewell"] is not None
        if s.get("greeted_first") is not None:
            r["receptions"] += 1
            r["greeted_first"] += bool(s["greeted_first"])
        r["see_off"] += (s["see_off_ms"] or 0) >= ROLLUP_SEE_OFF_MS
        r["broad"] += bool(s["smile_too_broad"])
        r["rated"] += s["rating"] is not None
        if s["priority"]:
            r["priority"] += 1
            r["priority_own"] += s["closed_by"] in OWN_SESSION_ENDS
        if s.get("smiled_at_farewell") is not None:
            r["farewell_smile_seen"] += 1
            r["farewell_smiled"] += bool(s["smiled_at_farewell"])
        unseen = [bool(s.get(UNOBSERVED[v])) for v in ROLLUP_UNOBSERVED]
        for column, flag in zip(ROLLUP_UNOBSERVED.values(), unseen, strict=True):
            r[column] += flag
        r["unobserved"] += any(unseen)
        r["exemplary"] += _is_exemplary(s, any(unseen), too_broad_counts=False)
        r["exemplary_modest"] += _is_exemplary(s, any(unseen), too_broad_counts=True)
    for e in evaluation_rows:
        r = row(e["site"], e["window"], e["clerk_id"], e["ts_ms"])
        if e["suspect"]:
            r["suspect"] += 1
        else:
            r[Rating(e["rating"]).value] += 1
    for a in away_rows:
        if a["violation"]:
            r = row(a["site"], a["window"], a["clerk_id"], a["started_ms"])
            r["away_violations"] += 1
            r["away_ms"] += a["ended_ms"] - a["started_ms"]
    return [out[k] for k in sorted(out)]


def to_months(tz: Mapping[str, str], rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Daily increments summed into the increments of the local months they fall in,
    sorted by key (the same lock order argument as ``from_projections``)."""
    out: dict[tuple[str, int, str, str], dict[str, Any]] = {}
    for r in rows:
        month = month_start_ms(r["day_ms"], tz.get(r["site"], "Asia/Shanghai"))
        key = (r["site"], month, r["window"], r["clerk_id"])
        if key not in out:
            out[key] = {"site": key[0], "month_ms": month, "window": key[2], "clerk_id": key[3]}
            out[key] |= dict.fromkeys(SUMS, 0)
        m = out[key]
        for c in SUMS:
            m[c] += r[c]
    return [out[k] for k in sorted(out)]


def add(conn: Connection, rows: list[dict[str, Any]], tz: Mapping[str, str]) -> None:
    """Add daily increments (``from_projections``) to the daily rollups and, summed per
    month, to the monthly ones (insert, or sum into the existing row); daily rows first,
    then monthly, each sorted, so concurrent writers lock in one order."""
    if not rows:
        return
    months = to_months(tz, rows)
    if conn.dialect.name == "postgresql":
        # one JSON document, not a VALUES list re-rendered per batch size (see base.py)
        conn.execute(_PG_ADD, {"rows": json.dumps(rows)})
        conn.execute(_PG_ADD_MONTHS, {"rows": json.dumps(months)})
        return
    conn.execute(_sqlite_add(daily_rollups, KEY), rows)
    conn.execute(_sqlite_add(monthly_rollups, MONTH_KEY), months)


@functools.cache
def _sqlite_add(table: Any, key: tuple[str, ...]) -> Any:
    # Built once: constructing the upsert costs more than running it (cProfile).
    ins = sqlite.insert(table)
    return ins.on_conflict_do_update(
        index_elements=list(key), set_={c: table.c[c] + ins.excluded[c] for c in SUMS}
    )


def _pg_add(table: Any, key: tuple[str, ...]) -> Any:
    cols = ", ".join(f'"{c.name}"' for c in table.c)
    return text(
        f"INSERT INTO {table.name} ({cols}) SELECT {cols}"
        f" FROM json_populate_recordset(NULL::{table.name}, CAST(:rows AS json))"
        " ON CONFLICT ("
        + ", ".join(f'"{k}"' for k in key)
        + ") DO UPDATE SET "
        + ", ".join(f'"{c}" = {table.name}."{c}" + excluded."{c}"' for c in SUMS)
    )


_PG_ADD = _pg_add(daily_rollups, KEY)
_PG_ADD_MONTHS = _pg_add(monthly_rollups, MONTH_KEY)


def count_true(cond: Any) -> Any:
    """SUM of a condition as 0/1 (portable: SQLite and PostgreSQL)."""
    return func.sum(case((cond, 1), else_=0))


def session_counts(see_off_ms: int) -> list[Any]:
    """The per-session conduct counts every measure divides, labelled as the rollup's
    columns; the measures' own query and the rollup rebuild both select them."""
    s = sessions
    return [
        count_true(s.c.stood_on_call).label("stood"),
        count_true(s.c.smiled_at_greeting).label("smiled"),
        count_true(s.c.stood_at_farewell).label("farewell"),
        count_true(s.c.stood_at_farewell.is_not(None)).label("farewell_due"),
        count_true(s.c.greeted_first.is_not(None)).label("receptions"),
        count_true(s.c.greeted_first).label("greeted_first"),
        count_true(s.c.see_off_ms >= see_off_ms).label("see_off"),
        count_true(s.c.smile_too_broad).label("broad"),
        count_true(s.c.rating.is_not(None)).label("rated"),
        count_true(s.c.priority).label("priority"),
        count_true(and_(s.c.priority, s.c.closed_by.in_(OWN_SESSION_ENDS))).label("priority_own"),
        count_true(s.c.smiled_at_farewell.is_not(None)).label("farewell_smile_seen"),
        count_true(s.c.smiled_at_farewell).label("farewell_smiled"),
        *(count_true(s.c[UNOBSERVED[v]]).label(c) for v, c in ROLLUP_UNOBSERVED.items()),
        count_true(any_unobserved()).label("unobserved"),
        count_true(exemplary(see_off_ms, too_broad_counts=False)).label("exemplary"),
        count_true(exemplary(see_off_ms, too_broad_counts=True)).label("exemplary_modest"),
    ]


def any_unobserved() -> Any:
    """A session with at least one verdict not observed (contract version 3)."""
    return or_(*(sessions.c[c] for c in UNOBSERVED.values()))


_SESSION_COUNTS: Final = tuple(c.name for c in session_counts(ROLLUP_SEE_OFF_MS))


def _day_query(start: int, end: int, sites: list[str], window: str | None) -> list[Any]:
    """Aggregate the projection tables of one local day into rollup rows."""
    s, e, a = sessions, evaluations, away_periods

    def only(table: Any) -> list[Any]:
        conds = [table.c.site.in_(sites)]
        return [*conds, table.c.window == window] if window else conds

    clerk = func.coalesce(s.c.clerk_id, "")
    qs = (
        select(
            s.c.site,
            s.c.window,
            clerk.label("clerk"),
            func.count().label("sessions"),
            *session_counts(ROLLUP_SEE_OFF_MS),
        )
        # a session an upheld appeal took out (not_counted) is in no measure
        .where(s.c.opened_ms >= start, s.c.opened_ms < end, ~s.c.not_counted, *only(s))
        .group_by(s.c.site, s.c.window, clerk)
    )
    eclerk = func.coalesce(e.c.clerk_id, "")
    qe = (
        select(e.c.site, e.c.window, eclerk.label("clerk"), e.c.rating, e.c.suspect, func.count())
        .where(e.c.ts_ms >= start, e.c.ts_ms < end, *only(e))
        .group_by(e.c.site, e.c.window, eclerk, e.c.rating, e.c.suspect)
    )
    aclerk = func.coalesce(a.c.clerk_id, "")
    qa = (
        select(
            a.c.site,
            a.c.window,
            aclerk.label("clerk"),
            func.count(),
            func.sum(a.c.ended_ms - a.c.started_ms),
        )
        .where(
            a.c.started_ms >= start,
            a.c.started_ms < end,
            a.c.violation,
            *only(a),
        )
        .group_by(a.c.site, a.c.window, aclerk)
    )
    return [qs, qe, qa]


def _one_day(
    conn: Connection, start: int, end: int, sites: list[str], window: str | None
) -> list[dict[str, Any]]:
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}

    def get(site: str, window: str, clerk: str) -> dict[str, Any]:
        key = (site, window, clerk)
        if key not in rows:
            rows[key] = _blank(site, start, window, clerk)
        return rows[key]

    qs, qe, qa = _day_query(start, end, sites, window)
    for r in conn.execute(qs):
        g = get(r.site, r.window, r.clerk)
        for c in ("sessions", *_SESSION_COUNTS):
            g[c] = int(getattr(r, c) or 0)
    for site, window, clerk, rating, suspect, n in conn.execute(qe):
        g = get(site, window, clerk)
        g["suspect" if suspect else Rating(rating).value] += int(n)
    for site, window, clerk, n, ms in conn.execute(qa):
        g = get(site, window, clerk)
        g["away_violations"], g["away_ms"] = int(n), int(ms or 0)
    return list(rows.values())


def rebuild(
    conn: Connection,
    since_ms: int | None = None,
    until_ms: int | None = None,
    *,
    site: str | None = None,
    window: str | None = None,
) -> int:
    """Recompute the daily rollups from the projection tables for the local days from
    ``since_ms``'s through ``until_ms``'s (default: all there is), optionally of one site
    or window, one day per query, then the monthly rollups of the months those days are
    in from their daily rows; returns the daily rows written."""
    zones: dict[str, list[str]] = {}
    q = select(units.c.site, units.c.timezone)
    for s, tz in conn.execute(q.where(units.c.site == site) if site else q):
        zones.setdefault(tz, []).append(s)
    times = (sessions.c.opened_ms, evaluations.c.ts_ms, away_periods.c.started_ms)
    if since_ms is None:
        found = [conn.execute(select(func.min(t))).scalar() for t in times]
        since_ms = min((v for v in found if v is not None), default=None)
    if until_ms is None:
        found = [conn.execute(select(func.max(t))).scalar() for t in times]
        until_ms = max((v for v in found if v is not None), default=None)
    if since_ms is None or until_ms is None:
        return 0  # no measures at all
    written = 0
    r = daily_rollups
    for tz, sites in zones.items():
        zone = ZoneInfo(tz)
        first = day_start_ms(since_ms, tz)
        stale = [r.c.site.in_(sites), r.c.day_ms >= first, r.c.day_ms <= until_ms]
        conn.execute(r.delete().where(*stale, *([r.c.window == window] if window else [])))
        day = datetime.fromtimestamp(first / 1000, zone).date()
        while (start := _local_ms(day, zone)) <= until_ms:
            day += timedelta(days=1)
            rows = _one_day(conn, start, _local_ms(day, zone), sites, window)
            if rows:
                conn.execute(r.insert(), rows)
                written += len(rows)
        _rebuild_months(conn, tz, month_start_ms(first, tz), until_ms, sites, window)
    return written


def resum_months(conn: Connection, since_ms: int, until_ms: int) -> None:
    """Recompute the monthly rollups of the months from ``since_ms``'s through
    ``until_ms``'s from the daily rows there are (retention deletes days, not months)."""
    zones: dict[str, list[str]] = {}
    for s, tz in conn.execute(select(units.c.site, units.c.timezone)):
        zones.setdefault(tz, []).append(s)
    for tz, sites in zones.items():
        _rebuild_months(conn, tz, month_start_ms(since_ms, tz), until_ms, sites, None)


def _rebuild_months(
    conn: Connection, tz: str, first: int, until_ms: int, sites: list[str], window: str | None
) -> None:
    """The monthly rollups of the months from ``first`` through ``until_ms``'s, summed
    from their daily rows (whole months: days outside the rebuilt range count too)."""
    d, m = daily_rollups, monthly_rollups
    only = [d.c.window == window] if window else []
    stale = [m.c.site.in_(sites), m.c.month_ms >= first, m.c.month_ms <= until_ms]
    conn.execute(m.delete().where(*stale, *([m.c.window == window] if window else [])))
    month = first
    while month <= until_ms:
        after = next_month_ms(month, tz)
        q = (
            select(
                d.c.site,
                literal(month, BigInteger).label("month_ms"),
                d.c.window,
                d.c.clerk_id,
                *(func.sum(d.c[c]).label(c) for c in SUMS),
            )
            .where(d.c.site.in_(sites), d.c.day_ms >= month, d.c.day_ms < after, *only)
            .group_by(d.c.site, d.c.window, d.c.clerk_id)
        )
        conn.execute(m.insert().from_select([c.name for c in m.c], q))
        month = after


def _local_ms(day: Any, zone: ZoneInfo) -> int:
    return int(datetime.combine(day, time(0), zone).timestamp() * 1000)
