"""/metrics: the exposition format, the figures it reports, and the optional token."""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient

from agent.config import load_site
from agent.protocol import Health, SessionOpened
from server.ingest import IngestStats
from server.prometheus import metrics_router, metrics_text
from server.store.db import Store, StoredEvent
from tests.conftest import EXAMPLE_SITE
from tests.deploy import DEPLOY

NOW = 1_800_000_000_000
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-z_]+="[^"\\]*",?)*\})? (\S+)$')


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'm.db'}")
    s.create()
    s.register_site(load_site(EXAMPLE_SITE))
    s.set_availability("qingpu", "w01", True, NOW - 5000)
    s.set_availability("qingpu", "w02", True, NOW - 5000)
    s.set_availability("qingpu", "w03", False, NOW - 5000)
    s.set_health(
        Health(
            site="qingpu",
            window="w01",
            ts_ms=NOW - 10_000,
            uptime_s=60,
            fps=2.0,
            inference_ms=12.0,
            outbox_depth=5,
            model_version="m",
            config_version="c",
        ),
        NOW - 10_000,
    )
    evs = [
        SessionOpened(
            event_id=uuid.uuid4(),
            site="qingpu",
            window="w02",
            seq=i + 1,
            boot_id=uuid.UUID(int=1),
            ts_ms=NOW - 60_000 + i,
            source="bell",
        )
        for i in range(10)
    ]
    s.insert_events([StoredEvent(e, e.ts_ms + 1500) for e in evs])
    s.count_rejects({"forged": 2})
    yield s
    s.close()


def fake_ingest() -> Any:
    stats = IngestStats(received=40, stored=10, duplicates=3, rejected=Counter(malformed=3))
    stats.connected = True
    return SimpleNamespace(stats=stats)


def parse(text: str) -> dict[str, float]:
    """{'name{labels}': value}; asserts every line is valid exposition format."""
    out: dict[str, float] = {}
    typed: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
            continue
        if line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"not exposition format: {line!r}"
        assert m.group(1) in typed, f"sample before its TYPE: {line!r}"
        out[m.group(1) + (m.group(2) or "")] = float(m.group(4))
    return out


def test_metrics_report_fleet_ingest_rejects_and_lag(store: Store) -> None:
    got = parse(metrics_text(cast(Any, fake_ingest()), store, now_ms=NOW))
    assert got['ww_fleet_windows{site="qingpu"}'] == 12
    assert got['ww_fleet_online{site="qingpu"}'] == 2
    assert got["ww_fleet_online_total"] == 2
    assert got['ww_window_outbox_depth{site="qingpu",window="w01"}'] == 5
    assert got['ww_window_last_seen_age_seconds{site="qingpu",window="w01"}'] == 10
    assert got['ww_store_rejects_total{reason="forged"}'] == 2
    assert got['ww_ingest_rejected_total{reason="malformed"}'] == 3
    assert got["ww_ingest_received_total"] == 40 and got["ww_ingest_stored_total"] == 10
    assert got["ww_ingest_connected"] == 1 and got["ww_ingest_up"] == 1
    assert got['ww_event_delivery_lag_seconds{quantile="0.5"}'] == 1.5
    assert got["ww_last_event_age_seconds"] == pytest.approx(58.491)  # newest: ts 9 + 1.5 s


def test_without_ingest_and_events(tmp_path: Path) -> None:
    s = Store(f"sqlite:///{tmp_path / 'e.db'}")
    s.create()
    try:
        got = parse(metrics_text(None, s, now_ms=NOW))
    finally:
        s.close()
    assert got["ww_ingest_up"] == 0
    assert got["ww_fleet_online_total"] == 0
    assert str(got['ww_event_delivery_lag_seconds{quantile="0.5"}']) == "nan"


def test_router_serves_text_format_and_checks_token(store: Store) -> None:
    app = FastAPI()
    app.include_router(metrics_router(lambda: None, store, token="s3cret"))
    with TestClient(app) as client:
        assert client.get("/metrics").status_code == 401
        bad = client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401
        r = client.get("/metrics", headers={"Authorization": "Bearer s3cret"})
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert parse(r.text)["ww_fleet_online_total"] == 2


def test_alert_rules_use_only_exported_metrics(store: Store) -> None:
    """An alert over a metric the server does not export never fires: check each name."""
    exported = {
        name.split("{")[0] for name in parse(metrics_text(cast(Any, fake_ingest()), store, NOW))
    }
    exported |= {"up"}  # Prometheus's own per-target series
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    alerts = [r for g in rules["groups"] for r in g["rules"]]
    assert "WarmWindowAggregatorDown" in {a["alert"] for a in alerts}
    for a in alerts:
        names = set(re.findall(r"\bww_[a-z_]+\b|\bup(?=\{)", a["expr"]))
        assert names, f"{a['alert']}: no metric found in {a['expr']!r}"
        assert names <= exported, f"{a['alert']}: {sorted(names - exported)} not exported"
