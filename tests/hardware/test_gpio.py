"""WindowPanel on MockFactory pins: what reaches the sink, and what the rules make of it.

Buttons are wired to GND with pull-ups, so ``drive_low()`` is a press and
``drive_high()`` the release; the sign's reed switch closes (low) when the sign is shown.
A press reaches the sink as ``Press(key, input)``; ``inputs`` unwraps them into what the
rules take, as an agent without sign-in does.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from gpiozero import Button, DigitalInputDevice, DistanceSensor, MotionSensor
from gpiozero.exc import GPIOPinInUse
from gpiozero.pins.mock import MockFactory, MockTriggerPin

from agent.config import GpioConfig
from agent.hardware.gpio import (
    RATINGS_5,
    SERVICE_BLINK,
    SIGNALS,
    PanelInput,
    Press,
    Release,
    WindowPanel,
    rule_input,
)
from agent.protocol import Rating
from agent.rules import Call, Evaluation, Finish, Presence, RuleInput, ServiceRules, Sign, Tick
from agent.rules.engine import Step
from agent.signin import PanelKey, Signal
from tests.rules.script import CFG, NO_CALL, brief, ev, gone, ids, seen
from tests.waiting import wait_until

CALL, FINISH, SIGN, LED_PIN, BUZZER = 17, 27, 22, 23, 24
EVAL5 = [5, 6, 13, 19, 26]
EVAL_KEYS: tuple[PanelKey, ...] = (1, 2, 3, 4, 5)

Q = queue.SimpleQueue[tuple[int, PanelInput]]


class FakeClock:
    """Device time in ms, moved by the test."""

    def __init__(self, t_ms: int = 0) -> None:
        self.t_ms = t_ms

    def __call__(self) -> int:
        return self.t_ms


def gpio(**overrides: object) -> GpioConfig:
    fields: dict[str, object] = dict(
        call_button=CALL, finish_button=FINISH, eval_buttons=EVAL5, sign_sensor=SIGN,
        status_led=LED_PIN, buzzer=BUZZER, bounce_ms=50,
    )  # fmt: skip
    fields.update(overrides)
    return GpioConfig.model_validate(fields)


def drain(q: Q) -> list[tuple[int, PanelInput]]:
    out = []
    while not q.empty():
        out.append(q.get_nowait())
    return out


def inputs(q: Q) -> list[tuple[int, RuleInput]]:
    """What the rules get of the sink's items (presses unwrapped, releases dropped)."""
    return [(t, i) for t, item in drain(q) if (i := rule_input(item)) is not None]


def states(factory: MockFactory, pin: int) -> list[bool]:
    return [bool(s.state) for s in factory.pin(pin).states]


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    f = MockFactory()
    yield f
    f.reset()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_000)


def press(factory: MockFactory, pin: int) -> None:
    factory.pin(pin).drive_low()
    factory.pin(pin).drive_high()


# --------------------------------------------------------------------------- inputs


def test_start_reports_the_sign_then_buttons_report_their_inputs(
    factory: MockFactory, clock: FakeClock
) -> None:
    q: Q = queue.SimpleQueue()
    with WindowPanel(gpio(), q, pin_factory=factory, clock=clock, ack_s=0.001):
        assert drain(q) == [(1_000, Sign(up=False))]
        clock.t_ms = 2_000
        press(factory, CALL)
        clock.t_ms = 3_000
        press(factory, FINISH)  # released in the same ms: the press's bounce, no release
        assert drain(q) == [
            (2_000, Press("call", Call(source="bell"))),
            (3_000, Press("finish", Finish())),
        ]


def test_five_button_panel_is_best_first(factory: MockFactory, clock: FakeClock) -> None:
    q: Q = queue.SimpleQueue()
    with WindowPanel(gpio(), q, pin_factory=factory, clock=clock, ack_s=0.001):
        drain(q)
        for pin in EVAL5:
            clock.t_ms += 1_000
            press(factory, pin)
        assert [item for _, item in drain(q)] == [
            Press(1, Evaluation(Rating.VERY_SATISFIED)),
            Press(2, Evaluation(Rating.SATISFIED)),
            Press(3, Evaluation(Rating.BASIC)),
            Press(4, Evaluation(Rating.DISSATISFIED)),
            Press(5, Evaluation(Rating.VERY_DISSATISFIED)),
        ]


