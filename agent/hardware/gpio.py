"""The window's buttons, sensors, status LED and buzzer, through gpiozero.

``WindowPanel`` builds every device from the window's ``GpioConfig`` on the pin factory
it is given (``MockFactory`` in tests and simulations, ``LGPIOFactory`` on a Pi; never
the global default) and turns pin activity into inputs put, with the device time in ms,
on one thread-safe sink (a ``queue.SimpleQueue`` in the app):

* a key going down is a ``Press``: which key (``PanelKey``: an evaluation key by its
  number, 1..5 best first as wired, ``"finish"`` or ``"call"``) and the rule input it is
  (``Call``, ``Finish``, ``Evaluation``), so the app can ask the terminal's sign-in
  (``agent.signin``) first whether the press is PIN entry rather than an evaluation;
  ``rule_input`` unwraps it for an app without sign-in;
* the finish key going up is a ``Release`` (holding it 3-10 s and letting go starts PIN
  entry); other keys' releases are not reported;
* the sign and a front desk's presence sensor report ``Sign`` and ``Presence``.

gpiozero calls back from its own threads; the sink is the only thing they touch, so the
app's loop alone drives the rules. Whether a press is believable is the rules' business:
everything that survives debouncing is passed on. Nothing here knows about MQTT or the
outbox.

Wiring (BCM numbers from the config):

* Buttons (call, finish, evaluation panel) close to GND and use the internal pull-up,
  so a press drives the pin low. A front desk with a presence sensor needs no bell.
* Evaluation panel: 5 buttons for the 好差评 levels, best first; a 3-button panel maps
  to satisfied / basically satisfied / dissatisfied.
* Please-wait sign: a reed (or hall) switch in the counter stand that displays the
  sign, closing to GND when the sign's magnet sits in it. Closed (pin low) means the
  sign is shown. A cut wire therefore reads as "no sign": a fault shows up as away
  violations someone will look into, never as a silently excused absence. A holder
  that *stores* the sign (shown when taken out) is ``sign_shown_when="open"``.
* Presence (front desk only, F-RECEIVE): gpiozero's own devices, which smooth their
  readings on a background thread. A PIR module (``MotionSensor``) drives its output high
  while it sees motion; an HC-SR04 (``DistanceSensor``, ECHO through a divider) sees a
  citizen while they are nearer than the configured threshold. The panel reports each
  change, ``Presence(here=True)`` / ``Presence(here=False)``; how long a quiet sensor
  means "gone" is the rules' ``presence_hold_s``. The first reading of a sensor is
  not a change: a citizen already at the desk at start-up is not an arrival.
* Status LED: steady = connected, slow blink = buffering (events held in the outbox),
  fast blink = fault; an even blink (0.25 s on, 0.25 s off) while PIN entry lasts.
* Buzzer (active, driven high): a short beep (80 ms) acknowledges every accepted press.
  With no buzzer the status LED flashes instead and then returns to its mode.
* Sign-in signals (``signal``, ``SIGNALS``), distinct from the press beep and from each
  other: PIN entry begins = one 0.2 s beep and the LED's even blink; signed in = one
  long beep (1 s); signed out = two long beeps (0.4 s, 0.2 s apart); refused = three
  short beeps (0.1 s, 0.1 s apart); PIN entry ended without a PIN (timeout, bell) =
  silence, the LED back to its mode. With no buzzer the LED goes dark for each beep.

Debounce: ``bounce_ms`` goes to gpiozero's ``bounce_time`` (the lgpio factory filters
glitches in the driver) and is also enforced here as a lockout after each accepted
press, because not every pin factory implements ``bounce_time`` (``MockPin`` ignores
it) and the behaviour must be the same on the bench as in the field. The finish key's
release is debounced the same way: a release within ``bounce_ms`` of its press is the
press's bounce (the key is still down), and a press within ``bounce_ms`` of a reported
release is the release's.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import Any, Final, Literal, Protocol, Self, TypeAlias

from gpiozero import LED, Buzzer, DigitalInputDevice, DistanceSensor, MotionSensor
from gpiozero.exc import PWMSoftwareFallback
from gpiozero.pins import Factory

from agent.config import DistanceSensorConfig, GpioConfig, MotionSensorConfig, PresenceConfig
from agent.protocol import Rating, now_ms
from agent.rules.inputs import Call, Evaluation, Finish, Presence, RuleInput, Sign
from agent.signin import PanelKey, Signal

StatusMode: TypeAlias = Literal["off", "connected", "buffering", "fault"]


@dataclass(frozen=True, slots=True)
class Press:
    """A panel key went down: which key, and the rule input the press is."""

    key: PanelKey
    item: Call | Finish | Evaluation


@dataclass(frozen=True, slots=True)
class Release:
    """A panel key went up (only the finish key's release is reported)."""

    key: PanelKey


#: What the panel puts on its sink.
PanelInput: TypeAlias = RuleInput | Press | Release


def rule_input(item: PanelInput) -> RuleInput | None:
    """What the rules make of a panel input when nobody else asks first: a press's rule
    input, nothing for a release, anything else as it is."""
    if isinstance(item, Press):
        return item.item
    if isinstance(item, Release):
        return None
    return item


@dataclass(frozen=True, slots=True)
class Beeps:
    """``n`` beeps of ``on_s`` seconds, ``off_s`` apart."""

    n: int
    on_s: float
    off_s: float = 0.0


#: How each sign-in signal sounds (None: silent); see the module docstring.
SIGNALS: Final[dict[Signal, Beeps | None]] = {
    Signal.SERVICE_MODE: Beeps(1, 0.2),
    Signal.SIGNED_IN: Beeps(1, 1.0),
    Signal.SIGNED_OUT: Beeps(2, 0.4, 0.2),
    Signal.REFUSED: Beeps(3, 0.1, 0.1),
    Signal.SERVICE_ENDED: None,
}
#: (on_time, off_time) of the status LED while PIN entry lasts.
SERVICE_BLINK: Final = (0.25, 0.25)
#: Without a buzzer: the LED is lit at least this long between the dark "beeps".
_LIT_GAP_S: Final = 0.15

#: Ratings of a 5-button panel, in pin order (the config lists pins best first).
RATINGS_5: Final[tuple[Rating, ...]] = (
    Rating.VERY_SATISFIED,
    Rating.SATISFIED,
    Rating.BASIC,
    Rating.DISSATISFIED,
    Rating.VERY_DISSATISFIED,
)
#: Ratings of a 3-button panel, in pin order.
RATINGS_3: Final[tuple[Rating, ...]] = (Rating.SATISFIED, Rating.BASIC, Rating.DISSATISFIED)

#: (on_time, off_time) in seconds of the status LED's blinking modes.
_BLINK: Final[dict[StatusMode, tuple[float, float]]] = {
    "buffering": (0.5, 1.5),
    "fault": (0.1, 0.1),
}


class Sink(Protocol):
    """Where the panel puts ``(t_ms, input)``; ``queue.Queue`` and ``SimpleQueue`` fit."""

    def put(self, item: tuple[int, PanelInput], /) -> None: ...


def ratings_for(buttons: int) -> tuple[Rating, ...]:
    """The ratings of an evaluation panel with this many buttons, in pin order."""
    if buttons == 5:
        return RATINGS_5
    if buttons == 3:
        return RATINGS_3
    raise ValueError(f"an evaluation panel has 5 or 3 buttons, not {buttons}")


class WindowPanel:
    """All GPIO devices of one window, feeding rule inputs into ``sink``.

    Use it as a context manager (or call ``close()``) so every pin is released::

        from queue import SimpleQueue
        from gpiozero.pins.mock import MockFactory

        q = SimpleQueue()
        factory = MockFactory()
        with WindowPanel(window.gpio, q, pin_factory=factory) as panel:
            factory.pin(window.gpio.call_button).drive_low()   # press the bell
            t_ms, item = q.get()               # -> Press("call", Call(source="bell"))

    The sign's state at start-up is put on the sink first, so the rules begin with the
    truth rather than with their default.
    """

    def __init__(
        self,
        config: GpioConfig,
        sink: Sink,
        *,
        pin_factory: Factory,
        clock: Callable[[], int] = now_ms,
        ack_s: float = 0.08,
        sign_shown_when: Literal["closed", "open"] = "closed",
    ) -> None:
        self.config = config
        self.ratings = ratings_for(len(config.eval_buttons))
        self._sink = sink
        self._clock = clock
        self._ack_s = ack_s
        self._bounce_ms = config.bounce_ms
        bounce = config.bounce_ms / 1000 if config.bounce_ms else None
        self._lock = threading.Lock()  # presses arrive on gpiozero's callback threads
        self._last_press: dict[PanelKey, int] = {}  # accepted presses and releases
        self._down: dict[PanelKey, int] = {}  # keys whose release is reported, pressed at
        self._service = False  # PIN entry: the LED blinks SERVICE_BLINK
        self._sign_reported: bool | None = None
        self._presence_reported: bool | None = None
        self._status: StatusMode = "off"
        self._restore: threading.Timer | None = None
        self._closed = False
        self._sign_shown_when_closed = sign_shown_when == "closed"
        self._devices: list[Any] = []

        def button(pin: int, key: PanelKey, item: Call | Finish | Evaluation) -> DigitalInputDevice:
            # A gpiozero Button would add a hold-detection thread per button, waking
            # every 100 ms for a feature we never use (and making close() slow); a
            # pulled-up input device is the same wiring without it.
            device = self._add(
                DigitalInputDevice(pin, pull_up=True, bounce_time=bounce, pin_factory=pin_factory)
            )
            device.when_activated = partial(self._pressed, key, item)
            if key == "finish":
                device.when_deactivated = partial(self._released, key)
            return device

        try:
            self.call_button: DigitalInputDevice | None = None
            if config.call_button is not None:
                self.call_button = button(config.call_button, "call", Call(source="bell"))
            self.finish_button: DigitalInputDevice | None = None
            if config.finish_button is not None:
                self.finish_button = button(config.finish_button, "finish", Finish())
            self.eval_buttons: tuple[DigitalInputDevice, ...] = tuple(
                button(pin, number, Evaluation(rating))
                for number, pin, rating in zip(
                    _EVAL_KEYS, config.eval_buttons, self.ratings, strict=False
                )
            )
            # Pull-up, so gpiozero reads a closed switch (pin low) as active.
            self.sign_sensor = self._add(
                DigitalInputDevice(
                    config.sign_sensor, pull_up=True, bounce_time=bounce, pin_factory=pin_factory
                )
            )
            self.status_led: LED | None = None
            if config.status_led is not None:
                self.status_led = self._add(LED(config.status_led, pin_factory=pin_factory))
            self.buzzer: Buzzer | None = None
            if config.buzzer is not None:
                self.buzzer = self._add(Buzzer(config.buzzer, pin_factory=pin_factory))
            self.presence_sensor: MotionSensor | DistanceSensor | None = None
            if config.presence is not None:
                self.presence_sensor = self._add(_presence_device(config.presence, pin_factory))
        except BaseException:
            # A pin in use or a bad factory must not leave the earlier pins claimed.
            self.close()
            raise
        self.sign_sensor.when_activated = self._sign_changed
        self.sign_sensor.when_deactivated = self._sign_changed
        self._sign_changed()
        sensor = self.presence_sensor
        if sensor is not None:
            # Motion (PIR) and "out of range" (ultrasonic) are both gpiozero's "active".
            seen_when_active = isinstance(sensor, MotionSensor)
            sensor.when_activated = partial(self._presence_changed, seen_when_active)
            sensor.when_deactivated = partial(self._presence_changed, not seen_when_active)

    def _add(self, device: Any) -> Any:
        self._devices.append(device)
        return device

    # ------------------------------------------------------------------ inputs

    def _pressed(self, key: PanelKey, item: Call | Finish | Evaluation) -> None:
        t = self._clock()
        with self._lock:
            if self._closed:
                return
            last = self._last_press.get(key)
            if last is not None and t - last < self._bounce_ms:
                return  # contact bounce, not a second press
            self._last_press[key] = t
            if key == "finish":
                self._down[key] = t
            self._sink.put((t, Press(key, item)))
        self._acknowledge()

    def _released(self, key: PanelKey) -> None:
        t = self._clock()
        with self._lock:
            if self._closed:
                return
            since = self._down.get(key)
            if since is None or t - since < self._bounce_ms:
                # Not down (a bounce of a release already reported), or the press's own
                # bounce: the key is still held.
                return
            del self._down[key]
            self._last_press[key] = t  # the release's bounce is not a press
            self._sink.put((t, Release(key)))

    def _sign_changed(self) -> None:
        t = self._clock()
        with self._lock:
            if self._closed:
                return
            # Read the level rather than trusting the edge: after a bounce the last
            # callback reports the settled state, and repeats of it are not news.
            up = self._read_sign()
            if up == self._sign_reported:
                return
            self._sign_reported = up
            self._sink.put((t, Sign(up=up)))

    def _presence_changed(self, here: bool) -> None:
        # Called on the sensor's own queue thread, once per change of its smoothed level.
        t = self._clock()
        with self._lock:
            if self._closed or here == self._presence_reported:
                return
            self._presence_reported = here
            self._sink.put((t, Presence(here=here)))

    def presence_ready(self, timeout: float = 2.0) -> bool:
        """Wait until the presence sensor has its first reading (gpiozero reports changes
        from then on); True at once without a sensor, False if it took longer."""
        sensor = self.presence_sensor
        if sensor is None:
            return True
        deadline = time.monotonic() + timeout
        while not (sensor.wait_for_active(0) or sensor.wait_for_inactive(0)):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    @property
    def sign_up(self) -> bool:
        """Whether the please-wait sign is shown now."""
        return self._read_sign()

    def _read_sign(self) -> bool:
        return bool(self.sign_sensor.is_active) == self._sign_shown_when_closed

    # ------------------------------------------------------------------ outputs

    def _acknowledge(self) -> None:
        with self._lock:
            if self._closed:
                return
            if self.buzzer is not None:
                self.buzzer.beep(on_time=self._ack_s, off_time=0, n=1, background=True)
            elif self.status_led is not None:
                self.status_led.blink(
                    on_time=self._ack_s, off_time=self._ack_s, n=1, background=True
                )
                self._schedule_restore(2 * self._ack_s)

    def _schedule_restore(self, delay_s: float) -> None:
        # Caller holds the lock. One timer at a time, owned here and cancelled in close().
        if self._restore is not None:
            self._restore.cancel()
        self._restore = threading.Timer(delay_s, self._restore_status)
        self._restore.daemon = True
        self._restore.start()

    def _restore_status(self) -> None:
        with self._lock:
            self._restore = None
            if not self._closed:
                self._apply_status()

    @property
    def status(self) -> StatusMode:
        return self._status

    def set_status(self, mode: StatusMode) -> None:
        """Show the terminal's state: connected, buffering, fault (or off). The mode
        already shown changes nothing (the app calls this on every turn of its loop: a
        blink is not restarted, a flash not cut short)."""
        with self._lock:
            if mode == self._status:
                return
            self._status = mode
            if self._closed:
                return
            if self._restore is not None:
                self._restore.cancel()
                self._restore = None
            self._apply_status()

    @property
    def service_mode(self) -> bool:
        """Whether the LED shows PIN entry (``signal(Signal.SERVICE_MODE)`` until the
        next other signal)."""
        return self._service

    def signal(self, signal: Signal) -> None:
        """Show a sign-in signal (``SIGNALS``): PIN entry's blinking begins with
        ``SERVICE_MODE`` and ends with any other signal."""
        beeps = SIGNALS[signal]
        with self._lock:
            if self._closed:
                return
            service = signal is Signal.SERVICE_MODE
            changed, self._service = service != self._service, service
            led = self.status_led
            if self.buzzer is not None and beeps is not None:
                self.buzzer.beep(
                    on_time=beeps.on_s, off_time=beeps.off_s, n=beeps.n, background=True
                )
            elif led is not None and beeps is not None and not service:
                # Dark for each beep, lit between: visible on a steady LED, countable on
                # a dark one; then back to its mode.
                gap = max(beeps.off_s, _LIT_GAP_S)
                led.blink(on_time=gap, off_time=beeps.on_s, n=beeps.n, background=True)
                self._schedule_restore(beeps.n * (gap + beeps.on_s))
                return
            if changed:
                if self._restore is not None:
                    self._restore.cancel()
                    self._restore = None
                self._apply_status()

    def _apply_status(self) -> None:
        led = self.status_led
        if led is None:
            return
        if self._service:
            led.blink(*SERVICE_BLINK, background=True)
        elif self._status == "connected":
            led.on()
        elif self._status == "off":
            led.off()
        else:
            on_time, off_time = _BLINK[self._status]
            led.blink(on_time=on_time, off_time=off_time, background=True)

    # ------------------------------------------------------------------ lifetime

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Release every pin; safe to call twice."""
        with self._lock:
            self._closed = True
            restore, self._restore = self._restore, None
        if restore is not None:
            restore.cancel()
        # Outside the lock: closing a blinking device joins its thread.
        for device in reversed(self._devices):
            device.close()
        self._devices.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


#: The evaluation keys' numbers, in pin order (best first).
_EVAL_KEYS: Final[tuple[PanelKey, ...]] = (1, 2, 3, 4, 5)


def _presence_device(config: PresenceConfig, pin_factory: Factory) -> MotionSensor | DistanceSensor:
    """The gpiozero device a presence sensor's config describes."""
    if isinstance(config, MotionSensorConfig):
        # A PIR module drives its output (push-pull): the pull-down only keeps a loose
        # wire from reading as motion.
        return MotionSensor(config.pin, pull_up=False, pin_factory=pin_factory)
    assert isinstance(config, DistanceSensorConfig)
    with warnings.catch_warnings():
        # gpiozero suggests pigpio for exact echo timing; a threshold crossing at a desk
        # does not need centimetres, and pigpio does not run on a Pi 5.
        warnings.simplefilter("ignore", PWMSoftwareFallback)
        return DistanceSensor(
            echo=config.echo,
            trigger=config.trigger,
            max_distance=config.max_distance_m,
            threshold_distance=config.threshold_m,
            pin_factory=pin_factory,
        )
