"""One window's agent: its parts, the one function that wires them, and the run loop.

Data flows one way: pins (``WindowPanel``) and perception (a camera pump or the scripted
clerk) put ``(t_ms, input)`` on one inbox; the loop alone feeds the rules, stores every
draft in the outbox, and tells the link what the window looks like. The link (the MQTT
``Transport``) drains the outbox on its own thread. ``stop()`` closes the open session,
flushes what the broker will take, and publishes ``offline``.

``WindowAgent`` receives its parts (inbox, rules, outbox, link, panel, pump, clock, and
optionally the terminal's sign-in and a badge reader); ``build_agent`` builds the
production ones, and is what the CLI, the demo's simulated windows, the benches and the
tests call. The link talks back only through the handlers it is built with:
``Commands`` for ``cmd`` (it needs the inbox and the pump, not the agent, so there is no
cycle) and the caller's ``on_config``.

Sign-in (with a clerk directory): the loop asks ``SignIn`` first about every panel press
(``Press``: which key), the finish key's release (``Release``) and every badge the
reader posts (``BadgeRead``); its drafts go to the outbox, its signal to the panel, and
only a press it did not consume reaches the rules, so PIN entry never counts as an
evaluation. Without a directory presses go straight to the rules, as they always did.
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
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

from gpiozero.pins import Factory

from agent.config import BrokerConfig, Site, WindowConfig, load_site
from agent.directory import ClerkDirectory
from agent.events import Draft
from agent.hardware.badge import BadgeReader, BadgeReaderError
from agent.hardware.gpio import PanelInput, Press, Release, WindowPanel
from agent.observation import Observation
from agent.outbox import DEFAULT_MAX_ROWS, Outbox
from agent.perception import Perception
from agent.protocol import Command, Fault, Health, Reply, WindowState, now_ms
from agent.rules.engine import ServiceRules
from agent.rules.inputs import Shutdown, from_command
from agent.settings import AgentEnv, load_clerk_directory
from agent.signin import Outcome, Signal, SignIn, SignInConfig
from agent.transport import ConfigHandler, LinkState, Transport
from agent.update import Updater, UpdateReport, UpdateWorker, load_public_key
from agent.watchdog import Watchdog
from agent.window_settings import WindowSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BadgeRead:
    """The badge reader read a badge number (a credential: never logged)."""

    number: str = field(repr=False)  # not in a traceback or a log either


#: What the inbox carries, with its time in ms: rule inputs (perception, commands, the
#: sign), the panel's presses and releases, the reader's badges.
Item = tuple[int, PanelInput | BadgeRead]
#: Where a badge reader posts ``(t_ms, number)``: ``WindowAgent.badge``.
BadgeCallback = Callable[[int, str], None]


class BadgeSource(Protocol):
    """A running badge reader, as the agent owns it (``BadgeReader`` is one)."""

    def close(self) -> None: ...


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


class Link(Protocol):
    """What the agent needs from its connection to the centre (Frigate's ``Communicator``):
    ``Transport`` is one, structurally; a test passes a recording one.

    Commands and config travel the other way: the link calls the handlers it was built
    with (``Transport(on_command=..., on_config=...)``) on its own thread, so the agent
    registers nothing here.
    """

    @property
    def link(self) -> LinkState:
        """What the status LED shows: offline (buffering), draining or online."""
        ...

    def start(self) -> None: ...

    def publish_state(self, state: WindowState) -> None:
        """Hand over the retained window state; the latest value wins."""
        ...

    def publish_health(self, health: Health) -> None: ...

    def publish_reply(self, reply: Reply) -> None:
        """A reply not tied to a command (an update report)."""
        ...

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the outbox to drain; whether it did."""
        ...

    def close(self, timeout: float = 5.0) -> None:
        """Say ``offline`` and disconnect."""
        ...


class Commands:
    """What a ``cmd`` from the centre does: ``recalibrate`` goes to the pump, ``call`` and
    ``finish`` join the inbox exactly like a press (a call with what the queue system
    sent: ticket, priority and, from version 2 commands, its call id, matter, priority
    category and case number), ``ping`` only answers.

    The link calls it on its own thread; the rules see a command only through the inbox,
    so they stay fed by the loop alone. The terminal takes commands up to
    ``Command.NEWEST`` and says so in its retained state (``WindowState.commands``).
    """

    def __init__(
        self, inbox: queue.SimpleQueue[Item], pump: Pump, clock: Callable[[], int]
    ) -> None:
        self.inbox = inbox
        self.pump = pump
        self.clock = clock

    def __call__(self, cmd: Command) -> Reply:
        if cmd.action == "recalibrate":
            self.pump.recalibrate()
        elif cmd.action != "ping":
            item = from_command(cmd)
            if item is not None:
                self.inbox.put((self.clock(), item))
        return Reply(cmd_id=cmd.cmd_id, ok=True)


class WindowAgent:
    """Runs one window from its parts and owns them from then on: ``stop()`` closes the
    link, the panel and the outbox. ``build_agent`` builds the production parts.

    ``inbox`` is the queue the panel (and ``Commands``) put ``(t_ms, input)`` on; the
    agent's perception thread runs ``pump`` into it too.
    """

    def __init__(
        self,
        site: Site,
        window: WindowConfig,
        *,
        inbox: queue.SimpleQueue[Item],
        rules: ServiceRules,
        outbox: Outbox,
        link: Link,
        panel: WindowPanel,
        pump: Pump,
        clock: Callable[[], int] = now_ms,
        health_s: float = 60.0,
        tick_s: float = 0.5,
        watchdog: Watchdog | None = None,
        config_version: str = "local",
        signin: SignIn | None = None,
        badge_reader: Callable[[BadgeCallback], BadgeSource] | None = None,
    ) -> None:
        if badge_reader is not None and signin is None:
            raise ValueError("a badge reader needs the terminal's sign-in (a clerk directory)")
        self.site = site
        self.watchdog = watchdog or Watchdog(None)
        self.window = window
        self.clock = clock
        self.pump = pump
        self.health_s = health_s
        self.tick_s = tick_s
        self.started = time.monotonic()
        self.queue = inbox
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.outbox = outbox
        self.rules = rules
        self.link = link
        self.panel = panel
        if isinstance(pump, CameraPump):
            pump.on_fault = self._fault
        self._faults: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
        self._last_state: WindowState | None = None
        self._reported_full = False
        self._reported_disk = False
        #: Drafts a full disk refused, oldest first; bounded so memory cannot run out.
        self._unstored: deque[Draft] = deque(maxlen=10_000)
        self.model_version = str(getattr(pump, "model_version", pump.kind))
        self.config_version = f"{window.window}-{config_version}"
        #: The settings bundle applied on top of the window file (None: none), and why
        #: the last one was refused or rolled back; ``run_agent_cli`` keeps them current.
        self.settings_serial: int | None = None
        self.settings_error: str | None = None
        #: Who signs in at this terminal; None: no sign-in (no clerk directory).
        self.signin = signin
        self._pin_entry = False  # the panel shows PIN entry
        #: The reader, built last (it starts its thread and posts to ``badge`` at once).
        self.badge_reader: BadgeSource | None = None
        if badge_reader is not None:
            self.badge_reader = badge_reader(self.badge)

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self.link.start()
        for name, target in (("rules", self._loop), ("perception", self._perceive)):
            t = threading.Thread(target=target, name=f"{self.window.window}-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        self.watchdog.ready(f"{self.site.site.site}/{self.window.window} ({self.pump.kind})")

    def stop(self, flush_s: float = 3.0) -> None:
        self.watchdog.stopping()
        self._stop.set()
        if self.badge_reader is not None:
            self.badge_reader.close()
        for t in self._threads:
            t.join(timeout=10)
        self._store(self.rules.feed(self.clock(), Shutdown()))
        self.link.flush(flush_s)
        self.link.close()
        self.panel.close()
        self.outbox.close()

    def __enter__(self) -> WindowAgent:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----------------------------------------------------------------- threads

    def badge(self, t_ms: int, number: str) -> None:
        """A badge read at ``t_ms``: the badge reader's callback (any thread; it only
        queues the number for the loop)."""
        self.queue.put((t_ms, BadgeRead(number)))

    def _perceive(self) -> None:
        self.pump.run(self.queue, self._stop, self.clock)

    def _feed(self, t: int, item: PanelInput | BadgeRead) -> list[Draft]:
        """One inbox item through sign-in (if any) and the rules."""
        signin = self.signin
        if isinstance(item, Press):
            drafts: list[Draft] = []
            if signin is not None:
                out = signin.press(t, item.key)
                drafts = self._signed(out)
                if out.consumed:
                    return drafts  # PIN entry: never an evaluation, never a finish
            return drafts + self.rules.feed(t, item.item)
        if isinstance(item, Release):
            return [] if signin is None else self._signed(signin.release(t, item.key))
        if isinstance(item, BadgeRead):  # without sign-in there is no reader: dropped
            return [] if signin is None else self._signed(signin.badge(t, item.number))
        return self._sign_in_tick(t) + self.rules.feed(t, item)

    def _sign_in_tick(self, t: int, *, always: bool = False) -> list[Draft]:
        """Let sign-in's time pass: at every quiet tick, and before any other input
        once PIN entry has timed out (so the panel stops showing it on time)."""
        signin = self.signin
        if signin is None:
            return []
        if always or (self._pin_entry and not signin.in_service_mode(t)):
            return self._signed(signin.tick(t))
        return []

    def _signed(self, out: Outcome) -> list[Draft]:
        """Show what sign-in decided on the panel; its drafts."""
        if out.signal is not None:
            self._pin_entry = out.signal is Signal.SERVICE_MODE
            self.panel.signal(out.signal)
            if out.signal is not Signal.SERVICE_MODE:
                who = self.signin.signed_in if self.signin is not None else None
                log.info("sign-in: %s (signed in now: %s)", out.signal.value, who or "nobody")
        return list(out.drafts)

    def _loop(self) -> None:
        next_health = time.monotonic() + min(5.0, self.health_s)
        while not self._stop.is_set():
            try:
                t, item = self.queue.get(timeout=self.tick_s)
                drafts = self._feed(t, item)
            except queue.Empty:
                now = self.clock()
                drafts = self._sign_in_tick(now, always=True)
                drafts += self.rules.tick(now, in_hours=in_opening_hours(self.site, now))
            self._store(drafts)
            while not self._faults.empty():
                code, detail = self._faults.get()
                self._store([self._fault_draft(code, detail)])
            self._publish_state()
            self.panel.set_status(
                "connected" if self.link.link is LinkState.ONLINE else "buffering"
            )
            if time.monotonic() >= next_health:
                self.link.publish_health(self.health())
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
            commands=Command.NEWEST,
        )
        last = self._last_state
        if last is None or last.model_copy(update={"ts_ms": 0}) != state.model_copy(
            update={"ts_ms": 0}
        ):
            self._last_state = state
            self.link.publish_state(state)

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
            settings_serial=self.settings_serial,
            settings_error=_short(self.settings_error),
        )