def test_three_button_panel_maps_to_three_levels(factory: MockFactory, clock: FakeClock) -> None:
    q: Q = queue.SimpleQueue()
    cfg = gpio(eval_buttons=[5, 6, 13], finish_button=None)
    with WindowPanel(cfg, q, pin_factory=factory, clock=clock, ack_s=0.001) as panel:
        assert panel.finish_button is None
        drain(q)
        for pin in (13, 6, 5):
            press(factory, pin)
        assert [item for _, item in drain(q)] == [
            Press(3, Evaluation(Rating.DISSATISFIED)),
            Press(2, Evaluation(Rating.BASIC)),
            Press(1, Evaluation(Rating.SATISFIED)),
        ]


def test_bounce_inside_bounce_ms_is_one_press_per_button(
    factory: MockFactory, clock: FakeClock
) -> None:
    q: Q = queue.SimpleQueue()
    with WindowPanel(gpio(bounce_ms=50), q, pin_factory=factory, clock=clock, ack_s=0.001):
        drain(q)
        press(factory, 5)
        clock.t_ms += 49
        press(factory, 5)  # contact bounce: swallowed
        press(factory, 6)  # another button is not locked out
        clock.t_ms += 1
        press(factory, 5)  # 50 ms after the first: a real press
        assert inputs(q) == [
            (1_000, Evaluation(Rating.VERY_SATISFIED)),
            (1_049, Evaluation(Rating.SATISFIED)),
            (1_050, Evaluation(Rating.VERY_SATISFIED)),
        ]


def test_the_finish_keys_release_is_reported_with_its_time(
    factory: MockFactory, clock: FakeClock
) -> None:
    q: Q = queue.SimpleQueue()
    with WindowPanel(gpio(bounce_ms=50), q, pin_factory=factory, clock=clock, ack_s=0.001):
        drain(q)
        pin = factory.pin(FINISH)
        pin.drive_low()  # held ...
        clock.t_ms += 10
        pin.drive_high()  # ... a bounce of the press: still held
        pin.drive_low()
        clock.t_ms = 4_500
        pin.drive_high()  # let go after 3.5 s
        clock.t_ms += 20
        pin.drive_low()  # the release's bounce is no press
        pin.drive_high()
        clock.t_ms = 6_000
        press(factory, CALL)  # other keys' releases are not reported
        assert drain(q) == [
            (1_000, Press("finish", Finish())),
            (4_500, Release("finish")),
            (6_000, Press("call", Call(source="bell"))),
        ]
        clock.t_ms = 7_000
        pin.drive_low()
        clock.t_ms = 7_200
        pin.drive_high()
        assert drain(q) == [(7_000, Press("finish", Finish())), (7_200, Release("finish"))]


def test_sign_closed_is_shown_and_repeats_are_not_news(
    factory: MockFactory, clock: FakeClock
) -> None:
    q: Q = queue.SimpleQueue()
    with WindowPanel(gpio(), q, pin_factory=factory, clock=clock) as panel:
        clock.t_ms = 5_000
        factory.pin(SIGN).drive_low()
        assert panel.sign_up is True
        clock.t_ms = 9_000
        factory.pin(SIGN).drive_high()
        assert panel.sign_up is False
        assert drain(q) == [
            (1_000, Sign(up=False)),
            (5_000, Sign(up=True)),
            (9_000, Sign(up=False)),
        ]


def test_a_late_edge_callback_after_the_level_settled_is_not_news(
    factory: MockFactory, clock: FakeClock
) -> None:
    # On a Pi a bouncing reed switch can deliver an edge callback after the level has
    # already gone back; the panel reports levels, not edges.
    q: Q = queue.SimpleQueue()
    with WindowPanel(gpio(), q, pin_factory=factory, clock=clock) as panel:
        handler = panel.sign_sensor.when_activated
        assert handler is not None
        handler()  # "activated" arrives, but the pin reads open (sign down) again
        assert drain(q) == [(1_000, Sign(up=False))]


def test_sign_in_a_storage_holder_is_shown_when_open(
    factory: MockFactory, clock: FakeClock
) -> None:
    q: Q = queue.SimpleQueue()
    # The pull-up reads the empty holder as open: the sign is out, i.e. shown.
    with WindowPanel(gpio(), q, pin_factory=factory, clock=clock, sign_shown_when="open"):
        clock.t_ms = 2_000
        factory.pin(SIGN).drive_low()  # put back into its holder
        assert drain(q) == [(1_000, Sign(up=True)), (2_000, Sign(up=False))]


