"""The agent composed from parts: a recording ``Link`` instead of MQTT, ``Commands`` with
values, and what ``build_agent`` wires (one test with a real Mosquitto)."""

from __future__ import annotations

import json
import queue
import random
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from gpiozero import Button
from gpiozero.exc import GPIOPinInUse
from gpiozero.pins.mock import MockFactory

from agent.app import Commands, Item, ScriptedPump, WindowAgent, build_agent
from agent.config import BrokerConfig, load_site
from agent.localbroker import MosquittoBroker, free_port
from agent.outbox import Outbox, OutboxError
from agent.perception import EXEMPLARY, ScriptedClerk
from agent.protocol import Channel, Command, Health, Reply, WindowState, topic
from agent.rules import Call, Finish, ServiceRules
from agent.transport import LinkState, Transport
from tests.agent import Subscriber
from tests.agent.test_app import press
from tests.conftest import EXAMPLE_SITE
from tests.waiting import wait_until


class RecordingLink:
    """A ``Link`` that keeps what the agent hands it; ``link`` is set by the test."""

    def __init__(self) -> None:
        self.link = LinkState.OFFLINE
        self.calls: list[str] = []
        self.states: list[WindowState] = []
        self.health: list[Health] = []
        self.replies: list[Reply] = []

    def start(self) -> None:
        self.calls.append("start")

    def publish_state(self, state: WindowState) -> None:
        self.states.append(state)

    def publish_health(self, health: Health) -> None:
        self.health.append(health)

    def publish_reply(self, reply: Reply) -> None:
        self.replies.append(reply)

    def flush(self, timeout: float) -> bool:
        self.calls.append("flush")
        return True

    def close(self, timeout: float = 5.0) -> None:
        self.calls.append("close")


class RecalibrationCounter(ScriptedPump):
    """A scripted pump that counts the recalibrations it was asked for."""

    recalibrations = 0

    def recalibrate(self) -> None:
        self.recalibrations += 1


def scripted(seed: int = 1) -> RecalibrationCounter:
    return RecalibrationCounter(ScriptedClerk(EXEMPLARY, random.Random(seed)), step_s=0.05)


def test_an_agent_from_parts_talks_to_its_link(tmp_path: Path) -> None:
    from agent.hardware.gpio import WindowPanel

    site = load_site(EXAMPLE_SITE)
    window = site.window("w03")
    factory = MockFactory()
    inbox: queue.SimpleQueue[Item] = queue.SimpleQueue()
    link = RecordingLink()
    box = Outbox(tmp_path / "w03.outbox.db", site.site.site, window.window)
    panel = WindowPanel(window.gpio, inbox, pin_factory=factory)
    agent = WindowAgent(
        site,
        window,
        inbox=inbox,
        rules=ServiceRules(window.rules),
        outbox=box,
        link=link,
        panel=panel,
        pump=scripted(),
        health_s=0.2,
        tick_s=0.05,
        config_version="2024-06",
    )
    with agent:
        assert link.calls == ["start"]
        wait_until(lambda: panel.status == "buffering", 5, "buffering while offline")
        assert window.gpio.call_button is not None
        press(factory, window.gpio.call_button)
        wait_until(lambda: any(s.in_session for s in link.states), 5, "state in session")
        assert box.peek(1)[0].kind == "session_opened"
        link.link = LinkState.ONLINE
        wait_until(lambda: panel.status == "connected", 5, "connected when online")
        wait_until(lambda: bool(link.health), 10, "health")
    # stop(): the session is closed into the outbox before the link flushes and closes
    assert link.calls == ["start", "flush", "close"]
    assert link.health[0].config_version == "w03-2024-06"
    assert link.health[0].model_version == "scripted"
    assert panel.closed
    with pytest.raises(OutboxError, match="closed"):
        box.peek(1)
    again = Outbox(tmp_path / "w03.outbox.db", site.site.site, window.window)  # lock freed
    kinds = [r.kind for r in again.peek(100)]
    assert kinds[0] == "session_opened" and kinds[-1] == "session_summary", kinds
    again.close()