def _short(text: str | None, limit: int = 64) -> str | None:
    """``text`` cut to the wire's short text, marked as cut."""
    if not text or len(text) <= limit:
        return text or None
    return text[: limit - 1] + "…"


def _cpu_temp() -> float | None:
    try:
        raw = Path("/sys/class/thermal/thermal_zone0/temp").read_text()
    except OSError:
        return None
    return round(int(raw) / 1000, 1)


def build_agent(
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
    on_config: ConfigHandler | None = None,
    on_settings: ConfigHandler | None = None,
    outbox_max_rows: int | None = None,
    outbox: Outbox | None = None,
    agent_type: type[WindowAgent] = WindowAgent,
    config_version: str = "local",
    directory: ClerkDirectory | None = None,
    signin_config: SignInConfig | None = None,
    badge_reader: Callable[[BadgeCallback], BadgeSource] | None = None,
) -> WindowAgent:
    """One window's agent with its production parts: the outbox
    ``<state_dir>/<site>-<window>.outbox.db``, the rules of ``window`` (its thresholds and
    its role: a front desk's rules take its presence sensor), a ``Transport`` to
    ``broker`` (the site's by default) answering commands through ``Commands``, and the
    panel on ``pin_factory``. Nothing runs until ``start()`` but the badge reader.

    ``directory`` (this site's clerk directory) turns sign-in on: a ``SignIn`` with
    ``signin_config`` (its defaults otherwise) that the panel's presses and releases go
    through first, and ``badge_reader``, if given, is called with the agent's ``badge``
    callback and returns the running reader (``partial(BadgeReader, device)``); the agent
    closes it in ``stop()``. Without a directory the panel works as it always did.

    ``outbox`` replaces the one opened here (a test's failing disk; then
    ``outbox_max_rows`` cannot be given), and ``agent_type`` the agent (a bench's counting
    subclass); the agent owns the outbox once built. If building fails half-way, what
    was opened here is closed again.

    Example::

        agent = build_agent(site, window, tmp, pin_factory=MockFactory(), pump=pump)
        with agent:
            ...  # presses on the factory's pins become events in agent.outbox
    """
    if outbox is not None and outbox_max_rows is not None:
        raise TypeError("pass outbox or outbox_max_rows, not both")
    if directory is None and (signin_config is not None or badge_reader is not None):
        raise TypeError("signin_config and badge_reader need a directory")
    if directory is not None and directory.site != site.site.site:
        raise ValueError(f"the clerk directory is site {directory.site}'s, not {site.site.site}'s")
    with ExitStack() as undo:
        if outbox is None:
            outbox = Outbox(
                state_dir / f"{site.site.site}-{window.window}.outbox.db",
                site.site.site,
                window.window,
                uuid.uuid4(),
                max_rows=DEFAULT_MAX_ROWS if outbox_max_rows is None else outbox_max_rows,
            )
            undo.callback(outbox.close)
        inbox: queue.SimpleQueue[Item] = queue.SimpleQueue()
        rules = ServiceRules(
            window.rules, role=window.role, in_hours=in_opening_hours(site, clock())
        )
        link = Transport(
            broker or site.site.broker,
            site.site.site,
            window.window,
            outbox,
            on_command=Commands(inbox, pump, clock),
            on_config=on_config,
            on_settings=on_settings,
        )
        panel = WindowPanel(window.gpio, inbox, pin_factory=pin_factory, clock=clock)
        undo.callback(panel.close)
        agent = agent_type(
            site,
            window,
            inbox=inbox,
            rules=rules,
            outbox=outbox,
            link=link,
            panel=panel,
            pump=pump,
            clock=clock,
            health_s=health_s,
            tick_s=tick_s,
            watchdog=watchdog,
            config_version=config_version,
            signin=None if directory is None else SignIn(directory, signin_config),
            badge_reader=badge_reader,
        )
        undo.pop_all()
    return agent


