"""The badge reader: recorded key streams through the decoder, and the reader's thread on a
recording device (this machine has no /dev/uinput, so no real keyboard can be faked).

Streams come from ``tests/data/badge_streams.py``: ``typed("0012\\n", t)`` is what a
reader sends when it types 0012 and Enter from ``t`` ms, key ups, EV_MSC and EV_SYN
included; ``RECORDED_0042`` is one capture written out.
"""

from __future__ import annotations

import errno
import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator

import pytest

from agent.hardware.badge import (
    CHARS,
    ENTERS,
    EV_KEY,
    EV_MSC,
    EV_SYN,
    BadgeCounters,
    BadgeDecoder,
    BadgeReader,
    Device,
    NoSuchReader,
    decode,
    event_ms,
    pick_reader,
)
from tests.data.badge_streams import RECORDED_0042, RECORDED_0042_MS, Event, at, shifted, typed
from tests.waiting import wait_until

T = 1_762_160_400_000  # 2025-11-03 09:00 UTC, ms

# --------------------------------------------------------------------------- decoding


def test_a_recorded_card_is_its_number() -> None:
    d = BadgeDecoder()
    assert decode(RECORDED_0042, d) == ["0042"]
    assert d.counters == BadgeCounters(badges=1)
    assert event_ms(RECORDED_0042[0]) == RECORDED_0042_MS


def test_key_ups_autorepeat_syn_and_msc_type_nothing() -> None:
    stream = typed("0012345678\n", T, repeat="5")
    assert {e.type for e in stream} == {EV_SYN, EV_KEY, EV_MSC}
    assert {e.value for e in stream if e.type == EV_KEY} == {0, 1, 2}
    assert decode(stream) == ["0012345678"]


def test_keypad_digits_and_keypad_enter() -> None:
    assert decode(typed("0012345678\n", T, keypad=True)) == ["0012345678"]


def test_letters_are_upper_case_and_shift_and_sentinels_are_skipped() -> None:
    d = BadgeDecoder()
    stream = shifted(typed(";04A3BF\n", T), T + 200)  # a reader that adds ';' and shifts
    assert decode(stream, d) == ["04A3BF"]
    assert d.counters.skipped_keys == 2  # shift and ';'


def test_two_cards_in_a_row_are_two_numbers() -> None:
    assert decode(typed("0012\n", T) + typed("0013\n", T + 1_500)) == ["0012", "0013"]


def test_a_half_typed_number_times_out_and_never_joins_the_next_card() -> None:
    d = BadgeDecoder(gap_ms=500)
    pulled = typed("0012", T)  # the card left the field mid-read: no Enter
    again = typed("0012345678\n", T + 2_000)
    assert decode(pulled + again, d) == ["0012345678"]
    assert (d.counters.timed_out, d.counters.badges) == (1, 1)


def test_a_pause_of_exactly_gap_ms_is_still_one_number() -> None:
    assert decode(typed("12\n", T, key_ms=500), BadgeDecoder(gap_ms=500)) == ["12"]
    d = BadgeDecoder(gap_ms=500)
    assert decode(typed("12\n", T, key_ms=501), d) == []
    assert (d.counters.timed_out, d.counters.empty) == (2, 1)  # "1", then "2"; Enter alone


def test_a_half_typed_number_is_dropped_when_the_caller_expires_it() -> None:
    d = BadgeDecoder(gap_ms=500)
    assert decode(typed("0012", T), d) == []
    assert d.typing
    assert d.expire(T + 48 + 500) is False  # the last key was at T + 48
    assert d.expire(T + 48 + 501) is True
    assert not d.typing and d.counters.timed_out == 1


def test_a_clock_stepping_back_mid_number_drops_it() -> None:
    d = BadgeDecoder()
    # the clock stepped back a minute after "0012": what follows starts afresh
    assert decode(typed("0012", T) + typed("34\n", T - 60_000), d) == ["34"]
    assert d.counters.timed_out == 1


def test_enter_alone_and_a_runaway_number_yield_nothing() -> None:
    d = BadgeDecoder(max_length=8)
    stream = typed("\n", T) + typed("123456789\n", T + 1_000) + typed("12345678\n", T + 2_000)
    assert decode(stream, d) == ["12345678"]
    assert (d.counters.empty, d.counters.too_long, d.counters.badges) == (1, 1, 1)


def test_the_key_table_is_the_kernels() -> None:
    ecodes = pytest.importorskip("evdev.ecodes")
    assert (EV_SYN, EV_KEY, EV_MSC) == (ecodes.EV_SYN, ecodes.EV_KEY, ecodes.EV_MSC)
    assert {ecodes.KEY_ENTER, ecodes.KEY_KPENTER} == ENTERS
    for code, char in CHARS.items():
        names = ecodes.KEY[code]
        names = [names] if isinstance(names, str) else names
        assert f"KEY_{char}" in names or f"KEY_KP{char}" in names, (code, char, names)
    assert len(CHARS) == 10 + 26 + 10


def test_evdev_input_events_decode_like_the_tuples() -> None:
    evdev = pytest.importorskip("evdev")
    assert decode([evdev.InputEvent(*e) for e in RECORDED_0042]) == ["0042"]


# --------------------------------------------------------------------------- the device


