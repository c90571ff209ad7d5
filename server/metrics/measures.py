"""The standard's measures, computed in SQL over the projection tables.

A *scope* narrows to a district, site, window or clerk; a *period* is a half-open
``[start_ms, end_ms)`` range (``periods.py`` turns "2026-11", "2026-Q4" or "2026" into
one). Whole local months read the monthly rollups, the whole days around them the daily
ones, anything else the projection tables (``server.store.rollups``).
Rates are None when there is nothing to divide by, never a misleading 0 or 1.

A verdict the terminal could not see (contract version 3: ``not_observed``) is neither
complied nor missed: every conduct rate divides by the sessions where its verdict was
observed, the not-observed ones are counted beside it, and the smile-star ranking leaves
a session with any verdict not observed out altogether.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from types import SimpleNamespace
from typing import Any, Literal

from sqlalchemy import Connection, Engine, and_, func, select
from sqlalchemy.sql.elements import ColumnElement

from agent.protocol import Rating
from agent.protocol import now_ms as wall_clock_ms
from server.store.rollups import (
    ROLLUP_SEE_OFF_MS,
    SUMS,
    any_unobserved,
    count_true,
    exemplary,
    is_midnight,
    month_start_ms,
    next_month_ms,
    session_counts,
)
from server.store.schema import (
    away_periods,
    cases,
    daily_rollups,
    evaluations,
    monthly_rollups,
    sessions,
    units,
)

GOOD = (Rating.VERY_SATISFIED.value, Rating.SATISFIED.value, Rating.BASIC.value)
BAD = (Rating.DISSATISFIED.value, Rating.VERY_DISSATISFIED.value)
GroupBy = Literal["window", "clerk", "site", "district"]


@dataclass(frozen=True)
class Scope:
    district: str | None = None
    site: str | None = None
    window: str | None = None
    clerk_id: str | None = None
    #: The district's sites, looked up once (see ``resolve``).
    sites: tuple[str, ...] | None = None


def resolve(engine: Engine, scope: Scope) -> Scope:
    """Turn a district into its list of sites: PostgreSQL then walks the (site, time)
    indexes once per site instead of a whole month of every site (10M-row bench)."""
    if scope.district is None or scope.sites is not None:
        return scope
    with engine.connect() as conn:
        found = conn.execute(select(units.c.site).where(units.c.district == scope.district))
        return replace(scope, sites=tuple(r[0] for r in found))


@dataclass
class Measures:
    sessions: int = 0
    stand_on_call_rate: float | None = None
    smile_at_greeting_rate: float | None = None
    farewell_stand_rate: float | None = None
    see_off_rate: float | None = None
    too_broad_smiles: int = 0
    evaluation_coverage: float | None = None
    ratings: dict[str, int] = field(default_factory=lambda: {r.value: 0 for r in Rating})
    evaluations: int = 0
    good_review_rate: float | None = None
    bad_reviews: int = 0
    suspect_presses: int = 0
    away_without_sign_min: float = 0.0
    away_violations: int = 0
    open_cases: int = 0
    overdue_cases: int = 0
    #: H-PRIORITY: sessions of priority citizens, their share, and the share of them
    #: served to the end of their own session (not cut short by the next call).
    priority_sessions: int = 0
    priority_share: float | None = None
    priority_own_session_rate: float | None = None
    #: W-FAREWELL: smiled while seeing off, of the sessions whose terminal reports it.
    farewell_smile_rate: float | None = None
    #: F-RECEIVE (front desk): receptions, and those where the clerk stood and smiled
    #: within the limits of the citizen's approach.
    receptions: int = 0
    greeted_first_rate: float | None = None
    #: Contract version 3, what could be seen: per verdict, the sessions where it was
    #: *not observed* (the camera could not see; never a miss, and out of that rate's
    #: denominator), the sessions with any verdict not observed, and their share.
    stand_on_call_not_observed: int = 0
    smile_at_greeting_not_observed: int = 0
    farewell_stand_not_observed: int = 0
    farewell_smile_not_observed: int = 0
    greeted_first_not_observed: int = 0
    not_observed_sessions: int = 0
    not_observed_share: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rate(num: int | None, den: int) -> float | None:
    return None if den == 0 else round((num or 0) / den, 4)


def scope_filter(table: Any, scope: Scope) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = []
    if scope.site:
        conds.append(table.c.site == scope.site)
    if scope.window:
        conds.append(table.c.window == scope.window)
    if scope.clerk_id:
        conds.append(table.c.clerk_id == scope.clerk_id)
    if scope.sites is not None:
        conds.append(table.c.site.in_(scope.sites))
    elif scope.district:
        conds.append(
            table.c.site.in_(select(units.c.site).where(units.c.district == scope.district))
        )
    return conds


def _group_col(table: Any, by: GroupBy) -> Any:
    if by == "clerk":
        return table.c.clerk_id
    if by == "window":
        return table.c.site + "/" + table.c.window
    if by == "site":
        return table.c.site
    return units.c.district  # joined in by _source


def _source(table: Any, by: GroupBy | None) -> Any:
    """What a measure query reads: the table, joined to its units to group by district
    (a join, not a subquery per row: a city quarter has millions of rows)."""
    return table.join(units, units.c.site == table.c.site) if by == "district" else table


def compute(
    engine: Engine,
    scope: Scope,
    start_ms: int,
    end_ms: int,
    *,
    see_off_ms: int = 3000,
    now_ms: int | None = None,
    group_by: GroupBy | None = None,
    rollups: bool = True,
) -> dict[str | None, Measures]:
    """Measures for ``scope`` in the period, one per group (key None when ungrouped).
    Whole local days read the rollups (``rollup_parts``) unless ``rollups`` is False."""
    scope = resolve(engine, scope)
    s, e, a, c = sessions, evaluations, away_periods, cases
    out: dict[str | None, Measures] = {}

    def get(key: str | None) -> Measures:
        return out.setdefault(key, Measures())

    def key_cols(table: Any) -> list[Any]:
        return [_group_col(table, group_by).label("k")] if group_by else []

    def key_of(row: Any) -> str | None:
        return row.k if group_by else None

    # a session an upheld appeal took out (not_counted) is in no measure
    s_where = and_(
        s.c.opened_ms >= start_ms, s.c.opened_ms < end_ms, ~s.c.not_counted, *scope_filter(s, scope)
    )
    q = (
        select(
            *key_cols(s),
            func.count().label("n"),
            *session_counts(see_off_ms),
        )
        .select_from(_source(s, group_by))
        .where(s_where)
    )
    if group_by:
        q = q.group_by("k")
    e_where = and_(e.c.ts_ms >= start_ms, e.c.ts_ms < end_ms, *scope_filter(e, scope))
    qe = (
        select(*key_cols(e), e.c.rating, e.c.suspect, func.count().label("n"))
        .select_from(_source(e, group_by))
        .where(e_where)
    )
    qe = qe.group_by(*(["k"] if group_by else []), e.c.rating, e.c.suspect)
    a_where = and_(
        a.c.started_ms >= start_ms, a.c.started_ms < end_ms, a.c.violation, *scope_filter(a, scope)
    )
    qa = (
        select(
            *key_cols(a),
            func.count().label("n"),
            func.sum(a.c.ended_ms - a.c.started_ms).label("ms"),
        )
        .select_from(_source(a, group_by))
        .where(a_where)
    )
    if group_by:
        qa = qa.group_by("k")
    now = min(end_ms, now_ms if now_ms is not None else wall_clock_ms())  # overdue as of then
    c_where = and_(c.c.opened_ms < end_ms, c.c.status == "open", *scope_filter(c, scope))
    qc = (
        select(
            *key_cols(c),
            func.count().label("n"),
            count_true(c.c.due_ms < now).label("overdue"),
        )
        .select_from(_source(c, group_by))
        .where(c_where)
    )
    if group_by:
        qc = qc.group_by("k")

    with engine.connect() as conn:
        parts = (
            rollup_parts(conn, scope, start_ms, end_ms)
            if rollups and see_off_ms == ROLLUP_SEE_OFF_MS
            else None
        )
        if parts:  # whole days: ~one row per window and month or day, not every session
            _from_rollups(conn, scope, parts, group_by, get)
        else:
            for r in conn.execute(q):
                if not r.n:
                    continue
                _session_measures(get(key_of(r)), r, int(r.n))
            for r in conn.execute(qe):
                m = get(key_of(r))
                if r.suspect:
                    m.suspect_presses += int(r.n)
                else:
                    m.ratings[r.rating] = m.ratings.get(r.rating, 0) + int(r.n)
            for r in conn.execute(qa):
                if r.n:
                    m = get(key_of(r))
                    m.away_violations = int(r.n)
                    m.away_without_sign_min = round(int(r.ms or 0) / 60_000, 2)
        for r in conn.execute(qc):
            if r.n:
                m = get(key_of(r))
                m.open_cases = int(r.n)
                m.overdue_cases = int(r.overdue or 0)
    for m in out.values():
        m.evaluations = sum(m.ratings.values())
        m.bad_reviews = sum(m.ratings.get(b, 0) for b in BAD)
        m.good_review_rate = _rate(sum(m.ratings.get(g, 0) for g in GOOD), m.evaluations)
    if group_by is None and None not in out:
        out[None] = Measures()
    return out


#: One part of a period a rollup table covers: (table, its time column, from, to).
Part = tuple[Any, Any, int, int]


def rollup_parts(conn: Connection, scope: Scope, start_ms: int, end_ms: int) -> list[Part] | None:
    """Which rollup rows sum to the period, or None when it is not whole local days in
    every time zone the scope covers: its whole local months from ``monthly_rollups`` and
    the days before and after them from ``daily_rollups`` (all days when the scope's time
    zones do not agree on where its months start)."""
    q = select(units.c.timezone).distinct()
    if scope.site:
        q = q.where(units.c.site == scope.site)
    elif scope.sites is not None:
        q = q.where(units.c.site.in_(scope.sites))
    zones = [r[0] for r in conn.execute(q)] or ["Asia/Shanghai"]
    if not all(is_midnight(start_ms, tz) and is_midnight(end_ms, tz) for tz in zones):
        return None
    d, m = daily_rollups, monthly_rollups
    months = set()
    for tz in zones:
        first = month_start_ms(start_ms, tz)  # the first whole month starts here or after
        lo = first if first == start_ms else next_month_ms(first, tz)
        months.add((lo, month_start_ms(end_ms, tz)))
    if len(months) != 1 or (span := months.pop())[0] >= span[1]:
        return [(d, d.c.day_ms, start_ms, end_ms)]
    lo, hi = span
    parts: list[Part] = [(m, m.c.month_ms, lo, hi)]
    if start_ms < lo:
        parts.append((d, d.c.day_ms, start_ms, lo))
    if hi < end_ms:
        parts.append((d, d.c.day_ms, hi, end_ms))
    return parts


def _from_rollups(
    conn: Connection,
    scope: Scope,
    parts: list[Part],
    group_by: GroupBy | None,
    get: Callable[[str | None], Measures],
) -> None:
    """Sessions, ratings and absences from the rollups (whole days only), summed over
    the period's parts (``rollup_parts``)."""
    totals: dict[str | None, dict[str, int]] = {}
    for r, t, lo, hi in parts:
        keys: list[Any] = []
        if group_by == "clerk":
            keys = [func.nullif(r.c.clerk_id, "").label("k")]
        elif group_by:
            keys = [_group_col(r, group_by).label("k")]
        sums = [func.sum(r.c[c]).label(c) for c in SUMS]
        q = (
            select(*keys, *sums)
            .select_from(_source(r, group_by))
            .where(t >= lo, t < hi, *scope_filter(r, scope))
        )
        if group_by:
            q = q.group_by("k")
        for row in conn.execute(q).all():
            if row.sessions is None:
                continue  # no rows at all (ungrouped)
            acc = totals.setdefault(row.k if group_by else None, dict.fromkeys(SUMS, 0))
            for c in SUMS:
                acc[c] += int(getattr(row, c) or 0)
    for key, acc in totals.items():
        m = get(key)
        if n := acc["sessions"]:
            _session_measures(m, SimpleNamespace(**acc), n)
        for rating in Rating:
            m.ratings[rating.value] += acc[rating.value]
        m.suspect_presses += acc["suspect"]
        if acc["away_violations"]:
            m.away_violations = acc["away_violations"]
            m.away_without_sign_min = round(acc["away_ms"] / 60_000, 2)


