"""Simulated windows for the demo: the real agent, with MockFactory pins a scenario
presses and a scripted clerk instead of a camera.

Each window runs the agent as shipped (``build_agent``: panel, rules, outbox, transport
over real MQTT); only the world around it is invented: citizens called, served and evaluating,
and a clerk who follows the standard more or less reliably. At a front desk with a
presence sensor the citizens walk up instead of being called: the scenario drives the
sensor's mock pins (a PIR's output, or an ultrasonic sensor's echo time).
"""

from __future__ import annotations

import queue
import random
import threading
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from gpiozero.pins.mock import MockFactory, MockTriggerPin

from agent.app import FrameRate, Item, ScriptedPump, WindowAgent, build_agent
from agent.config import (
    BrokerConfig,
    DistanceSensorConfig,
    MotionSensorConfig,
    Site,
    WindowConfig,
)
from agent.perception import CARELESS, EXEMPLARY, TYPICAL, ClerkProfile, ScriptedClerk
from agent.protocol import now_ms


class ScenePump:
    """The demo's camera: renders what the scripted clerk does into 320x240 frames (two
    public-domain faces, see agent/demo_faces/README.md) and runs them through the real
    ONNX pipeline. The rules see only what the pipeline saw, misses included."""

    kind: Literal["camera", "scripted"] = "camera"

    def __init__(self, clerk: ScriptedClerk, seed: int, fps: float = 8.0) -> None:
        import cv2

        from agent.vision.pipeline import Vision
        from agent.vision.runtime import model_version
        from agent.vision.scenes import Geometry, background

        folder = resources.files("agent") / "demo_faces"
        self.faces: dict[str, U8] = {}
        for name in ("smile", "neutral"):
            img = cv2.imread(str(folder / f"{name}.png"), cv2.IMREAD_GRAYSCALE)
            if img is None:
                raise FileNotFoundError(f"demo face {name}.png missing from {folder}")
            self.faces[name] = np.asarray(img, dtype=np.uint8)
        self.clerk = clerk
        self.rng = np.random.default_rng(seed)
        self.geo = Geometry.random(self.rng)
        self.bg = background(self.rng).astype(np.float32)
        self.tone = float(self.rng.uniform(40, 180))
        self.vision = Vision()
        self.model_version = model_version()[:64]
        self.step_s = 1 / fps
        self.rate_meter = FrameRate()
        self.inference_ms = 0.0

    @property
    def fps(self) -> float:
        return self.rate_meter.fps

    def frame(self, t_ms: int) -> U8:
        from agent.vision.scenes import paste_person

        truth = self.clerk.observe(t_ms)
        canvas = self.bg.copy()
        if truth.face_present:
            level = 1.0 if truth.standing else 0.0
            size = self.geo.size * (1 + (self.geo.stand_scale - 1) * level)
            sway = self.rng.normal(0, 1.0, 2)
            face = self.faces["smile" if (truth.smile or 0) >= 0.5 else "neutral"]
            cy = self.geo.seat_y - self.geo.rise * self.geo.size * level
            paste_person(canvas, face, self.geo.seat_x + sway[0], cy + sway[1], size, self.tone)
        canvas += self.rng.normal(0, 3.0, canvas.shape).astype(np.float32)
        return np.clip(canvas, 0, 255).astype(np.uint8)

    def run(
        self, sink: queue.SimpleQueue[Item], stop: threading.Event, clock: Callable[[], int]
    ) -> None:
        while not stop.wait(self.step_s):
            t = clock()
            gray = self.frame(t)  # frames live only here, in memory
            t0 = time.perf_counter()
            sink.put((t, self.vision.process(t, gray)))
            self.inference_ms = (time.perf_counter() - t0) * 1000
            self.rate_meter.tick()

    def recalibrate(self) -> None:
        self.vision.recalibrate()


U8 = npt.NDArray[np.uint8]


class SimClock:
    """The demo's day: starts at ``start_ms`` and runs ``speed`` times faster than the wall.

    Every part of a simulated window reads this clock (pins, perception, rules, health),
    so an accelerated day keeps its timings consistent: a 5 s stand limit is 5 simulated
    seconds, 1.25 real ones at speed 4.
    """

    def __init__(self, start_ms: int | None = None, speed: float = 1.0) -> None:
        self.speed = speed
        self.start_ms = now_ms() if start_ms is None else start_ms
        self._origin = time.monotonic()

    def __call__(self) -> int:
        return self.start_ms + int((time.monotonic() - self._origin) * 1000 * self.speed)

    def label(self, tz: str = "Asia/Shanghai") -> str:
        from datetime import datetime
        from zoneinfo import ZoneInfo

        return datetime.fromtimestamp(self() / 1000, ZoneInfo(tz)).strftime("%H:%M:%S")


#: Rating weights, best first (5-button panel); a 3-button panel uses the middle three.
RATING_WEIGHTS = (0.55, 0.28, 0.10, 0.05, 0.02)

#: The speed of sound gpiozero's DistanceSensor assumes (m/s).
SPEED_OF_SOUND = 343.26


def echo_time(distance_m: float) -> float:
    """How long an HC-SR04's echo pulse lasts for a reflector at ``distance_m``."""
    return 2 * distance_m / SPEED_OF_SOUND