def pin_factory(kind: Literal["lgpio", "mock"]) -> Factory:
    """The gpiozero pin factory, chosen by name: ``lgpio`` on a Raspberry Pi (python3-lgpio
    from Raspberry Pi OS), ``mock`` (MockFactory) in tests and simulations."""
    if kind == "mock":
        from gpiozero.pins.mock import MockFactory

        return MockFactory()
    from gpiozero.pins.lgpio import LGPIOFactory

    return LGPIOFactory()


def _sign_in_parts(
    env: AgentEnv, site: Site, window: WindowConfig, received: ClerkDirectory | None = None
) -> tuple[ClerkDirectory | None, Callable[[BadgeCallback], BadgeSource] | None]:
    """The clerk directory (``received`` with the settings over the air, else the file
    ``WW_CLERK_DIRECTORY``, checked: ``AgentEnvError`` names the file and the problem) and
    the badge reader's factory (the window's ``[badge]``; it needs evdev, else
    ``BadgeReaderError`` says so, at start)."""
    where = f"{site.site.site}/{window.window}"
    directory = received
    if received is not None:
        log.info(
            "sign-in on at %s: %d clerks in the directory received over the air",
            where,
            len(received.clerks),
        )
    elif env.clerk_directory is not None:
        directory = load_clerk_directory(env.clerk_directory, site.site.site)
        log.info("sign-in on at %s: %d clerks in the directory", where, len(directory.clerks))
    if window.badge is None:
        return directory, None
    if directory is None:
        log.warning(
            "%s has a badge reader ([badge] device) but no clerk directory "
            "(WW_CLERK_DIRECTORY): the reader is not opened and nobody can sign in",
            where,
        )
        return None, None
    try:
        import evdev  # noqa: F401  (here, before anything is opened)
    except ImportError as exc:
        raise BadgeReaderError(
            f"{where} has a badge reader ([badge] device = {window.badge.device!r}) but "
            "evdev is not installed: pip install 'warmwindow[agent]' on Linux, or on a Pi "
            "apt install python3-evdev (or remove [badge] from the window's file)"
        ) from exc
    return directory, partial(BadgeReader, window.badge.device)


