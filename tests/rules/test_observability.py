"""What could not be seen is "not observed", never a failure (burden of proof).

A verdict fails only when the camera saw at least ``min_observed_share`` (0.8) of the
time its rule looked; a clerk the camera cannot see is never away. Greeting windows
with ``CFG``: stand within 5 s, smile within 8 s of the call at 10 000.
"""

from __future__ import annotations

from typing import Any

from agent.observation import Observation, Unseen
from agent.rules import Call, Finish, Presence, Step, Tick
from tests.rules.script import CFG, brief, gone, rules, seen


def masked(t: int, standing: bool = False) -> Observation:
    """The clerk's face is found, the mouth is covered."""
    return Observation(t, True, smile=None, standing=standing, unseen=Unseen.MOUTH_COVERED)


def covered_lens(t: int) -> Observation:
    return Observation(t, False, view_ok=False, unseen=Unseen.VIEW)


def faceless_at_seat(t: int) -> Observation:
    """The detector lost the face; someone is at the seat."""
    return Observation(t, False, seat_occupied=True, unseen=Unseen.FACE_LOST)


def summary(steps: list[Step], config: Any = CFG, **kw: Any) -> dict[str, Any]:
    (s,) = [f for kind, _, f in brief(rules(config, **kw).run(steps)) if kind == "SessionSummary"]
    return s


def session(middle: list[Step]) -> list[Step]:
    """A bell call at 10 000, the finish key at 30 000, time enough for the farewell."""
    return [seen(0, smile=0.1), (10_000, Call()), *middle, (30_000, Finish()), (60_000, Tick())]


def test_a_masked_clerk_is_not_observed_not_unsmiling() -> None:
    s = summary(session([masked(10_000), masked(11_000, standing=True), masked(16_000)]))
    assert s["stood_on_call"] is True  # the posture was seen: judged as usual
    assert s["smiled_at_greeting"] is False
    assert s["not_observed"] == ("smiled_at_greeting", "smiled_at_farewell")
    assert s["observed_share"] == 0.0  # the mouth was never seen in the session


def test_a_short_cover_leaves_the_verdict_observed() -> None:
    # Masked for 1 of the 8 greeting seconds: 87.5 % seen, not smiling: a failure.
    s = summary(session([masked(12_000), seen(13_000, smile=0.1)]))
    assert s["smiled_at_greeting"] is False and "not_observed" not in s
    assert s["observed_share"] == 0.95  # 1 of the 20 s of service unseen


def test_a_smile_seen_passes_however_little_was_seen() -> None:
    s = summary(session([masked(10_000), seen(15_000, smile=0.8), masked(15_500)]))
    assert s["smiled_at_greeting"] is True
    assert s["not_observed"] == ("smiled_at_farewell",)


def test_a_covered_lens_at_the_call_leaves_the_greeting_unjudged() -> None:
    s = summary(session([covered_lens(9_000), seen(17_000, smile=0.1, standing=True)]))
    # It stood 7 s after the call, after the limit: maybe it stood unseen before.
    assert (s["stood_on_call"], s["stand_after_ms"]) == (False, 7_000)
    assert s["not_observed"] == ("stood_on_call", "smiled_at_greeting")


def test_late_stand_under_a_clear_view_is_a_failure() -> None:
    s = summary(session([seen(17_000, smile=0.1, standing=True), seen(22_000, smile=0.1)]))
    assert s["stood_on_call"] is False and "not_observed" not in s


def farewell(steps: list[Step]) -> list[Step]:
    """A greeting that passed, the finish key at 30 000, then ``steps``."""
    greeted: list[Step] = [
        seen(0, smile=0.1),
        (10_000, Call()),
        seen(11_000, smile=0.8, standing=True),
    ]
    return [*greeted, seen(20_000, smile=0.1), (30_000, Finish()), *steps, (60_000, Tick())]


