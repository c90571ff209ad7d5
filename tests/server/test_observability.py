"""What could be seen (contract version 3, issue 16): a verdict the camera could not see
is *not observed*, never a violation. On SQLite and PostgreSQL, from the rollups and the
rows: rates divide by the observed sessions, a masked clerk is not failed (a clerk with
as many real misses is), the ranking leaves such sessions out, a window that cannot see
its clerk raises its own fleet alert, a duplicate counts once, the exports carry it."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import select

from agent import protocol as p
from server import views
from server.api.app import ServerSettings, create_app
from server.metrics.assessment import PassThresholds, verdict
from server.metrics.measures import Scope, compute, smile_star_ranking
from server.metrics.periods import period_bounds
from server.policy.clock import NotObservedLimits
from server.store.db import Store, StoredEvent
from server.store.schema import alerts, daily_rollups, sessions
from server.sweep import run_once
from tests.conftest import EXAMPLE_SITE
from tests.server.test_api import sign_in
from tests.server.test_measures import Fleet, ms

SUMMARY_V3: Any = p.CONTRACT.model_for("session_summary")
DAY3 = ms(2026, 11, 3, 8, 0)
EVENING = ms(2026, 11, 3, 18, 0)
HOUR = 3_600_000


def v3(f: Fleet, window: str, opened: int, *, unseen: tuple[str, ...] = (), **kw: Any) -> Any:
    """A version 3 summary as a terminal sends it: a verdict not observed says False."""
    base = f.session(window, opened, **kw)
    f.events.remove(base)
    ev = SUMMARY_V3.model_validate(
        base.model_dump()
        | {
            "schema_version": 3,
            "not_observed": list(unseen) or None,
            "observed_share": 0.3 if unseen else 0.97,
        }
    )
    f.events.append(ev)
    return ev


def fleet() -> tuple[Fleet, dict[str, list[Any]]]:
    """One day at three windows.

    * w01, c-mask: 15 sessions stood and smiled; 10 in a mask, the greeting smile not
      observed (40 % of the window's sessions).
    * w02, c-real: 15 the same; 10 seen not smiling (real misses).
    * w03, c-third: 18 fully observed; 2 whose stand on call was not observed (10 %).
    """
    f = Fleet()
    refs: dict[str, list[Any]] = {"masked": [], "missed": [], "unseen_stand": []}
    for i in range(25):
        at = DAY3 + i * 15 * 60_000
        masked = i % 5 in (1, 3)  # 10 of 25
        ev = v3(f, "w01", at, smiled=not masked, unseen=("smiled_at_greeting",) if masked else ())
        if masked:
            refs["masked"].append(ev)
        ev = v3(f, "w02", at + 60_000, smiled=not masked)
        if masked:
            refs["missed"].append(ev)
        if i < 20:
            blind = i in (4, 9)
            ev = v3(f, "w03", at + 120_000, stood=not blind, unseen=("stood_on_call",) * blind)
            if blind:
                refs["unseen_stand"].append(ev)
    return f, refs


@pytest.fixture
def loaded(store: Store) -> tuple[Store, dict[str, list[Any]]]:
    for clerk, window in (("c-mask", "w01"), ("c-real", "w02"), ("c-third", "w03")):
        store.add_clerk(clerk, clerk, "qingpu")
        store.sign_in(clerk, "qingpu", window, ms(2026, 11, 1, 8, 0))
    f, refs = fleet()
    store.insert_events([StoredEvent(e, e.ts_ms) for e in f.events])
    return store, refs


def ids(evs: list[Any]) -> list[str]:
    return sorted(str(e.event_id) for e in evs)


def test_the_store_keeps_what_could_not_be_seen(loaded: tuple[Store, Any]) -> None:
    store, refs = loaded
    with store.engine.connect() as conn:
        rows = {r.event_id: r for r in conn.execute(select(sessions))}
        conduct = [a for a in conn.execute(select(alerts)) if a.kind == "conduct"]
    masked = rows[str(refs["masked"][0].event_id)]
    assert masked.smiled_at_greeting is False and masked.smiled_at_greeting_unobserved is True
    assert masked.stood_on_call_unobserved is False and masked.observed_share == 0.3
    missed = rows[str(refs["missed"][0].event_id)]
    assert missed.smiled_at_greeting is False and missed.smiled_at_greeting_unobserved is False
    # a verdict not observed is no miss: no conduct alert for the masked or blind sessions
    named = {a.detail["session_id"] for a in conduct}
    assert {str(e.session_id) for e in refs["missed"]} == named
    assert all(a.detail["misses"] == ["smile_at_greeting"] for a in conduct)


@pytest.mark.parametrize("use_rollups", [True, False])
def test_rates_divide_by_the_observed_sessions(
    loaded: tuple[Store, Any], use_rollups: bool
) -> None:
    store, _ = loaded
    start, end = period_bounds("2026-11")
    by = compute(store.engine, Scope(), start, end, group_by="window", rollups=use_rollups)
    w1, w2, w3 = (by[f"qingpu/w0{i}"] for i in (1, 2, 3))
    assert (w1.sessions, w1.smile_at_greeting_not_observed, w1.smile_at_greeting_rate) == (
        25,
        10,
        1.0,  # 15 smiled of the 15 observed; 15/25 = 0.6 if the masks counted as misses
    )
    assert (w1.not_observed_sessions, w1.not_observed_share) == (10, 0.4)
    assert (w2.smile_at_greeting_not_observed, w2.smile_at_greeting_rate) == (0, 0.6)
    assert (w3.stand_on_call_not_observed, w3.stand_on_call_rate) == (2, 1.0)  # 18/18
    assert (w3.not_observed_share, w3.smile_at_greeting_rate) == (0.1, 1.0)
    total = compute(store.engine, Scope(), start, end, rollups=use_rollups)[None]
    assert total.sessions == 70 and total.not_observed_sessions == 12
    assert total.smile_at_greeting_rate == round(50 / 60, 4)  # 50 smiled of the 60 seen
    assert total.stand_on_call_rate == 1.0 and total.stand_on_call_not_observed == 2
    trend = views.trend(store.engine, Scope(window="w01"), start, end, "Asia/Shanghai")
    day = next(d for d in trend if d["sessions"])
    assert (day["smile_rate"], day["not_observed_sessions"]) == (1.0, 10)


def test_a_masked_clerk_is_not_failed_a_clerk_with_real_misses_is(
    loaded: tuple[Store, Any],
) -> None:
    store, refs = loaded
    t = PassThresholds()  # min_sessions 20: the masked clerk has 15 observed smiles
    masked = verdict(store.engine, "c-mask", "2026-11", t)
    real = verdict(store.engine, "c-real", "2026-11", t)
    crit = {c["criterion"]: c for c in masked["criteria"]}
    assert crit["smile_at_greeting_rate"]["status"] == "insufficient_observed_sessions"
    assert crit["smile_at_greeting_rate"]["observed_sessions"] == 15
    assert crit["smile_at_greeting_rate"]["not_observed"] == 10
    assert sorted(crit["smile_at_greeting_rate"]["not_observed_evidence"]) == ids(refs["masked"])
    assert crit["stand_on_call_rate"]["status"] == "pass"  # 25 observed
    assert masked["result"] == "pass" and masked["failures"] == []
    assert masked["thresholds"] == t.model_dump()  # traceable
    assert real["result"] == "fail"
    (failure,) = real["failures"]
    assert failure["criterion"] == "smile_at_greeting_rate" and failure["value"] == 0.6
    assert sorted(failure["evidence"]) == ids(refs["missed"])

    # with a lower minimum the masked clerk's smiles are judged, and pass (15 of 15)
    low = verdict(store.engine, "c-mask", "2026-11", PassThresholds(min_sessions=10))
    crit = {c["criterion"]: c for c in low["criteria"]}
    assert crit["smile_at_greeting_rate"]["status"] == "pass" and low["result"] == "pass"
    assert crit["smile_at_greeting_rate"]["value"] == 1.0
    # the blind stands are listed apart, never as evidence
    third = verdict(store.engine, "c-third", "2026-11", PassThresholds(min_sessions=10))
    stand = next(c for c in third["criteria"] if c["criterion"] == "stand_on_call_rate")
    assert stand["status"] == "pass" and sorted(stand["not_observed_evidence"]) == ids(
        refs["unseen_stand"]
    )


def test_the_ranking_leaves_sessions_not_observed_out(loaded: tuple[Store, Any]) -> None:
    store, _ = loaded
    start, end = period_bounds("2026-11")
    ranked = {r["clerk_id"]: r for r in smile_star_ranking(store.engine, Scope(), start, end, 20)}
    mask, real, third = ranked["c-mask"], ranked["c-real"], ranked["c-third"]
    assert (mask["exemplary"], mask["sessions"], mask["not_observed"]) == (15, 15, 10)
    assert not mask["eligible"] and mask["rank"] is None  # 15 observed sessions < 20
    assert (real["exemplary"], real["sessions"], real["not_observed"]) == (15, 25, 0)
    assert (third["exemplary"], third["sessions"], third["not_observed"]) == (18, 18, 2)
    low = {r["clerk_id"]: r for r in smile_star_ranking(store.engine, Scope(), start, end, 15)}
    # 15 of 15 ranks behind 18 of 18 (Wilson) and ahead of 15 of 25: masks neither help
    # nor harm
    assert [low[c]["rank"] for c in ("c-third", "c-mask", "c-real")] == [1, 2, 3]


def test_a_window_that_cannot_see_its_clerk_raises_a_camera_alert(
    loaded: tuple[Store, Any],
) -> None:
    store, _ = loaded
    raised = run_once(store, EVENING)
    camera = [a for a in raised if a["kind"] == "not_observed"]
    assert [
        (a["window"], a["detail"]["not_observed"], a["detail"]["sessions"]) for a in camera
    ] == [
        ("w01", 10, 25)  # 40 %; w03's 10 % and w02's 0 % raise nothing
    ]
    assert camera[0]["detail"]["share"] == 0.4
    assert run_once(store, EVENING) == []  # a second sweep (or replica): nothing again
    assert run_once(store, EVENING + HOUR) == []  # nor later the same day
    assert store.ack_alert(camera[0]["alert_id"], "insp", "摄像头已调整", EVENING + 2 * HOUR)
    assert [a for a in run_once(store, EVENING + 3 * HOUR) if a["kind"] == "not_observed"] == []
    # the day's sessions have left the look-back: nothing to raise
    assert run_once(store, EVENING + 25 * HOUR) == []
    # a stricter limit also catches w03 (10 % of 20)
    strict = NotObservedLimits(share=0.1, min_sessions=10)
    got = [a["window"] for a in run_once(store, EVENING, not_observed=strict)]
    assert got == ["w03"]
    # too few sessions: no judgement, however many were not observed
    few = NotObservedLimits(share=0.1, min_sessions=26)
    assert run_once(store, EVENING + 2 * 24 * HOUR - 30 * 60_000, not_observed=few) == []


def test_a_duplicate_v3_summary_is_stored_once(loaded: tuple[Store, Any]) -> None:
    store, refs = loaded
    start, end = period_bounds("2026-11")

    def state() -> tuple[Any, ...]:
        with store.engine.connect() as conn:
            n = conn.execute(select(sessions.c.session_id)).all()
            roll = sorted(tuple(r) for r in conn.execute(select(daily_rollups)))
        return len(n), roll

    before = state()
    m_before = compute(store.engine, Scope(window="w01"), start, end)[None]
    again = refs["masked"][0]
    # the same event again, and a second summary of the same session (a new event id)
    twin = SUMMARY_V3.model_validate(again.model_dump() | {"event_id": uuid.uuid4()})
    assert store.insert_events([StoredEvent(again, again.ts_ms)]) == []
    store.insert_events([StoredEvent(twin, twin.ts_ms), StoredEvent(twin, twin.ts_ms)])
    assert state() == before
    assert compute(store.engine, Scope(window="w01"), start, end)[None] == m_before
    # and a rebuild from the rows gives the rollups the ingest kept
    store.rebuild_rollups()
    assert state() == before


@pytest.fixture
def client(loaded: tuple[Store, Any]) -> Iterator[TestClient]:
    store, _ = loaded
    app = create_app(ServerSettings(db_url=store.url, sites=[EXAMPLE_SITE], mqtt=None))
    with TestClient(app) as c:
        app.state.accounts.add_user("admin", "admin-pass-1", "district_admin", "district:青浦区")
        sign_in(c, "admin", "admin-pass-1")
        yield c


def test_the_api_and_exports_carry_what_was_not_observed(
    client: TestClient, loaded: tuple[Store, Any]
) -> None:
    _, refs = loaded
    masked = str(refs["masked"][0].session_id)
    tl = client.get("/api/timeline", params={"period": "2026-11", "site": "qingpu"}).json()
    one = next(s for s in tl if s["session_id"] == masked)
    smiled = next(st for st in one["steps"] if st["step"] == "smiled")
    assert smiled == smiled | {"ok": False, "not_observed": True}
    assert one["not_observed"]["smiled_at_greeting"] and one["observed_share"] == 0.3
    v = client.get("/api/assessment/c-mask", params={"month": "2026-11"}).json()
    assert v["result"] == "pass" and v["thresholds"]["min_sessions"] == 20
    rows = client.get("/api/assessments", params={"month": "2026-11", "site": "qingpu"}).json()
    assert {r["clerk_id"]: r["result"] for r in rows}["c-real"] == "fail"
    ranking = client.get("/api/ranking", params={"period": "2026-11", "site": "qingpu"}).json()
    assert {r["clerk_id"]: r["not_observed"] for r in ranking}["c-mask"] == 10

    r = client.get("/api/export/sessions.csv", params={"period": "2026-11", "site": "qingpu"})
    assert r.status_code == 200, r.text
    table = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert len(table) == 70
    by_id = {row["session_id"]: row for row in table}
    assert by_id[masked]["not_observed.smiled_at_greeting"] == "True"
    assert by_id[masked]["observed_share"] == "0.3"
    assert sum(row["not_observed.smiled_at_greeting"] == "True" for row in table) == 10
    assert sum(row["not_observed.stood_on_call"] == "True" for row in table) == 2
    r = client.get("/api/export/measures_by_window.xlsx", params={"period": "2026-11"})
    sheet = load_workbook(io.BytesIO(r.content)).active
    assert sheet is not None
    head, *body = [list(row) for row in sheet.iter_rows(values_only=True)]
    w01 = dict(zip(head, next(b for b in body if b[0] == "qingpu/w01"), strict=True))
    assert (w01["smile_at_greeting_not_observed"], w01["not_observed_share"]) == (10, 0.4)
    assert w01["smile_at_greeting_rate"] == 1.0
    r = client.get("/api/export/assessment.csv", params={"period": "2026-11", "site": "qingpu"})
    got = {
        row["clerk_id"]: row for row in csv.DictReader(io.StringIO(r.content.decode("utf-8-sig")))
    }
    assert got["c-mask"]["not_judged"] == "smile_at_greeting_rate"
    assert got["c-mask"]["not_observed_sessions"] == "10" and got["c-real"]["failed"] == (
        "smile_at_greeting_rate"
    )
