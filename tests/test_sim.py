"""The demo's rendered camera: real ONNX pipeline on frames drawn from a scripted clerk."""

from __future__ import annotations

import random

from agent.config import RuleConfig
from agent.perception import EXEMPLARY, ScriptedClerk
from agent.protocol import Rating, SessionSummary
from agent.rules.engine import ServiceRules
from agent.rules.inputs import Call, Evaluation
from agent.sim import ScenePump


def test_pipeline_follows_the_rendered_clerk_and_rules_pass_an_exemplary_session() -> None:
    clerk = ScriptedClerk(EXEMPLARY, random.Random(3))
    pump = ScenePump(clerk, seed=3)
    rules = ServiceRules(RuleConfig())
    t0, step = 1_000_000, 150
    agree = frames = 0
    drafts = []
    for i in range(260):
        t = t0 + i * step
        if i == 30:
            clerk.on_call(t)
            drafts += rules.feed(t, Call())
        if i == 120:
            clerk.on_end(t)
            drafts += rules.feed(t, Evaluation(Rating.SATISFIED))
        obs = pump.vision.process(t, pump.frame(t))
        drafts += rules.observe(obs)
        truth = clerk.observe(t)
        if i >= 20:  # after calibration
            frames += 1
            agree += truth.standing == obs.standing
    assert agree / frames >= 0.9, agree / frames  # posture lags ~1 s by design (min state)
    summary = next(d for d in drafts if d.kind is SessionSummary)
    assert summary.fields["stood_on_call"] and summary.fields["smiled_at_greeting"]
    assert summary.fields["stood_at_farewell"] and summary.fields["rating"] is Rating.SATISFIED
