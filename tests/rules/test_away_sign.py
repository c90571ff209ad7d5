"""W-AWAY-SIGN: away without the sign during opening hours, and the sign while present.

away_after_s = 60 s, sign_present_flag_s = 300 s.
"""

from __future__ import annotations

from agent.protocol import Clause
from agent.rules import Shutdown, Sign, Tick
from tests.rules.script import brief, ev, gone, rules, seen


def test_away_without_sign_in_hours_is_a_violation_with_its_duration() -> None:
    r = rules()
    assert r.run([seen(0), gone(10_000), (69_999, Tick())]) == []
    assert r.state().away is False
    opened = r.tick(70_000)
    assert brief(opened) == [
        ev("Away", 70_000, started_ms=10_000, ended_ms=None, with_sign=False, violation=True),
    ]
    assert opened[0].clauses == (Clause.W_AWAY_SIGN,)
    assert opened[0].session_id is None
    assert r.state().away is True
    closed = r.observe(seen(100_000))
    assert brief(closed) == [
        ev("Away", 100_000, started_ms=10_000, ended_ms=100_000, with_sign=False,
           violation=True),
    ]  # fmt: skip
    assert r.state().away is False


def test_a_short_absence_leaves_no_trace() -> None:
    assert rules().run([seen(0), gone(10_000), gone(60_000), seen(69_999)]) == []


def test_away_with_the_sign_is_recorded_but_not_a_violation() -> None:
    drafts = rules().run([seen(0), (5_000, Sign(up=True)), gone(10_000), seen(200_000)])
    assert brief(drafts) == [
        ev("Away", 200_000, started_ms=10_000, ended_ms=200_000, with_sign=True,
           violation=False),
    ]  # fmt: skip


def test_away_outside_opening_hours_is_not_a_violation() -> None:
    drafts = rules(in_hours=False).run([seen(0), gone(10_000), seen(200_000)])
    assert brief(drafts) == [
        ev("Away", 200_000, started_ms=10_000, ended_ms=200_000, with_sign=False,
           violation=False),
    ]  # fmt: skip


def test_absent_at_opening_time_becomes_a_violation_a_minute_after_opening() -> None:
    drafts = rules(in_hours=False).run([
        seen(0),
        gone(1_000),
        (100_000, Tick(in_hours=True)),
        (159_999, Tick()),
        (160_000, Tick()),
    ])  # fmt: skip
    assert brief(drafts) == [
        ev("Away", 160_000, started_ms=1_000, ended_ms=None, with_sign=False, violation=True),
    ]


def test_closing_time_stops_the_violation_clock() -> None:
    drafts = rules().run([
        seen(0),
        gone(1_000),
        (30_000, Tick(in_hours=False)),   # 29 s exposed, then closed
        (500_000, Tick()),
        seen(600_000),
    ])  # fmt: skip
    assert brief(drafts) == [
        ev("Away", 600_000, started_ms=1_000, ended_ms=600_000, with_sign=False,
           violation=False),
    ]  # fmt: skip


def test_sign_put_up_late_does_not_undo_the_violation() -> None:
    drafts = rules().run([seen(0), gone(10_000), (80_000, Sign(up=True)), seen(100_000)])
    assert brief(drafts) == [
        ev("Away", 70_000, started_ms=10_000, ended_ms=None, with_sign=False, violation=True),
        ev("Away", 100_000, started_ms=10_000, ended_ms=100_000, with_sign=True,
           violation=True),
    ]  # fmt: skip


def test_sign_taken_down_while_away_starts_the_clock_then() -> None:
    drafts = rules().run([
        seen(0),
        (1_000, Sign(up=True)),
        gone(10_000),
        (50_000, Sign(up=False)),
        (109_999, Tick()),
        (110_000, Tick()),
    ])  # fmt: skip
    assert brief(drafts) == [
        ev("Away", 110_000, started_ms=10_000, ended_ms=None, with_sign=True, violation=True),
    ]


def test_sign_up_while_present_for_long_is_flagged_when_it_comes_down() -> None:
    r = rules()
    assert r.run([seen(0), (10_000, Sign(up=True)), (300_000, Tick())]) == []
    assert r.state().sign_up is True
    drafts = r.feed(310_000, Sign(up=False))
    assert brief(drafts) == [
        ev("SignWhilePresent", 310_000, started_ms=10_000, duration_ms=300_000),
    ]
    assert drafts[0].clauses == (Clause.W_AWAY_SIGN,)


def test_sign_up_while_present_just_under_the_limit_is_fine() -> None:
    assert rules().run([seen(0), (10_000, Sign(up=True)), (309_999, Sign(up=False))]) == []


def test_sign_stretch_ends_when_the_clerk_left_not_when_away_was_confirmed() -> None:
    drafts = rules().run([
        seen(0),
        (1_000, Sign(up=True)),
        gone(401_000),            # left after 400 s with the sign up
        (470_000, Tick()),        # away confirmed at 461 000
        seen(500_000),            # back; sign still up: a new stretch starts
        (600_000, Sign(up=False)),  # 100 s: under the limit
    ])  # fmt: skip
    assert brief(drafts) == [
        ev("SignWhilePresent", 461_000, started_ms=1_000, duration_ms=400_000),
        ev("Away", 500_000, started_ms=401_000, ended_ms=500_000, with_sign=True,
           violation=False),
    ]  # fmt: skip


def test_sign_while_present_outside_hours_is_not_counted() -> None:
    drafts = rules(in_hours=False).run([
        seen(0),
        (1_000, Sign(up=True)),
        (3_600_000, Tick(in_hours=True)),      # opening: the stretch starts now
        (3_899_999, Tick()),
        (3_900_000, Sign(up=False)),           # exactly 300 s inside hours
    ])  # fmt: skip
    assert brief(drafts) == [
        ev("SignWhilePresent", 3_900_000, started_ms=3_600_000, duration_ms=300_000),
    ]


def test_closing_time_and_shutdown_end_the_sign_stretch() -> None:
    drafts = rules().run([seen(0), (0, Sign(up=True)), (400_000, Tick(in_hours=False))])
    assert brief(drafts) == [
        ev("SignWhilePresent", 400_000, started_ms=0, duration_ms=400_000),
    ]
    drafts = rules().run([seen(0), (0, Sign(up=True)), (300_000, Shutdown())])
    assert brief(drafts) == [
        ev("SignWhilePresent", 300_000, started_ms=0, duration_ms=300_000),
    ]


def test_no_face_for_exactly_away_after_s_is_away() -> None:
    drafts = rules().run([seen(0), gone(10_000), seen(70_000)])
    assert brief(drafts) == [
        ev("Away", 70_000, started_ms=10_000, ended_ms=None, with_sign=False, violation=True),
        ev("Away", 70_000, started_ms=10_000, ended_ms=70_000, with_sign=False,
           violation=True),
    ]  # fmt: skip
