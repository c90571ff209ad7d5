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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from gpiozero.pins.mock import MockFactory, MockTriggerPin

from agent.app import Item, ScriptedPump, WindowAgent, build_agent
from agent.config import (
    BrokerConfig,
    CameraConfig,
    DistanceSensorConfig,
    MotionSensorConfig,
    Site,
    WindowConfig,
)
from agent.events import Draft
from agent.hardware.gpio import RATINGS_3, RATINGS_5
from agent.perception import CARELESS, EXEMPLARY, TYPICAL, ClerkProfile, ScriptedClerk
from agent.protocol import ClerkAtTerminal, now_ms
from agent.rules.engine import ServiceRules
from agent.rules.inputs import Call, Evaluation, Finish, Presence, RuleInput, Sign, Tick


class ScenePump:
    """The demo's camera: renders what the scripted clerk does into 320x240 frames (two
    public-domain faces, see agent/demo_faces/README.md) and runs them through the real
    ONNX pipeline. The rules see only what the pipeline saw, misses included.

    Frames are taken at the agent's own adaptive rate (``AdaptiveRate``: ``idle_fps``,
    faster for a while after a change) in *simulated* time: at ``--speed 8`` a simulated
    second still gets its 2 to 10 frames, eight times as many per wall second. A frame is
    stamped with the simulated time it shows. No frame is skipped when the CPU cannot
    keep up: the camera paces the clock instead (``SimClock.pace_by`` with
    ``next_frame``, the time of the frame it is to take next).
    """

    kind: Literal["camera", "scripted"] = "camera"

    def __init__(
        self,
        clerk: ScriptedClerk,
        seed: int,
        camera: CameraConfig | None = None,
        *,
        speed: float = 1.0,
    ) -> None:
        import cv2

        from agent.vision.pipeline import Vision
        from agent.vision.rate import AdaptiveRate
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
        h, w = self.bg.shape
        # Sensor noise: one field drawn once, a random crop of it per frame (drawing a
        # frame's worth of normal noise cost more than the rest of the frame).
        self._noise = self.rng.normal(0, 3.0, (h + NOISE_MARGIN, w + NOISE_MARGIN)).astype(
            np.float32
        )
        self.tone = float(self.rng.uniform(40, 180))
        self.vision = Vision()
        self.model_version = model_version()[:64]
        self.rate = AdaptiveRate.from_camera(camera or CameraConfig())
        self.speed = speed
        self.next_frame: int | None = None
        self.frames = 0
        self.fps = 0.0  # frames per simulated second, as the health report reads it
        self.inference_ms = 0.0

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
        h, w = canvas.shape
        dy, dx = self.rng.integers(0, NOISE_MARGIN, 2)
        canvas += self._noise[dy : dy + h, dx : dx + w]
        return np.clip(canvas, 0, 255).astype(np.uint8)

    def run(
        self, sink: queue.SimpleQueue[Item], stop: threading.Event, clock: Callable[[], int]
    ) -> None:
        t = clock()
        meter_t, meter_n = t, 0
        self.next_frame = t
        try:
            while not stop.is_set():
                now = clock()
                if t > now:  # the next frame is due later in simulated time
                    stop.wait(min((t - now) / 1000 / self.speed, 0.05))
                    continue
                gray = self.frame(t)  # frames live only here, in memory
                t0 = time.perf_counter()
                obs = self.vision.process(t, gray)
                self.inference_ms = (time.perf_counter() - t0) * 1000
                sink.put((t, obs))
                self.rate.note(obs)
                self.frames += 1
                meter_n += 1
                if t - meter_t >= 5000:
                    self.fps, meter_t, meter_n = meter_n * 1000 / (t - meter_t), t, 0
                t += self.rate.interval_ms(t)
                self.next_frame = t
        finally:
            self.next_frame = None  # a stopped camera no longer paces the clock

    def recalibrate(self) -> None:
        self.vision.recalibrate()


#: How far the per-frame noise crop may move (pixels).
NOISE_MARGIN = 64
U8 = npt.NDArray[np.uint8]


