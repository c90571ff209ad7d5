"""The clerks' badge reader: a USB HID reader that types the badge number, through evdev.

Such readers present themselves as a keyboard: for each card they type its number and
end with Enter. ``BadgeReader`` opens the reader's input device, *grabs* it (so the
digits reach no console or login prompt on the Pi) and hands every complete number, with
the device time in ms, to one callback (the app's inbox). It knows nothing about clerks,
hashes or MQTT: whether a number is anyone's is ``agent.signin``'s business.

Two parts, in the manner of ``gpio.py``:

* ``BadgeDecoder`` — pure: key events and their times in, badge strings out. A recorded
  event stream is decoded by exactly the code the device loop runs (``decode``), so the
  tests need no ``/dev/uinput``.
* ``BadgeReader`` — the thin shell: one thread that waits on the device with ``select``
  (so ``close()`` stops it at once), feeds the decoder and reopens the device when it is
  unplugged or missing at start (a USB reader can enumerate after the agent starts).

What a reader sends, per key, as a USB keyboard does::

    EV_MSC MSC_SCAN 0x7001e   (the HID usage; ignored)
    EV_KEY KEY_1    1         key down: the only event that types
    EV_SYN SYN_REPORT 0
    EV_MSC MSC_SCAN 0x7001e
    EV_KEY KEY_1    0         key up (2 would be autorepeat): ignored
    EV_SYN SYN_REPORT 0

Decoding: digits from the main row and the keypad, letters (upper-cased: shift is not
tracked, so ``a`` and ``A`` are one badge), Enter or keypad Enter ends the number. Other
key-downs (shift, the ``;``/``?`` sentinels some readers add) are skipped and counted.
A number is *half-typed* when the card left the field mid-read: a key that comes more
than ``gap_ms`` after the previous one of the same number (or earlier than it, should
the clock step back) starts afresh, and the stale part is dropped and counted, so it
can never join the next card's digits. An Enter with nothing typed, or a number longer
than ``max_length`` (a stuck key, a reader in the wrong mode), yields nothing.

Times: the decoder measures gaps on the events' own timestamps (``event_ms``), which the
kernel stamps when the key arrives, so a loop thread delayed by inference cannot make a
stale half-number look fresh. Those are ``CLOCK_REALTIME``, the clock of ``now_ms``.
The callback gets ``clock()`` at decoding, as the GPIO panel stamps its presses.

Privacy: a badge number is a credential. It is passed to the callback and nowhere else;
nothing here logs it or keeps it after the number is complete.

Codes: the decoder uses the kernel's key codes (``linux/input-event-codes.h``, a stable
ABI) from its own table, so this module imports without evdev (macOS development, the
packaging test); evdev is imported only to open a device. The test checks the table
against ``evdev.ecodes``.

On the Pi the reader's stable name is its ``/dev/input/by-id/usb-…-event-kbd`` link
(a name such as ``"HID c216:0180"`` also works); the agent's user needs the ``input``
group to open it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Protocol, Self, TypeVar

from agent.protocol import now_ms

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------- kernel codes
EV_SYN: Final = 0
EV_KEY: Final = 1
EV_MSC: Final = 4
KEY_ENTER: Final = 28
KEY_KPENTER: Final = 96
KEY_DOWN: Final = 1  #: EV_KEY value of a key press (0 release, 2 autorepeat)

#: The characters a badge is made of, by key code (a US layout, as every reader types).
CHARS: Final[dict[int, str]] = {
    **{2 + i: d for i, d in enumerate("123456789")},  # KEY_1..KEY_9
    11: "0",  # KEY_0
    **{16 + i: c for i, c in enumerate("QWERTYUIOP")},  # KEY_Q..KEY_P
    **{30 + i: c for i, c in enumerate("ASDFGHJKL")},  # KEY_A..KEY_L
    **{44 + i: c for i, c in enumerate("ZXCVBNM")},  # KEY_Z..KEY_M
    **{71: "7", 72: "8", 73: "9", 75: "4", 76: "5", 77: "6"},  # keypad
    **{79: "1", 80: "2", 81: "3", 82: "0"},
}
ENTERS: Final = frozenset({KEY_ENTER, KEY_KPENTER})


class KeyEvent(Protocol):
    """What the decoder reads of an input event (``evdev.InputEvent`` fits)."""

    @property
    def type(self) -> int: ...
    @property
    def code(self) -> int: ...
    @property
    def value(self) -> int: ...


class TimedEvent(KeyEvent, Protocol):
    """An input event with the kernel's timestamp, as a device yields it."""

    @property
    def sec(self) -> int: ...
    @property
    def usec(self) -> int: ...


def event_ms(event: TimedEvent) -> int:
    """The event's kernel timestamp in ms."""
    return event.sec * 1000 + event.usec // 1000


