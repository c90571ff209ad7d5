"""The terminal's sign-in wired by ``build_agent``: MockFactory pins and a badge reader on a
recording device, through ``SignIn``, into the outbox and (when an ingest announces
version 2) a real Mosquitto; where the directory and the reader come from at start.

Holding the finish key 3 s is not waited for: the agent's clock is the wall clock plus an
offset the test moves (``JumpClock``), so the hold takes no time and every part (pins,
reader, rules, sign-in) still sees one consistent clock.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from agent.app import BadgeCallback, ScriptedPump, WindowAgent, _sign_in_parts, build_agent
from agent.cli import main
from agent.config import BadgeConfig, BrokerConfig, ConfigError, Site, load_site, load_window
from agent.directory import ClerkDirectory, Credentials
from agent.hardware.badge import BadgeReader, BadgeReaderError
from agent.localbroker import MosquittoBroker, free_port
from agent.perception import EXEMPLARY, ScriptedClerk
from agent.protocol import now_ms
from agent.settings import AgentEnv
from agent.signin import SignInConfig
from agent.transport import LinkState, Transport
from tests.agent import Subscriber
from tests.agent.test_transport_versions import announce
from tests.conftest import EXAMPLE_SITE
from tests.data.badge_streams import typed
from tests.hardware.test_badge import Opener, RecordingDevice
from tests.waiting import stays_false, wait_until

BADGE, PIN = "0012345678", "1234"
PATH = "/dev/input/by-id/usb-Reader-event-kbd"


class JumpClock:
    """The wall clock in ms, plus whatever the test has jumped."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def __call__(self) -> int:
        return now_ms() + self.offset_ms

    def jump(self, seconds: float) -> None:
        self.offset_ms += round(seconds * 1000)


def directory(site: str = "qingpu") -> ClerkDirectory:
    return ClerkDirectory.build(site, {"c-li": Credentials(badges=(BADGE,), pin=PIN)})


def agent_for(
    tmp_path: Path,
    factory: MockFactory,
    clock: JumpClock,
    broker: BrokerConfig | None = None,
    **kwargs: Any,
) -> tuple[Site, WindowAgent]:
    site = load_site(EXAMPLE_SITE)
    window = site.window("w03")
    agent = build_agent(
        site, window, tmp_path, pin_factory=factory, clock=clock,
        pump=ScriptedPump(ScriptedClerk(EXEMPLARY, random.Random(3)), step_s=0.05),
        broker=broker or BrokerConfig(host="127.0.0.1", port=free_port()), tick_s=0.05,
        **kwargs,
    )  # fmt: skip
    return site, agent


@contextmanager
def running(agent: WindowAgent) -> Iterator[WindowAgent]:
    """The agent started, and stopped without waiting for a broker nobody runs."""
    agent.start()
    try:
        yield agent
    finally:
        agent.stop(flush_s=0.1)


def tap(factory: MockFactory, clock: JumpClock, pin: int) -> None:
    """A press and its release in the same ms (the release is the press's bounce)."""
    clock.jump(0.3)  # apart from the previous press, as a hand is
    factory.pin(pin).drive_low()
    factory.pin(pin).drive_high()


def hold(factory: MockFactory, clock: JumpClock, pin: int, seconds: float) -> None:
    clock.jump(0.3)
    factory.pin(pin).drive_low()
    clock.jump(seconds)
    factory.pin(pin).drive_high()


def stored(agent: WindowAgent, kind: str | None = None) -> list[dict[str, Any]]:
    rows = agent.outbox.peek(500)
    return [json.loads(r.payload) for r in rows if kind is None or r.kind == kind]


def kinds(agent: WindowAgent) -> list[str]:
    return [r.kind for r in agent.outbox.peek(500)]