class SimClock:
    """The demo's day: starts at ``start_ms`` and runs ``speed`` times faster than the wall.

    Every part of a simulated window reads this clock (pins, perception, rules, health),
    so an accelerated day keeps its timings consistent: a 5 s stand limit is 5 simulated
    seconds, 1.25 real ones at speed 4. Made with ``running=False`` it reads ``start_ms``
    until ``run()``: the windows can start and send their backlog before the day begins.

    A rendered camera paces it (``pace_by``): the clock never runs more than ``lead_ms``
    ahead of the next frame a camera has still to take, so on a machine too slow for
    ``speed`` the day runs slower (``reached``) instead of the cameras seeing fewer frames
    per simulated second than a terminal takes, which would fail stands the product sees.
    """

    def __init__(
        self,
        start_ms: int | None = None,
        speed: float = 1.0,
        *,
        running: bool = True,
        lead_ms: int = 250,
    ) -> None:
        self.speed = speed
        self.start_ms = now_ms() if start_ms is None else start_ms
        self.lead_ms = lead_ms
        self._origin: float | None = time.monotonic() if running else None
        self._pacers: list[Callable[[], int | None]] = []
        self._lock = threading.Lock()
        self._last = self.start_ms

    def run(self) -> None:
        """Let the day begin (nothing when it already runs)."""
        if self._origin is None:
            self._origin = time.monotonic()

    def pace_by(self, next_frame: Callable[[], int | None]) -> None:
        """Keep within ``lead_ms`` of ``next_frame()`` (None: that camera is not running)."""
        with self._lock:
            self._pacers.append(next_frame)

    def __call__(self) -> int:
        if self._origin is None:
            return self.start_ms
        t = self.start_ms + int((time.monotonic() - self._origin) * 1000 * self.speed)
        with self._lock:
            for next_frame in self._pacers:
                due = next_frame()
                if due is not None:
                    t = min(t, due + self.lead_ms)
            self._last = t = max(self._last, t)  # never backwards
        return t

    def reached(self) -> float:
        """Simulated seconds per real second since ``run()``: ``speed`` unless paced."""
        if self._origin is None or time.monotonic() - self._origin < 1:
            return self.speed
        return (self() - self.start_ms) / 1000 / (time.monotonic() - self._origin)

    def label(self, tz: str = "Asia/Shanghai") -> str:
        from datetime import datetime
        from zoneinfo import ZoneInfo

        return datetime.fromtimestamp(self() / 1000, ZoneInfo(tz)).strftime("%H:%M:%S")


#: Rating weights, best first (5-button panel); a 3-button panel uses the middle three.
RATING_WEIGHTS = (0.55, 0.28, 0.10, 0.05, 0.02)

#: A front desk's clerk sees a citizen coming this long before the presence sensor does
#: (ms): the desk's 3 s to stand and smile count from the sensor.
SEEN_COMING_MS = 2000

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
        pump: ScenePump | ScriptedPump
        if camera:
            pump = ScenePump(self.clerk, seed, window.camera, speed=clock.speed)
            clock.pace_by(lambda: pump.next_frame if isinstance(pump, ScenePump) else None)
        else:
            pump = ScriptedPump(self.clerk)
        self.agent = build_agent(
            site,
            window,
            state_dir,
            pin_factory=self.factory,
            pump=pump,
            broker=broker,
            clock=clock,
            agent_type=agent_type,
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._scenario, name=f"{window.window}-scenario")
        self.calls = 0
        self.presses = 0
        self._agent_started = False

    def start(self) -> None:
        self.start_agent()
        self.start_scenario()

    def start_agent(self) -> None:
        """The agent alone: it connects and sends what its outbox holds."""
        self.agent.start()
        self._agent_started = True

    def start_scenario(self) -> None:
        """Citizens start coming (the clock must be running)."""
        self._thread.start()

    def backfill(
        self,
        days: Sequence[OpenDay],
        clerk_id: str | None,
        profile: ClerkProfile,
        seed: int,
        stop: threading.Event | None = None,
    ) -> Backfilled:
        """Run ``days`` gone by through this window's rules (``ScriptedMonth``) into its
        outbox, before ``start``: the agent then sends them as a terminal sends what it
        kept while offline (``historical``), ahead of its live events."""
        month = ScriptedMonth(self.window, clerk_id, profile, seed)
        first = self.agent.outbox.last_seq + 1
        for i, draft in enumerate(month.run(days, stop)):
            if stop is not None and i % 200 == 0 and stop.is_set():
                break
            self.agent.outbox.add(draft)
        return Backfilled(self.window.window, month.sessions, first, self.agent.outbox.last_seq)

    def stop(self, flush_s: float = 3.0) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(timeout=10)
        if self._agent_started:
            self.agent.stop(flush_s)
        else:  # stopped before it started: close what building it opened
            self.agent.panel.close()
            self.agent.outbox.close()

    def _wait(self, seconds: float) -> bool:
        """Wait ``seconds`` of simulated time (longer in real time when the cameras pace
        the clock); whether the window was stopped meanwhile."""
        until = self.clock() + int(seconds * 1000)
        while (left := until - self.clock()) > 0:
            if self._stop.wait(min(left / 1000 / self.clock.speed, 0.1)):
                return True
        return self._stop.is_set()

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
            self.clerk.on_call(self.clock() - (SEEN_COMING_MS if g.presence is not None else 0))
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