# ---------------------------------------------------------------------- the decoder


@dataclass(slots=True)
class BadgeCounters:
    """What the decoder made of the keys, for the health report."""

    badges: int = 0
    timed_out: int = 0  #: half-typed numbers dropped after a pause
    too_long: int = 0
    empty: int = 0  #: Enter with nothing typed
    skipped_keys: int = 0  #: key-downs that are neither a character nor Enter


class BadgeDecoder:
    """Key events in, badge strings out; pure (time passed in).

    >>> d = BadgeDecoder()
    >>> [d.feed(t, Key(code)) for t, code in ((0, 2), (8, 3), (16, KEY_ENTER))]
    [None, None, '12']
    """

    def __init__(self, *, gap_ms: int = 500, max_length: int = 32) -> None:
        if gap_ms <= 0 or max_length <= 0:
            raise ValueError("gap_ms and max_length must be positive")
        self.gap_ms = gap_ms
        self.max_length = max_length
        self.counters = BadgeCounters()
        self._chars: list[str] = []
        self._last_ms: int | None = None  # the previous key-down of this number
        self._spoiled = False  # over max_length: swallow the rest up to Enter

    @property
    def typing(self) -> bool:
        """Whether part of a number has been typed."""
        return self._last_ms is not None

    def feed(self, t_ms: int, event: KeyEvent) -> str | None:
        """Apply one event at ``t_ms``; the badge number it completed, if any."""
        if event.type != EV_KEY or event.value != KEY_DOWN:
            return None  # EV_SYN, EV_MSC, key up, autorepeat
        self.expire(t_ms)
        if event.code in ENTERS:
            return self._enter()
        char = CHARS.get(event.code)
        if char is None:
            self.counters.skipped_keys += 1
            if self._last_ms is not None:
                self._last_ms = t_ms  # part of the same burst: it keeps the number alive
            return None
        self._last_ms = t_ms
        if self._spoiled:
            return None
        if len(self._chars) >= self.max_length:
            self._chars.clear()
            self._spoiled = True
            return None
        self._chars.append(char)
        return None

    def expire(self, t_ms: int) -> bool:
        """Drop a half-typed number if ``t_ms`` is past its gap; True if one was dropped."""
        last = self._last_ms
        if last is None or last <= t_ms <= last + self.gap_ms:
            return False
        if self._spoiled:
            self.counters.too_long += 1
        else:
            self.counters.timed_out += 1
        self._reset()
        return True

    def _enter(self) -> str | None:
        chars, spoiled = self._chars, self._spoiled
        self._reset()
        if spoiled:
            self.counters.too_long += 1
            return None
        if not chars:
            self.counters.empty += 1
            return None
        self.counters.badges += 1
        return "".join(chars)

    def _reset(self) -> None:
        self._chars = []
        self._last_ms = None
        self._spoiled = False


@dataclass(frozen=True, slots=True)
class Key:
    """A key-down event without a timestamp (for examples; tests build real events)."""

    code: int
    type: int = EV_KEY
    value: int = KEY_DOWN


def decode(events: Iterable[TimedEvent], decoder: BadgeDecoder | None = None) -> list[str]:
    """The badge numbers in a recorded stream, timed by its own timestamps (as the
    device loop decodes)."""
    d = decoder if decoder is not None else BadgeDecoder()
    return [b for ev in events if (b := d.feed(event_ms(ev), ev)) is not None]


# ---------------------------------------------------------------------- the device


class BadgeReaderError(RuntimeError):
    """The badge reader could not be opened."""


class NoSuchReader(BadgeReaderError, LookupError):
    """No input device has the configured name or path."""


C = TypeVar("C", bound="Candidate")


class Device(Protocol):
    """What the loop needs of an input device (``evdev.InputDevice`` fits)."""

    def fileno(self) -> int: ...
    def grab(self) -> None: ...
    def read(self) -> Iterator[TimedEvent]: ...
    def close(self) -> None: ...


class Candidate(Protocol):
    """An input device as ``pick_reader`` sees it (``evdev.InputDevice`` fits)."""

    @property
    def name(self) -> str: ...
    def capabilities(self) -> dict[int, list[int]]: ...
    def close(self) -> None: ...


def pick_reader(name: str, devices: Iterable[C]) -> C:
    """The first of ``devices`` called ``name`` that can type Enter (a reader's second
    interface often has only media keys); closes the others. NoSuchReader names what
    there was."""
    seen = []
    for dev in devices:
        seen.append(dev.name)
        if dev.name == name and ENTERS & set(dev.capabilities().get(EV_KEY, ())):
            return dev
        dev.close()
    raise NoSuchReader(f"no input device named {name!r} types Enter (found: {sorted(seen)})")