class SimulatedWindow:
    """One window: the real agent plus a scenario thread that drives its pins.

    ``agent_type`` is the agent ``build_agent`` makes (a bench's counting subclass).
    """

    def __init__(
        self,
        site: Site,
        window: WindowConfig,
        broker: BrokerConfig,
        state_dir: Path,
        profile: ClerkProfile,
        seed: int,
        clock: SimClock,
        camera: bool = False,
        *,
        agent_type: type[WindowAgent] = WindowAgent,
    ) -> None:
        self.window = window
        self.clock = clock
        self.rng = random.Random(seed)
        self.pace = 1 / clock.speed  # scenario waits are in simulated seconds
        self.factory = MockFactory()
        self.clerk = ScriptedClerk(profile, random.Random(seed + 1))
        sensor = window.gpio.presence
        self._trigger: MockTriggerPin | None = None
        if isinstance(sensor, DistanceSensorConfig):
            # Before the agent claims the pins: the trigger must be the mock that echoes.
            echo = self.factory.pin(sensor.echo)
            self._trigger = self.factory.pin(
                sensor.trigger,
                pin_class=MockTriggerPin,
                echo_pin=echo,
                echo_time=echo_time(sensor.max_distance_m),
            )
        self.agent = build_agent(
            site,
            window,
            state_dir,
            pin_factory=self.factory,
            pump=ScenePump(self.clerk, seed) if camera else ScriptedPump(self.clerk),
            broker=broker,
            clock=clock,
            agent_type=agent_type,
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._scenario, name=f"{window.window}-scenario")
        self.calls = 0
        self.presses = 0

    def start(self) -> None:
        self.agent.start()
        self._thread.start()

    def stop(self, flush_s: float = 3.0) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.agent.stop(flush_s)

    def _wait(self, seconds: float) -> bool:
        return self._stop.wait(seconds * self.pace)

    def _press(self, pin: int, hold_s: float = 0.12) -> None:
        p = self.factory.pin(pin)
        p.drive_low()
        self._stop.wait(hold_s)
        p.drive_high()

    def citizen_at_desk(self, here: bool) -> None:
        """A citizen walks up to (or away from) a front desk's presence sensor."""
        sensor = self.window.gpio.presence
        if isinstance(sensor, MotionSensorConfig):
            pin = self.factory.pin(sensor.pin)  # the module's output: high on motion
            if here:
                pin.drive_high()
            else:
                pin.drive_low()
        elif isinstance(sensor, DistanceSensorConfig):
            assert self._trigger is not None
            near = sensor.threshold_m / 2
            self._trigger.echo_time = echo_time(near if here else sensor.max_distance_m)

    def _rating_pin(self) -> int:
        pins = self.window.gpio.eval_buttons
        weights = RATING_WEIGHTS if len(pins) == 5 else RATING_WEIGHTS[1:4]
        return self.rng.choices(pins, weights=weights)[0]

    def _scenario(self) -> None:
        g, r = self.window.gpio, self.rng
        # A sensor's first reading is no arrival (agent/hardware/gpio.py): let it settle.
        self.agent.panel.presence_ready()
        if self._wait(r.uniform(0.3, 2.5)):
            return
        while not self._stop.is_set():
            if g.presence is not None:
                self.citizen_at_desk(True)  # a front desk: the citizen walks up
            else:
                assert g.call_button is not None  # every window but such a desk has a bell
                self._press(g.call_button)
            self.calls += 1
            self.clerk.on_call(self.clock())
            if self._wait(r.uniform(8, 20)):
                return
            end = r.random()
            if end < 0.85:
                pin = self._rating_pin()
                self._press(pin)
                self.presses += 1
                self.clerk.on_end(self.clock())
                if r.random() < 0.05 and not self._wait(1.0):  # an impatient double press
                    self._press(pin)
                    self.presses += 1
            elif end < 0.92 and g.finish_button is not None:
                self._press(g.finish_button)
                self.clerk.on_end(self.clock())
            # else: no evaluation; the next call (at a front desk: leaving) ends the session
            if g.presence is not None:
                self.citizen_at_desk(False)
            if self._wait(r.uniform(6, 12)):
                return
            if r.random() < 0.04:  # the clerk steps away, with or without the sign
                with_sign = r.random() < 0.6
                away_s = r.uniform(70, 120)
                if with_sign:
                    self.factory.pin(g.sign_sensor).drive_low()
                self.clerk.leave(self.clock(), int(away_s * 1000))
                if self._wait(away_s):
                    return
                if with_sign:
                    self.factory.pin(g.sign_sensor).drive_high()
                if self._wait(3):
                    return


class SimulatedFleet:
    """Every window of a site, simulated; one owner starts and stops them all."""

    def __init__(
        self,
        site: Site,
        host: str,
        port: int,
        state_dir: Path,
        clock: SimClock | None = None,
        camera: bool = False,
    ) -> None:
        self.clock = clock or SimClock()
        broker = BrokerConfig(host=host, port=port)
        profiles = [EXEMPLARY, TYPICAL, TYPICAL, CARELESS]
        self.windows = [
            SimulatedWindow(
                site, w, broker, state_dir, profiles[i % len(profiles)], i, self.clock, camera
            )
            for i, w in enumerate(site.windows)
        ]

    def start(self) -> None:
        for w in self.windows:
            w.start()

    def stop(self, flush_s: float = 3.0) -> None:
        """Stop every window at once: each flushes its outbox for up to ``flush_s`` in
        parallel (one after the other, a 12-window demo took 25-40 s to stop)."""
        for w in self.windows:
            w._stop.set()
        stoppers = [
            threading.Thread(target=w.stop, args=(flush_s,), name=f"stop-{w.window.window}")
            for w in self.windows
        ]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join()

    def progress_line(self) -> str:
        made = sum(w.agent.outbox.last_seq for w in self.windows)
        queued = sum(w.agent.outbox.depth for w in self.windows)
        calls = sum(w.calls for w in self.windows)
        return (
            f"simulated {self.clock.label()} (x{self.clock.speed:g})  calls {calls}  "
            f"events made {made}  waiting in outboxes {queued}"
        )
