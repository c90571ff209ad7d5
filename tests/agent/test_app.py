"""The whole agent: MockFactory presses -> rules -> outbox -> real Mosquitto; CLI and SIGTERM."""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from gpiozero.pins.mock import MockFactory

from agent.app import ScriptedPump, build_agent
from agent.config import BrokerConfig, load_site
from agent.events import Draft
from agent.localbroker import MosquittoBroker, free_port
from agent.outbox import Outbox
from agent.perception import EXEMPLARY, ScriptedClerk
from agent.protocol import OFFLINE, ONLINE, Channel, Event, Health, WindowState
from agent.transport import LinkState
from tests.agent import Subscriber
from tests.conftest import EXAMPLE_SITE, REPO
from tests.waiting import wait_until


def press(factory: MockFactory, pin: int) -> None:
    factory.pin(pin).drive_low()
    time.sleep(0.08)
    factory.pin(pin).drive_high()


def test_presses_become_events_state_and_health(broker: MosquittoBroker, tmp_path: Path) -> None:
    site = load_site(EXAMPLE_SITE)
    window = site.window("w03")
    all_channels = (Channel.EVENT, Channel.STATE, Channel.HEALTH, Channel.AVAILABILITY)
    sub = Subscriber(broker.host, broker.port, all_channels)
    kinds = lambda: [e["kind"] for e in sub.unique()]  # noqa: E731
    factory = MockFactory()
    clerk = ScriptedClerk(EXEMPLARY, random.Random(7))
    agent = build_agent(
        site,
        window,
        tmp_path,
        pin_factory=factory,
        pump=ScriptedPump(clerk, step_s=0.05),
        broker=BrokerConfig(host=broker.host, port=broker.port),
        health_s=1.0,
    )
    with agent:
        wait_until(lambda: agent.link.link is not LinkState.OFFLINE, 10, "connected")
        assert window.gpio.call_button is not None
        press(factory, window.gpio.call_button)
        wait_until(lambda: "session_opened" in kinds(), 5, "session opened")
        clerk.on_call(int(time.time() * 1000) - 3000)  # stands and smiles right away
        time.sleep(1.0)
        press(factory, window.gpio.eval_buttons[1])  # 满意
        clerk.on_end(int(time.time() * 1000))
        time.sleep(0.3)
        press(factory, window.gpio.eval_buttons[1])  # a spam press: kept, marked suspect
        wait_until(lambda: agent.health().outbox_depth == 0, 10, "outbox drained")
    # stop() closes the session, flushes, and says goodbye
    wait_until(lambda: "session_summary" in kinds(), 5, "summary")
    for kind in ("session_opened", "stood_up", "smiled", "evaluated", "session_summary"):
        assert kind in kinds(), kinds()
    evaluated = [e for e in sub.unique() if e["kind"] == "evaluated"]
    assert [e["rating"] for e in evaluated] == ["satisfied", "satisfied"]
    assert [e["suspect"] for e in evaluated] == [False, True]
    summary = next(e for e in sub.unique() if e["kind"] == "session_summary")
    assert summary["stood_on_call"] and summary["smiled_at_greeting"]
    assert summary["rating"] == "satisfied" and summary["closed_by"] == "evaluation"
    seqs = [e["seq"] for e in sub.unique()]
    assert seqs == list(range(1, len(seqs) + 1))
    states = [WindowState.model_validate_json(p) for p, _ in sub.messages(Channel.STATE)]
    assert states and all(s.perception == "scripted" for s in states)
    assert any(s.in_session for s in states)
    health = [Health.model_validate_json(p) for p, _ in sub.messages(Channel.HEALTH)]
    assert health and health[-1].model_version == "scripted"
    assert [p for p, _ in sub.messages(Channel.AVAILABILITY)][-1].decode() == OFFLINE
    sub.close()


def test_full_outbox_raises_one_fault(tmp_path: Path) -> None:
    site = load_site(EXAMPLE_SITE)
    window = site.window("w05")
    factory = MockFactory()
    dead = BrokerConfig(host="127.0.0.1", port=free_port())  # nobody listens: stays offline
    agent = build_agent(
        site,
        window,
        tmp_path,
        pin_factory=factory,
        pump=ScriptedPump(ScriptedClerk(EXEMPLARY, random.Random(1)), step_s=0.05),
        broker=dead,
        outbox_max_rows=6,
    )
    with agent:
        for _ in range(8):  # every evaluation press is kept (suspect here): 8 events
            press(factory, window.gpio.eval_buttons[0])
            time.sleep(0.15)
        wait_until(lambda: agent.outbox.dropped > 0, 5, "cap reached")
        time.sleep(0.3)
        rows = agent.outbox.peek(100)
        faults = [r for r in rows if r.kind == "fault"]
        assert len(faults) == 1 and "outbox_full" in faults[0].payload
        assert agent.outbox.depth <= 6