def _session_measures(m: Measures, row: Any, n: int) -> None:
    """The session measures from a row of session counts (``session_counts``: raw or
    rollup) of ``n`` sessions. Each conduct rate divides by the sessions where its
    verdict was observed: one the camera could not see is neither a success nor a miss."""

    def count(name: str) -> int:
        return int(getattr(row, name) or 0)

    farewell_due = count("farewell_due")
    m.sessions = n
    m.stand_on_call_not_observed = count("stood_unobserved")
    m.smile_at_greeting_not_observed = count("smiled_unobserved")
    m.farewell_stand_not_observed = count("farewell_unobserved")
    m.farewell_smile_not_observed = count("farewell_smile_unobserved")
    m.greeted_first_not_observed = count("greeted_first_unobserved")
    m.not_observed_sessions = count("unobserved")
    m.not_observed_share = _rate(m.not_observed_sessions, n)
    m.stand_on_call_rate = _rate(row.stood, n - m.stand_on_call_not_observed)
    m.smile_at_greeting_rate = _rate(row.smiled, n - m.smile_at_greeting_not_observed)
    farewell_seen = farewell_due - m.farewell_stand_not_observed
    m.farewell_stand_rate = _rate(row.farewell, farewell_seen)
    m.see_off_rate = _rate(row.see_off, farewell_seen)
    m.too_broad_smiles = count("broad")
    m.evaluation_coverage = _rate(row.rated, n)
    m.priority_sessions = count("priority")
    m.priority_share = _rate(row.priority, n)
    m.priority_own_session_rate = _rate(row.priority_own, m.priority_sessions)
    m.farewell_smile_rate = _rate(
        row.farewell_smiled, count("farewell_smile_seen") - m.farewell_smile_not_observed
    )
    m.receptions = count("receptions")
    m.greeted_first_rate = _rate(row.greeted_first, m.receptions - m.greeted_first_not_observed)