def test_a_pin_typed_after_holding_finish_signs_in_and_is_no_evaluation(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    announce(broker, "ww-server-1", (1, 2))  # an ingest that takes clerk_at_terminal
    sub = Subscriber(broker.host, broker.port)
    factory, clock = MockFactory(), JumpClock()
    _, agent = agent_for(
        tmp_path, factory, clock, BrokerConfig(host=broker.host, port=broker.port),
        directory=directory(),
    )  # fmt: skip
    gpio = agent.window.gpio
    assert gpio.finish_button is not None and agent.signin is not None
    link = agent.link
    assert isinstance(link, Transport)
    with agent:
        wait_until(lambda: link.send_version == 2, 10, "the v2 announcement")
        hold(factory, clock, gpio.finish_button, 3.5)
        wait_until(lambda: agent.panel.service_mode, 5, "PIN entry")
        for key in PIN:
            tap(factory, clock, gpio.eval_buttons[int(key) - 1])
        tap(factory, clock, gpio.finish_button)  # confirm
        wait_until(lambda: agent.signin is not None and agent.signin.signed_in == "c-li", 5)
        wait_until(lambda: not agent.panel.service_mode, 5, "PIN entry over")
        got = lambda: [e for e in sub.unique() if e["kind"] == "clerk_at_terminal"]  # noqa: E731
        wait_until(lambda: bool(got()), 10, "clerk_at_terminal at the broker")
        (event,) = got()
        assert {k: event[k] for k in ("action", "method", "clerk_id", "refused")} == {
            "action": "sign_in", "method": "pin", "clerk_id": "c-li", "refused": None,
        }  # fmt: skip
        assert event["schema_version"] == 2 and PIN not in json.dumps(event)
        assert "evaluated" not in kinds(agent)  # the PIN's presses were consumed
        tap(factory, clock, gpio.eval_buttons[0])  # PIN entry is over: a rating again
        sent = lambda: [e["kind"] for e in sub.unique()]  # noqa: E731
        wait_until(lambda: "evaluated" in sent(), 10, "the evaluation at the broker")
        assert sent().count("evaluated") == 1
    sub.close()


def test_a_badge_signs_in_and_the_same_badge_again_signs_out(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    # No ingest announces version 2: the terminal holds the events, then sends them.
    sub = Subscriber(broker.host, broker.port)
    factory, clock, device = MockFactory(), JumpClock(), RecordingDevice()

    def reader(post: BadgeCallback) -> BadgeReader:
        return BadgeReader(PATH, post, clock=clock, open_device=Opener(device))

    _, agent = agent_for(
        tmp_path, factory, clock, BrokerConfig(host=broker.host, port=broker.port),
        directory=directory(), badge_reader=reader,
    )  # fmt: skip
    badges, signin, link = agent.badge_reader, agent.signin, agent.link
    assert isinstance(badges, BadgeReader) and signin is not None
    assert isinstance(link, Transport) and agent.window.gpio.buzzer is not None
    buzzer = factory.pin(agent.window.gpio.buzzer)
    with agent:
        wait_until(lambda: link.link is LinkState.ONLINE, 10, "online")
        wait_until(lambda: badges.connected, 5, "the reader open")
        buzzer.clear_states()
        device.type(typed(BADGE + "\n", now_ms()))
        wait_until(lambda: signin.signed_in == "c-li", 5, "signed in by badge")
        wait_until(lambda: len(buzzer.states) >= 3, 3, "the sign-in beep")
        assert buzzer.states[2].timestamp == pytest.approx(1.0, abs=0.15)  # one long beep
        clock.jump(6)  # past the reader's re-read window
        device.type(typed(BADGE + "\n", now_ms()))
        wait_until(lambda: signin.signed_in is None, 5, "signed out by the same badge")
        # The rules' state changes first; the event reaches the outbox just after.
        wait_until(lambda: len(stored(agent, "clerk_at_terminal")) >= 2, 5, "both stored")
        events = stored(agent, "clerk_at_terminal")
        assert [(e["action"], e["method"], e["clerk_id"]) for e in events] == [
            ("sign_in", "badge", "c-li"),
            ("sign_out", "badge", "c-li"),
        ]
        assert all(BADGE not in json.dumps(e) for e in events)
        # Held, in order, while every ingest takes version 1 only.
        assert link.send_version == 1
        assert stays_false(lambda: bool(sub.unique()), 0.5)
        assert agent.outbox.depth >= 2
        announce(broker, "ww-server-1", (1, 2))
        wait_until(lambda: len(sub.unique()) >= 2, 10, "the held events sent")
    assert [e["action"] for e in sub.unique() if e["kind"] == "clerk_at_terminal"] == [
        "sign_in",
        "sign_out",
    ]
    assert device.closed  # the agent closed its reader
    sub.close()


def test_a_wrong_pin_is_refused_and_the_bell_ends_pin_entry(tmp_path: Path) -> None:
    factory, clock = MockFactory(), JumpClock()
    _, agent = agent_for(tmp_path, factory, clock, directory=directory())
    gpio = agent.window.gpio
    assert gpio.finish_button is not None and gpio.call_button is not None
    with running(agent):
        hold(factory, clock, gpio.finish_button, 3.5)
        wait_until(lambda: agent.panel.service_mode, 5, "PIN entry")
        for key in "5555":
            tap(factory, clock, gpio.eval_buttons[int(key) - 1])
        tap(factory, clock, gpio.finish_button)
        wait_until(lambda: "clerk_at_terminal" in kinds(agent), 5, "the refusal")
        (refused,) = stored(agent, "clerk_at_terminal")
        assert (refused["action"], refused["clerk_id"], refused["refused"]) == (
            "sign_in", None, "unknown",
        )  # fmt: skip
        hold(factory, clock, gpio.finish_button, 3.5)  # again, and the bell instead of a PIN
        wait_until(lambda: agent.panel.service_mode, 5, "PIN entry again")
        tap(factory, clock, gpio.eval_buttons[1])
        tap(factory, clock, gpio.call_button)
        wait_until(lambda: "session_opened" in kinds(agent), 5, "the bell rang as usual")
        assert not agent.panel.service_mode
        assert "evaluated" not in kinds(agent)
    assert agent.signin is not None and agent.signin.signed_in is None


def test_pin_entry_times_out_by_itself(tmp_path: Path) -> None:
    factory, clock = MockFactory(), JumpClock()
    config = SignInConfig(service_timeout_s=3)
    _, agent = agent_for(tmp_path, factory, clock, directory=directory(), signin_config=config)
    gpio = agent.window.gpio
    assert gpio.finish_button is not None
    with running(agent):
        hold(factory, clock, gpio.finish_button, 3.5)
        wait_until(lambda: agent.panel.service_mode, 5, "PIN entry")
        clock.jump(3)  # the loop's tick (and the scripted clerk's frames) see the timeout
        wait_until(lambda: not agent.panel.service_mode, 5, "PIN entry over")
        tap(factory, clock, gpio.eval_buttons[0])  # a rating again
        wait_until(lambda: "evaluated" in kinds(agent), 5, "an evaluation")
    assert agent.signin is not None and agent.signin.counters.service_timeouts == 1


def test_without_a_directory_a_long_finish_press_is_just_a_finish(tmp_path: Path) -> None:
    factory, clock = MockFactory(), JumpClock()
    _, agent = agent_for(tmp_path, factory, clock)
    gpio = agent.window.gpio
    assert agent.signin is None and gpio.finish_button is not None and gpio.call_button
    with running(agent):
        tap(factory, clock, gpio.call_button)
        wait_until(lambda: "session_opened" in kinds(agent), 5, "a session")
        hold(factory, clock, gpio.finish_button, 3.5)  # the gesture, at a terminal without
        for key in PIN:  # what would have been a PIN: four ratings
            tap(factory, clock, gpio.eval_buttons[int(key) - 1])
        wait_until(lambda: kinds(agent).count("evaluated") == 4, 5, "four evaluations")
        assert not agent.panel.service_mode
        clock.jump(10)  # past the farewell
        wait_until(lambda: "session_summary" in kinds(agent), 5, "the session finished")
        (summary,) = stored(agent, "session_summary")
        assert summary["closed_by"] == "finish_key"
        assert "clerk_at_terminal" not in kinds(agent)


def test_sign_in_parts_are_checked(tmp_path: Path) -> None:
    site = load_site(EXAMPLE_SITE)
    window = site.window("w03")
    factory = MockFactory()
    pump = ScriptedPump(ScriptedClerk(EXEMPLARY, random.Random(1)))
    with pytest.raises(TypeError, match="need a directory"):
        build_agent(site, window, tmp_path, pin_factory=factory, pump=pump,
                    badge_reader=lambda post: BadgeReader(PATH, post))  # fmt: skip
    with pytest.raises(ValueError, match="site xujiahui's, not qingpu's"):
        build_agent(site, window, tmp_path, pin_factory=factory, pump=pump,
                    directory=directory("xujiahui"))  # fmt: skip


def _cli_parts(
    tmp_path: Path, *, with_directory: bool, badge: bool
) -> tuple[ClerkDirectory | None, object]:
    site = load_site(EXAMPLE_SITE)
    window = site.window("w03")
    if badge:
        window = window.model_copy(update={"badge": BadgeConfig(device=PATH)})
    env: dict[str, str] = {}
    if with_directory:
        path = tmp_path / "qingpu.clerks.json"
        path.write_text(directory().model_dump_json())
        env["WW_CLERK_DIRECTORY"] = str(path)
    return _sign_in_parts(AgentEnv.read(env), site, window)


def test_the_cli_loads_the_directory_and_builds_the_reader_it_is_configured_with(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert _cli_parts(tmp_path, with_directory=False, badge=False) == (None, None)
    found, reader = _cli_parts(tmp_path, with_directory=True, badge=False)
    assert found is not None and found.clerk_ids == {"c-li"} and reader is None
    found, reader = _cli_parts(tmp_path, with_directory=True, badge=True)
    assert found is not None and isinstance(reader, partial)
    assert reader.func is BadgeReader and reader.args == (PATH,)
    with caplog.at_level("WARNING"):
        assert _cli_parts(tmp_path, with_directory=False, badge=True) == (None, None)
    assert "no clerk directory (WW_CLERK_DIRECTORY)" in caplog.text


def test_without_evdev_a_configured_reader_is_refused_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "evdev", None)  # import evdev -> ImportError
    with pytest.raises(BadgeReaderError, match="evdev is not installed") as err:
        _cli_parts(tmp_path, with_directory=True, badge=True)
    assert PATH in str(err.value) and "qingpu/w03" in str(err.value)


def test_the_agent_command_names_a_bad_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "clerks.json"
    bad.write_text(directory("xujiahui").model_dump_json())
    monkeypatch.setenv("WW_CLERK_DIRECTORY", str(bad))
    args = ["agent", "--site", str(EXAMPLE_SITE), "--window", "w03", "--mock-pins",
            "--scripted", "--state-dir", str(tmp_path)]  # fmt: skip
    assert main(args) == 2
    said = capsys.readouterr().err
    assert f"bad environment: WW_CLERK_DIRECTORY: {bad}: the directory of site" in said
    assert not list(tmp_path.glob("*.outbox.db"))  # refused before anything was opened


def test_the_badge_reader_in_a_window_file(tmp_path: Path) -> None:
    text = (EXAMPLE_SITE / "windows" / "w03.toml").read_text()
    good = tmp_path / "w03.toml"
    good.write_text(text + f'\n[badge]\ndevice = "{PATH}"\n')
    badge = load_window(good).badge
    assert badge is not None and badge.device == PATH
    assert load_window(EXAMPLE_SITE / "windows" / "w03.toml").badge is None
    bad = tmp_path / "bad.toml"
    bad.write_text(text + '\n[badge]\ndevice = ""\n')
    with pytest.raises(ConfigError) as err:
        load_window(bad)
    assert err.value.problems[0].startswith(f"{bad}: badge.device: ")
