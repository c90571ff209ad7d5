"""The demo's rendered camera: real ONNX pipeline on frames drawn from a scripted clerk."""

from __future__ import annotations

import itertools
import queue
import random
import threading
import time
from pathlib import Path

from agent.app import Item, WindowAgent
from agent.config import BrokerConfig, RuleConfig, load_site
from agent.localbroker import free_port
from agent.perception import CARELESS, EXEMPLARY, ScriptedClerk
from agent.protocol import ClerkAtTerminal, Rating, SessionSummary
from agent.rules.engine import ServiceRules
from agent.rules.inputs import Call, Evaluation
from agent.sim import STEADY, OpenDay, ScenePump, ScriptedMonth, SimClock, SimulatedWindow
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


def open_days(n: int, first_ms: int = 1_793_581_200_000) -> list[OpenDay]:
    """``n`` days of 09:00-17:00 (the first: 2026-11-03 09:00 in Shanghai), a day apart."""
    day = 86_400_000
    return [OpenDay(first_ms + i * day, first_ms + i * day + 8 * 3_600_000) for i in range(n)]


def test_a_month_gone_by_runs_through_the_windows_rules_with_the_clerk_badged_in() -> None:
    site = load_site(EXAMPLE_SITE)
    days = open_days(21)
    summaries: dict[str, list[dict[str, object]]] = {}
    for window, profile in (("w02", STEADY), ("w04", CARELESS)):
        month = ScriptedMonth(site.window(window), f"c-{window}", profile, seed=7)
        drafts = month.run(days)
        badges = [d for d in drafts if d.kind is ClerkAtTerminal]
        # one badge in before opening and one out after closing, every day
        assert [b.fields["action"] for b in badges] == ["sign_in", "sign_out"] * len(days)
        for day, sign_in, sign_out in zip(days, badges[::2], badges[1::2], strict=True):
            assert sign_in.ts_ms < day.open_ms < day.close_ms < sign_out.ts_ms
        assert 9 * len(days) <= month.sessions <= 13 * len(days)
        summaries[window] = [d.fields for d in drafts if d.kind is SessionSummary]
        assert len(summaries[window]) == month.sessions  # every session resolved
    # the monthly verdict's material: the careless clerk misses stands the steady one makes
    rate = {w: sum(bool(s["stood_on_call"]) for s in ss) / len(ss) for w, ss in summaries.items()}
    assert rate["w02"] >= 0.9 > 0.7 > rate["w04"], rate
    assert any(s["rating"] is Rating.DISSATISFIED for s in summaries["w02"] + summaries["w04"])


def test_a_paced_clock_never_runs_ahead_of_the_slowest_camera() -> None:
    clock = SimClock(1_000_000, speed=1000.0, running=False, lead_ms=250)
    assert clock() == 1_000_000  # not running yet: the backlog goes out first
    frames: dict[str, int | None] = {"a": 1_000_000, "b": None}
    clock.pace_by(lambda: frames["a"])
    clock.pace_by(lambda: frames["b"])  # a camera not running does not hold it
    clock.run()
    time.sleep(0.05)  # 50 simulated seconds at speed 1000
    assert clock() == 1_000_250
    frames["a"] = 1_010_000
    assert clock() == 1_010_250
    frames["a"] = None  # stopped: the clock runs free again
    assert clock() > 1_040_000
    frames["a"] = 1_000_000
    assert clock() > 1_040_000  # never backwards


def test_the_rendered_camera_keeps_the_agents_frame_rate_in_simulated_time() -> None:
    """At 20x the camera still takes its 2 frames per simulated second idle and 10 around a
    change, stamped with the simulated times they show (the demo at --speed 8 showed a 90 %
    clerk standing on call in 58 % when it took one frame per simulated second)."""
    site = load_site(EXAMPLE_SITE)
    window = site.window("w02")
    clock = SimClock(1_000_000, speed=20.0)
    clerk = ScriptedClerk(EXEMPLARY, random.Random(5))
    pump = ScenePump(clerk, seed=5, camera=window.camera, speed=clock.speed)
    clock.pace_by(lambda: pump.next_frame)
    sink: queue.SimpleQueue[Item] = queue.SimpleQueue()
    stop = threading.Event()
    runner = threading.Thread(target=pump.run, args=(sink, stop, clock))
    runner.start()
    time.sleep(0.3)
    clerk.on_call(clock())  # stands up within 3.5 s: the rate goes up after the change
    time.sleep(1.2)
    stop.set()
    runner.join(timeout=5)
    assert pump.next_frame is None
    times = []
    while not sink.empty():
        times.append(sink.get()[0])
    span_s = (times[-1] - times[0]) / 1000
    assert span_s >= 10, span_s  # ~30 simulated seconds in 1.5 real ones, less if paced
    gaps = {b - a for a, b in itertools.pairwise(times)}
    assert gaps <= {100, 500}, gaps  # the agent's rates: active_fps 10, idle_fps 2
    assert 100 in gaps and 500 in gaps
    assert len(times) >= 2 * span_s
