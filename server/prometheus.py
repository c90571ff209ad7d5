"""Prometheus metrics of the aggregator, in the text exposition format (version 0.0.4).

Two sources, because they answer different questions:

* the ``Ingest`` of *this* process (counters since it started: what Prometheus turns
  into rates, e.g. ``rate(ww_ingest_stored_total[5m])``; with several replicas, ``sum``
  over them), and
* the ``Store`` (shared by every replica: fleet online count, per-window outbox depth
  and last-seen age, reject totals, delivery lag of the latest events).

Only existing ``Store`` reads are used, and only cheap ones (``windows()`` and the latest
few hundred events by the ``received_ms`` index); nothing counts the events table, which
holds tens of millions of rows in a city deployment.

Delivery lag is ``received_ms - ts_ms`` of live (not replayed) events: the time from the
moment something happened at the window to its commit, outbox buffering included. It
mixes two clocks (Pi and server), both NTP-synced in production; a large negative value
means a terminal's clock is wrong, which is worth an alert of its own.

Example alert rules are in deploy/prometheus/alerts.yml.
"""

from __future__ import annotations

import hmac
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, Header, HTTPException
from fastapi.responses import Response

if TYPE_CHECKING:
    from server.ingest import Ingest
    from server.outbound.queue import Deliverer
    from server.store.db import Store

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: How many of the latest events the lag is computed over.
LAG_SAMPLE = 200


@dataclass
class Metric:
    name: str
    kind: Literal["counter", "gauge"]
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)

    def add(self, value: float, **labels: str) -> Metric:
        self.samples.append((labels, value))
        return self


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def render(metrics: Iterable[Metric]) -> str:
    """The text exposition format: HELP, TYPE, then one line per sample."""
    lines: list[str] = []
    for m in metrics:
        lines.append(f"# HELP {m.name} {m.help}")
        lines.append(f"# TYPE {m.name} {m.kind}")
        for labels, value in m.samples:
            if labels:
                inner = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
                lines.append(f"{m.name}{{{inner}}} {_number(value)}")
            else:
                lines.append(f"{m.name} {_number(value)}")
    return "\n".join(lines) + "\n"


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return math.nan
    idx = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[idx]


def ingest_metrics(ingest: Ingest | None) -> list[Metric]:
    up = Metric("ww_ingest_up", "gauge", "1 when this process runs an MQTT ingest.")
    connected = Metric("ww_ingest_connected", "gauge", "1 while the ingest is connected.")
    received = Metric("ww_ingest_received_total", "counter", "MQTT messages received.")
    stored = Metric("ww_ingest_stored_total", "counter", "Events stored (new event ids).")
    dups = Metric("ww_ingest_duplicates_total", "counter", "Events already stored (replays).")
    rejected = Metric(
        "ww_ingest_rejected_total", "counter", "Messages rejected by this process, by reason."
    )
    healthy = Metric(
        "ww_ingest_healthy",
        "gauge",
        "1 while the ingest makes progress (0: messages wait and nothing commits, or its"
        " writer is not running; /healthz answers 503).",
    )
    waiting = Metric(
        "ww_ingest_waiting", "gauge", "Messages received and not yet stored or rejected."
    )
    dead = Metric(
        "ww_ingest_dead_letters_total",
        "counter",
        "Messages the store refused on their own, set aside in dead_letters.",
    )
    failures = Metric(
        "ww_ingest_write_failures_total", "counter", "Store writes that failed (then retried)."
    )
    commit_age = Metric(
        "ww_ingest_last_commit_age_seconds", "gauge", "Seconds since the ingest last committed."
    )
    if ingest is None:
        return [up.add(0)]
    s = ingest.stats
    now = time.time_ns() // 1_000_000
    # from the stats alone, so any object with an IngestStats ``stats`` will do
    health = s.health(now)
    up.add(1)
    connected.add(1 if s.connected else 0)
    received.add(s.received)
    stored.add(s.stored)
    dups.add(s.duplicates)
    for reason, n in sorted(Counter(s.rejected).items()):
        rejected.add(n, reason=str(reason))
    healthy.add(1 if health.healthy else 0)
    waiting.add(health.waiting)
    dead.add(s.dead_letters)
    failures.add(s.write_failures)
    if s.last_commit_ms is not None:
        commit_age.add(max(0.0, (now - s.last_commit_ms) / 1000))
    return [
        *(up, connected, received, stored, dups, rejected),
        *(healthy, waiting, dead, failures, commit_age),
    ]


def store_metrics(store: Store, now_ms: int, lag_sample: int = LAG_SAMPLE) -> list[Metric]:
    windows = Metric("ww_fleet_windows", "gauge", "Registered windows, by site.")
    online = Metric("ww_fleet_online", "gauge", "Windows whose availability is online, by site.")
    depth = Metric(
        "ww_window_outbox_depth", "gauge", "Events buffered on the terminal (last health)."
    )
    seen = Metric(
        "ww_window_last_seen_age_seconds", "gauge", "Seconds since a window's last state/health."
    )
    per_site: dict[str, list[int]] = {}
    for row in store.windows():
        site, window = str(row["site"]), str(row["window"])
        counts = per_site.setdefault(site, [0, 0])
        counts[0] += 1
        counts[1] += 1 if row.get("online") else 0
        health: dict[str, Any] | None = row.get("health")
        if health and isinstance(health.get("outbox_depth"), int):
            depth.add(health["outbox_depth"], site=site, window=window)
        if row.get("last_seen_ms") is not None:
            seen.add(max(0.0, (now_ms - int(row["last_seen_ms"])) / 1000), site=site, window=window)
    for site, (n, up) in sorted(per_site.items()):
        windows.add(n, site=site)
        online.add(up, site=site)
    total_online = Metric("ww_fleet_online_total", "gauge", "Windows online, all sites.")
    total_online.add(sum(up for _, up in per_site.values()))

    rejects = Metric(
        "ww_store_rejects_total", "counter", "Messages rejected by all replicas, by reason."
    )
    for reason, n in sorted(store.reject_counts().items()):
        rejects.add(n, reason=reason)

    latest = store.latest_events(limit=lag_sample)
    lags = sorted(
        (int(e["received_ms"]) - int(e["ts_ms"])) / 1000 for e in latest if not e.get("historical")
    )
    lag = Metric(
        "ww_event_delivery_lag_seconds",
        "gauge",
        f"received - happened, over the latest {lag_sample} live events.",
    )
    for q in (0.5, 0.9, 0.99, 1.0):
        lag.add(_quantile(lags, q), quantile=str(q))
    last = Metric("ww_last_event_age_seconds", "gauge", "Seconds since the newest stored event.")
    if latest:
        last.add(max(0.0, (now_ms - max(int(e["received_ms"]) for e in latest)) / 1000))
    return [windows, online, total_online, depth, seen, rejects, lag, last]


