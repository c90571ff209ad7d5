"""Read models behind the dashboard pages: hall wall, timelines, trends, heat map, fleet.

They read the store and the measures (store -> metrics -> read models -> API), so they
live above both; ``server/api/access.py`` calls them with the principal's scope.

Local days and hours are computed in SQL with the centre's UTC offset at the start of
the period; Shanghai has no daylight saving, so one offset is exact there.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, and_, func, select

from server.metrics.measures import BAD, GOOD, Scope, compute, scope_filter
from server.policy.rows import UNOBSERVED
from server.store.assessment import correction_rows
from server.store.rollups import any_unobserved, count_true
from server.store.schema import (
    ROLLUP_UNOBSERVED,
    devices,
    evaluations,
    roster,
    roster_plan,
    sessions,
    units,
)

DAY = 86_400_000

HOUR = 3_600_000


def utc_offset_ms(tz: str, at_ms: int) -> int:
    off = datetime.fromtimestamp(at_ms / 1000, ZoneInfo(tz)).utcoffset()
    return int(off.total_seconds() * 1000) if off else 0


def clerks_on_duty(engine: Engine, site: str, at_ms: int) -> dict[str, str]:
    q = select(roster.c.window, roster.c.clerk_id).where(
        roster.c.site == site,
        roster.c.start_ms <= at_ms,
        (roster.c.end_ms.is_(None)) | (roster.c.end_ms > at_ms),
    )
    with engine.connect() as conn:
        return {r.window: r.clerk_id for r in conn.execute(q.order_by(roster.c.start_ms))}


def hall(engine: Engine, site: str, day: tuple[int, int], now_ms: int) -> list[dict[str, Any]]:
    """One tile per window: availability, state, clerk on duty and today's figures."""
    today = compute(engine, Scope(site=site), *day, group_by="window")
    duty = clerks_on_duty(engine, site, now_ms)
    q = select(devices).where(devices.c.site == site).order_by(devices.c.window)
    out = []
    with engine.connect() as conn:
        for r in conn.execute(q):
            m = today.get(f"{site}/{r.window}")
            out.append(
                {
                    "site": site,
                    "window": r.window,
                    "label": r.label,
                    "role": r.role,
                    "online": r.online,
                    "last_seen_ms": r.last_seen_ms,
                    "availability_ms": r.availability_ms,
                    "state": r.state,
                    "clerk_id": duty.get(r.window),
                    "sessions_today": m.sessions if m else 0,
                    "stand_rate_today": m.stand_on_call_rate if m else None,
                    "smile_rate_today": m.smile_at_greeting_rate if m else None,
                    "good_rate_today": m.good_review_rate if m else None,
                }
            )
    return out


def timeline(engine: Engine, scope: Scope, start_ms: int, end_ms: int) -> list[dict[str, Any]]:
    """Sessions with their steps (call -> stood -> smiled -> evaluated -> farewell); a
    step whose verdict the camera could not see says ``not_observed`` (its ``ok`` is
    False and means nothing then), and the session lists every verdict's."""
    s = sessions
    q = (
        select(s)
        .where(s.c.opened_ms >= start_ms, s.c.opened_ms < end_ms, *scope_filter(s, scope))
        .order_by(s.c.opened_ms)
        .limit(2000)
    )
    out = []
    with engine.connect() as conn:
        for r in conn.execute(q):
            unseen = {v: bool(getattr(r, c)) for v, c in UNOBSERVED.items()}
            steps: list[dict[str, Any]] = [{"step": "call", "at_ms": r.opened_ms}]
            steps.append(
                {
                    "step": "stood",
                    "ok": r.stood_on_call,
                    "after_ms": r.stand_after_ms,
                    "not_observed": unseen["stood_on_call"],
                }
            )
            steps.append(
                {
                    "step": "smiled",
                    "ok": r.smiled_at_greeting,
                    "after_ms": r.smile_after_ms,
                    "too_broad": r.smile_too_broad,
                    "not_observed": unseen["smiled_at_greeting"],
                }
            )
            steps.append({"step": "evaluated", "ok": r.rating is not None, "rating": r.rating})
            if r.stood_at_farewell is not None:  # a reception has no farewell
                steps.append(
                    {
                        "step": "farewell",
                        "ok": r.stood_at_farewell,
                        "see_off_ms": r.see_off_ms,
                        "smiled": r.smiled_at_farewell,
                        "not_observed": unseen["stood_at_farewell"],
                        "smile_not_observed": unseen["smiled_at_farewell"],
                    }
                )
            out.append(
                {
                    "session_id": r.session_id,
                    "event_id": r.event_id,
                    "site": r.site,
                    "window": r.window,
                    "clerk_id": r.clerk_id,
                    "opened_ms": r.opened_ms,
                    "closed_ms": r.closed_ms,
                    "closed_by": r.closed_by,
                    "rating": r.rating,
                    "source": r.source,
                    "ticket": r.ticket,
                    "call_id": r.call_id,
                    "matter_code": r.matter_code,
                    "matter_name": r.matter_name,
                    "priority": r.priority,
                    "priority_category": r.priority_category,
                    "case_number": r.case_number,
                    "greeted_first": r.greeted_first,
                    "not_observed": unseen,
                    "observed_share": r.observed_share,
                    "steps": steps,
                    "verdicts": {v: getattr(r, v) for v in UNOBSERVED},
                    "not_counted": r.not_counted,
                    "corrected": [],
                }
            )
        # what upheld appeals changed (the values above are the corrected ones)
        by_id = {row["session_id"]: row for row in out}
        for c in correction_rows(conn, list(by_id)):
            if c["column"] in UNOBSERVED:
                by_id[c["session_id"]]["corrected"].append(c["column"])
    return out


