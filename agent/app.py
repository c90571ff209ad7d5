"""One window's agent: wiring and the run loop.

Data flows one way: pins (``WindowPanel``) and perception (a camera pump or the scripted
clerk) put ``(t_ms, input)`` on one queue; the loop alone feeds the rules, stores every
draft in the outbox, and tells the transport what the window looks like. The transport
drains the outbox on its own thread. ``stop()`` closes the open session, flushes what
the broker will take, and publishes ``offline``.
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import signal
import sqlite3
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

from gpiozero.pins import Factory

from agent.config import BrokerConfig, Site, WindowConfig, load_site
from agent.events import Draft
from agent.hardware.gpio import WindowPanel
from agent.observation import Observation
from agent.outbox import DEFAULT_MAX_ROWS, Outbox
from agent.perception import Perception
from agent.protocol import Command, Fault, Health, Reply, WindowState, now_ms
from agent.rules.engine import ServiceRules
from agent.rules.inputs import RuleInput, Shutdown, from_command
from agent.transport import LinkState, Transport
from agent.update import Updater, UpdateReport, UpdateWorker, load_public_key
from agent.watchdog import Watchdog

log = logging.getLogger(__name__)

Item = tuple[int, RuleInput]


def in_opening_hours(site: Site, t_ms: int) -> bool:
    h = site.site.hours
    local = datetime.fromtimestamp(t_ms / 1000, ZoneInfo(site.site.timezone))
    return local.isoweekday() in h.days and h.open <= local.time() < h.close


class Pump(Protocol):
    """Where observations come from: runs on its own thread, puts (t_ms, Observation)."""

    kind: Literal["camera", "scripted"]
    inference_ms: float

    @property
    def fps(self) -> float: ...

    def run(
        self, sink: queue.SimpleQueue[Item], stop: threading.Event, clock: Callable[[], int]
    ) -> None: ...

    def recalibrate(self) -> None: ...


class FrameRate:
    """Frames per second, averaged over ``every_s`` windows, for the health report."""

    def __init__(self, every_s: float = 5.0) -> None:
        self.fps = 0.0
        self._every_s = every_s
        self._frames = 0
        self._since = time.monotonic()

    def tick(self) -> None:
        self._frames += 1
        elapsed = time.monotonic() - self._since
        if elapsed >= self._every_s:
            self.fps = self._frames / elapsed
            self._frames, self._since = 0, time.monotonic()


class ScriptedPump:
    """Polls a scripted perception every ``step_s`` and queues its observations."""

    def __init__(self, perception: Perception, step_s: float = 0.2) -> None:
        self.perception = perception
        self.kind: Literal["camera", "scripted"] = perception.kind
        self.step_s = step_s
        self.fps = 1 / step_s
        self.inference_ms = 0.0

    def run(
        self, sink: queue.SimpleQueue[Item], stop: threading.Event, clock: Callable[[], int]
    ) -> None:
        while not stop.wait(self.step_s):
            t = clock()
            sink.put((t, self.perception.observe(t)))

    def recalibrate(self) -> None:
        """Nothing to learn: a scripted clerk has no camera geometry."""


class CameraPump:
    """Frames -> ``Vision`` -> observations, at the adaptive rate. Frames never leave RAM."""

    kind: Literal["camera", "scripted"] = "camera"

    def __init__(
        self, window: WindowConfig, frozen_after_s: float = 10.0, model_dir: Path | None = None
    ) -> None:
        from agent.hardware.camera import open_source
        from agent.vision.pipeline import Vision
        from agent.vision.rate import AdaptiveRate
        from agent.vision.runtime import model_version

        self.source = open_source(window.camera)
        self.vision = Vision(model_dir=model_dir)
        self.model_version = model_version(model_dir)[:64]
        self.rate = AdaptiveRate.from_camera(window.camera)
        self.frozen_after_s = frozen_after_s
        self.rate_meter = FrameRate()
        self.inference_ms = 0.0
        self.on_fault: Callable[[str, str], None] = lambda code, detail: None

    @property
    def fps(self) -> float:
        return self.rate_meter.fps

    def recalibrate(self) -> None:
        self.vision.recalibrate()

    def run(
        self, sink: queue.SimpleQueue[Item], stop: threading.Event, clock: Callable[[], int]
    ) -> None:
        import numpy as np

        last: Any = None
        same_since: float | None = None
        try:
            with self.source as src:
                for t, gray in src:
                    if stop.is_set():
                        return
                    t0 = time.perf_counter()
                    obs = self.vision.process(t, gray)
                    self.inference_ms = (time.perf_counter() - t0) * 1000
                    sink.put((t, obs))
                    self.rate.note(obs)
                    src.set_rate(self.rate.fps(t))
                    # A camera that repeats one frame is as blind as a dead one.
                    if last is not None and np.array_equal(last, gray):
                        same_since = same_since or time.monotonic()
                        if time.monotonic() - same_since > self.frozen_after_s:
                            self.on_fault(
                                "camera_frozen", f"same frame for {self.frozen_after_s:.0f} s"
                            )
                            same_since = None
                    else:
                        same_since = None
                    last = gray
                    self.rate_meter.tick()
        except Exception as exc:  # the agent keeps running and reports the blindness
            log.exception("camera failed")
            self.on_fault("camera_dead", str(exc)[:64])


class WindowAgent:
    """Owns one window's panel, perception, rules, outbox and transport, and their threads."""

    def __init__(
        self,
        site: Site,
        window: WindowConfig,
        state_dir: Path,
        *,
        pin_factory: Factory,
        pump: Pump,
        broker: BrokerConfig | None = None,
        clock: Callable[[], int] = now_ms,
        health_s: float = 60.0,
        tick_s: float = 0.5,
        watchdog: Watchdog | None = None,
        on_config: Callable[[bytes], None] | None = None,
        outbox_max_rows: int = DEFAULT_MAX_ROWS,
    ) -> None:
        self.site = site
        self.watchdog = watchdog or Watchdog(None)
        self.window = window
        self.clock = clock
        self.pump = pump
        self.health_s = health_s
        self.tick_s = tick_s
        self.started = time.monotonic()
        self.queue: queue.SimpleQueue[Item] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        slug = f"{site.site.site}-{window.window}"
        self.outbox = Outbox(
            state_dir / f"{slug}.outbox.db",
            site.site.site,
            window.window,
            uuid.uuid4(),
            max_rows=outbox_max_rows,
        )
        self.rules = ServiceRules(window.rules, in_hours=in_opening_hours(site, clock()))
        self.transport = Transport(
            broker or site.site.broker,
            site.site.site,
            window.window,
            self.outbox,
            on_command=self._on_command,
            on_config=on_config,
        )
        self.panel = WindowPanel(window.gpio, self.queue, pin_factory=pin_factory, clock=clock)
        if isinstance(pump, CameraPump):
            pump.on_fault = self._fault
        self._faults: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
        self._last_state: WindowState | None = None
        self._reported_full = False
        self._reported_disk = False
        #: Drafts a full disk refused, oldest first; bounded so memory cannot run out.
        self._unstored: deque[Draft] = deque(maxlen=10_000)
        self.model_version = str(getattr(pump, "model_version", pump.kind))
        self.config_version = f"{window.window}-{os.environ.get('WW_CONFIG_VERSION', 'local')}"

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self.transport.start()
        for name, target in (("rules", self._loop), ("perception", self._perceive)):
            t = threading.Thread(target=target, name=f"{self.window.window}-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        self.watchdog.ready(f"{self.site.site.site}/{self.window.window} ({self.pump.kind})")

    def stop(self, flush_s: float = 3.0) -> None:
        self.watchdog.stopping()
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)
        self._store(self.rules.feed(self.clock(), Shutdown()))
        self.transport.flush(flush_s)
        self.transport.close()
        self.panel.close()
        self.outbox.close()

    def __enter__(self) -> WindowAgent:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----------------------------------------------------------------- threads

    def _perceive(self) -> None:
        self.pump.run(self.queue, self._stop, self.clock)

    def _loop(self) -> None:
        next_health = time.monotonic() + min(5.0, self.health_s)
        while not self._stop.is_set():
            try:
                t, item = self.queue.get(timeout=self.tick_s)
                drafts = self.rules.feed(t, item)
            except queue.Empty:
                now = self.clock()
                drafts = self.rules.tick(now, in_hours=in_opening_hours(self.site, now))
            self._store(drafts)
            while not self._faults.empty():
                code, detail = self._faults.get()
                self._store([self._fault_draft(code, detail)])
            self._publish_state()
            self.panel.set_status(
                "connected" if self.transport.link is LinkState.ONLINE else "buffering"
            )
            if time.monotonic() >= next_health:
                self.transport.publish_health(self.health())
                next_health = time.monotonic() + self.health_s
            # Pinged from this loop, and only while it and its helper threads are alive:
            # a wedged loop or a dead camera thread ends in a systemd restart.
            self.watchdog.kick(healthy=self.healthy())

    def healthy(self) -> bool:
        """Every thread the agent owns is running (the caller is one of them)."""
        return all(t.is_alive() for t in self._threads)

    def _store(self, drafts: list[Draft]) -> None:
        """Every draft into the outbox; one that cannot be stored (disk full) waits here,
        bounded, and is retried first next time, so the rules keep running."""
        before = self.outbox.dropped
        waiting = [*self._unstored, *drafts]
        self._unstored.clear()
        for i, d in enumerate(waiting):
            try:
                self.outbox.add(d)
            except (sqlite3.Error, OSError) as exc:
                self._unstored.extend(waiting[i:])
                if not self._reported_disk:
                    self._reported_disk = True
                    log.error("outbox write failed, holding %d events: %s", len(waiting) - i, exc)
                    self._unstored.append(self._fault_draft("outbox_full", str(exc)))
                return
        self._reported_disk = False
        if self.outbox.dropped > before and not self._reported_full:
            # Once per episode: the centre must learn the terminal is shedding events.
            self._reported_full = True
            self.outbox.add(self._fault_draft("outbox_full", f"dropped {self.outbox.dropped}"))
        elif self.outbox.depth < self.outbox.max_rows // 2:
            self._reported_full = False

    def _fault_draft(self, code: str, detail: str) -> Draft:
        return Draft(Fault, self.clock(), fields={"code": code, "detail": detail[:64]})

    def _fault(self, code: str, detail: str) -> None:
        self._faults.put((code, detail))

    def _publish_state(self) -> None:
        s = self.rules.state()
        state = WindowState(
            site=self.site.site.site,
            window=self.window.window,
            ts_ms=self.clock(),
            present=s.present,
            standing=s.standing,
            in_session=s.in_session,
            sign_up=s.sign_up,
            perception=self.pump.kind,
        )
        last = self._last_state
        if last is None or last.model_copy(update={"ts_ms": 0}) != state.model_copy(
            update={"ts_ms": 0}
        ):
            self._last_state = state
            self.transport.publish_state(state)

    def _on_command(self, cmd: Command) -> Reply | None:
        if cmd.action == "recalibrate":
            self.pump.recalibrate()
        elif cmd.action != "ping":
            item = from_command(cmd)
            if item is not None:
                self.queue.put((self.clock(), item))
        return Reply(cmd_id=cmd.cmd_id, ok=True)

    def health(self) -> Health:
        stats = self.outbox.stats()
        load1 = os.getloadavg()[0]
        return Health(
            site=self.site.site.site,
            window=self.window.window,
            ts_ms=self.clock(),
            uptime_s=int(time.monotonic() - self.started),
            fps=round(self.pump.fps, 2),
            inference_ms=round(self.pump.inference_ms, 2),
            cpu_temp_c=_cpu_temp(),
            load1=round(load1, 2),
            outbox_depth=stats.depth,
            outbox_oldest_age_s=stats.oldest_age_s,
            dropped=stats.dropped,
            suspect_presses=self.rules.counters.suspect_presses,
            model_version=self.model_version,
            config_version=self.config_version,
        )