def outbound_metrics(deliverer: Deliverer | None, store: Store) -> list[Metric]:
    """Per configured target: this process's delivered / retried / dead counters (the
    ``Deliverer``'s), and from the shared queue the backlog, the dead deliveries waiting
    for a resend and the last success. Only the pending and dead rows are counted (by the
    status index); delivered rows, which grow with every evaluation, are not."""
    if deliverer is None or not deliverer.config.targets:
        return []
    from sqlalchemy import func, select

    from server.outbound.queue import DEAD, PENDING
    from server.store.schema import outbound_deliveries as od
    from server.store.schema import outbound_status

    delivered = Metric(
        "ww_outbound_delivered_total", "counter", "Deliveries a target took (this process)."
    )
    retried = Metric(
        "ww_outbound_retried_total",
        "counter",
        "Failed tries to be retried later: time-outs, 5xx, 429 (this process).",
    )
    dead = Metric(
        "ww_outbound_dead_total",
        "counter",
        "Deliveries given up on: refused, or out of attempts (this process).",
    )
    backlog = Metric("ww_outbound_backlog", "gauge", "Deliveries waiting to be sent, all replicas.")
    waiting_dead = Metric(
        "ww_outbound_dead_deliveries", "gauge", "Dead deliveries not resent, all replicas."
    )
    last = Metric(
        "ww_outbound_last_success_timestamp_seconds",
        "gauge",
        "When a target last took a delivery (Unix time; absent: never).",
    )
    with store.engine.connect() as conn:
        waiting = {
            (t, st): int(n)
            for t, st, n in conn.execute(
                select(od.c.target, od.c.status, func.count())
                .where(od.c.status.in_([PENDING, DEAD]))
                .group_by(od.c.target, od.c.status)
            )
        }
        success = {
            r.target: r.last_success_ms
            for r in conn.execute(
                select(outbound_status.c.target, outbound_status.c.last_success_ms)
            )
        }
    for name in sorted(deliverer.config.targets):
        n = deliverer.counters.get(name, Counter())
        delivered.add(n["delivered"], target=name)
        retried.add(n["retried"], target=name)
        dead.add(n["dead"], target=name)
        backlog.add(waiting.get((name, PENDING), 0), target=name)
        waiting_dead.add(waiting.get((name, DEAD), 0), target=name)
        if success.get(name) is not None:
            last.add(int(success[name] or 0) / 1000, target=name)
    return [delivered, retried, dead, backlog, waiting_dead, last]


def metrics_text(
    ingest: Ingest | None,
    store: Store,
    now_ms: int | None = None,
    deliverer: Deliverer | None = None,
) -> str:
    """Everything, rendered; ``now_ms`` is injectable for tests."""
    now = now_ms if now_ms is not None else time.time_ns() // 1_000_000
    t0 = time.perf_counter()
    metrics = ingest_metrics(ingest) + store_metrics(store, now)
    metrics += outbound_metrics(deliverer, store)
    scrape = Metric("ww_metrics_scrape_seconds", "gauge", "Time spent collecting these metrics.")
    metrics.append(scrape.add(round(time.perf_counter() - t0, 6)))
    return render(metrics)


def metrics_router(
    get_ingest: Callable[[], Ingest | None],
    store: Store,
    *,
    token: str | None = None,
    authorize: Callable[[str, str], bool] | None = None,
    get_deliverer: Callable[[], Deliverer | None] = lambda: None,
) -> APIRouter:
    """``GET /metrics`` for Prometheus. The endpoint reveals the fleet's layout, so with
    ``token`` and/or ``authorize`` a ``Bearer`` header must match the token or be accepted
    by ``authorize(value, path)`` (the app passes service tokens granted ``metrics``);
    with neither, it is open: bind the API to a private network.

    Include it with ``app.include_router(metrics_router(lambda: app.state.ingest, store))``.
    """
    router = APIRouter()

    def allowed(given: str) -> bool:
        if token is not None and hmac.compare_digest(given.encode(), token.encode()):
            return True
        return authorize is not None and bool(given) and authorize(given, "/metrics")

    # A plain def: FastAPI runs it in the thread pool, so store reads do not block the loop.
    @router.get("/metrics", include_in_schema=False)
    def metrics(authorization: str | None = Header(default=None)) -> Response:
        if token is not None or authorize is not None:
            given = (authorization or "").removeprefix("Bearer ").strip()
            if not allowed(given):
                raise HTTPException(
                    401, "metrics token required", headers={"WWW-Authenticate": "Bearer"}
                )
        text = metrics_text(get_ingest(), store, deliverer=get_deliverer())
        return Response(text, media_type=CONTENT_TYPE)

    return router
