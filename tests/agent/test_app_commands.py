"""Commands of version 2 (the queue call's own fields): what the terminal takes, that it
says so in its retained state, and what its session makes of them; one end-to-end run
over a real Mosquitto with an ingest's announcement of event version 2."""

from __future__ import annotations

import json
import queue
import random
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from gpiozero.pins.mock import MockFactory
from pydantic import ValidationError

from agent.app import Commands, Item, ScriptedPump, WindowAgent, build_agent
from agent.config import BrokerConfig, load_site
from agent.hardware.gpio import WindowPanel
from agent.localbroker import MosquittoBroker
from agent.outbox import Outbox
from agent.perception import EXEMPLARY, ScriptedClerk
from agent.protocol import Channel, Command, WindowState, topic
from agent.rules import Call, ServiceRules
from agent.transport import LinkState
from agent.transport.commands import answer
from tests.agent import Subscriber
from tests.agent.test_app_parts import RecordingLink, scripted
from tests.agent.test_transport_versions import announce
from tests.conftest import EXAMPLE_SITE
from tests.waiting import wait_until

#: A queue call with everything version 2 adds (server/api/queue.py sends these).
B022: dict[str, Any] = {
    "ticket": "B022",
    "call_id": "qp-20261102-0213",
    "matter_code": "310118-0042",
    "matter_name": "居住证办理",
    "priority_category": "elderly",
    "case_number": "QP2026110200213",
}
#: What a version 1 terminal's Command knows.
V1_FIELDS = {"schema_version", "cmd_id", "action", "ticket", "priority"}


def call(**fields: Any) -> Command:
    return Command.model_validate({"cmd_id": str(uuid.uuid4()), "action": "call", **fields})


def test_a_command_is_the_lowest_version_that_holds_its_fields() -> None:
    plain = call(ticket="A1", priority=True)
    assert plain.schema_version == 1
    assert set(json.loads(plain.model_dump_json(exclude_none=True))) <= V1_FIELDS
    full = call(**B022)
    assert full.schema_version == 2
    assert full.priority is True  # the category implies it
    assert json.loads(full.model_dump_json())["schema_version"] == 2


def test_downgrade_gives_an_older_terminal_what_it_can_read() -> None:
    full = call(**B022)
    old = full.downgrade(1)
    assert set(json.loads(old.model_dump_json(exclude_none=True))) <= V1_FIELDS
    assert (old.schema_version, old.cmd_id, old.ticket, old.priority) == (
        1, full.cmd_id, "B022", True,
    )  # fmt: skip
    assert full.downgrade(2) is full and full.downgrade(Command.NEWEST) is full
    assert old.downgrade(2) is old  # never upgraded
    with pytest.raises(ValueError, match="no Command version 0"):
        full.downgrade(0)


def test_a_version_1_command_cannot_carry_version_2_fields() -> None:
    with pytest.raises(ValidationError, match="fields of version 2 in a version 1 command"):
        call(schema_version=1, call_id="qp-1")


def test_the_terminal_takes_a_version_2_call_and_refuses_a_newer_version() -> None:
    inbox: queue.SimpleQueue[Item] = queue.SimpleQueue()
    commands = Commands(inbox, scripted(), clock=lambda: 7)
    cmd_id = str(uuid.uuid4())
    payload = {"schema_version": 2, "cmd_id": cmd_id, "action": "call", **B022}
    reply, bad = answer(json.dumps(payload).encode(), commands)
    assert (reply.ok, bad) == (True, False)
    assert inbox.get_nowait() == (
        7,
        Call(source="queue", priority=True, **B022),
    )
    reply, bad = answer(json.dumps(payload | {"schema_version": 3}).encode(), commands)
    assert (reply.ok, bad, str(reply.cmd_id)) == (False, True, cmd_id)
    assert inbox.empty()


def test_old_state_payloads_say_version_1_and_the_agent_says_it_takes_2(tmp_path: Path) -> None:
    state = {
        "site": "qingpu", "window": "w03", "ts_ms": 1, "present": True, "standing": False,
        "in_session": False, "sign_up": False, "perception": "camera",
    }  # fmt: skip
    assert WindowState.model_validate(state).commands == 1  # from before terminals said
    site = load_site(EXAMPLE_SITE)
    window = site.window("w03")
    inbox: queue.SimpleQueue[Item] = queue.SimpleQueue()
    link = RecordingLink()
    agent = WindowAgent(
        site,
        window,
        inbox=inbox,
        rules=ServiceRules(window.rules),
        outbox=Outbox(tmp_path / "w03.outbox.db", site.site.site, window.window),
        link=link,
        panel=WindowPanel(window.gpio, inbox, pin_factory=MockFactory()),
        pump=scripted(),
        tick_s=0.05,
    )
    agent.start()
    try:
        wait_until(lambda: bool(link.states), 5, "retained state")
    finally:
        agent.stop(flush_s=0.1)
    assert link.states[0].commands == Command.NEWEST == 2


def test_a_version_2_call_over_mqtt_opens_a_session_that_carries_it(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    announce(broker, "ww-test-ingest", (1, 2))  # an ingest that takes event version 2
    site = load_site(EXAMPLE_SITE)
    agent = build_agent(
        site,
        site.window("w04"),
        tmp_path,
        pin_factory=MockFactory(),
        pump=ScriptedPump(ScriptedClerk(EXEMPLARY, random.Random(4)), step_s=0.05),
        broker=BrokerConfig(host=broker.host, port=broker.port),
    )
    sub = Subscriber(broker.host, broker.port, (Channel.EVENT, Channel.REPLY, Channel.STATE))
    queue_system = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-queue-v2")
    queue_system.connect(broker.host, broker.port)
    queue_system.loop_start()
    try:
        with agent:
            wait_until(lambda: agent.link.link is LinkState.ONLINE, 10, "online")
            wait_until(lambda: bool(sub.messages(Channel.STATE)), 10, "retained state")
            state = WindowState.model_validate_json(sub.messages(Channel.STATE)[-1][0])
            cmd = call(**B022).downgrade(state.commands)  # what the server does
            assert cmd.schema_version == 2
            queue_system.publish(
                topic(site.site.site, "w04", Channel.CMD), cmd.model_dump_json(), qos=1
            ).wait_for_publish(5)
            wait_until(lambda: bool(sub.messages(Channel.REPLY)), 10, "reply")
            wait_until(lambda: any(e["kind"] == "session_opened" for e in sub.unique()), 10)
        summary = [e for e in sub.unique() if e["kind"] == "session_summary"]
        opened = next(e for e in sub.unique() if e["kind"] == "session_opened")
    finally:
        queue_system.loop_stop()
        queue_system.disconnect()
        sub.close()
        announce(broker, "ww-test-ingest", None)
    assert opened["schema_version"] == 2 and opened["source"] == "queue"
    assert {k: opened[k] for k in B022} == B022 and opened["priority"] is True
    assert len(summary) == 1  # stop() closed the session
    assert {k: summary[0][k] for k in B022} == B022
    # an added field left unset is left out of the JSON (it defaults to None)
    assert summary[0]["source"] == "queue" and summary[0].get("greeted_first") is None