def wilson_lower_bound(successes: int, n: int, z: float = 1.96) -> float:
    """Lower end of the Wilson score interval: small samples cannot top a ranking by luck."""
    if n == 0:
        return 0.0
    p = successes / n
    denom = 1 + z * z / n
    centre = p + z * z / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - margin) / denom


def exemplary_counts(
    engine: Engine,
    scope: Scope,
    start_ms: int,
    end_ms: int,
    see_off_ms: int = 3000,
    *,
    too_broad_counts: bool = False,
    rollups: bool = True,
) -> dict[str, tuple[int, int, int]]:
    """Per clerk: (exemplary sessions, sessions, sessions not observed). Exemplary =
    stood, smiled, stood to see off long enough, and not rated badly (A-STAR); "not too
    broad" as well only when ``too_broad_counts`` (the flag is unvalidated: information
    only by default). A session with any verdict not observed (contract version 3) is
    neither exemplary nor counted in the sessions: it is counted apart, so a clerk the
    camera sees badly is neither helped nor harmed by it. Whole local days read the
    rollups' ``exemplary`` counts unless ``rollups`` is False."""
    scope = resolve(engine, scope)
    with engine.connect() as conn:
        parts = (
            rollup_parts(conn, scope, start_ms, end_ms)
            if rollups and see_off_ms == ROLLUP_SEE_OFF_MS
            else None
        )
        if parts:
            return _exemplary_from_rollups(conn, scope, parts, too_broad_counts)
    s = sessions
    unseen = any_unobserved()
    q = (
        select(
            s.c.clerk_id,
            count_true(exemplary(see_off_ms, too_broad_counts=too_broad_counts)).label("good"),
            count_true(~unseen).label("n"),
            count_true(unseen).label("unseen"),
        )
        .where(
            s.c.opened_ms >= start_ms,
            s.c.opened_ms < end_ms,
            s.c.clerk_id.is_not(None),
            ~s.c.not_counted,
            *scope_filter(s, scope),
        )
        .group_by(s.c.clerk_id)
    )
    with engine.connect() as conn:
        return {
            r.clerk_id: (int(r.good or 0), int(r.n or 0), int(r.unseen or 0))
            for r in conn.execute(q)
        }


