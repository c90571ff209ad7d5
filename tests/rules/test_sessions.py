"""W-CALL, W-TWO-STANDS, G-SMILE and W-FAREWELL: one service session, end to end.

Thresholds (tests/rules/script.py): stand 5 s, greet 8 s, farewell 5 s, see-off 3 s,
smile >= 0.5, too broad > 0.97, timeout 1800 s. Times are ms on the device clock.
"""

from __future__ import annotations

from agent.protocol import Clause, Rating
from agent.rules import Call, Evaluation, Finish, Shutdown, Step, Tick
from tests.rules.script import NO_CALL, brief, ev, gone, rules, seen, sid

GREETING_SUMMARY_DEFAULTS = {"priority": False, "rating": None}


def test_model_session_passes_every_check() -> None:
    r = rules()
    drafts = r.run([
        seen(0, smile=0.1),
        (10_000, Call(source="bell")),
        seen(12_000, smile=0.3, standing=True),   # stood 2 s after the call
        seen(13_000, smile=0.8, standing=True),   # smiled 3 s after the call
        seen(14_000, smile=0.6, standing=True),
        seen(15_000, smile=0.2),                  # sits down to work
        (60_000, Evaluation(Rating.VERY_SATISFIED)),  # ends the session
        seen(61_000, smile=0.7, standing=True),   # stands 1 s after the end
        (63_000, Tick()),
        seen(64_500, smile=0.4, standing=True),   # see-off of 3 s completed at 64 000
        (70_000, Tick()),                         # farewell smile window closed at 65 000
    ])  # fmt: skip
    assert brief(drafts) == [
        ev("SessionOpened", 10_000, source="bell", ticket=None, priority=False, **NO_CALL),
        ev("StoodUp", 12_000, phase="greeting", on_time=True, after_ms=2_000),
        ev("Smiled", 18_000, phase="greeting", on_time=True, after_ms=3_000, score=0.8,
           too_broad=False),
        ev("Evaluated", 60_000, rating=Rating.VERY_SATISFIED, suspect=False,
           suspect_reason=None),
        ev("StoodUp", 64_000, phase="farewell", on_time=True, after_ms=1_000),
        ev("Smiled", 65_000, phase="farewell", on_time=True, after_ms=1_000, score=0.7,
           too_broad=False),
        ev("SessionSummary", 65_000, opened_ms=10_000, closed_ms=60_000,
           closed_by="evaluation", stood_on_call=True, stand_after_ms=2_000,
           smiled_at_greeting=True, smile_after_ms=3_000, smile_peak=0.8,
           smile_too_broad=False, stood_at_farewell=True, see_off_ms=3_000,
           rating=Rating.VERY_SATISFIED, priority=False,
           source="bell", ticket=None, **NO_CALL, smiled_at_farewell=True,
           farewell_smile_after_ms=1_000, greeted_first=None),
    ]  # fmt: skip
    assert {d.session_id for d in drafts} == {sid(1)}
    assert drafts[0].clauses == (Clause.W_CALL,)
    assert drafts[1].clauses == (Clause.W_CALL, Clause.W_TWO_STANDS)
    assert drafts[2].clauses == (Clause.G_SMILE, Clause.W_CALL)
    assert drafts[3].clauses == (Clause.W_EVALUATE,)
    assert drafts[4].clauses == (Clause.W_FAREWELL, Clause.W_TWO_STANDS)
    assert drafts[5].clauses == (Clause.G_SMILE, Clause.W_FAREWELL)
    assert drafts[6].clauses == (
        Clause.W_CALL, Clause.W_TWO_STANDS, Clause.G_SMILE, Clause.W_FAREWELL,
        Clause.W_EVALUATE,
    )  # fmt: skip