def run_agent_cli(args: argparse.Namespace) -> int:
    """``warmwindow agent``: run until SIGTERM/SIGINT, then shut down cleanly.

    With a bundle signing key (``WW_BUNDLE_KEY``) the agent takes signed model bundles on
    its ``config`` topic and settings bundles on its ``settings`` topic. Either one, once
    installed, restarts the agent on it when no session is open (at most 15 minutes
    later); systemd (``Restart=always``) starts it again. A new bundle is kept once the
    agent has run healthily on it for ``WW_CONFIRM_AFTER_S``; an agent unhealthy then,
    or one that does not come up three times, goes back to the previous bundle.
    """
    env = AgentEnv.read()
    site = load_site(args.site)
    window = site.window(args.window)
    # Sign-in's parts are checked before anything is touched: a bad directory must not
    # count as a failed boot of an installed bundle.
    directory, badge_reader = _sign_in_parts(env, site, window)
    # Bundles first: the boot guards may roll back before anything uses what they hold.
    updater: Updater | None = None
    settings: WindowSettings | None = None
    key = env.bundle_key
    if key is not None:
        import models

        trusted = [load_public_key(key)]
        identity = f"{site.site.site}/{window.window}"
        updater = Updater(args.state_dir / "bundles", trusted, identity=identity)
        updater.seed(Path(models.__file__).parent)
        settings = WindowSettings(args.state_dir / "settings", trusted, site.site.site, window)
        for guard in (updater, settings.updater):
            rolled_back = guard.boot_check()
            if rolled_back is not None:
                log.warning("%s update rolled back at start: %s", guard.kind, rolled_back.steps)
    applied = settings.load() if settings is not None else None
    if applied is not None:
        window = applied.effective.window
        for path, source in sorted(applied.effective.sources.items()):
            log.info("setting %s from %s", path, source)
        if applied.directory is not None:  # the centre's latest, newer than any file
            directory, badge_reader = _sign_in_parts(env, site, window, applied.directory)
    # The models: the installed bundle release, else --model-dir (WW_MODEL_DIR), else the
    # package's own; passed down explicitly, never through the environment.
    model_dir = updater.model_dir if updater is not None else args.model_dir or env.model_dir
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
    restart = threading.Event()

    def _on_signal(_sig: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    agent_ref: list[WindowAgent] = []

    def _report(report: UpdateReport) -> None:
        agent = agent_ref[0]
        for reply in report.replies():
            agent.link.publish_reply(reply)
        if settings is not None:
            agent.settings_error = settings.updater.last_failure()

    def _installed(report: UpdateReport) -> None:
        log.info("bundle %s installed: restarting on it when the window is idle", report.version)
        restart.set()

    workers = [
        UpdateWorker(u, on_report=_report, on_installed=_installed)
        for u in (updater, settings.updater if settings is not None else None)
        if u is not None
    ]
    with build_agent(
        site,
        window,
        args.state_dir,
        pin_factory=factory,
        pump=pump,
        broker=broker,
        health_s=env.health_s,
        watchdog=Watchdog.from_env(),
        on_config=workers[0].submit if workers else None,
        on_settings=workers[1].submit if len(workers) > 1 else None,
        config_version=env.config_version,
        directory=directory,
        badge_reader=badge_reader,
    ) as agent:
        agent_ref.append(agent)
        if applied is not None:
            agent.settings_serial, agent.settings_error = applied.serial, applied.error
        for worker in workers:
            worker.start()
        log.info("agent %s/%s running (%s perception)", site.site.site, window.window, pump.kind)
        _supervise(agent, [w.updater for w in workers], env.confirm_after_s, stop, restart)
        for worker in workers:
            worker.stop()
    return 0


#: An installed bundle waits at most this long for the window to be idle.
RESTART_WITHIN_S = 900.0


def _supervise(
    agent: WindowAgent,
    updaters: list[Updater],
    confirm_after_s: float,
    stop: threading.Event,
    restart: threading.Event,
) -> None:
    """Until stopped, or until an installed bundle asks for a restart and the window is
    idle: after ``confirm_after_s`` keep what is pending if the agent is healthy, else
    roll it back and restart on the previous bundle."""
    confirm_at: float | None = time.monotonic() + confirm_after_s
    restart_by: float | None = None
    while not stop.wait(0.5):
        if confirm_at is not None and time.monotonic() >= confirm_at:
            confirm_at = None  # once per start
            if agent.healthy():
                for u in updaters:
                    u.confirm()
            else:
                reason = f"agent unhealthy {confirm_after_s:.0f} s after start"
                for u in updaters:
                    report = u.roll_back_pending(reason)
                    if report is not None:
                        log.warning("%s bundle rolled back: %s", u.kind, reason)
                        for reply in report.replies():
                            agent.link.publish_reply(reply)
                        if u.kind == "settings":
                            agent.settings_error = u.last_failure()
                        restart.set()
        if restart.is_set():
            restart_by = restart_by or time.monotonic() + RESTART_WITHIN_S
            if not agent.rules.state().in_session or time.monotonic() >= restart_by:
                log.info("restarting on the new bundle")
                return


__all__ = [
    "BadgeRead",
    "CameraPump",
    "Commands",
    "Link",
    "Observation",
    "ScriptedPump",
    "WindowAgent",
    "build_agent",
    "run_agent_cli",
]