def _exemplary_from_rollups(
    conn: Connection, scope: Scope, parts: list[Part], too_broad_counts: bool
) -> dict[str, tuple[int, int, int]]:
    good = "exemplary_modest" if too_broad_counts else "exemplary"
    totals: dict[str, list[int]] = {}
    for r, t, lo, hi in parts:
        q = (
            select(
                r.c.clerk_id,
                func.sum(r.c.sessions),
                func.sum(r.c[good]),
                func.sum(r.c.sessions - r.c.unobserved),
                func.sum(r.c.unobserved),
            )
            .where(t >= lo, t < hi, r.c.clerk_id != "", *scope_filter(r, scope))
            .group_by(r.c.clerk_id)
        )
        for clerk, *sums in conn.execute(q).all():  # one fetch, not a row at a time
            acc = totals.setdefault(clerk, [0, 0, 0, 0])
            for i, v in enumerate(sums):
                acc[i] += int(v or 0)
    # a clerk whose days had evaluations or absences but no session is not ranked
    return {c: (g, n, unseen) for c, (sessions_, g, n, unseen) in totals.items() if sessions_}


def smile_star_ranking(
    engine: Engine,
    scope: Scope,
    start_ms: int,
    end_ms: int,
    min_sessions: int = 20,
    *,
    too_broad_counts: bool = False,
    rollups: bool = True,
) -> list[dict[str, Any]]:
    """Clerks ranked by the Wilson lower bound of their exemplary-session rate, over the
    sessions where every verdict was observed (``min_sessions`` counts those only); the
    sessions not observed are shown beside."""
    rows: list[dict[str, Any]] = []
    counts = exemplary_counts(
        engine, scope, start_ms, end_ms, too_broad_counts=too_broad_counts, rollups=rollups
    )
    for clerk, (good, n, unseen) in counts.items():
        rows.append(
            {
                "clerk_id": clerk,
                "sessions": n,
                "exemplary": good,
                "rate": round(good / n, 4) if n else 0.0,
                "score": round(wilson_lower_bound(good, n), 4),
                "eligible": n >= min_sessions,
                "not_observed": unseen,
            }
        )
    rows.sort(key=lambda r: (not r["eligible"], -float(r["score"]), str(r["clerk_id"])))
    for i, r in enumerate(rows, 1):
        r["rank"] = i if r["eligible"] else None
    return rows