def test_late_stand_no_smile_no_farewell() -> None:
    drafts = rules().run([
        seen(0, smile=0.2),  # the camera watched from before the call
        (0, Call(source="bell")),
        seen(2_000, smile=0.2),
        seen(7_000, smile=0.3, standing=True),   # 7 s: late, reported with its delay
        seen(9_000, smile=0.4),                  # greeting window closed at 8 000
        (30_000, Finish()),
        (40_000, Tick()),                        # nobody stood by 35 000
    ])  # fmt: skip
    assert brief(drafts) == [
        ev("SessionOpened", 0, source="bell", ticket=None, priority=False, **NO_CALL),
        ev("StoodUp", 7_000, phase="greeting", on_time=False, after_ms=7_000),
        ev("Smiled", 8_000, phase="greeting", on_time=False, after_ms=None, score=0.3,
           too_broad=False),
        ev("StoodUp", 35_000, phase="farewell", on_time=False, after_ms=None),
        ev("Smiled", 35_000, phase="farewell", on_time=False, after_ms=None, score=0.4,
           too_broad=False),
        ev("SessionSummary", 35_000, opened_ms=0, closed_ms=30_000, closed_by="finish_key",
           stood_on_call=False, stand_after_ms=7_000, smiled_at_greeting=False,
           smile_after_ms=None, smile_peak=0.3, smile_too_broad=False,
           stood_at_farewell=False, see_off_ms=None, rating=None, priority=False,
           source="bell", ticket=None, **NO_CALL, smiled_at_farewell=False,
           farewell_smile_after_ms=None, greeted_first=None),
    ]  # fmt: skip


def test_limits_are_inclusive() -> None:
    # Stand at exactly 5 s and smile at exactly 8 s after the call both count.
    drafts = rules().run([
        seen(0, smile=0.0),
        (1_000, Call()),
        seen(6_000, smile=0.1, standing=True),
        seen(9_000, smile=0.6, standing=True),
    ])  # fmt: skip
    assert brief(drafts)[1:] == [
        ev("StoodUp", 6_000, phase="greeting", on_time=True, after_ms=5_000),
        ev("Smiled", 9_000, phase="greeting", on_time=True, after_ms=8_000, score=0.6,
           too_broad=False),
    ]  # fmt: skip


def test_one_ms_past_the_limits_fails() -> None:
    drafts = rules().run([
        seen(0, smile=0.0),
        (1_000, Call()),
        seen(6_001, smile=0.1, standing=True),
        seen(9_001, smile=0.6, standing=True),
    ])  # fmt: skip
    assert brief(drafts)[1:] == [
        ev("StoodUp", 6_001, phase="greeting", on_time=False, after_ms=5_001),
        # The window closed at 9 000 with the 0.1 seen at 6 001 as its peak.
        ev("Smiled", 9_000, phase="greeting", on_time=False, after_ms=None, score=0.1,
           too_broad=False),
    ]  # fmt: skip


def test_standing_and_smiling_at_the_call_count_as_zero_delay() -> None:
    drafts = rules().run([seen(0, smile=0.6, standing=True), (500, Call())])
    assert brief(drafts)[1:] == [
        ev("StoodUp", 500, phase="greeting", on_time=True, after_ms=0),
    ]
    drafts = rules().run([seen(0, smile=0.6, standing=True), (500, Call()), (8_500, Tick())])
    assert brief(drafts)[-1] == ev(
        "Smiled", 8_500, phase="greeting", on_time=True, after_ms=0, score=0.6, too_broad=False
    )


