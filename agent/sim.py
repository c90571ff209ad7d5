"""Simulated windows for the demo: the real agent, with MockFactory pins a scenario
presses and a scripted clerk instead of a camera.

Each window runs ``WindowAgent`` unchanged (panel, rules, outbox, transport over real
MQTT); only the world around it is invented: citizens called, served and evaluating,
and a clerk who follows the standard more or less reliably.
"""

from __future__ import annotations

import random
import threading
from pathlib import Path

from gpiozero.pins.mock import MockFactory

from agent.app import ScriptedPump, WindowAgent, wall_ms
from agent.config import BrokerConfig, Site, WindowConfig
from agent.perception import CARELESS, EXEMPLARY, TYPICAL, ClerkProfile, ScriptedClerk

#: Rating weights, best first (5-button panel); a 3-button panel uses the middle three.
RATING_WEIGHTS = (0.55, 0.28, 0.10, 0.05, 0.02)


class SimulatedWindow:
    """One window: the real agent plus a scenario thread that drives its pins."""

    def __init__(
        self,
        site: Site,
        window: WindowConfig,
        broker: BrokerConfig,
        state_dir: Path,
        profile: ClerkProfile,
        seed: int,
        pace: float = 1.0,
    ) -> None:
        self.window = window
        self.rng = random.Random(seed)
        self.pace = pace  # scales the scenario's waits (1.0 = real time)
        self.factory = MockFactory()
        self.clerk = ScriptedClerk(profile, random.Random(seed + 1))
        self.agent = WindowAgent(
            site,
            window,
            state_dir,
            pin_factory=self.factory,
            pump=ScriptedPump(self.clerk),
            broker=broker,
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._scenario, name=f"{window.window}-scenario")
        self.calls = 0
        self.presses = 0

    def start(self) -> None:
        self.agent.start()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.agent.stop()

    def _wait(self, seconds: float) -> bool:
        return self._stop.wait(seconds * self.pace)

    def _press(self, pin: int, hold_s: float = 0.12) -> None:
        p = self.factory.pin(pin)
        p.drive_low()
        self._stop.wait(hold_s)
        p.drive_high()

    def _rating_pin(self) -> int:
        pins = self.window.gpio.eval_buttons
        weights = RATING_WEIGHTS if len(pins) == 5 else RATING_WEIGHTS[1:4]
        return self.rng.choices(pins, weights=weights)[0]

    def _scenario(self) -> None:
        g, r = self.window.gpio, self.rng
        if self._wait(r.uniform(0.3, 2.5)):
            return
        while not self._stop.is_set():
            self._press(g.call_button)
            self.calls += 1
            self.clerk.on_call(wall_ms())
            if self._wait(r.uniform(8, 20)):
                return
            end = r.random()
            if end < 0.85:
                pin = self._rating_pin()
                self._press(pin)
                self.presses += 1
                self.clerk.on_end(wall_ms())
                if r.random() < 0.05 and not self._wait(1.0):  # an impatient double press
                    self._press(pin)
                    self.presses += 1
            elif end < 0.92 and g.finish_button is not None:
                self._press(g.finish_button)
                self.clerk.on_end(wall_ms())
            # else: no evaluation; the next call ends the session
            if self._wait(r.uniform(6, 12)):
                return
            if r.random() < 0.04:  # the clerk steps away, with or without the sign
                with_sign = r.random() < 0.6
                away_s = r.uniform(70, 120)
                if with_sign:
                    self.factory.pin(g.sign_sensor).drive_low()
                self.clerk.leave(wall_ms(), int(away_s * 1000 * self.pace))
                if self._wait(away_s):
                    return
                if with_sign:
                    self.factory.pin(g.sign_sensor).drive_high()
                if self._wait(3):
                    return


class SimulatedFleet:
    """Every window of a site, simulated; one owner starts and stops them all."""

    def __init__(
        self, site: Site, host: str, port: int, state_dir: Path, pace: float = 1.0
    ) -> None:
        broker = BrokerConfig(host=host, port=port)
        profiles = [EXEMPLARY, TYPICAL, TYPICAL, CARELESS]
        self.windows = [
            SimulatedWindow(
                site, w, broker, state_dir, profiles[i % len(profiles)], seed=i, pace=pace
            )
            for i, w in enumerate(site.windows)
        ]

    def start(self) -> None:
        for w in self.windows:
            w.start()

    def stop(self) -> None:
        for w in self.windows:
            w._stop.set()
        for w in self.windows:
            w.stop()

    def progress_line(self) -> str:
        made = sum(w.agent.outbox.last_seq for w in self.windows)
        queued = sum(w.agent.outbox.depth for w in self.windows)
        calls = sum(w.calls for w in self.windows)
        return f"calls {calls}  events made {made}  waiting in outboxes {queued}"
