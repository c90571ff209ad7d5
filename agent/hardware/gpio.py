"""The window's buttons, sensors, status LED and buzzer, through gpiozero.

``WindowPanel`` builds every device from the window's ``GpioConfig`` on the pin factory
it is given (``MockFactory`` in tests and simulations, ``LGPIOFactory`` on a Pi; never
the global default) and turns pin activity into rule inputs - ``Call``, ``Finish``,
``Evaluation``, ``Sign``, ``Presence`` - put, with the device time in ms, on one thread-safe sink
(a ``queue.SimpleQueue`` in the app). gpiozero calls back from its own threads; the
sink is the only thing they touch, so the app's loop alone drives the rules. Whether a
press is believable is the rules' business: everything that survives debouncing is
passed on. Nothing here knows about MQTT or the outbox.

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
  fast blink = fault.
* Buzzer (active, driven high): a short beep acknowledges every accepted press. With
  no buzzer the status LED flashes instead and then returns to its mode.

Debounce: ``bounce_ms`` goes to gpiozero's ``bounce_time`` (the lgpio factory filters
glitches in the driver) and is also enforced here as a lockout after each accepted
press, because not every pin factory implements ``bounce_time`` (``MockPin`` ignores
it) and the behaviour must be the same on the bench as in the field.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable
from functools import partial
from types import TracebackType
from typing import Any, Final, Literal, Protocol, Self, TypeAlias

from gpiozero import LED, Buzzer, DigitalInputDevice, DistanceSensor, MotionSensor
from gpiozero.exc import PWMSoftwareFallback
from gpiozero.pins import Factory

from agent.config import DistanceSensorConfig, GpioConfig, MotionSensorConfig, PresenceConfig
from agent.protocol import Rating, now_ms
from agent.rules.inputs import Call, Evaluation, Finish, Presence, RuleInput, Sign

StatusMode: TypeAlias = Literal["off", "connected", "buffering", "fault"]

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

    def put(self, item: tuple[int, RuleInput], /) -> None: ...


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
            t_ms, item = q.get()                              # -> Call(source="bell")

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
        self._last_press: dict[str, int] = {}
        self._sign_reported: bool | None = None
        self._presence_reported: bool | None = None
        self._status: StatusMode = "off"
        self._restore: threading.Timer | None = None
        self._closed = False
        self._sign_shown_when_closed = sign_shown_when == "closed"
        self._devices: list[Any] = []

        def button(pin: int, key: str, item: RuleInput) -> DigitalInputDevice:
            # A gpiozero Button would add a hold-detection thread per button, waking
            # every 100 ms for a feature we never use (and making close() slow); a
            # pulled-up input device is the same wiring without it.
            device = self._add(
                DigitalInputDevice(pin, pull_up=True, bounce_time=bounce, pin_factory=pin_factory)
            )
            device.when_activated = partial(self._pressed, key, item)
            return device

        try:
            self.call_button: DigitalInputDevice | None = None
            if config.call_button is not None:
                self.call_button = button(config.call_button, "call", Call(source="bell"))
            self.finish_button: DigitalInputDevice | None = None
            if config.finish_button is not None:
                self.finish_button = button(config.finish_button, "finish", Finish())
            self.eval_buttons: tuple[DigitalInputDevice, ...] = tuple(
                button(pin, f"eval{i}", Evaluation(rating))
                for i, (pin, rating) in enumerate(
                    zip(config.eval_buttons, self.ratings, strict=True)
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

    def _pressed(self, key: str, item: RuleInput) -> None:
        t = self._clock()
        with self._lock:
            if self._closed:
                return
            last = self._last_press.get(key)
            if last is not None and t - last < self._bounce_ms:
                return  # contact bounce, not a second press
            self._last_press[key] = t
            self._sink.put((t, item))
        self._acknowledge()

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
        """Show the terminal's state: connected, buffering, fault (or off)."""
        with self._lock:
            self._status = mode
            if self._closed:
                return
            if self._restore is not None:
                self._restore.cancel()
                self._restore = None
            self._apply_status()

    def _apply_status(self) -> None:
        led = self.status_led
        if led is None:
            return
        if self._status == "connected":
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