def test_too_broad_smile_is_flagged_at_greeting_farewell_and_in_summary() -> None:
    drafts = rules().run([
        seen(0, smile=0.1),  # the camera watched from before the call
        (0, Call()),
        seen(1_000, smile=0.99, standing=True),
        (10_000, Finish()),                       # still standing, still beaming
        (20_000, Tick()),
    ])  # fmt: skip
    assert brief(drafts) == [
        ev("SessionOpened", 0, source="bell", ticket=None, priority=False, **NO_CALL),
        ev("StoodUp", 1_000, phase="greeting", on_time=True, after_ms=1_000),
        ev("Smiled", 8_000, phase="greeting", on_time=True, after_ms=1_000, score=0.99,
           too_broad=True),
        ev("StoodUp", 13_000, phase="farewell", on_time=True, after_ms=0),
        ev("Smiled", 15_000, phase="farewell", on_time=True, after_ms=0, score=0.99,
           too_broad=True),
        ev("SessionSummary", 15_000, opened_ms=0, closed_ms=10_000, closed_by="finish_key",
           stood_on_call=True, stand_after_ms=1_000, smiled_at_greeting=True,
           smile_after_ms=1_000, smile_peak=0.99, smile_too_broad=True,
           stood_at_farewell=True, see_off_ms=3_000, rating=None, priority=False,
           source="bell", ticket=None, **NO_CALL, smiled_at_farewell=True,
           farewell_smile_after_ms=0, greeted_first=None),
    ]  # fmt: skip


def test_too_broad_threshold_itself_is_not_too_broad() -> None:
    drafts = rules().run([(0, Call()), seen(1_000, smile=0.97), (8_000, Tick())])
    assert brief(drafts)[-1] == ev(
        "Smiled",
        8_000,
        phase="greeting",
        on_time=True,
        after_ms=1_000,
        score=0.97,
        too_broad=False,
    )


def test_too_broad_only_at_farewell_marks_the_summary() -> None:
    drafts = rules().run([
        (0, Call()),
        seen(1_000, smile=0.7, standing=True),
        seen(2_000, smile=0.7),
        (10_000, Finish()),
        seen(11_000, smile=0.98, standing=True),
        (20_000, Tick()),
    ])  # fmt: skip
    summary = brief(drafts)[-1]
    assert summary[0] == "SessionSummary"
    assert summary[2]["smile_peak"] == 0.7
    assert summary[2]["smile_too_broad"] is True


def test_sitting_before_the_see_off_time_fails_the_farewell() -> None:
    drafts = rules().run([
        seen(0, smile=0.1),  # the camera watched from before the call
        (0, Call()),
        seen(1_000, smile=0.6, standing=True),
        (20_000, Finish()),                      # standing at the end: stood after 0
        seen(21_500, smile=0.6),                 # sat after 1.5 s of the 3 s
        (30_000, Tick()),
    ])  # fmt: skip
    b = brief(drafts)
    assert b[3:] == [
        ev("StoodUp", 21_500, phase="farewell", on_time=False, after_ms=0),
        ev("Smiled", 25_000, phase="farewell", on_time=True, after_ms=0, score=0.6,
           too_broad=False),
        ev("SessionSummary", 25_000, opened_ms=0, closed_ms=20_000, closed_by="finish_key",
           stood_on_call=True, stand_after_ms=1_000, smiled_at_greeting=True,
           smile_after_ms=1_000, smile_peak=0.6, smile_too_broad=False,
           stood_at_farewell=False, see_off_ms=1_500, rating=None, priority=False,
           source="bell", ticket=None, **NO_CALL, smiled_at_farewell=True,
           farewell_smile_after_ms=0, greeted_first=None),
    ]  # fmt: skip


def test_farewell_stand_at_exactly_the_limit_counts() -> None:
    drafts = rules().run([
        (0, Call()),
        (10_000, Finish()),
        seen(15_000, smile=0.0, standing=True),   # exactly 5 s after the end
        (18_000, Tick()),
    ])  # fmt: skip
    stood = [b for b in brief(drafts) if b[0] == "StoodUp" and b[2]["phase"] == "farewell"]
    assert stood == [ev("StoodUp", 18_000, phase="farewell", on_time=True, after_ms=5_000)]


