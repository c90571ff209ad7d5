"""server/policy/alert_push.py with values: routing, de-duplication, quiet hours, the
rate limit and its summary. No database, no clock: time is passed in."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from server.policy.alert_push import (
    KEY_MAX,
    Plan,
    PushAlert,
    PushRules,
    QuietHours,
    TargetState,
    alert_key,
    plan,
    summary_key,
)

SH = ZoneInfo("Asia/Shanghai")
MIN = 60_000
DISTRICTS = {"qingpu": "青浦区", "zhujiajiao": "青浦区", "xujiahui": "徐汇区"}


def at(hh: int, mm: int = 0, day: int = 2) -> int:
    return int(datetime(2026, 12, day, hh, mm, tzinfo=SH).timestamp() * 1000)


def alert(i: int, site: str = "qingpu", kind: str = "offline", window: str = "") -> PushAlert:
    return PushAlert(f"a{i:04}", site, window or f"w{i:03}", kind, at(10) + i)


def run(
    steps: Sequence[tuple[int, Sequence[PushAlert]]],
    rules: Sequence[PushRules],
) -> list[Plan]:
    """Plan each step with the state the earlier ones left, as the store would keep it."""
    states: dict[str, TargetState] = {}
    out = []
    for now, alerts in steps:
        p = plan(now, alerts, rules, states, DISTRICTS)
        out.append(p)
        for r in rules:
            states[r.target] = TargetState.after(p, r.target, states.get(r.target))
    return out


def test_a_storm_of_200_is_four_messages_and_one_summary_counting_the_rest() -> None:
    rules = [PushRules("ops", max_messages=5)]
    storm = [alert(i) for i in range(200)]
    plans = run([(at(10, 1), storm), (at(10, 2), []), (at(10, 3), [])], rules)
    sent = [m for p in plans for m in p.messages]
    assert [m.kind for m in sent] == ["alert"] * 4 + ["summary"]
    assert len(sent[-1].alerts) == 196 and sent[-1].reason == "storm"
    assert sent[-1].counts() == {"offline": 196}
    carried = [a.alert_id for m in sent for a in m.alerts]
    assert sorted(carried) == sorted(a.alert_id for a in storm)  # each alert once


def test_no_rate_window_ever_holds_more_than_max_messages() -> None:
    """Seeded: alerts of random kinds at random minutes over three hours, planned every
    minute; every 10-minute window holds at most 5 messages and every alert is carried
    exactly once, all of them by the end."""
    rng = random.Random(18)
    kinds = ["offline", "bad_review", "fault", "away_without_sign"]
    rules = [PushRules("ops", max_messages=5, per_ms=10 * MIN)]
    raised: dict[int, list[PushAlert]] = {}
    n = 0
    for minute in range(180):
        for _ in range(rng.choice([0, 0, 0, 1, 2, 8, 40])):
            n += 1
            site = rng.choice(list(DISTRICTS))
            a = PushAlert(f"r{n}", site, f"w{rng.randrange(6)}", rng.choice(kinds), at(9) + minute)
            raised.setdefault(minute, []).append(a)
    plans = run([(at(9) + m * MIN, raised.get(m, [])) for m in range(200)], rules)
    times = sorted(m.at_ms for p in plans for m in p.messages)
    for t in times:
        assert sum(1 for u in times if t <= u < t + 10 * MIN) <= 5
    carried = [a.alert_id for p in plans for m in p.messages for a in m.alerts]
    assert len(carried) == len(set(carried)) == n
    assert n > 500  # a real storm


def test_the_same_alert_id_never_goes_twice_to_one_target() -> None:
    rules = [PushRules("ops")]
    a = alert(1)
    plans = run([(at(10), [a]), (at(10, 1), [a, a]), (at(11), [a])], rules)
    assert [len(p.messages) for p in plans] == [1, 0, 0]
    assert [r.state for p in plans for r in p.records] == ["sent"]


def test_identical_alerts_raised_together_travel_as_one_and_repeats_fold() -> None:
    rules = [PushRules("ops", repeat_ms=10 * MIN, fold_ms=MIN)]
    same = [PushAlert(f"x{i}", "qingpu", "w03", "away_without_sign", at(10) + i) for i in range(3)]
    again = PushAlert("x9", "qingpu", "w03", "away_without_sign", at(10, 2))
    other = PushAlert("y1", "qingpu", "w04", "away_without_sign", at(10, 2))
    plans = run([(at(10), same), (at(10, 2), [again, other]), (at(10, 3), [])], rules)
    assert [(m.kind, len(m.alerts)) for m in plans[0].messages] == [("alert", 3)]
    assert plans[0].messages[0].key == alert_key("x0")
    # The repeat waits for a summary; the same kind at another window is news: it goes,
    # but behind the summary that is now pending (a storm's order is kept).
    assert [r.state for r in plans[1].records] == ["folded", "folded"]
    assert [(m.kind, [a.alert_id for a in m.alerts]) for m in plans[2].messages] == [
        ("summary", ["x9", "y1"])
    ]


def test_routing_sends_a_districts_alerts_only_to_its_targets() -> None:
    rules = [
        PushRules("qingpu-group", districts=frozenset({"青浦区"})),
        PushRules("xuhui-group", districts=frozenset({"徐汇区"})),
        PushRules("zhujiajiao-mail", sites=frozenset({"zhujiajiao"})),
        PushRules("city", kinds=frozenset({"case_overdue"})),
    ]
    alerts = [
        alert(1, "qingpu"),
        alert(2, "zhujiajiao"),
        alert(3, "xujiahui"),
        alert(4, "xujiahui", "case_overdue"),
        alert(5, "qingpu", "conduct"),  # not a kind any of them takes
    ]
    got = plan(at(10), alerts, rules, {}, DISTRICTS)
    to: dict[str, set[str]] = {r.target: set() for r in rules}
    for m in got.messages:
        to[m.target] |= {a.alert_id for a in m.alerts}
    assert to == {
        "qingpu-group": {"a0001", "a0002"},
        "xuhui-group": {"a0003", "a0004"},
        "zhujiajiao-mail": {"a0002"},
        "city": {"a0004"},
    }


def test_quiet_hours_hold_then_one_summary_after() -> None:
    rules = [PushRules("ops", quiet=QuietHours.parse("22:00-07:00"))]
    night = [alert(i, kind="terminal_silent") for i in range(7)]
    plans = run(
        [
            (at(23, 30, day=1), night[:3]),
            (at(3, 0), night[3:]),
            (at(6, 59), []),
            (at(7, 0), []),
            (at(7, 1), []),
        ],
        rules,
    )
    assert [len(p.messages) for p in plans] == [0, 0, 0, 1, 0]
    summary = plans[3].messages[0]
    assert summary.kind == "summary" and summary.reason == "quiet"
    assert [a.alert_id for a in summary.alerts] == [a.alert_id for a in night]
    assert summary.key == summary_key(a.alert_id for a in reversed(night))


def test_quiet_hours_may_drop_instead() -> None:
    rules = [PushRules("ops", quiet=QuietHours.parse("22:00-07:00", "drop"))]
    steps = [(at(23, 0), [alert(1)]), (at(8, 0, day=3), []), (at(8, 1, day=3), [alert(1)])]
    plans = run(steps, rules)
    assert [len(p.messages) for p in plans] == [0, 0, 0]
    assert [r.state for r in plans[0].records] == ["dropped"]


def test_a_daytime_quiet_span_and_the_span_edges() -> None:
    q = QuietHours.parse("12:00-13:30")
    assert not q.covers(at(11, 59), "Asia/Shanghai")
    assert q.covers(at(12, 0), "Asia/Shanghai") and q.covers(at(13, 29), "Asia/Shanghai")
    assert not q.covers(at(13, 30), "Asia/Shanghai")
    night = QuietHours.parse("22:00-07:00")
    assert night.covers(at(22, 0), "Asia/Shanghai") and night.covers(at(6, 59), "Asia/Shanghai")
    assert not night.covers(at(7, 0), "Asia/Shanghai")
    # The centre's time zone, not the server's: 10:00 in Shanghai is 02:00 UTC.
    assert QuietHours.parse("01:00-03:00").covers(at(10, 0), "UTC")
    for bad in ("22:00", "25:00-07:00", "22:00-22:00", "7-8", "22:0-07:00"):
        with pytest.raises(ValueError, match="quiet hours"):
            QuietHours.parse(bad)


def test_keys_fit_the_queue_and_a_summary_key_ignores_order() -> None:
    long_id = "offline-" + "s" * 32 + "-" + "w" * 32 + "-1764650000000"
    assert len(alert_key(long_id)) <= KEY_MAX and alert_key(long_id) != alert_key(long_id + "1")
    assert alert_key("abc") == "alert:abc"
    assert summary_key(["b", "a"]) == summary_key(["a", "b"]) != summary_key(["a"])
    assert len(summary_key(str(i) for i in range(1000))) <= KEY_MAX


def test_a_target_needs_room_to_speak_besides_its_summary() -> None:
    with pytest.raises(ValueError, match="max_messages"):
        PushRules("ops", max_messages=1)