class RecordingDevice:
    """An input device the test types into: a pipe makes its descriptor readable, as
    the kernel's would be; ``read`` raises BlockingIOError when nothing is there and
    ENODEV once unplugged, as evdev's does."""

    def __init__(self, name: str = "HID c216:0180", keys: tuple[int, ...] = (28,)) -> None:
        self.name = name
        self._keys = list(keys)
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        self._lock = threading.Lock()
        self._events: deque[Event] = deque()
        self.grabbed = self.closed = self.unplugged = False
        self.refuse_grab = False

    def capabilities(self) -> dict[int, list[int]]:
        return {EV_KEY: self._keys}

    def fileno(self) -> int:
        return self._r

    def grab(self) -> None:
        if self.refuse_grab:
            raise OSError(errno.EBUSY, "Device or resource busy")
        self.grabbed = True

    def read(self) -> Iterator[Event]:
        if self.unplugged:
            raise OSError(errno.ENODEV, "No such device")
        os.read(self._r, 4096)  # BlockingIOError when nothing was typed
        with self._lock:
            events, self._events = list(self._events), deque()
        return iter(events)

    def type(self, events: list[Event]) -> None:
        with self._lock:
            self._events.extend(events)
        os.write(self._w, b".")

    def unplug(self) -> None:
        self.unplugged = True
        os.write(self._w, b"!")

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self._r)
            os.close(self._w)


class Opener:
    """Hands out the devices (or errors) it is given, one per open."""

    def __init__(self, *results: RecordingDevice | Exception) -> None:
        self.results = list(results)
        self.specs: list[str] = []

    def __call__(self, spec: str) -> Device:
        self.specs.append(spec)
        result = self.results.pop(0) if len(self.results) > 1 else self.results[0]
        if isinstance(result, Exception):
            raise result
        return result


Badges = queue.SimpleQueue[tuple[int, str]]

PATH = "/dev/input/by-id/usb-Reader-event-kbd"


def reader(opener: Callable[[str], Device], q: Badges, retry_s: float = 5.0) -> BadgeReader:
    """A reader on the opener's devices; its clock reads 42."""
    return BadgeReader(
        PATH, lambda t, b: q.put((t, b)), clock=lambda: 42, retry_s=retry_s, open_device=opener
    )


def test_the_reader_grabs_its_device_and_posts_each_badge_with_the_clock() -> None:
    dev, q = RecordingDevice(), Badges()
    with reader(Opener(dev), q) as r:
        wait_until(lambda: r.connected, what="the reader to open")
        assert dev.grabbed
        dev.type(RECORDED_0042)
        assert q.get(timeout=5) == (42, "0042")
        dev.type(typed("0012", T))  # a number split across two reads is still one
        dev.type(typed("345678\n", T + 96))
        assert q.get(timeout=5) == (42, "0012345678")
    assert dev.closed and not r.connected
    assert r.decoder.counters.badges == 2


def test_an_unplugged_reader_is_reopened() -> None:
    first, second, q = RecordingDevice(), RecordingDevice(), Badges()
    with reader(Opener(first, second), q, retry_s=0.01) as r:
        wait_until(lambda: first.grabbed, what="the first device")
        first.unplug()
        wait_until(lambda: second.grabbed and r.connected, what="the reader to come back")
        assert first.closed and r.reconnects == 1
        second.type(typed("0012\n", T))
        assert q.get(timeout=5) == (42, "0012")


def test_a_reader_missing_at_start_or_grabbed_elsewhere_is_waited_for() -> None:
    busy, good, q = RecordingDevice(), RecordingDevice(), Badges()
    busy.refuse_grab = True
    opener = Opener(NoSuchReader("no input device named 'x'"), busy, good)
    with reader(opener, q, retry_s=0.01) as r:
        wait_until(lambda: r.connected, what="the reader to open")
        assert busy.closed and r.last_error is None and r.reconnects == 0
        assert opener.specs[:3] == [PATH] * 3


def test_while_waiting_the_error_is_kept_and_close_does_not_wait_for_the_retry() -> None:
    q = Badges()
    r = reader(Opener(NoSuchReader("no input device named 'x'")), q, retry_s=60)
    wait_until(lambda: r.last_error is not None, what="the first attempt")
    assert r.last_error == "NoSuchReader: no input device named 'x'" and not r.connected
    r.close()
    r.close()  # twice is fine


def test_a_failing_callback_is_counted_and_the_reader_reads_on() -> None:
    dev, got = RecordingDevice(), queue.SimpleQueue[str]()

    def on_badge(t_ms: int, badge: str) -> None:
        if badge == "0012":
            raise RuntimeError("inbox closed")
        got.put(badge)

    with BadgeReader(PATH, on_badge, open_device=Opener(dev)) as r:
        wait_until(lambda: r.connected, what="the reader to open")
        dev.type(typed("0012\n", T) + typed("0013\n", T + 1_000))
        assert got.get(timeout=5) == "0013"
        assert r.callback_errors == 1 and r.connected and r.reconnects == 0


def test_a_missing_device_path_is_reported_not_raised() -> None:
    pytest.importorskip("evdev")
    q = Badges()
    path = "/dev/input/by-id/usb-none-event-kbd"
    with BadgeReader(path, lambda t, b: q.put((t, b)), retry_s=60) as r:
        wait_until(lambda: r.last_error is not None, what="the first attempt")
        assert r.last_error is not None and r.last_error.startswith("FileNotFoundError")


def test_pick_reader_by_name_takes_the_interface_that_types_enter() -> None:
    media = RecordingDevice(keys=(113, 114, 115))  # the reader's consumer-control interface
    keys = RecordingDevice()
    other = RecordingDevice(name="Logitech USB Keyboard")
    assert pick_reader("HID c216:0180", [other, media, keys]) is keys
    assert other.closed and media.closed and not keys.closed
    keys.close()
    with pytest.raises(NoSuchReader, match="found: \\['Logitech USB Keyboard'\\]") as err:
        pick_reader("HID c216:0180", [RecordingDevice(name="Logitech USB Keyboard")])
    assert isinstance(err.value, LookupError)


def test_event_times_are_the_kernels_stamps() -> None:
    assert event_ms(at(T + 7, EV_KEY, 2, 1, us=999)) == T + 7
