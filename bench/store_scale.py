"""Dashboard queries on a generated 10-million-event PostgreSQL store:
``python -m bench.store_scale [--events 10000000] [--days 365]``.

Builds a throw-away database through the product's own migrations, fills it with
generate_series (city shape: 300 centres x 33 windows, the year 2026 from January 1st,
every event kind in realistic proportion), then times the dashboard's main queries
through the product's code, printing p50/p95 per query and the ratio of p95 to the
200 ms goal. The comparisons of months, quarters and the year (and the ranking) are
also timed from the projection tables (``rollups=False``), the baseline measured in the
same run: the last column is the ratio of p95 to it. It also times ``SELECT 1`` as the
round-trip baseline of the same connection. ``--days 90`` is the shape of the figures
before the year was a period (June to August).
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import create_engine, text

from server.metrics.measures import Scope, compute, smile_star_ranking
from server.metrics.periods import period_bounds
from server.store.db import Store

SITES = 300
WINDOWS_PER_SITE = 33
DAY_MS = 86_400_000
YEAR_START_MS = 1_767_196_800_000  # 2026-01-01 00:00 +08:00
JUNE_START_MS = 1_780_243_200_000  # 2026-06-01 00:00 +08:00: --days 90 (the old shape)

FILL = """
INSERT INTO units (site, name, district, unit_kind, timezone)
SELECT 's' || lpad(i::text, 3, '0'), 'centre ' || i, 'district ' || (i % 16),
       CASE WHEN i % 10 = 0 THEN 'district_centre' ELSE 'community_centre' END, 'Asia/Shanghai'
FROM generate_series(1, :sites) AS i;

INSERT INTO devices (site, "window", label, role, online, max_seq)
SELECT 's' || lpad(i::text, 3, '0'), 'w' || lpad(j::text, 2, '0'), 'window ' || j,
       'comprehensive', true, 0
FROM generate_series(1, :sites) AS i, generate_series(1, :wps) AS j;

-- one session summary per 3 events: opened + evaluated + summary
INSERT INTO sessions (session_id, event_id, site, "window", clerk_id, opened_ms, closed_ms,
    closed_by, stood_on_call, stand_after_ms, smiled_at_greeting, smile_after_ms, smile_peak,
    smile_too_broad, stood_at_farewell, see_off_ms, rating, priority)
SELECT md5('s' || n)::uuid::text, md5('e' || n)::uuid::text,
       's' || lpad((1 + n % :sites)::text, 3, '0'),
       'w' || lpad((1 + (n / :sites) % :wps)::text, 2, '0'),
       'c' || ((n % (:sites * :wps)) ),
       :start + (n::bigint * :span / :n_sessions),
       :start + (n::bigint * :span / :n_sessions) + 300000,
       'evaluation', (n % 10) <> 0, 1500, (n % 7) <> 0, 2500, 0.8, (n % 97) = 0,
       (n % 5) <> 0, 4000,
       (ARRAY['very_satisfied', 'satisfied', 'satisfied', 'basically_satisfied',
              'very_satisfied', 'satisfied', 'very_satisfied', 'dissatisfied',
              'very_satisfied', 'satisfied'])[1 + n % 10],
       false
FROM generate_series(1, :n_sessions) AS n;

INSERT INTO evaluations (event_id, site, "window", clerk_id, session_id, ts_ms, rating, suspect,
    suspect_reason)
SELECT md5('v' || s.session_id)::uuid::text, s.site, s."window", s.clerk_id, s.session_id,
       s.closed_ms, s.rating, false, NULL
FROM sessions s;

INSERT INTO events (event_id, site, "window", seq, boot_id, ts_ms, received_ms, kind, session_id,
    historical, payload)
SELECT md5('x' || n)::uuid::text,
       's' || lpad((1 + n % :sites)::text, 3, '0'),
       'w' || lpad((1 + (n / :sites) % :wps)::text, 2, '0'),
       n / (:sites * :wps) + 1, '00000000-0000-0000-0000-000000000001',
       :start + (n::bigint * :span / :n_events), :start + (n::bigint * :span / :n_events) + 40,
       (ARRAY['session_opened','stood_up','smiled','evaluated','session_summary'])[1 + n % 5],
       md5('s' || (n / 3))::uuid::text, false,
       json_build_object('kind', (ARRAY['session_opened','stood_up','smiled','evaluated',
                         'session_summary'])[1 + n % 5], 'seq', n)
FROM generate_series(0, :n_events - 1) AS n;

INSERT INTO cases (case_id, site, "window", clerk_id, session_id, rating, opened_ms, due_ms,
    status)
SELECT e.event_id, e.site, e."window", e.clerk_id, e.session_id, e.rating, e.ts_ms,
       e.ts_ms + 21 * 86400000, CASE WHEN e.ts_ms % 3 = 0 THEN 'open' ELSE 'closed' END
