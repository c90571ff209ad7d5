"""F-RECEIVE: the front desk's reception, opened by a citizen's arrival.

Front desk limits (``DESK``): stand and smile within 3 s of the arrival, the citizen has
left once the presence sensor has not seen them for 5 s. Times are ms on the device clock.
"""

from __future__ import annotations

import pytest

from agent.protocol import Clause, Rating
from agent.rules import Call, Evaluation, Presence, ServiceRules, Shutdown, Step, Tick
from tests.rules.script import CFG, NO_CALL, brief, ev, ids, rules, seen, sid

DESK = CFG.model_copy(update={"stand_within_s": 3.0, "greet_within_s": 3.0})

ARRIVES, LEAVES = Presence(here=True), Presence(here=False)


def desk() -> ServiceRules:
    return rules(DESK, role="front_desk")


def reception_summary(**fields: object) -> dict[str, object]:
    """A reception's summary: no call details, no farewell (the front desk has none)."""
    return dict(
        closed_by="finish_key", smile_too_broad=False, stood_at_farewell=False,
        see_off_ms=None, rating=None, priority=False, source="presence", ticket=None,
        **NO_CALL, smiled_at_farewell=None, farewell_smile_after_ms=None,
    ) | fields  # fmt: skip


def test_a_model_reception_from_arrival_to_departure() -> None:
    drafts = desk().run([
        seen(0, smile=0.1),
        (10_000, ARRIVES),
        seen(11_000, smile=0.2, standing=True),   # stood 1 s after the arrival
        seen(12_000, smile=0.8, standing=True),   # smiled after 2 s
        (40_000, LEAVES),                         # the sensor last saw the citizen
        (44_999, Tick()),                         # not yet gone: might be a quiet spell
        (45_000, Tick()),                         # 5 s unseen: left at 40 000
    ])  # fmt: skip
    assert brief(drafts) == [
        ev("SessionOpened", 10_000, source="presence", ticket=None, priority=False, **NO_CALL),
        ev("StoodUp", 11_000, phase="greeting", on_time=True, after_ms=1_000),
        ev("Smiled", 13_000, phase="greeting", on_time=True, after_ms=2_000, score=0.8,
           too_broad=False),
        ev("SessionSummary", 45_000, **reception_summary(
            opened_ms=10_000, closed_ms=40_000, stood_on_call=True, stand_after_ms=1_000,
            smiled_at_greeting=True, smile_after_ms=2_000, smile_peak=0.8,
            greeted_first=True,
        )),
    ]  # fmt: skip
    assert {d.session_id for d in drafts} == {sid(1)}
    assert [d.clauses for d in drafts] == [
        (Clause.F_RECEIVE,),
        (Clause.F_RECEIVE,),
        (Clause.G_SMILE, Clause.F_RECEIVE),
        (Clause.F_RECEIVE, Clause.G_SMILE),
    ]


@pytest.mark.parametrize(
    ("stand_at", "smile_at", "greeted_first"),
    [
        (3_000, 3_000, True),    # both exactly at the limit
        (3_001, 1_000, False),   # stood too late
        (1_000, 3_001, False),   # smiled too late
        (None, 1_000, False),    # smiled seated
        (1_000, None, False),    # stood, never smiled
    ],
)  # fmt: skip
def test_greeted_first_needs_the_stand_and_the_smile_within_the_limits(
    stand_at: int | None, smile_at: int | None, greeted_first: bool
) -> None:
    steps: list[Step] = [seen(0, smile=0.1), (0, ARRIVES)]
    moments = sorted(t for t in (stand_at, smile_at) if t is not None)
    for t in moments:
        stood = stand_at is not None and t >= stand_at
        smiling = smile_at is not None and t >= smile_at
        steps.append(seen(t, smile=0.9 if smiling else 0.1, standing=stood))
    steps += [(20_000, LEAVES), (30_000, Tick())]
    summary = desk().run(steps)[-1]
    assert summary.kind.__name__ == "SessionSummary"
    assert summary.fields["greeted_first"] is greeted_first
    assert summary.fields["stood_on_call"] is (stand_at is not None and stand_at <= 3_000)
    assert summary.fields["smiled_at_greeting"] is (smile_at is not None and smile_at <= 3_000)


def test_a_quiet_spell_shorter_than_the_hold_is_the_same_citizen() -> None:
    r = desk()
    r.run([(0, ARRIVES), seen(500, smile=0.9, standing=True), (3_000, Tick())])
    assert r.run([(20_000, LEAVES), (24_999, ARRIVES), (29_999, Tick())]) == []
    assert r.state().in_session
    drafts = r.run([(30_000, LEAVES), (35_000, Tick())])
    assert [d.kind.__name__ for d in drafts] == ["SessionSummary"]
    assert drafts[0].fields["closed_ms"] == 30_000