# --------------------------------------------------------------------------- outputs


def test_buzzer_beeps_once_per_accepted_press(factory: MockFactory, clock: FakeClock) -> None:
    q: Q = queue.SimpleQueue()
    with WindowPanel(gpio(), q, pin_factory=factory, clock=clock, ack_s=0.01):
        press(factory, 5)
        press(factory, 5)  # same ms: bounce, no second beep
        wait_until(lambda: states(factory, BUZZER) == [False, True, False])
        time.sleep(0.05)
        assert states(factory, BUZZER) == [False, True, False]


def test_without_a_buzzer_the_status_led_flashes_and_returns_to_its_mode(
    factory: MockFactory, clock: FakeClock
) -> None:
    q: Q = queue.SimpleQueue()
    with WindowPanel(gpio(buzzer=None), q, pin_factory=factory, clock=clock, ack_s=0.01) as p:
        p.set_status("connected")
        assert states(factory, LED_PIN) == [False, True]
        press(factory, CALL)
        # Flash (off for a moment on a steady LED), then steady again.
        wait_until(lambda: states(factory, LED_PIN) == [False, True, False, True])
        assert p.status_led is not None and p.status_led.is_lit


def test_status_led_modes(factory: MockFactory, clock: FakeClock) -> None:
    q: Q = queue.SimpleQueue()
    with WindowPanel(gpio(), q, pin_factory=factory, clock=clock) as panel:
        led = panel.status_led
        assert led is not None
        panel.set_status("connected")
        assert led.is_lit and panel.status == "connected"
        factory.pin(LED_PIN).clear_states()
        panel.set_status("fault")  # 0.1 s on / 0.1 s off
        wait_until(lambda: len(factory.pin(LED_PIN).states) >= 4)
        panel.set_status("buffering")
        assert panel.status == "buffering"
        wait_until(lambda: bool(led.is_lit))  # a blink starts lit, from its own thread
        panel.set_status("off")
        assert not led.is_lit
        factory.pin(LED_PIN).clear_states()
        time.sleep(0.25)  # no blink thread left behind
        assert states(factory, LED_PIN) == [False]


def test_sign_in_signals_are_distinct_beeps(factory: MockFactory, clock: FakeClock) -> None:
    q: Q = queue.SimpleQueue()
    with WindowPanel(gpio(), q, pin_factory=factory, clock=clock) as panel:
        buzzer = factory.pin(BUZZER)
        heard: dict[Signal, list[tuple[bool, float]]] = {}
        for sig in (Signal.REFUSED, Signal.SIGNED_IN, Signal.SIGNED_OUT, Signal.SERVICE_ENDED):
            beeps = SIGNALS[sig]
            n = 0 if beeps is None else beeps.n
            buzzer.clear_states()
            panel.signal(sig)

            def sounded(changes: int = 1 + 2 * n) -> bool:
                return len(buzzer.states) == changes

            wait_until(sounded, 3, f"{sig} sounded")
            time.sleep(0.05)  # and nothing more
            heard[sig] = [(bool(s.state), s.timestamp) for s in buzzer.states[1:]]
    beeps_of = {sig: [d for on, d in got if not on] for sig, got in heard.items()}  # on-times
    assert {sig: len(on) for sig, on in beeps_of.items()} == {
        Signal.REFUSED: 3, Signal.SIGNED_IN: 1, Signal.SIGNED_OUT: 2, Signal.SERVICE_ENDED: 0,
    }  # fmt: skip
    assert beeps_of[Signal.SIGNED_IN][0] == pytest.approx(1.0, abs=0.15)  # one long
    assert all(d == pytest.approx(0.1, abs=0.05) for d in beeps_of[Signal.REFUSED])  # short


def test_pin_entry_blinks_the_led_until_another_signal(
    factory: MockFactory, clock: FakeClock
) -> None:
    q: Q = queue.SimpleQueue()
    with WindowPanel(gpio(), q, pin_factory=factory, clock=clock) as panel:
        led = factory.pin(LED_PIN)
        panel.set_status("connected")
        panel.signal(Signal.SERVICE_MODE)
        assert panel.service_mode
        led.clear_states()
        wait_until(lambda: len(led.states) >= 4, 3, "the LED blinking")
        off = SERVICE_BLINK[1]
        assert [bool(s.state) for s in led.states[1:4]] == [False, True, False]
        assert led.states[2].timestamp == pytest.approx(off, abs=0.08)
        panel.set_status("buffering")  # the loop's status changes: PIN entry still shows
        panel.set_status("connected")
        assert panel.service_mode
        panel.signal(Signal.SIGNED_IN)  # any other signal ends it: steady again
        assert not panel.service_mode and panel.status == "connected"
        led.clear_states()
        time.sleep(0.6)
        assert states(factory, LED_PIN) == [True]