def test_summary_waits_for_the_see_off_beyond_the_farewell_window() -> None:
    r = rules()
    r.run([(0, Call()), (10_000, Finish()), seen(14_000, smile=0.0, standing=True)])
    # Farewell smile window closes at 15 000, but the see-off runs to 17 000.
    assert [d.kind.__name__ for d in r.tick(16_999)] == ["Smiled"]
    assert [d.kind.__name__ for d in r.tick(17_000)] == ["StoodUp", "SessionSummary"]
    assert r.session_id is None


def test_next_call_forces_the_pending_farewell() -> None:
    drafts = rules().run([
        seen(0, smile=0.1),  # the camera watched from before the call
        (0, Call(source="queue", ticket="A001")),
        seen(1_000, smile=0.6, standing=True),
        (30_000, Evaluation(Rating.SATISFIED)),   # still standing: see-off starts at 0
        (31_000, Call(source="queue", ticket="A002")),  # 1 s later, before 3 s see-off
    ])  # fmt: skip
    b = brief(drafts)
    assert b[4:] == [
        ev("StoodUp", 31_000, phase="farewell", on_time=True, after_ms=0),
        ev("Smiled", 31_000, phase="farewell", on_time=True, after_ms=0, score=0.6,
           too_broad=False),
        ev("SessionSummary", 31_000, opened_ms=0, closed_ms=30_000, closed_by="evaluation",
           stood_on_call=True, stand_after_ms=1_000, smiled_at_greeting=True,
           smile_after_ms=1_000, smile_peak=0.6, smile_too_broad=False,
           stood_at_farewell=True, see_off_ms=1_000, rating=Rating.SATISFIED,
           priority=False,
           source="queue", ticket="A001", **NO_CALL, smiled_at_farewell=True,
           farewell_smile_after_ms=0, greeted_first=None),
        ev("SessionOpened", 31_000, source="queue", ticket="A002", priority=False, **NO_CALL),
        ev("StoodUp", 31_000, phase="greeting", on_time=True, after_ms=0),
    ]  # fmt: skip
    assert [d.session_id for d in drafts[4:7]] == [sid(1)] * 3
    assert [d.session_id for d in drafts[7:]] == [sid(2)] * 2


def test_next_call_closes_an_open_session_and_judges_the_posture_then() -> None:
    drafts = rules().run([
        seen(0, smile=0.1),  # the camera watched from before the call
        (0, Call()),
        seen(500, smile=0.1),
        (40_000, Call(source="queue", ticket="7")),
    ])  # fmt: skip
    assert brief(drafts) == [
        ev("SessionOpened", 0, source="bell", ticket=None, priority=False, **NO_CALL),
        ev("Smiled", 8_000, phase="greeting", on_time=False, after_ms=None, score=0.1,
           too_broad=False),
        ev("StoodUp", 40_000, phase="greeting", on_time=False, after_ms=None),
        ev("StoodUp", 40_000, phase="farewell", on_time=False, after_ms=None),
        ev("Smiled", 40_000, phase="farewell", on_time=False, after_ms=None, score=0.1,
           too_broad=False),
        ev("SessionSummary", 40_000, opened_ms=0, closed_ms=40_000, closed_by="next_call",
           stood_on_call=False, stand_after_ms=None, smiled_at_greeting=False,
           smile_after_ms=None, smile_peak=0.1, smile_too_broad=False,
           stood_at_farewell=False, see_off_ms=None, rating=None, priority=False,
           source="bell", ticket=None, **NO_CALL, smiled_at_farewell=False,
           farewell_smile_after_ms=None, greeted_first=None),
        ev("SessionOpened", 40_000, source="queue", ticket="7", priority=False, **NO_CALL),
    ]  # fmt: skip


def test_session_ending_inside_the_greeting_window_cuts_it_short() -> None:
    drafts = rules().run(
        [seen(0, smile=0.3), (0, Call()), seen(1_000, smile=0.3), (2_000, Finish())]
    )
    assert brief(drafts)[1:] == [
        ev("Smiled", 2_000, phase="greeting", on_time=False, after_ms=None, score=0.3,
           too_broad=False),
        ev("StoodUp", 2_000, phase="greeting", on_time=False, after_ms=None),
    ]  # fmt: skip