def _rate(num: Any, den: Any) -> float | None:
    return None if not den else round(int(num or 0) / int(den), 4)


def trend(
    engine: Engine, scope: Scope, start_ms: int, end_ms: int, tz: str
) -> list[dict[str, Any]]:
    """Per local day: sessions, stand/smile/farewell rates (of the sessions where that
    verdict was observed), good-review rate, sessions with a verdict not observed."""
    off = utc_offset_ms(tz, start_ms)
    s, e = sessions, evaluations
    day_s = ((s.c.opened_ms + off) // DAY).label("d")
    q = (
        select(
            day_s,
            func.count().label("n"),
            count_true(s.c.stood_on_call).label("stood"),
            count_true(s.c.smiled_at_greeting).label("smiled"),
            count_true(s.c.stood_at_farewell).label("farewell"),
            count_true(s.c.stood_at_farewell.is_not(None)).label("farewell_due"),
            *(count_true(s.c[UNOBSERVED[v]]).label(c) for v, c in ROLLUP_UNOBSERVED.items()),
            count_true(any_unobserved()).label("unobserved"),
        )
        .where(s.c.opened_ms >= start_ms, s.c.opened_ms < end_ms, *scope_filter(s, scope))
        .group_by("d")
    )
    day_e = ((e.c.ts_ms + off) // DAY).label("d")
    qe = (
        select(
            day_e,
            func.count().label("n"),
            count_true(e.c.rating.in_(GOOD)).label("good"),
            count_true(e.c.rating.in_(BAD)).label("bad"),
        )
        .where(e.c.ts_ms >= start_ms, e.c.ts_ms < end_ms, ~e.c.suspect, *scope_filter(e, scope))
        .group_by("d")
    )
    days: dict[int, dict[str, Any]] = {}
    first = (start_ms + off) // DAY
    last = (end_ms - 1 + off) // DAY
    for d in range(first, last + 1):
        date = datetime.fromtimestamp(d * DAY / 1000, ZoneInfo("UTC")).date().isoformat()
        days[d] = {
            "day": date,
            "sessions": 0,
            "stand_rate": None,
            "smile_rate": None,
            "farewell_rate": None,
            "evaluations": 0,
            "good_rate": None,
            "bad_reviews": 0,
            "not_observed_sessions": 0,
        }
    with engine.connect() as conn:
        for r in conn.execute(q):
            row = days.get(int(r.d))
            if row:
                row.update(
                    sessions=int(r.n),
                    stand_rate=_rate(r.stood, r.n - r.stood_unobserved),
                    smile_rate=_rate(r.smiled, r.n - r.smiled_unobserved),
                    farewell_rate=_rate(r.farewell, r.farewell_due - r.farewell_unobserved),
                    not_observed_sessions=int(r.unobserved or 0),
                )
        for r in conn.execute(qe):
            row = days.get(int(r.d))
            if row:
                row.update(
                    evaluations=int(r.n), good_rate=_rate(r.good, r.n), bad_reviews=int(r.bad or 0)
                )
    return list(days.values())


def heatmap(
    engine: Engine, scope: Scope, start_ms: int, end_ms: int, tz: str
) -> list[dict[str, Any]]:
    """Sessions and compliance by ISO weekday (1-7) and local hour (0-23); compliance
    (stood and smiled at the call) is of the sessions where both were observed."""
    off = utc_offset_ms(tz, start_ms)
    s = sessions
    local = s.c.opened_ms + off
    hour = ((local // HOUR) % 24).label("h")
    # 1970-01-01 was a Thursday (ISO 4)
    weekday = (((local // DAY) + 3) % 7 + 1).label("wd")
    good = and_(s.c.stood_on_call, s.c.smiled_at_greeting)
    # judged where both the stand and the smile were observed
    seen = ~s.c[UNOBSERVED["stood_on_call"]] & ~s.c[UNOBSERVED["smiled_at_greeting"]]
    q = (
        select(
            weekday,
            hour,
            func.count().label("n"),
            count_true(good).label("good"),
            count_true(seen).label("seen"),
        )
        .where(s.c.opened_ms >= start_ms, s.c.opened_ms < end_ms, *scope_filter(s, scope))
        .group_by("wd", "h")
    )
    with engine.connect() as conn:
        return [
            {
                "weekday": int(r.wd),
                "hour": int(r.h),
                "sessions": int(r.n),
                "compliance": _rate(r.good, r.seen),
            }
            for r in conn.execute(q)
        ]


def fleet(engine: Engine, sites: frozenset[str] | None) -> list[dict[str, Any]]:
    q = select(devices, units.c.name.label("site_name")).join(units, units.c.site == devices.c.site)
    if sites is not None:
        q = q.where(devices.c.site.in_(sites))
    out = []
    with engine.connect() as conn:
        for r in conn.execute(q.order_by(devices.c.site, devices.c.window)):
            h = r.health or {}
            out.append(
                {
                    "site": r.site,
                    "site_name": r.site_name,
                    "window": r.window,
                    "label": r.label,
                    "online": r.online,
                    "last_seen_ms": r.last_seen_ms,
                    "max_seq": r.max_seq,
                    "fps": h.get("fps"),
                    "inference_ms": h.get("inference_ms"),
                    "cpu_temp_c": h.get("cpu_temp_c"),
                    "load1": h.get("load1"),
                    "outbox_depth": h.get("outbox_depth"),
                    "outbox_oldest_age_s": h.get("outbox_oldest_age_s"),
                    "dropped": h.get("dropped"),
                    "model_version": h.get("model_version"),
                    "config_version": h.get("config_version"),
                    "settings_serial": h.get("settings_serial"),
                    "settings_error": h.get("settings_error"),
                    "uptime_s": h.get("uptime_s"),
                    "health_ms": h.get("ts_ms"),
                }
            )
    return out


def site_units(engine: Engine, sites: frozenset[str] | None) -> list[dict[str, Any]]:
    q = select(units).order_by(units.c.district, units.c.site)
    if sites is not None:
        q = q.where(units.c.site.in_(sites))
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


def roster_day(
    engine: Engine, site: str, start_ms: int, end_ms: int, now_ms: int
) -> dict[str, Any]:
    """One centre's day of who served where: every shift overlapping it (source, who
    recorded it), the planned roster beside it with "rostered but not signed in" flags,
    and per window the sessions no shift covers (unattributed: in no clerk's verdict)."""
    with engine.connect() as conn:
        shifts = [
            dict(r._mapping)
            for r in conn.execute(
                select(roster)
                .where(
                    roster.c.site == site,
                    roster.c.start_ms < end_ms,
                    roster.c.end_ms.is_(None) | (roster.c.end_ms > start_ms),
                )
                .order_by(roster.c.window, roster.c.start_ms)
            )
        ]
        plans = [
            dict(r._mapping)
            for r in conn.execute(
                select(roster_plan)
                .where(
                    roster_plan.c.site == site,
                    roster_plan.c.from_ms < end_ms,
                    roster_plan.c.to_ms > start_ms,
                )
                .order_by(roster_plan.c.window, roster_plan.c.from_ms)
            )
        ]
        unattributed = {
            r.window: int(r.n)
            for r in conn.execute(
                select(sessions.c.window, func.count().label("n"))
                .where(
                    sessions.c.site == site,
                    sessions.c.clerk_id.is_(None),
                    sessions.c.opened_ms >= start_ms,
                    sessions.c.opened_ms < end_ms,
                )
                .group_by(sessions.c.window)
            )
        }
    for plan in plans:
        plan["signed_in"] = any(
            s["clerk_id"] == plan["clerk_id"]
            and s["window"] == plan["window"]
            and s["start_ms"] < plan["to_ms"]
            and (s["end_ms"] is None or s["end_ms"] > plan["from_ms"])
            for s in shifts
        )
        # only a plan whose time has come can be missed
        plan["missing"] = not plan["signed_in"] and plan["from_ms"] <= now_ms
    return {
        "site": site,
        "shifts": shifts,
        "planned": plans,
        "unattributed": [{"window": w, "sessions": n} for w, n in sorted(unattributed.items())],
    }
