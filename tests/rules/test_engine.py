"""The engine's plumbing: the script runner, time handling and the state view."""

from __future__ import annotations

import uuid

import pytest

from agent.observation import Observation
from agent.protocol import Command, Rating
from agent.rules import Call, Evaluation, Finish, RulesState, Sign, Step, from_command, run
from tests.rules.script import CFG, brief, ids, rules, seen


def test_module_run_matches_the_method() -> None:
    script: list[Step] = [
        seen(0, smile=0.6, standing=True),
        (1_000, Call()),
        (2_000, Evaluation(Rating.SATISFIED)),
        (10_000, Sign(up=True)),
    ]
    assert brief(run(script, CFG, new_id=ids())) == brief(rules().run(script))


def test_observation_time_must_match_the_step_time() -> None:
    with pytest.raises(ValueError, match="differs"):
        rules().feed(5, Observation(t_ms=4, face_present=True))


def test_time_going_backwards_is_taken_as_now_and_counted() -> None:
    r = rules()
    r.feed(10_000, Call())
    drafts = r.feed(9_000, Evaluation(Rating.SATISFIED))
    assert drafts[0].ts_ms == 10_000
    assert r.counters.clock_backwards == 1


def test_state_view_follows_the_inputs() -> None:
    r = rules()
    assert r.state() == RulesState(
        present=False, standing=False, in_session=False, sign_up=False, away=False,
        in_hours=True,
    )  # fmt: skip
    r.observe(seen(0, standing=True))
    r.feed(1_000, Call())
    r.feed(2_000, Sign(up=True))
    assert r.state() == RulesState(
        present=True, standing=True, in_session=True, sign_up=True, away=False, in_hours=True
    )
    r.feed(3_000, Evaluation(Rating.SATISFIED))  # suspect (sign up): session stays open
    assert r.state().in_session is True
    r.feed(4_000, Sign(up=False))
    r.feed(8_000, Evaluation(Rating.SATISFIED))
    assert r.state().in_session is False  # ended; only the farewell is pending
    assert r.session_id is not None


def test_queue_commands_map_to_rule_inputs() -> None:
    call = Command(cmd_id=uuid.uuid4(), action="call", ticket="A017", priority=True)
    assert from_command(call) == Call(source="queue", ticket="A017", priority=True)
    assert from_command(Command(cmd_id=uuid.uuid4(), action="finish")) == Finish()
    assert from_command(Command(cmd_id=uuid.uuid4(), action="ping")) is None
    assert from_command(Command(cmd_id=uuid.uuid4(), action="recalibrate")) is None