def _cpu_temp() -> float | None:
    try:
        raw = Path("/sys/class/thermal/thermal_zone0/temp").read_text()
    except OSError:
        return None
    return round(int(raw) / 1000, 1)


def pin_factory(kind: Literal["lgpio", "mock"]) -> Factory:
    """The gpiozero pin factory, chosen by name: ``lgpio`` on a Raspberry Pi (python3-lgpio
    from Raspberry Pi OS), ``mock`` (MockFactory) in tests and simulations."""
    if kind == "mock":
        from gpiozero.pins.mock import MockFactory

        return MockFactory()
    from gpiozero.pins.lgpio import LGPIOFactory

    return LGPIOFactory()


def run_agent_cli(args: argparse.Namespace) -> int:
    """``warmwindow agent``: run until SIGTERM/SIGINT, then shut down cleanly."""
    site = load_site(args.site)
    window = site.window(args.window)
    # Bundles first: the boot guard may roll the models back before anything loads them.
    updates: UpdateWorker | None = None
    updater: Updater | None = None
    key = os.environ.get("WW_BUNDLE_KEY")
    if key:
        import models

        updater = Updater(
            args.state_dir / "bundles",
            [load_public_key(Path(key))],
            identity=f"{site.site.site}/{window.window}",
        )
        updater.seed(Path(models.__file__).parent)
        rolled_back = updater.boot_check()
        if rolled_back is not None:
            log.warning("update rolled back at start: %s", rolled_back.steps)
    # The models: the installed bundle release, else --model-dir (WW_MODEL_DIR), else the
    # package's own; passed down explicitly, never through the environment.
    model_dir = updater.model_dir if updater is not None else args.model_dir
    factory = pin_factory("mock" if args.mock_pins else args.pins)
    pump: Pump
    if args.scripted:
        import random

        from agent.perception import TYPICAL, ScriptedClerk

        pump = ScriptedPump(ScriptedClerk(TYPICAL, random.Random()))
    else:
        pump = CameraPump(window, model_dir=model_dir)
    broker = site.site.broker
    if args.broker:
        host, _, port = args.broker.rpartition(":")
        broker = broker.model_copy(update={"host": host or broker.host, "port": int(port)})
    stop = threading.Event()

    def _on_signal(_sig: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    agent_ref: list[WindowAgent] = []

    def _report(report: UpdateReport) -> None:
        for reply in report.replies():
            agent_ref[0].transport.publish_reply(reply)

    def _installed(report: UpdateReport) -> None:
        log.info("bundle %s installed: restarting on it", report.version)
        stop.set()  # systemd (Restart=always) starts the agent again on the new models

    if updater is not None:
        updates = UpdateWorker(updater, on_report=_report, on_installed=_installed)
    with WindowAgent(
        site,
        window,
        args.state_dir,
        pin_factory=factory,
        pump=pump,
        broker=broker,
        watchdog=Watchdog.from_env(),
        on_config=updates.submit if updates is not None else None,
    ) as agent:
        agent_ref.append(agent)
        if updates is not None:
            updates.start()
        log.info("agent %s/%s running (%s perception)", site.site.site, window.window, pump.kind)
        # Five healthy minutes on a new release confirm it (the boot guard stands down).
        if not stop.wait(300) and updater is not None and agent.healthy():
            updater.confirm()
        stop.wait()
        if updates is not None:
            updates.stop()
    return 0


__all__ = ["CameraPump", "Observation", "ScriptedPump", "WindowAgent", "run_agent_cli"]
