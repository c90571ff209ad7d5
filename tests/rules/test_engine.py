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


def test_a_version_2_queue_call_brings_its_details() -> None:
    call = Command(
        cmd_id=uuid.uuid4(), action="call", ticket="B022", call_id="qp-1",
        matter_code="310118-0042", matter_name="居住证办理", priority_category="military",
        case_number="QP-1",
    )  # fmt: skip
    assert call.schema_version == 2 and call.priority is True
    assert from_command(call) == Call(
        source="queue", ticket="B022", priority=True, call_id="qp-1",
        matter_code="310118-0042", matter_name="居住证办理", priority_category="military",
        case_number="QP-1",
    )  # fmt: skip