def test_without_a_buzzer_the_led_goes_dark_for_each_beep(
    factory: MockFactory, clock: FakeClock
) -> None:
    q: Q = queue.SimpleQueue()
    with WindowPanel(gpio(buzzer=None), q, pin_factory=factory, clock=clock) as panel:
        panel.set_status("connected")
        factory.pin(LED_PIN).clear_states()
        panel.signal(Signal.REFUSED)
        dark3 = [True, False, True, False, True, False, True]  # then back to steady
        wait_until(lambda: states(factory, LED_PIN) == dark3, 3, "three dark pulses")
        time.sleep(0.1)
        assert states(factory, LED_PIN) == dark3


# --------------------------------------------------------------------------- lifetime


def test_close_releases_every_pin_and_silences_callbacks(
    factory: MockFactory, clock: FakeClock
) -> None:
    q: Q = queue.SimpleQueue()
    with WindowPanel(gpio(), q, pin_factory=factory, clock=clock) as panel:
        pass
    assert panel.closed
    drain(q)
    press(factory, CALL)
    assert drain(q) == []
    for pin in (CALL, FINISH, *EVAL5, SIGN):
        DigitalInputDevice(pin, pin_factory=factory).close()  # raises GPIOPinInUse if held
    panel.close()  # twice is fine


def test_failed_construction_releases_the_pins_it_took(factory: MockFactory) -> None:
    squatter = Button(13, pin_factory=factory)
    q: Q = queue.SimpleQueue()
    with pytest.raises(GPIOPinInUse):
        WindowPanel(gpio(), q, pin_factory=factory)
    Button(CALL, pin_factory=factory).close()
    squatter.close()


# --------------------------------------------------------------------------- with the rules


def _run(q: Q, rules: ServiceRules, extra: list[Step] | None = None) -> list[Step]:
    """Everything the pins produced (plus scripted observations), in time order."""
    steps: list[Step] = [*inputs(q), *(extra or [])]
    return sorted(steps, key=lambda s: s[0] if isinstance(s, tuple) else s.t_ms)


def test_pin_presses_become_evaluations_with_every_suspect_reason(
    factory: MockFactory, clock: FakeClock
) -> None:
    q: Q = queue.SimpleQueue()
    rules = ServiceRules(CFG, new_id=ids())
    drafts = []
    with WindowPanel(gpio(), q, pin_factory=factory, clock=clock, ack_s=0.001):
        for t_ms, action in [
            (1_000, lambda: press(factory, 5)),              # no session
            (10_000, lambda: press(factory, CALL)),
            (11_000, lambda: factory.pin(SIGN).drive_low()),  # sign shown
            (12_000, lambda: press(factory, 6)),             # while the sign is up
            (13_000, lambda: factory.pin(SIGN).drive_high()),
            (20_000, lambda: press(factory, 5)),             # the real evaluation
            (21_000, lambda: press(factory, 26)),            # 1 s later: repeat
            (25_000, lambda: press(factory, 19)),            # 4 s later: second rating
        ]:  # fmt: skip
            clock.t_ms = t_ms
            action()
            drafts += rules.run(inputs(q))
    drafts += rules.tick(40_000)
    assert [b for b in brief(drafts) if b[0] == "Evaluated"] == [
        ev("Evaluated", 1_000, rating=Rating.VERY_SATISFIED, suspect=True,
           suspect_reason="no_session"),
        ev("Evaluated", 12_000, rating=Rating.SATISFIED, suspect=True, suspect_reason="sign_up"),
        ev("Evaluated", 20_000, rating=Rating.VERY_SATISFIED, suspect=False,
           suspect_reason=None),
        ev("Evaluated", 21_000, rating=Rating.VERY_DISSATISFIED, suspect=True,
           suspect_reason="repeat"),
        ev("Evaluated", 25_000, rating=Rating.DISSATISFIED, suspect=True,
           suspect_reason="already_evaluated"),
    ]  # fmt: skip
    summary = drafts[-1]
    assert summary.kind.__name__ == "SessionSummary"
    assert summary.fields["closed_by"] == "evaluation"
    assert summary.fields["rating"] == Rating.VERY_SATISFIED
    assert rules.counters.suspect_presses == 4