def test_sitting_down_before_the_see_off_is_seen_whatever_follows() -> None:
    s = summary(
        farewell([
            seen(31_000, smile=0.1, standing=True),
            seen(32_000, smile=0.1, standing=False),  # sat after 1 s of the 3 s
            covered_lens(32_500),
        ])
    )  # fmt: skip
    assert s["stood_at_farewell"] is False
    assert "stood_at_farewell" not in s.get("not_observed", ())


def test_a_farewell_the_camera_could_not_watch_is_not_observed() -> None:
    s = summary(farewell([faceless_at_seat(30_200)]))
    assert s["stood_at_farewell"] is False
    assert s["not_observed"] == ("stood_at_farewell", "smiled_at_farewell")


def test_an_unsure_smile_score_is_not_evidence_of_no_smile() -> None:
    unsure = CFG.model_copy(update={"no_smile_below": 0.2})
    steps = session([seen(10_000, smile=0.3), seen(25_000, smile=0.3)])
    assert summary(steps, unsure)["not_observed"] == ("smiled_at_greeting", "smiled_at_farewell")
    assert "not_observed" not in summary(steps)  # without the band: seen, not smiling
    sure = session([seen(10_000, smile=0.05)])
    assert "not_observed" not in summary(sure, unsure)


def away_drafts(steps: list[Step]) -> list[dict[str, Any]]:
    return [f for kind, _, f in brief(rules().run(steps)) if kind == "Away"]


def test_a_clerk_at_the_seat_with_the_face_lost_is_never_away() -> None:
    assert away_drafts([seen(0), faceless_at_seat(1_000), (200_000, Tick())]) == []
    assert away_drafts([seen(0), covered_lens(1_000), (200_000, Tick())]) == []
    # The seat seen empty: away, and a violation after 60 s.
    (opened,) = away_drafts([seen(0), gone(1_000), (62_000, Tick())])
    assert opened["violation"] is True and opened["started_ms"] == 1_000


def test_an_absence_ends_where_the_view_is_lost() -> None:
    records = away_drafts([seen(0), gone(1_000), covered_lens(70_000), (200_000, Tick())])
    closing = [r for r in records if r["ended_ms"] is not None]
    assert [(r["started_ms"], r["ended_ms"], r["violation"]) for r in closing] == [
        (1_000, 70_000, True)
    ]
    # Lost again before the minute: no away at all.
    assert away_drafts([seen(0), gone(1_000), covered_lens(30_000), (200_000, Tick())]) == []


def test_the_front_desk_greeting_is_not_observed_unless_a_part_was_seen_failing() -> None:
    desk = CFG.model_copy(update={"stand_within_s": 3.0, "greet_within_s": 3.0})
    here, left = Presence(here=True), Presence(here=False)
    hidden = summary(
        [seen(0, smile=0.1), (10_000, here), masked(10_000, standing=True),
         (20_000, left), (26_000, Tick())],
        desk, role="front_desk",
    )  # fmt: skip
    assert hidden["greeted_first"] is False
    assert hidden["not_observed"] == ("smiled_at_greeting", "greeted_first")
    seated = summary(
        [seen(0, smile=0.1), (10_000, here), masked(10_000), (20_000, left), (26_000, Tick())],
        desk, role="front_desk",
    )  # fmt: skip
    # It never stood, and that was seen: not greeted first, whatever the smile was.
    assert seated["not_observed"] == ("smiled_at_greeting",)


def test_no_face_is_a_failure_only_where_the_seat_was_seen_empty() -> None:
    no_cue = Observation(10_000, False)  # no face and no seat cue (seat not learnt yet)
    empty = Observation(10_000, False, seat_occupied=False)
    unjudged = summary(session([no_cue]))
    assert unjudged["not_observed"] == (
        "stood_on_call", "smiled_at_greeting", "stood_at_farewell", "smiled_at_farewell"
    )  # fmt: skip
    judged = summary(session([empty]))
    assert judged["stood_on_call"] is False and "not_observed" not in judged