FROM evaluations e WHERE e.rating = 'dissatisfied';
"""


def timed(fn: Callable[[], Any], repeat: int) -> list[float]:
    fn()  # warm the cache the way a dashboard that is in use has it warm
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument(
        "--days", type=int, default=365, help="days the events span (90: June-August 2026)"
    )
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--keep", action="store_true", help="keep the database afterwards")
    ap.add_argument("--reuse", metavar="DB", help="time the queries on a database kept before")
    args = ap.parse_args()
    name = args.reuse or f"ww_scale_{uuid.uuid4().hex[:8]}"
    admin = create_engine(args.pg, isolation_level="AUTOCOMMIT")
    if not args.reuse:
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
    url = args.pg.rsplit("/", 1)[0] + f"/{name}"
    store = Store(url)
    try:
        store.create()
        if not args.reuse:
            generate(store, args.events, args.days)
        queries_and_figures(store, args.repeat)
    finally:
        store.close()
        if not args.keep and not args.reuse:
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        else:
            print(f"database kept: {name} (--reuse {name})")
        admin.dispose()


def generate(store: Store, n_events: int, days: int) -> None:
    t0 = time.perf_counter()
    params = {
        "sites": SITES,
        "wps": WINDOWS_PER_SITE,
        "start": YEAR_START_MS if days > 92 else JUNE_START_MS,
        "span": days * DAY_MS,
        "n_events": n_events,
        "n_sessions": n_events // 3,
    }
    with store.engine.begin() as conn:
        for stmt in FILL.split(";\n"):
            if stmt.strip():
                conn.execute(text(stmt), params)
    with store.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
        counts = {
            t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
            for t in ("events", "sessions", "evaluations", "cases")
        }
    print(f"generated in {time.perf_counter() - t0:.0f} s: {counts}")
    # The ingest keeps the rollups as events arrive; generated rows get them rebuilt.
    t0 = time.perf_counter()
    rows = store.rebuild_rollups()
    with store.engine.connect() as conn:
        auto = conn.execution_options(isolation_level="AUTOCOMMIT")
        auto.execute(text("VACUUM ANALYZE daily_rollups"))
        auto.execute(text("VACUUM ANALYZE monthly_rollups"))
        months = auto.execute(text("SELECT count(*) FROM monthly_rollups")).scalar_one()
    print(
        f"rollups rebuilt in {time.perf_counter() - t0:.0f} s: {rows} daily rows,"
        f" {months} monthly rows"
    )


#: Label prefix of a query timed from the projection tables: the baseline of the query
#: above it (``rollups=False``), timed fewer times (it reads every row).
ROWS = "  same from the projection tables"


def queries_and_figures(store: Store, repeat: int = 20) -> None:
    month = period_bounds("2026-07")
    quarter = period_bounds("2026-Q3")
    year = period_bounds("2026")
    day = period_bounds("2026-07-15")
    e = store.engine
    city, district = Scope(), Scope(district="district 2")

    def select_one() -> None:
        with e.connect() as conn:
            conn.execute(text("SELECT 1"))

    def districts(period: tuple[int, int], rollups: bool = True) -> Callable[[], Any]:
        return lambda: compute(e, city, *period, group_by="district", rollups=rollups)

    queries: list[tuple[str, Callable[[], Any]]] = [
        ("baseline SELECT 1", select_one),
        ("hall wall: windows of a centre", lambda: store.windows("s042")),
        ("latest 50 events of a centre", lambda: store.latest_events(50, "s042")),
        (
            "today's measures per window, one centre",
            lambda: compute(e, Scope(site="s042"), *day, group_by="window"),
        ),
        ("month measures of a centre", lambda: compute(e, Scope(site="s042"), *month)),
        (
            "month measures of a window",
            lambda: compute(e, Scope(site="s042", window="w07"), *month),
        ),
        ("year measures of a centre", lambda: compute(e, Scope(site="s042"), *year)),
        (
            "month smile-star ranking of a centre",
            lambda: smile_star_ranking(e, Scope(site="s042"), *month),
        ),
        (
            "year smile-star ranking of a centre",
            lambda: smile_star_ranking(e, Scope(site="s042"), *year),
        ),
        ("open cases of a centre", lambda: store.list_cases("open", "s042")),
        (
            "month unit comparison, a district's centres",
            lambda: compute(e, district, *month, group_by="site"),
        ),
        (ROWS, lambda: compute(e, district, *month, group_by="site", rollups=False)),
        (
            "year unit comparison, a district's centres",
            lambda: compute(e, district, *year, group_by="site"),
        ),
        (ROWS, lambda: compute(e, district, *year, group_by="site", rollups=False)),
        ("month comparison of the city's districts", districts(month)),
        (ROWS, districts(month, rollups=False)),
        ("quarter comparison of the city's districts", districts(quarter)),
        (ROWS, districts(quarter, rollups=False)),
        ("year comparison of the city's districts", districts(year)),
        (ROWS, districts(year, rollups=False)),
        ("year smile-star ranking of the city", lambda: smile_star_ranking(e, city, *year)),
        (ROWS, lambda: smile_star_ranking(e, city, *year, rollups=False)),
    ]
    print(f"{'query':45s} {'p50 ms':>8s} {'p95 ms':>8s} {'p95/200ms':>10s} {'p95/rows':>9s}")
    lines: list[tuple[str, float, float]] = []
    for label, fn in queries:
        ms = timed(fn, repeat if label != ROWS else 5)
        lines.append((label, statistics.median(ms), p95(ms)))
    # each query's ratio to the projection-table path measured after it, in this run
    for i, (label, p50_, p95_) in enumerate(lines):
        base = lines[i + 1][2] if i + 1 < len(lines) and lines[i + 1][0] == ROWS else None
        vs = f"{p95_ / base:9.2f}" if base else f"{'':9s}"
        print(f"{label:45s} {p50_:8.1f} {p95_:8.1f} {p95_ / 200:10.2f} {vs}")


if __name__ == "__main__":
    main()
