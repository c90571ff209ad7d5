"""W-EVALUATE: every press is kept; doubtful ones are marked with one reason.

Repeat window 3 s; the farewell takes 5 s (or see-off 3 s after standing).
"""

from __future__ import annotations

from agent.protocol import Clause, Rating
from agent.rules import Call, Evaluation, Finish, Sign, Tick
from tests.rules.script import brief, ev, rules, seen, sid


def _evaluations(drafts: list) -> list:
    return [b for b in brief(drafts) if b[0] == "Evaluated"]


def test_press_with_no_session_is_kept_as_suspect() -> None:
    r = rules()
    drafts = r.feed(1_000, Evaluation(Rating.DISSATISFIED))
    assert brief(drafts) == [
        ev("Evaluated", 1_000, rating=Rating.DISSATISFIED, suspect=True,
           suspect_reason="no_session"),
    ]  # fmt: skip
    assert drafts[0].session_id is None
    assert drafts[0].clauses == (Clause.W_EVALUATE,)
    assert r.counters.suspect_presses == 1


def test_press_while_the_sign_is_up_is_suspect_and_does_not_end_the_session() -> None:
    r = rules()
    drafts = r.run([
        (0, Call()),
        (1_000, Sign(up=True)),
        (5_000, Evaluation(Rating.VERY_SATISFIED)),
        (6_000, Sign(up=False)),
        (10_000, Evaluation(Rating.SATISFIED)),
        (20_000, Tick()),
    ])  # fmt: skip
    assert _evaluations(drafts) == [
        ev("Evaluated", 5_000, rating=Rating.VERY_SATISFIED, suspect=True,
           suspect_reason="sign_up"),
        ev("Evaluated", 10_000, rating=Rating.SATISFIED, suspect=False, suspect_reason=None),
    ]  # fmt: skip
    summary = drafts[-1].fields
    assert summary["closed_by"] == "evaluation"
    assert summary["closed_ms"] == 10_000
    assert summary["rating"] == Rating.SATISFIED  # the suspect press did not count
    assert r.counters.suspect_presses == 1


def test_repeat_then_already_evaluated_then_no_session() -> None:
    r = rules()
    drafts = r.run([
        (0, Call()),
        (10_000, Evaluation(Rating.SATISFIED)),          # ends the session
        seen(10_200, smile=0.6, standing=True),          # see-off until 13 200
        (10_500, Evaluation(Rating.VERY_SATISFIED)),     # 0.5 s after: repeat
        (13_600, Evaluation(Rating.VERY_DISSATISFIED)),  # 3.1 s after: second rating
        (20_000, Evaluation(Rating.BASIC)),              # summary went at 15 000
        (21_000, Evaluation(Rating.BASIC)),              # repeat wins over no_session
    ])  # fmt: skip
    assert _evaluations(drafts) == [
        ev("Evaluated", 10_000, rating=Rating.SATISFIED, suspect=False, suspect_reason=None),
        ev("Evaluated", 10_500, rating=Rating.VERY_SATISFIED, suspect=True,
           suspect_reason="repeat"),
        ev("Evaluated", 13_600, rating=Rating.VERY_DISSATISFIED, suspect=True,
           suspect_reason="already_evaluated"),
        ev("Evaluated", 20_000, rating=Rating.BASIC, suspect=True, suspect_reason="no_session"),
        ev("Evaluated", 21_000, rating=Rating.BASIC, suspect=True, suspect_reason="repeat"),
    ]  # fmt: skip
    evaluated = [d for d in drafts if d.kind.__name__ == "Evaluated"]
    assert [d.session_id for d in evaluated] == [sid(1), sid(1), sid(1), None, None]
    summaries = [d for d in drafts if d.kind.__name__ == "SessionSummary"]
    assert len(summaries) == 1
    assert summaries[0].ts_ms == 15_000
    assert summaries[0].fields["rating"] == Rating.SATISFIED
    assert r.counters.suspect_presses == 4


def test_presses_exactly_the_repeat_window_apart_are_not_repeats() -> None:
    drafts = rules().run([
        (0, Evaluation(Rating.SATISFIED)),
        (3_000, Evaluation(Rating.SATISFIED)),
        (5_999, Evaluation(Rating.SATISFIED)),
    ])  # fmt: skip
    assert [b[2]["suspect_reason"] for b in _evaluations(drafts)] == [
        "no_session", "no_session", "repeat",
    ]  # fmt: skip


def test_evaluation_after_the_finish_key_belongs_to_that_session() -> None:
    drafts = rules().run([
        (0, Call()),
        (30_000, Finish()),
        (32_000, Evaluation(Rating.VERY_SATISFIED)),  # citizen rates after the finish
        (40_000, Tick()),
    ])  # fmt: skip
    assert _evaluations(drafts) == [
        ev("Evaluated", 32_000, rating=Rating.VERY_SATISFIED, suspect=False,
           suspect_reason=None),
    ]  # fmt: skip
    summary = drafts[-1].fields
    assert summary["closed_by"] == "finish_key"
    assert summary["closed_ms"] == 30_000
    assert summary["rating"] == Rating.VERY_SATISFIED


def test_one_evaluation_per_session_across_sessions() -> None:
    drafts = rules().run([
        (0, Call()),
        (10_000, Evaluation(Rating.SATISFIED)),
        (20_000, Call()),
        (30_000, Evaluation(Rating.DISSATISFIED)),  # new session, first rating: valid
    ])  # fmt: skip
    evaluated = [d for d in drafts if d.kind.__name__ == "Evaluated"]
    assert [(d.session_id, d.fields["suspect"]) for d in evaluated] == [
        (sid(1), False), (sid(2), False),
    ]  # fmt: skip