def test_forgotten_session_times_out_and_still_gets_a_farewell_check() -> None:
    # One tick long after: every deadline resolves at its own time, in order. The clerk
    # sat there the whole time, not smiling: every verdict was seen failing.
    drafts = rules().run([seen(0, smile=0.1), (0, Call()), (1_810_000, Tick())])
    assert brief(drafts) == [
        ev("SessionOpened", 0, source="bell", ticket=None, priority=False, **NO_CALL),
        ev("Smiled", 8_000, phase="greeting", on_time=False, after_ms=None, score=0.1,
           too_broad=False),
        ev("StoodUp", 1_800_000, phase="greeting", on_time=False, after_ms=None),
        ev("StoodUp", 1_805_000, phase="farewell", on_time=False, after_ms=None),
        ev("Smiled", 1_805_000, phase="farewell", on_time=False, after_ms=None, score=0.1,
           too_broad=False),
        ev("SessionSummary", 1_805_000, opened_ms=0, closed_ms=1_800_000,
           closed_by="timeout", stood_on_call=False, stand_after_ms=None,
           smiled_at_greeting=False, smile_after_ms=None, smile_peak=0.1,
           smile_too_broad=False, stood_at_farewell=False, see_off_ms=None, rating=None,
           priority=False,
           source="bell", ticket=None, **NO_CALL, smiled_at_farewell=False,
           farewell_smile_after_ms=None, greeted_first=None),
    ]  # fmt: skip


def test_a_camera_that_saw_nothing_judges_nothing() -> None:
    # No observation at all: nothing was seen, so no verdict can say "did not".
    drafts = rules().run([(0, Call()), (1_810_000, Tick())])
    assert brief(drafts) == [
        ev("SessionOpened", 0, source="bell", ticket=None, priority=False, **NO_CALL),
        ev("Smiled", 8_000, phase="greeting", on_time=False, after_ms=None, score=None,
           too_broad=False, not_observed=True),
        ev("StoodUp", 1_800_000, phase="greeting", on_time=False, after_ms=None,
           not_observed=True),
        ev("StoodUp", 1_805_000, phase="farewell", on_time=False, after_ms=None,
           not_observed=True),
        ev("Smiled", 1_805_000, phase="farewell", on_time=False, after_ms=None, score=None,
           too_broad=False, not_observed=True),
        ev("SessionSummary", 1_805_000, opened_ms=0, closed_ms=1_800_000,
           closed_by="timeout", stood_on_call=False, stand_after_ms=None,
           smiled_at_greeting=False, smile_after_ms=None, smile_peak=None,
           smile_too_broad=False, stood_at_farewell=False, see_off_ms=None, rating=None,
           priority=False,
           source="bell", ticket=None, **NO_CALL, smiled_at_farewell=False,
           farewell_smile_after_ms=None, greeted_first=None,
           not_observed=("stood_on_call", "smiled_at_greeting", "stood_at_farewell",
                         "smiled_at_farewell"),
           observed_share=0.0),
    ]  # fmt: skip


def test_ticks_do_not_change_the_outcome() -> None:
    script: list[Step] = [
        seen(0, smile=0.1),
        (10_000, Call()),
        seen(12_000, smile=0.8, standing=True),
        (30_000, Finish()),
        seen(31_000, smile=0.8, standing=True),
        seen(40_000, smile=0.2),
    ]
    ticks: list[Step] = [(t, Tick()) for t in range(0, 40_000, 250)]
    with_ticks = sorted([*script, *ticks], key=lambda s: s[0] if isinstance(s, tuple) else s.t_ms)
    assert brief(rules().run(script)) == brief(rules().run(with_ticks))