# ---------------------------------------------------------------- a month gone by


@dataclass(frozen=True)
class OpenDay:
    """One day the centre was open: its opening and closing times (UTC ms)."""

    open_ms: int
    close_ms: int


#: The backfilled month's clerks, one per window in order: most keep the standard, one
#: is careless (fails stand, smile and see-off), one rushes the see-off (fails that
#: alone), one wore a mask for weeks (many smiles not observed, still judged).
STEADY = ClerkProfile(0.97, 0.95, 0.93, 0.02, masked=0.04)
RUSHED_FAREWELL = ClerkProfile(0.96, 0.94, 0.62, 0.02, masked=0.04)
MASKED_WEEKS = ClerkProfile(0.96, 0.95, 0.92, 0.02, masked=0.45)
MONTH_PROFILES = (
    STEADY,
    STEADY,
    EXEMPLARY,
    CARELESS,
    STEADY,
    RUSHED_FAREWELL,
    STEADY,
    MASKED_WEEKS,
    EXEMPLARY,
    STEADY,
    STEADY,
    STEADY,
)
#: A real month's ratings, best first: about 2 % bad (the live demo presses more of them).
MONTH_RATINGS_5 = (0.62, 0.28, 0.08, 0.015, 0.005)
MONTH_RATINGS_3 = (0.80, 0.18, 0.02)


@dataclass(frozen=True)
class Backfilled:
    """What a window's month left in its outbox."""

    window: str
    sessions: int
    first_seq: int
    last_seq: int

    @property
    def events(self) -> int:
        return self.last_seq - self.first_seq + 1 if self.last_seq >= self.first_seq else 0