def test_commands_reach_the_rules_through_the_inbox_and_recalibrate_the_pump() -> None:
    inbox: queue.SimpleQueue[Item] = queue.SimpleQueue()
    pump = scripted()
    commands = Commands(inbox, pump, clock=lambda: 42)

    def cmd(action: str, **fields: object) -> Command:
        return Command.model_validate({"cmd_id": str(uuid.uuid4()), "action": action, **fields})

    sent = [
        cmd("ping"),
        cmd("recalibrate"),
        cmd("call", ticket="A013", priority=True),
        cmd("finish"),
    ]
    replies = [commands(c) for c in sent]
    assert [(r.cmd_id, r.ok, r.error) for r in replies] == [(c.cmd_id, True, None) for c in sent]
    assert pump.recalibrations == 1
    assert [inbox.get_nowait() for _ in range(inbox.qsize())] == [
        (42, Call(source="queue", ticket="A013", priority=True)),
        (42, Finish()),
    ]


def test_build_agent_wires_a_transport_that_answers_commands(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    site = load_site(EXAMPLE_SITE)
    window = site.window("w04")

    class Marked(WindowAgent):
        pass

    agent = build_agent(
        site,
        window,
        tmp_path,
        pin_factory=MockFactory(),
        pump=scripted(),
        broker=BrokerConfig(host=broker.host, port=broker.port),
        outbox_max_rows=50,
        agent_type=Marked,
    )
    assert isinstance(agent, Marked) and isinstance(agent.link, Transport)
    assert agent.outbox.max_rows == 50
    assert (tmp_path / f"{site.site.site}-w04.outbox.db").exists()
    sub = Subscriber(broker.host, broker.port, (Channel.EVENT, Channel.REPLY))
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-queue-system")
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    try:
        with agent:
            wait_until(lambda: agent.link.link is not LinkState.OFFLINE, 10, "connected")
            assert isinstance(agent.link, Transport)
            link = agent.link
            wait_until(lambda: link.stats().connects == 1, 5, "subscribed")
            time.sleep(0.2)  # the SUBACK for cmd
            cmd_id = uuid.uuid4()
            payload = json.dumps({"cmd_id": str(cmd_id), "action": "call", "ticket": "B7"})
            pub.publish(topic(site.site.site, "w04", Channel.CMD), payload, qos=1)
            wait_until(lambda: bool(sub.messages(Channel.REPLY)), 10, "reply")
            wait_until(lambda: bool(sub.unique()), 10, "event")
        reply = Reply.model_validate_json(sub.messages(Channel.REPLY)[0][0])
        assert reply.cmd_id == cmd_id and reply.ok
        opened = sub.unique()[0]
        assert opened["kind"] == "session_opened" and opened["source"] == "queue"
        assert opened["ticket"] == "B7"
    finally:
        pub.loop_stop()
        pub.disconnect()
        sub.close()


def test_build_agent_closes_what_it_opened_when_a_pin_is_taken(tmp_path: Path) -> None:
    site = load_site(EXAMPLE_SITE)
    window = site.window("w05")
    factory = MockFactory()
    dead = BrokerConfig(host="127.0.0.1", port=free_port())
    taken = Button(window.gpio.call_button, pin_factory=factory)
    with pytest.raises(GPIOPinInUse):
        build_agent(site, window, tmp_path, pin_factory=factory, pump=scripted(), broker=dead)
    # A given outbox stays the caller's: still open after the failed build.
    given = Outbox(tmp_path / "given.outbox.db", site.site.site, window.window)
    with pytest.raises(GPIOPinInUse):
        build_agent(
            site, window, tmp_path, pin_factory=factory, pump=scripted(), broker=dead, outbox=given
        )
    assert given.peek(1) == []
    given.close()
    taken.close()
    # The outbox the first build opened was closed (its lock freed), the panel's pins too.
    agent = build_agent(site, window, tmp_path, pin_factory=factory, pump=scripted(), broker=dead)
    agent.panel.close()
    agent.outbox.close()


def test_build_agent_takes_an_outbox_or_its_size_not_both(tmp_path: Path) -> None:
    site = load_site(EXAMPLE_SITE)
    window = site.window("w05")
    box = Outbox(tmp_path / "box.db", site.site.site, window.window)
    with box, pytest.raises(TypeError, match="not both"):
        build_agent(
            site,
            window,
            tmp_path,
            pin_factory=MockFactory(),
            pump=scripted(),
            outbox=box,
            outbox_max_rows=10,
        )