def test_seen_again_exactly_at_the_hold_is_a_new_citizen() -> None:
    # Unseen for exactly presence_hold_s is gone (inclusive), before the arrival at that ms.
    drafts = desk().run([(0, ARRIVES), (20_000, LEAVES), (25_000, ARRIVES)])
    assert [(d.kind.__name__, d.ts_ms, d.session_id) for d in drafts] == [
        ("SessionOpened", 0, sid(1)),
        ("Smiled", 3_000, sid(1)),
        ("StoodUp", 25_000, sid(1)),
        ("SessionSummary", 25_000, sid(1)),
        ("SessionOpened", 25_000, sid(2)),
    ]


def test_an_arrival_while_a_reception_is_open_opens_nothing() -> None:
    r = desk()
    r.run([(0, ARRIVES), (3_000, Tick())])
    # A second arrival edge (someone behind the first citizen): the same reception.
    assert r.feed(4_000, Presence(here=True)) == []
    assert r.session_id == sid(1) and r.state().in_session


def test_an_evaluation_ends_the_reception_and_the_departure_then_changes_nothing() -> None:
    drafts = desk().run([
        (0, ARRIVES),
        seen(1_000, smile=0.9, standing=True),
        (30_000, Evaluation(Rating.VERY_SATISFIED)),
        (32_000, LEAVES),
        (60_000, Tick()),
    ])  # fmt: skip
    kinds = [d.kind.__name__ for d in drafts]
    # No farewell events: the front desk's standard asks for no see-off.
    assert kinds == ["SessionOpened", "StoodUp", "Smiled", "Evaluated", "SessionSummary"]
    summary = drafts[-1]
    assert summary.ts_ms == 30_000
    assert summary.fields["closed_by"] == "evaluation"
    assert summary.fields["rating"] == Rating.VERY_SATISFIED
    assert summary.fields["greeted_first"] is True


def test_a_call_at_a_front_desk_opens_a_reception_too() -> None:
    # A front desk wired with a bell (or called by the queue) still runs the desk's rules.
    drafts = desk().run([
        seen(0, smile=0.1, standing=True),
        (1_000, Call(source="queue", ticket="Q7", priority_category="pregnant")),
        seen(5_000, smile=0.8, standing=True),    # smiled 4 s after: late for the desk
        (20_000, Shutdown()),
    ])  # fmt: skip
    b = brief(drafts)
    assert b[0] == ev(
        "SessionOpened", 1_000, source="queue", ticket="Q7", priority=True,
        **(NO_CALL | {"priority_category": "pregnant"}),
    )  # fmt: skip
    assert drafts[0].clauses == (Clause.F_RECEIVE, Clause.H_PRIORITY)
    summary = b[-1]
    assert summary[0] == "SessionSummary" and summary[1] == 20_000
    assert {k: summary[2][k] for k in ("closed_by", "source", "greeted_first")} == {
        "closed_by": "shutdown", "source": "queue", "greeted_first": False,
    }  # fmt: skip
    assert summary[2]["stood_on_call"] is True and summary[2]["smiled_at_greeting"] is False


def test_a_window_ignores_presence() -> None:
    r = rules(DESK)  # comprehensive, the default role
    assert r.run([(0, ARRIVES), (10_000, LEAVES), (20_000, Tick())]) == []
    assert not r.state().in_session


def test_the_departure_does_not_depend_on_tick_density() -> None:
    script: list[Step] = [
        seen(0, smile=0.1),
        (1_000, ARRIVES),
        seen(2_000, smile=0.7, standing=True),
        (8_000, LEAVES),
        (9_000, ARRIVES),
        (15_000, LEAVES),
        (40_000, ARRIVES),
        (41_000, LEAVES),
        (60_000, Tick()),
    ]
    ticks: list[Step] = [(t, Tick()) for t in range(0, 60_000, 250)]
    dense = sorted([*script, *ticks], key=lambda s: s[0] if isinstance(s, tuple) else s.t_ms)
    assert brief(desk().run(script)) == brief(desk().run(dense))


def test_the_desk_takes_its_role_from_the_constructor() -> None:
    assert ServiceRules(DESK, role="front_desk", new_id=ids()).role == "front_desk"
    assert ServiceRules(DESK).role == "comprehensive"