def test_priority_call_is_tagged() -> None:
    drafts = rules().run(
        [(0, Call(source="queue", ticket="B12", priority=True)), (100, Shutdown())]
    )
    assert drafts[0].clauses == (Clause.W_CALL, Clause.H_PRIORITY)
    assert drafts[-1].kind.__name__ == "SessionSummary"
    assert Clause.H_PRIORITY in drafts[-1].clauses
    assert drafts[-1].fields["priority"] is True
    assert drafts[-1].fields["closed_by"] == "shutdown"


def test_recall_of_the_same_ticket_and_bell_double_press_open_nothing() -> None:
    r = rules()
    assert len(r.feed(0, Call(source="queue", ticket="A1"))) == 1
    assert r.feed(5_000, Call(source="queue", ticket="A1")) == []
    assert r.counters.recalls == 1

    r = rules()
    r.feed(0, Call())
    assert r.feed(2_999, Call()) == []
    assert r.counters.repeated_calls == 1
    kinds = [d.kind.__name__ for d in r.feed(3_000, Call())]
    assert kinds[-1] == "SessionOpened"
    assert "SessionSummary" in kinds


def test_finish_without_a_session_is_counted_not_emitted() -> None:
    r = rules()
    assert r.feed(0, Finish()) == []
    assert r.counters.stray_finish == 1


def test_a_stand_is_only_credited_when_seen() -> None:
    drafts = rules().run([(0, Call()), gone(1_000), (7_000, Finish()), (20_000, Tick())])
    summary = drafts[-1].fields
    assert summary["stood_on_call"] is False
    assert summary["stood_at_farewell"] is False


def test_a_dropped_face_frame_does_not_break_the_see_off() -> None:
    drafts = rules().run([
        (0, Call()),
        seen(1_000, smile=0.6, standing=True),
        (20_000, Finish()),
        gone(21_000),                             # turned to hand the receipt over
        seen(21_200, smile=0.6, standing=True),
        (30_000, Tick()),
    ])  # fmt: skip
    summary = drafts[-1].fields
    assert summary["stood_at_farewell"] is True
    assert summary["see_off_ms"] == 3_000


def test_confirmed_away_forgets_the_posture() -> None:
    r = rules()
    r.run([seen(0, standing=True), gone(1_000), (30_000, Tick())])
    assert r.state().standing is True  # not away yet: posture as last seen
    r.tick(61_000)
    assert r.state().standing is False
    assert r.state().present is False


def test_sitting_down_exactly_at_the_see_off_time_passes() -> None:
    drafts = rules().run([
        (0, Call()),
        (10_000, Finish()),
        seen(11_000, smile=0.0, standing=True),
        seen(14_000, smile=0.0),                  # stood exactly 3 s
        (20_000, Tick()),
    ])  # fmt: skip
    assert brief(drafts)[-1][2]["stood_at_farewell"] is True
    assert brief(drafts)[-1][2]["see_off_ms"] == 3_000
    stood = [b for b in brief(drafts) if b[0] == "StoodUp" and b[2]["phase"] == "farewell"]
    assert stood == [ev("StoodUp", 14_000, phase="farewell", on_time=True, after_ms=1_000)]


def test_sitting_down_one_ms_early_fails() -> None:
    drafts = rules().run([
        (0, Call()),
        (10_000, Finish()),
        seen(11_000, smile=0.0, standing=True),
        seen(13_999, smile=0.0),
        (20_000, Tick()),
    ])  # fmt: skip
    assert brief(drafts)[-1][2]["stood_at_farewell"] is False
    assert brief(drafts)[-1][2]["see_off_ms"] == 2_999


# --------------------------------------------------------------------------- the call's details

#: A queue call as version 2 commands bring it (H-PRIORITY by its category).
B022 = Call(
    source="queue", ticket="B022", call_id="qp-20261102-0213", matter_code="310118-0042",
    matter_name="居住证办理", priority_category="elderly", case_number="QP2026110200213",
)  # fmt: skip
B022_FIELDS = dict(
    call_id="qp-20261102-0213", matter_code="310118-0042", matter_name="居住证办理",
    priority_category="elderly", case_number="QP2026110200213",
)  # fmt: skip