def test_bell_to_finish_key_session_from_pins(factory: MockFactory, clock: FakeClock) -> None:
    q: Q = queue.SimpleQueue()
    with WindowPanel(gpio(), q, pin_factory=factory, clock=clock, ack_s=0.001):
        clock.t_ms = 10_000
        press(factory, CALL)
        clock.t_ms = 40_000
        press(factory, FINISH)
        clock.t_ms = 40_020
        press(factory, FINISH)  # bounce: must not count twice
        rules = ServiceRules(CFG, new_id=ids())
        drafts = rules.run(
            _run(
                q,
                rules,
                [
                    seen(9_000, smile=0.1),
                    seen(13_000, smile=0.7, standing=True),
                    seen(14_000, smile=0.3),
                    seen(41_000, smile=0.6, standing=True),
                    seen(45_000, smile=0.6, standing=True),
                    seen(50_000, smile=0.1),
                ],
            )
        )
    assert brief(drafts)[-1] == ev(
        "SessionSummary", 45_000, opened_ms=10_000, closed_ms=40_000, closed_by="finish_key",
        stood_on_call=True, stand_after_ms=3_000, smiled_at_greeting=True, smile_after_ms=3_000,
        smile_peak=0.7, smile_too_broad=False, stood_at_farewell=True, see_off_ms=3_000,
        rating=None, priority=False, source="bell", ticket=None, **NO_CALL,
        smiled_at_farewell=True, farewell_smile_after_ms=1_000, greeted_first=None,
    )  # fmt: skip


def test_away_with_and_without_the_sign_from_the_sensor(
    factory: MockFactory, clock: FakeClock
) -> None:
    q: Q = queue.SimpleQueue()
    with WindowPanel(gpio(), q, pin_factory=factory, clock=clock):
        clock.t_ms = 100_000
        factory.pin(SIGN).drive_low()  # sign up before the second absence
        clock.t_ms = 300_000
        factory.pin(SIGN).drive_high()
        rules = ServiceRules(CFG, new_id=ids())
        obs: list[Step] = [seen(0), gone(10_000), seen(90_000), gone(101_000), seen(250_000)]
        drafts = rules.run(_run(q, rules, obs))
    assert [b for b in brief(drafts) if b[0] == "Away"] == [
        ev("Away", 70_000, started_ms=10_000, ended_ms=None, with_sign=False, violation=True),
        ev("Away", 90_000, started_ms=10_000, ended_ms=90_000, with_sign=False, violation=True),
        ev("Away", 250_000, started_ms=101_000, ended_ms=250_000, with_sign=True,
           violation=False),
    ]  # fmt: skip


def test_presses_from_many_threads_all_reach_the_sink(factory: MockFactory) -> None:
    # gpiozero calls back on its own threads; with several buttons at once nothing may
    # be lost or interleaved into a broken item.
    q: Q = queue.SimpleQueue()
    ticks = itertools.count(1)
    cfg = gpio(bounce_ms=0, buzzer=None, status_led=None)
    with WindowPanel(cfg, q, pin_factory=factory, clock=lambda: next(ticks)):
        drain(q)

        def hammer(pin: int) -> None:
            for _ in range(50):
                press(factory, pin)

        threads = [threading.Thread(target=hammer, args=(pin,)) for pin in EVAL5]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        got = drain(q)
    assert Counter(item for _, item in got) == {
        Press(key, Evaluation(rating)): 50 for key, rating in zip(EVAL_KEYS, RATINGS_5, strict=True)
    }


# --------------------------------------------------------------------------- front desk presence

PIR, ECHO, TRIG = 4, 20, 21


def echo_s(distance_m: float) -> float:
    """An HC-SR04's echo pulse for a reflector at ``distance_m`` (gpiozero: 343.26 m/s)."""
    return 2 * distance_m / 343.26


def desk_gpio(presence: dict[str, object]) -> GpioConfig:
    return gpio(call_button=None, presence=presence)  # a front desk needs no bell


def presences(q: Q, n: int) -> list[tuple[int, RuleInput]]:
    """Wait for the next ``n`` presence changes (the sensor's thread reports them)."""
    got: list[tuple[int, RuleInput]] = []

    def more() -> bool:
        got.extend(item for item in inputs(q) if isinstance(item[1], Presence))
        return len(got) >= n

    wait_until(more, 5, f"{n} presence changes")
    return got


