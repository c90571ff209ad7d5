"""The demo's rendered camera: real ONNX pipeline on frames drawn from a scripted clerk."""

from __future__ import annotations

import random
from pathlib import Path

from agent.app import WindowAgent
from agent.config import BrokerConfig, RuleConfig, load_site
from agent.localbroker import free_port
from agent.perception import EXEMPLARY, ScriptedClerk
from agent.protocol import Rating, SessionSummary
from agent.rules.engine import ServiceRules
from agent.rules.inputs import Call, Evaluation
from agent.sim import ScenePump, SimClock, SimulatedWindow
from tests.conftest import EXAMPLE_SITE


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


def test_a_simulated_window_builds_the_agent_type_it_is_given(tmp_path: Path) -> None:
    class Counting(WindowAgent):
        pass

    site = load_site(EXAMPLE_SITE)
    dead = BrokerConfig(host="127.0.0.1", port=free_port())  # nothing starts here
    sim = SimulatedWindow(
        site, site.window("w02"), dead, tmp_path, EXEMPLARY, 0, SimClock(), agent_type=Counting
    )
    plain = SimulatedWindow(site, site.window("w03"), dead, tmp_path, EXEMPLARY, 1, SimClock())
    try:
        assert type(sim.agent) is Counting and type(plain.agent) is WindowAgent
        assert sim.agent.outbox.path == tmp_path / f"{site.site.site}-w02.outbox.db"
    finally:
        for w in (sim, plain):
            w.agent.panel.close()
            w.agent.outbox.close()