def test_a_priority_category_makes_the_call_a_priority_one() -> None:
    assert B022.priority is True
    assert Call(source="queue", priority_category="other").priority is True
    assert Call(source="queue").priority is False


def test_the_queue_calls_details_ride_on_the_opening_and_the_summary() -> None:
    drafts = rules().run([
        seen(0, smile=0.1),
        (1_000, B022),
        seen(2_000, smile=0.7, standing=True),
        (30_000, Finish()),
        (40_000, Tick()),
    ])  # fmt: skip
    b = brief(drafts)
    assert b[0] == ev(
        "SessionOpened", 1_000, source="queue", ticket="B022", priority=True, **B022_FIELDS
    )
    assert drafts[0].clauses == (Clause.W_CALL, Clause.H_PRIORITY)
    summary = b[-1][2]
    assert {k: summary[k] for k in ("source", "ticket", "priority", *B022_FIELDS)} == {
        "source": "queue", "ticket": "B022", "priority": True, **B022_FIELDS,
    }  # fmt: skip
    assert Clause.H_PRIORITY in drafts[-1].clauses


def test_a_recall_keeps_what_the_first_call_brought() -> None:
    # The same ticket called again (the citizen did not come), or the same queue call
    # delivered twice (MQTT: at least once), changes nothing of the session.
    again = Call(source="queue", ticket="B022", call_id="qp-2", matter_code="other")
    twice = Call(source="queue", call_id="qp-20261102-0213")
    r = rules()
    assert len(r.feed(1_000, B022)) == 1
    r.tick(15_000)  # the greeting smile window closed
    assert r.feed(20_000, again) == []
    assert r.feed(25_000, twice) == []
    assert r.counters.recalls == 2
    drafts = r.run([(30_000, Finish()), (40_000, Tick())])
    summary = drafts[-1].fields
    assert summary["opened_ms"] == 1_000
    assert {k: summary[k] for k in B022_FIELDS} == B022_FIELDS


def test_a_different_queue_call_right_after_is_not_a_double_press() -> None:
    r = rules()
    r.feed(0, Call(source="queue", call_id="q-1"))
    kinds = [d.kind.__name__ for d in r.feed(1_000, Call(source="queue", call_id="q-2"))]
    assert kinds[-1] == "SessionOpened"
    assert r.counters.repeated_calls == 0


# --------------------------------------------------------------------------- farewell smile


def test_the_farewell_smile_counts_when_seen_within_the_farewell_window() -> None:
    # Farewell window 5 s from the end at 10 000: a smile at exactly 15 000 counts.
    drafts = rules().run([
        (0, Call()),
        (10_000, Finish()),
        seen(12_000, smile=0.3, standing=True),
        seen(15_000, smile=0.6, standing=True),
        (20_000, Tick()),
    ])  # fmt: skip
    summary = drafts[-1].fields
    assert (summary["smiled_at_farewell"], summary["farewell_smile_after_ms"]) == (True, 5_000)


def test_a_farewell_smile_the_camera_did_not_see_is_no_smile() -> None:
    # The face was lost for the whole farewell: unknown is not a smile (G-SMILE).
    drafts = rules().run([
        (0, Call()),
        seen(1_000, smile=0.8, standing=True),
        seen(9_000, smile=0.2, standing=True),
        (10_000, Finish()),
        gone(10_500),                             # turned away from the camera, smiling?
        (20_000, Tick()),
    ])  # fmt: skip
    summary = drafts[-1].fields
    assert (summary["smiled_at_farewell"], summary["farewell_smile_after_ms"]) == (False, None)
    assert summary["smiled_at_greeting"] is True
    assert summary["greeted_first"] is None  # a window's session: F-RECEIVE does not apply
