"""What events cause, as plain values: events in, rows out; no database."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from agent import protocol as p
from server.policy.events import (
    CASE_WORKING_DAYS,
    derive,
    offline_alert,
    projected,
)

SH = ZoneInfo("Asia/Shanghai")
TZ = {"qingpu": "Asia/Shanghai", "kashgar": "Asia/Urumqi"}


def ms(day: int, hour: int, minute: int = 0, tz: ZoneInfo = SH) -> int:
    """November 2026 (Monday the 2nd), local time."""
    return int(datetime(2026, 11, day, hour, minute, tzinfo=tz).timestamp() * 1000)


_ids = iter(range(1, 10_000))


def head(ts_ms: int, window: str = "w03", site: str = "qingpu", **kw: Any) -> dict[str, Any]:
    n = next(_ids)
    return {
        "event_id": uuid.UUID(int=n),
        "site": site,
        "window": window,
        "seq": n,
        "boot_id": uuid.UUID(int=0),
        "ts_ms": ts_ms,
        **kw,
    }


def summary(opened: int, **kw: Any) -> p.SessionSummary:
    fields: dict[str, Any] = {
        "opened_ms": opened,
        "closed_ms": opened + 300_000,
        "closed_by": "finish_key",
        "stood_on_call": True,
        "smiled_at_greeting": True,
        "stood_at_farewell": True,
        "see_off_ms": 4000,
    }
    session = kw.pop("session_id", uuid.uuid4())
    return p.SessionSummary(**head(opened + 305_000, session_id=session), **fields | kw)


def review(ts: int, rating: p.Rating, **kw: Any) -> p.Evaluated:
    return p.Evaluated(**head(ts, site=kw.pop("site", "qingpu")), rating=rating, **kw)


def roster(*spans: tuple[str, int, int, str]) -> Any:
    """``clerk_at`` over (window, start, end, clerk) spans, as the store's lookup answers."""

    def clerk_at(site: str, window: str, t_ms: int) -> str | None:
        return next((c for w, a, b, c in spans if w == window and a <= t_ms < b), None)

    return clerk_at


NOBODY = roster()


def test_a_clean_session_is_a_row_and_raises_nothing() -> None:
    s = summary(ms(2, 10))
    got = derive([s], TZ, roster(("w03", ms(2, 9), ms(2, 18), "c-li")))
    assert got.alerts == [] and got.cases == []
    [row] = got.sessions
    assert row["session_id"] == str(s.session_id) and row["clerk_id"] == "c-li"
    assert (row["opened_ms"], row["see_off_ms"], row["rating"]) == (ms(2, 10), 4000, None)


def test_session_is_attributed_to_the_clerk_at_its_opening() -> None:
    # opened 09:55 under c-li, summarised after c-wang took over at 10:00
    s = summary(ms(2, 9, 55))
    clerks = roster(("w03", ms(2, 8), ms(2, 10), "c-li"), ("w03", ms(2, 10), ms(2, 18), "c-wang"))
    assert derive([s], TZ, clerks).sessions[0]["clerk_id"] == "c-li"


def test_missed_stands_and_smile_raise_one_conduct_alert_naming_them() -> None:
    s = summary(ms(2, 10), stood_on_call=False, smiled_at_greeting=False)
    [alert] = derive([s], TZ, NOBODY).alerts
    assert alert == {
        "alert_id": str(s.event_id),
        "site": "qingpu",
        "window": "w03",
        "kind": "conduct",
        "ts_ms": s.ts_ms,
        "detail": {
            "misses": ["stand_on_call", "smile_at_greeting"],
            "session_id": str(s.session_id),
        },
    }
    farewell = summary(ms(2, 11), stood_at_farewell=False)
    assert derive([farewell], TZ, NOBODY).alerts[0]["detail"]["misses"] == ["stand_at_farewell"]


def test_a_bad_review_raises_an_alert_and_opens_a_case_due_in_15_working_days() -> None:
    bad = review(ms(2, 10), p.Rating.DISSATISFIED)  # Monday 2 Nov
    got = derive([bad], TZ, roster(("w03", ms(1, 0), ms(30, 0), "c-li")))
    assert [a["kind"] for a in got.alerts] == ["bad_review"]
    assert got.alerts[0]["detail"] == {"rating": "dissatisfied"}
    [case] = got.cases
    assert CASE_WORKING_DAYS == 15
    # 15 working days after Mon 2 Nov is Mon 23 Nov, to its last millisecond
    assert case["due_ms"] == ms(24, 0) - 1
    assert case | {"due_ms": 0} == {
        "case_id": str(bad.event_id),
        "site": "qingpu",
        "window": "w03",
        "clerk_id": "c-li",
        "session_id": None,
        "rating": "dissatisfied",
        "opened_ms": ms(2, 10),
        "due_ms": 0,
        "due_provisional": False,
        "status": "open",
    }
    [row] = got.evaluations
    assert (row["rating"], row["suspect"], row["clerk_id"]) == ("dissatisfied", False, "c-li")