class ScriptedMonth:
    """A window's past days, run through its real rules in simulated time.

    The clerk badges in before opening and out after closing (``clerk_at_terminal``, as
    at a terminal with sign-in), citizens are called (a front desk: walk up) a few
    minutes apart, served, evaluate or not, and the clerk sometimes steps away, with or
    without the sign, as in the live scenario. The scripted clerk is observed every
    ``step_ms`` while something can happen and every ``idle_step_ms`` otherwise (the
    rules hold the last observation and resolve every deadline at its own time, so
    the events do not depend on that rate). Pure apart from the random source: the
    drafts come back in time order, for the window's outbox.
    """

    def __init__(
        self,
        window: WindowConfig,
        clerk_id: str | None,
        profile: ClerkProfile,
        seed: int,
        *,
        sessions_per_day: tuple[int, int] = (9, 13),
        step_ms: int = 500,
        idle_step_ms: int = 60_000,
    ) -> None:
        self.window = window
        self.clerk_id = clerk_id
        self.rng = random.Random(seed)
        self.clerk = ScriptedClerk(profile, random.Random(seed + 1))
        self.rules = ServiceRules(window.rules, role=window.role, in_hours=False)
        self.sessions_per_day = sessions_per_day
        self.step_ms, self.idle_step_ms = step_ms, idle_step_ms
        self.sessions = 0
        self._t = 0
        self._drafts: list[Draft] = []
        five = len(window.gpio.eval_buttons) == 5
        self._ratings = RATINGS_5 if five else RATINGS_3
        self._weights = MONTH_RATINGS_5 if five else MONTH_RATINGS_3

    def run(self, days: Sequence[OpenDay], stop: threading.Event | None = None) -> list[Draft]:
        """The drafts of ``days``, in time order (fewer if ``stop`` is set meanwhile)."""
        for day in days:
            if stop is not None and stop.is_set():
                break
            self._day(day)
        out, self._drafts = self._drafts, []
        return out

    def _feed(self, t: int, item: RuleInput) -> None:
        self._watch(t, self.idle_step_ms)
        self._drafts += self.rules.feed(t, item)

    def _watch(self, until: int, step: int) -> None:
        """Observe the clerk from the last time to ``until``, every ``step`` ms."""
        t = self._t
        while t + step <= until:
            t += step
            self._drafts += self.rules.observe(self.clerk.observe(t))
        self._t = max(t, until)

    def _badge(self, t: int, action: str) -> None:
        if self.clerk_id is not None:
            fields = {"action": action, "method": "badge", "clerk_id": self.clerk_id}
            self._drafts.append(Draft(ClerkAtTerminal, t, fields=fields))

    def _day(self, day: OpenDay) -> None:
        r, g = self.rng, self.window.gpio
        self._t = day.open_ms - 15 * 60_000
        self._badge(day.open_ms - r.randint(60_000, 600_000), "sign_in")
        self._feed(day.open_ms, Tick(in_hours=True))
        slots = range(day.open_ms + 300_000, day.close_ms - 600_000, 300_000)
        calls = sorted(r.sample(slots, min(len(slots), r.randint(*self.sessions_per_day))))
        for call in calls:
            self._feed(call, Presence(True) if g.presence is not None else Call())
            self.clerk.on_call(call - (SEEN_COMING_MS if g.presence is not None else 0))
            self.sessions += 1
            end = call + r.randint(8_000, 20_000)
            self._watch(end, self.step_ms)
            fate = r.random()
            if fate < 0.85:
                rating = r.choices(self._ratings, weights=self._weights)[0]
                self._feed(end, Evaluation(rating))
                self.clerk.on_end(end)
                if r.random() < 0.03:  # an impatient double press: suspect, kept
                    self._watch(end + 1000, self.step_ms)
                    self._feed(end + 1000, Evaluation(rating))
            elif fate < 0.98 and g.finish_button is not None:
                self._feed(end, Finish())
                self.clerk.on_end(end)
            # else: no evaluation and no finish key: the next call ends the session, and
            # the clerk seated by then misses the farewell stand
            if g.presence is not None:
                self._watch(end + 1500, self.step_ms)
                self._feed(end + 1500, Presence(False))
            self._watch(end + 15_000, self.step_ms)  # the farewell resolves
            if r.random() < 0.04:
                self._away(end + r.randint(15_000, 30_000), r.random() < 0.6)
        self._feed(day.close_ms, Tick(in_hours=False))
        self._badge(day.close_ms + r.randint(60_000, 900_000), "sign_out")

    def _away(self, t: int, with_sign: bool) -> None:
        away_ms = self.rng.randint(70_000, 120_000)
        self._watch(t, self.idle_step_ms)
        if with_sign:
            self._feed(t, Sign(True))
        self.clerk.leave(t, away_ms)
        self._watch(t + away_ms + 1000, 1000)
        if with_sign:
            self._feed(t + away_ms + 2000, Sign(False))
        self._watch(t + away_ms + 5000, self.step_ms)


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
        """Every window's agent, the clock, then the citizens."""
        self.start_agents()
        self.start_day()

    def start_agents(self) -> None:
        """The agents connect and send their outboxes; with a clock made with
        ``running=False`` nothing else happens yet (no calls, no frames due)."""
        for w in self.windows:
            w.start_agent()

    def start_day(self) -> None:
        self.clock.run()
        for w in self.windows:
            w.start_scenario()

    def backfill(
        self,
        days: Sequence[OpenDay],
        clerks: Sequence[str | None],
        stop: threading.Event | None = None,
    ) -> list[Backfilled]:
        """Fill every window's outbox with ``days`` gone by (``clerks[i]`` badged in at
        window ``i``, ``MONTH_PROFILES[i]`` its conduct), the windows in parallel; ``stop``
        cuts it short."""
        done: list[Backfilled | None] = [None] * len(self.windows)

        def one(i: int) -> None:
            profile = MONTH_PROFILES[i % len(MONTH_PROFILES)]
            done[i] = self.windows[i].backfill(days, clerks[i], profile, 1000 + i, stop)

        workers = [
            threading.Thread(target=one, args=(i,), name=f"backfill-{w.window.window}")
            for i, w in enumerate(self.windows)
        ]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        return [b for b in done if b is not None]

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
        reached = self.clock.reached()
        pace = (
            f"x{self.clock.speed:g}"
            if reached >= 0.95 * self.clock.speed
            else f"x{reached:.1f}, asked x{self.clock.speed:g}: the cameras set the pace"
        )
        return (
            f"simulated {self.clock.label()} ({pace})  calls {calls}  "
            f"events made {made}  waiting in outboxes {queued}"
        )