def open_evdev(spec: str) -> Device:
    """Open the reader: ``spec`` is a device path (``/dev/input/by-id/…``) or the name
    the reader reports (``pick_reader``)."""
    import evdev  # imported here so the module (and decoding) needs no evdev

    if spec.startswith("/"):
        return evdev.InputDevice(spec)
    return pick_reader(spec, (evdev.InputDevice(path) for path in evdev.list_devices()))


class BadgeReader:
    """The badge reader, posting ``(t_ms, badge)`` to ``on_badge`` from its own thread.

    Use it as a context manager (or call ``close()``) so the thread stops and the device
    is released::

        def on_badge(t_ms: int, badge: str) -> None:
            inbox.put((t_ms, BadgeRead(badge)))  # whatever the app's inbox item is

        with BadgeReader("/dev/input/by-id/usb-Reader-event-kbd", on_badge) as reader:
            ...                                 # reader.connected, reader.last_error

    The device is opened and grabbed on the thread; if that fails (not plugged in yet,
    no permission, grabbed by someone else) the reason is kept in ``last_error`` and the
    thread tries again every ``retry_s``. An unplugged reader is reopened the same way.
    ``on_badge`` runs on the reader's thread and must not block (a queue's ``put``); if
    it raises, the error is logged and counted and the reader reads on. The thread ends
    only with ``close()``.
    ``open_device`` opens ``device`` (tests pass a recording device).
    """

    def __init__(
        self,
        device: str,
        on_badge: Callable[[int, str], None],
        *,
        clock: Callable[[], int] = now_ms,
        gap_ms: int = 500,
        max_length: int = 32,
        retry_s: float = 5.0,
        poll_s: float = 1.0,
        open_device: Callable[[str], Device] = open_evdev,
    ) -> None:
        if open_device is open_evdev:
            try:
                import evdev  # noqa: F401  (fail here, not on the thread, when it is missing)
            except ImportError as exc:
                raise BadgeReaderError(
                    "the badge reader needs evdev (pip install 'warmwindow[agent]' on Linux; "
                    "on a Pi, apt install python3-evdev)"
                ) from exc
        self.device = device
        self.decoder = BadgeDecoder(gap_ms=gap_ms, max_length=max_length)
        self._on_badge = on_badge
        self._clock = clock
        self._retry_s = retry_s
        self._poll_s = poll_s
        self._open = open_device
        self._stop = threading.Event()
        self._connected = False
        self.last_error: str | None = None
        self.reconnects = 0  #: times the device was lost after it had been open
        self.callback_errors = 0  #: badges whose ``on_badge`` raised (logged, without them)
        self._wake_r, self._wake_w = os.pipe()  # close() writes here so select returns
        self._thread = threading.Thread(target=self._run, name="badge-reader", daemon=True)
        self._thread.start()

    @property
    def connected(self) -> bool:
        """Whether the reader is open and grabbed now."""
        return self._connected

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                dev = self._open(self.device)
            except Exception as exc:  # not there yet, no permission; never end the thread
                self.last_error = f"{type(exc).__name__}: {exc}"
                self._stop.wait(self._retry_s)
                continue
            try:
                # Grabbed, the digits reach only us: never a console or a login prompt.
                dev.grab()
                self._connected, self.last_error = True, None
                self._pump(dev)
            except OSError as exc:  # unplugged (ENODEV), grabbed elsewhere (EBUSY)
                self.last_error = f"{type(exc).__name__}: {exc}"
                if self._connected:
                    self.reconnects += 1
            except Exception as exc:  # anything else: report it, reopen, read on
                log.exception("the badge reader stopped reading; reopening it")
                self.last_error = f"{type(exc).__name__}: {exc}"
            finally:
                self._connected = False
                with contextlib.suppress(OSError):
                    dev.close()  # closing the descriptor also releases the grab
            self._stop.wait(self._retry_s)

    def _pump(self, dev: Device) -> None:
        fd = dev.fileno()
        while not self._stop.is_set():
            ready, _, _ = select.select([fd, self._wake_r], [], [], self._poll_s)
            if fd not in ready:
                continue
            try:
                events = list(dev.read())
            except BlockingIOError:
                continue
            for ev in events:
                badge = self.decoder.feed(event_ms(ev), ev)
                if badge is None:
                    continue
                try:
                    self._on_badge(self._clock(), badge)
                except Exception:  # the app's bug must not stop the reader
                    self.callback_errors += 1
                    log.exception("the badge callback failed (the number is not logged)")

    def close(self) -> None:
        """Stop the thread and release the device; safe to call twice."""
        if self._stop.is_set():
            return
        self._stop.set()
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        self._thread.join()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