def test_a_pir_reports_the_citizen_walking_up_and_away(
    factory: MockFactory, clock: FakeClock
) -> None:
    q: Q = queue.SimpleQueue()
    with WindowPanel(desk_gpio({"type": "pir", "pin": PIR}), q, pin_factory=factory,
                     clock=clock) as panel:  # fmt: skip
        assert panel.call_button is None and isinstance(panel.presence_sensor, MotionSensor)
        assert panel.presence_ready()  # the first reading is no arrival
        assert drain(q) == [(1_000, Sign(up=False))]
        clock.t_ms = 2_000
        factory.pin(PIR).drive_high()  # the module sees motion
        assert presences(q, 1) == [(2_000, Presence(here=True))]
        clock.t_ms = 9_000
        factory.pin(PIR).drive_low()
        assert presences(q, 1) == [(9_000, Presence(here=False))]


def test_an_ultrasonic_sensor_sees_a_citizen_nearer_than_the_threshold(
    factory: MockFactory, clock: FakeClock
) -> None:
    # The trigger pin echoes on the echo pin after the time sound takes to the reflector.
    trig = factory.pin(TRIG, pin_class=MockTriggerPin, echo_pin=factory.pin(ECHO),
                       echo_time=echo_s(2.0))  # fmt: skip
    cfg = desk_gpio({"type": "ultrasonic", "echo": ECHO, "trigger": TRIG, "threshold_m": 0.8,
                     "max_distance_m": 2.0})  # fmt: skip
    q: Q = queue.SimpleQueue()
    with WindowPanel(cfg, q, pin_factory=factory, clock=clock) as panel:
        sensor = panel.presence_sensor
        assert isinstance(sensor, DistanceSensor)
        assert (sensor.max_distance, sensor.threshold_distance) == (2.0, 0.8)
        assert panel.presence_ready()
        drain(q)
        clock.t_ms = 3_000
        trig.echo_time = echo_s(0.4)  # someone at the desk
        assert presences(q, 1) == [(3_000, Presence(here=True))]
        clock.t_ms = 8_000
        trig.echo_time = echo_s(1.5)  # walked off, though still in the sensor's range
        assert presences(q, 1) == [(8_000, Presence(here=False))]


def test_closing_releases_the_presence_sensors_pins(factory: MockFactory) -> None:
    q: Q = queue.SimpleQueue()
    factory.pin(TRIG, pin_class=MockTriggerPin, echo_pin=factory.pin(ECHO))
    cfg = desk_gpio({"type": "ultrasonic", "echo": ECHO, "trigger": TRIG})
    with WindowPanel(cfg, q, pin_factory=factory):
        pass
    for pin in (ECHO, TRIG, SIGN):
        DigitalInputDevice(pin, pin_factory=factory).close()  # GPIOPinInUse if still held
    with WindowPanel(desk_gpio({"type": "pir", "pin": PIR}), q, pin_factory=factory):
        pass
    DigitalInputDevice(PIR, pin_factory=factory).close()


def test_a_walk_up_at_the_pir_becomes_a_reception(factory: MockFactory, clock: FakeClock) -> None:
    q: Q = queue.SimpleQueue()
    with WindowPanel(desk_gpio({"type": "pir", "pin": PIR}), q, pin_factory=factory,
                     clock=clock) as panel:  # fmt: skip
        assert panel.presence_ready()
        clock.t_ms = 10_000
        factory.pin(PIR).drive_high()
        steps: list[Step] = [*presences(q, 1)]
        clock.t_ms = 30_000
        factory.pin(PIR).drive_low()
        steps += presences(q, 1)
    rules = ServiceRules(CFG, role="front_desk", new_id=ids())
    drafts = rules.run(_run(q, rules, [
        *steps,
        seen(9_000, smile=0.1),
        seen(11_000, smile=0.8, standing=True),   # stood and smiled 1 s after the arrival
        (40_000, Tick()),                         # unseen for 5 s from 30 000: gone
    ]))  # fmt: skip
    summary = brief(drafts)[-1]
    assert summary[0] == "SessionSummary" and summary[1] == 35_000
    assert {k: summary[2][k] for k in ("source", "opened_ms", "closed_ms", "greeted_first")} == {
        "source": "presence", "opened_ms": 10_000, "closed_ms": 30_000, "greeted_first": True,
    }  # fmt: skip
