"""The front desk wired by ``build_agent``: its role picks the reception rules, its PIR or
ultrasonic sensor (MockFactory pins) opens them; and the simulated front desk of the demo."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from agent.app import ScriptedPump, WindowAgent, build_agent
from agent.config import BrokerConfig, DistanceSensorConfig, WindowConfig, load_site
from agent.localbroker import free_port
from agent.perception import EXEMPLARY, ScriptedClerk
from agent.protocol import CONTRACT
from agent.sim import SimClock, SimulatedWindow
from tests.conftest import EXAMPLE_SITE
from tests.waiting import wait_until


def dead_broker() -> BrokerConfig:
    return BrokerConfig(host="127.0.0.1", port=free_port())  # nobody listens: events stay


def events(agent: WindowAgent, kind: str) -> list[dict[str, Any]]:
    return [json.loads(r.payload) for r in agent.outbox.peek(500) if r.kind == kind]


def quick_desk(window: WindowConfig, hold_s: float = 0.3) -> WindowConfig:
    """The window with a short presence hold, so a test need not wait 5 s for a departure."""
    return window.model_copy(
        update={"rules": window.rules.model_copy(update={"presence_hold_s": hold_s})}
    )


def test_build_agent_runs_the_front_desk_rules_on_its_pir(tmp_path: Path) -> None:
    site = load_site(EXAMPLE_SITE)
    window = quick_desk(site.window("w01"))
    assert window.gpio.presence is not None and window.gpio.presence.type == "pir"
    pir = window.gpio.presence.pin
    factory = MockFactory()
    clerk = ScriptedClerk(EXEMPLARY, random.Random(2))
    agent = build_agent(
        site, window, tmp_path, pin_factory=factory, pump=ScriptedPump(clerk, step_s=0.05),
        broker=dead_broker(), tick_s=0.05,
    )  # fmt: skip
    assert agent.rules.role == "front_desk"
    agent.start()
    try:
        assert agent.panel.presence_ready()
        factory.pin(pir).drive_high()  # a citizen walks up
        wait_until(lambda: bool(events(agent, "session_opened")), 5, "reception opened")
        factory.pin(pir).drive_low()  # and away
        wait_until(lambda: bool(events(agent, "session_summary")), 5, "reception summary")
        (opened,) = events(agent, "session_opened")
        (summary,) = events(agent, "session_summary")
        stood = events(agent, "stood_up")
    finally:
        agent.stop(flush_s=0.1)  # offline: nothing to wait for
    assert opened["source"] == "presence" and opened["clauses"] == ["F-RECEIVE"]
    assert opened["schema_version"] == CONTRACT.newest  # the outbox keeps the newest form
    assert summary["source"] == "presence" and summary["closed_by"] == "finish_key"
    assert isinstance(summary["greeted_first"], bool)
    assert summary.get("smiled_at_farewell") is None  # no farewell: left out of the JSON
    assert [e["phase"] for e in stood] == ["greeting"]


def test_a_window_builds_the_window_rules(tmp_path: Path) -> None:
    site = load_site(EXAMPLE_SITE)
    agent = build_agent(
        site, site.window("w03"), tmp_path, pin_factory=MockFactory(),
        pump=ScriptedPump(ScriptedClerk(EXEMPLARY, random.Random(1))), broker=dead_broker(),
    )  # fmt: skip
    try:
        assert agent.rules.role == "comprehensive" and agent.panel.presence_sensor is None
    finally:
        agent.panel.close()
        agent.outbox.close()


def ultrasonic_desk(window: WindowConfig) -> WindowConfig:
    sensor = DistanceSensorConfig(type="ultrasonic", echo=20, trigger=21, threshold_m=0.8)
    return window.model_copy(update={"gpio": window.gpio.model_copy(update={"presence": sensor})})


@pytest.mark.parametrize("sensor", ["pir", "ultrasonic"])
def test_the_simulated_front_desk_walks_citizens_up_to_its_sensor(
    tmp_path: Path, sensor: str
) -> None:
    site = load_site(EXAMPLE_SITE)
    window = site.window("w01")
    if sensor == "ultrasonic":
        window = ultrasonic_desk(window)
    sim = SimulatedWindow(
        site, quick_desk(window), dead_broker(), tmp_path, EXEMPLARY, 5, SimClock(speed=20.0)
    )
    sim.start()
    try:
        wait_until(lambda: len(events(sim.agent, "session_summary")) >= 1, 20, "a reception")
        opened = events(sim.agent, "session_opened")
    finally:
        sim.stop(flush_s=0.1)
    assert opened and all(e["source"] == "presence" for e in opened)
    assert sim.calls >= 1