def test_cli_agent_runs_and_stops_cleanly_on_sigterm(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    sub = Subscriber(broker.host, broker.port, (Channel.AVAILABILITY,))
    last = lambda: [p.decode() for p, _ in sub.messages(Channel.AVAILABILITY)][-1:]  # noqa: E731
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent.cli",
            "agent",
            "--site",
            str(EXAMPLE_SITE),
            "--window",
            "w07",
            "--mock-pins",
            "--scripted",
            "--state-dir",
            str(tmp_path),
            "--broker",
            f"{broker.host}:{broker.port}",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_until(lambda: last() == [ONLINE], 20, "agent online")
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    wait_until(lambda: last() == [OFFLINE], 5, "agent offline")
    assert (tmp_path / "qingpu-w07.outbox.db").exists()
    sub.close()


def test_frozen_and_dead_camera_raise_faults(tmp_path: Path) -> None:
    import queue
    import threading

    import cv2
    import numpy as np

    from agent.app import CameraPump

    site = load_site(EXAMPLE_SITE)
    frames = tmp_path / "frozen"
    frames.mkdir()
    still = np.full((240, 320), 128, np.uint8)
    for i in range(80):  # the same picture over and over: a stuck sensor
        cv2.imwrite(str(frames / f"{i:04d}.png"), still)
    window = site.window("w03")
    cam = window.camera.model_copy(
        update={"source": "replay", "device": str(frames), "active_fps": 20.0}
    )
    faults: list[tuple[str, str]] = []
    pump = CameraPump(window.model_copy(update={"camera": cam}), frozen_after_s=0.05)
    pump.on_fault = lambda code, detail: faults.append((code, detail))
    sink: queue.SimpleQueue[tuple[int, object]] = queue.SimpleQueue()
    pump.run(sink, threading.Event(), lambda: 0)  # type: ignore[arg-type]
    assert [code for code, _ in faults][:1] == ["camera_frozen"]
    assert sink.qsize() == 80  # every frame still went through the pipeline

    gone = window.camera.model_copy(update={"source": "replay", "device": str(tmp_path / "none")})
    dead = CameraPump(window.model_copy(update={"camera": gone}))
    dead.on_fault = lambda code, detail: faults.append((code, detail))
    dead.run(sink, threading.Event(), lambda: 0)  # type: ignore[arg-type]
    assert faults[-1][0] == "camera_dead"


class FullDisk(Outbox):
    """An outbox on a disk that is full until ``full`` is cleared: ``add`` raises what
    SQLite raises then, and stores nothing."""

    full = True

    def add(self, draft: Draft) -> Event:
        if self.full:
            raise sqlite3.OperationalError("database or disk is full")
        return super().add(draft)


def test_full_disk_holds_events_and_keeps_the_rules_running(tmp_path: Path) -> None:
    site = load_site(EXAMPLE_SITE)
    window = site.window("w06")
    factory = MockFactory()
    dead = BrokerConfig(host="127.0.0.1", port=free_port())
    box = FullDisk(tmp_path / "full.outbox.db", site.site.site, window.window)
    agent = build_agent(
        site,
        window,
        tmp_path,
        pin_factory=factory,
        pump=ScriptedPump(ScriptedClerk(EXEMPLARY, random.Random(1)), step_s=0.05),
        broker=dead,
        outbox=box,
    )
    assert agent.outbox is box
    with agent:
        for _ in range(3):
            press(factory, window.gpio.eval_buttons[0])
            time.sleep(0.15)
        time.sleep(0.3)
        assert agent.outbox.last_seq == 0 and agent._threads[0].is_alive()  # rules alive
        box.full = False  # space freed: held events go in, oldest first, with the fault
        press(factory, window.gpio.eval_buttons[0])
        wait_until(lambda: agent.outbox.last_seq >= 5, 5, "held events stored")
        kinds = [r.kind for r in agent.outbox.peek(100)]
        assert kinds.count("evaluated") == 4 and kinds.count("fault") == 1