def test_the_case_clock_runs_in_the_sites_own_zone() -> None:
    urumqi = ZoneInfo("Asia/Urumqi")
    bad = review(ms(2, 10, tz=urumqi), p.Rating.VERY_DISSATISFIED, site="kashgar")
    [case] = derive([bad], TZ, NOBODY).cases
    assert case["due_ms"] == ms(24, 0, tz=urumqi) - 1
    # a site the store does not know is clocked in Shanghai
    stray = review(ms(2, 10), p.Rating.DISSATISFIED, site="nowhere")
    assert derive([stray], TZ, NOBODY).cases[0]["due_ms"] == ms(24, 0) - 1


def test_suspect_and_good_reviews_are_rows_but_open_nothing() -> None:
    suspect = review(ms(2, 10), p.Rating.VERY_DISSATISFIED, suspect=True, suspect_reason="repeat")
    good = review(ms(2, 11), p.Rating.SATISFIED)
    got = derive([suspect, good], TZ, NOBODY)
    assert got.alerts == [] and got.cases == []
    assert [(e["suspect"], e["suspect_reason"]) for e in got.evaluations] == [
        (True, "repeat"),
        (False, None),
    ]


def test_an_absence_alerts_once_and_only_its_closing_record_is_a_row() -> None:
    started = ms(2, 10)
    opening = p.Away(**head(started + 60_000), started_ms=started, with_sign=False, violation=True)
    closing = p.Away(
        **head(started + 720_000),
        started_ms=started,
        ended_ms=started + 720_000,
        with_sign=False,
        violation=True,
    )
    got = derive([opening, closing], TZ, roster(("w03", ms(2, 9), ms(2, 18), "c-li")))
    [alert] = got.alerts
    assert alert["alert_id"] == f"away-qingpu-w03-{started}"
    assert alert["detail"] == {"started_ms": started, "ended_ms": None}  # the first record's
    [row] = got.away_periods
    assert (row["event_id"], row["ended_ms"], row["clerk_id"]) == (
        str(closing.event_id),
        started + 720_000,
        "c-li",
    )
    excused = p.Away(
        **head(ms(2, 12)), started_ms=ms(2, 11), ended_ms=ms(2, 12), with_sign=True, violation=False
    )
    got = derive([excused], TZ, NOBODY)
    assert got.alerts == [] and [r["violation"] for r in got.away_periods] == [False]


def test_faults_until_cleared_and_the_sign_while_present_alert() -> None:
    fault = p.Fault(**head(ms(2, 10)), code="camera_frozen", detail="no frame for 30 s")
    cleared = p.Fault(**head(ms(2, 11)), code="camera_frozen", cleared=True)
    sign = p.SignWhilePresent(**head(ms(2, 12)), started_ms=ms(2, 11), duration_ms=60_000)
    got = derive([fault, cleared, sign], TZ, NOBODY)
    assert [(a["kind"], a["detail"]) for a in got.alerts] == [
        ("fault", {"code": "camera_frozen", "detail": "no frame for 30 s"}),
        ("sign_while_present", {"duration_ms": 60_000}),
    ]
    assert got.sessions == got.evaluations == got.away_periods == []


def test_two_summaries_of_one_session_give_the_first_row() -> None:
    sid = uuid.uuid4()
    first = summary(ms(2, 10), session_id=sid)
    second = summary(ms(2, 10), session_id=sid, rating=p.Rating.SATISFIED)
    got = derive([first, second], TZ, NOBODY)
    assert [r["event_id"] for r in got.sessions] == [str(first.event_id)]


def test_events_that_feed_nothing_cause_nothing() -> None:
    opened = p.SessionOpened(**head(ms(2, 10)), source="bell")
    stood = p.StoodUp(**head(ms(2, 10)), phase="greeting", after_ms=900, on_time=True)
    assert projected([opened, stood]) == []
    got = derive([opened, stood], TZ, NOBODY)
    assert got.sessions == got.evaluations == got.away_periods == got.cases == got.alerts == []


def test_offline_alert_is_keyed_by_the_device_and_the_time() -> None:
    assert offline_alert("qingpu", "w03", 1_000) == {
        "alert_id": "offline-qingpu-w03-1000",
        "site": "qingpu",
        "window": "w03",
        "kind": "offline",
        "ts_ms": 1_000,
        "detail": {},
    }
