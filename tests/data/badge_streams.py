"""Key event streams of a USB HID badge reader, as the kernel delivers them.

Each event is the tuple a device read yields, ``(sec, usec, type, code, value)``
(``evdev.InputDevice.read`` wraps the same tuples in ``InputEvent``). A reader types like
a USB keyboard: per key an ``EV_MSC MSC_SCAN`` with the HID usage, the ``EV_KEY`` down
(value 1) and an ``EV_SYN``, then the same three for the key up (value 0) a few ms later.

``RECORDED_0042`` is such a capture written out by hand (a card numbered 0042 on a
125 kHz reader typing at about 60 keys a second); ``typed`` makes the same shape for any
text, so a test reads as what happened at the reader.
"""

from __future__ import annotations

from typing import NamedTuple

EV_SYN, EV_KEY, EV_MSC = 0, 1, 4
SYN_REPORT, MSC_SCAN = 0, 4

#: Kernel key codes (linux/input-event-codes.h) and HID usages of what readers type.
KEY_CODES = {
    **{d: 2 + i for i, d in enumerate("123456789")},
    "0": 11,
    "\n": 28,  # KEY_ENTER
    "A": 30,
    "B": 48,
    "C": 46,
    "D": 32,
    "E": 18,
    "F": 33,
    ";": 39,  # KEY_SEMICOLON: the start sentinel some readers send
}
KEYPAD_CODES = {
    **{"7": 71, "8": 72, "9": 73, "4": 75, "5": 76, "6": 77, "1": 79, "2": 80, "3": 81},
    "0": 82,
    "\n": 96,  # KEY_KPENTER
}
HID_USAGE = {
    **{d: 0x1E + i for i, d in enumerate("123456789")},
    "0": 0x27,
    "\n": 0x28,
    **{c: 0x04 + ord(c) - ord("A") for c in "ABCDEF"},
    ";": 0x33,
}
KEYPAD_USAGE = {
    **{d: 0x59 + i for i, d in enumerate("123456789")},
    "0": 0x62,
    "\n": 0x58,
}


class Event(NamedTuple):
    sec: int
    usec: int
    type: int
    code: int
    value: int


def at(t_ms: int, type_: int, code: int, value: int, us: int = 0) -> Event:
    return Event(t_ms // 1000, (t_ms % 1000) * 1000 + us, type_, code, value)


#: A real-looking capture: "0042" and Enter, from 2025-11-03 08:59:12.304 UTC.
RECORDED_0042: list[Event] = [
    Event(1762160352, 304112, EV_MSC, MSC_SCAN, 0x70027),
    Event(1762160352, 304112, EV_KEY, 11, 1),  # KEY_0 down
    Event(1762160352, 304112, EV_SYN, SYN_REPORT, 0),
    Event(1762160352, 312087, EV_MSC, MSC_SCAN, 0x70027),
    Event(1762160352, 312087, EV_KEY, 11, 0),  # KEY_0 up
    Event(1762160352, 312087, EV_SYN, SYN_REPORT, 0),
    Event(1762160352, 320101, EV_MSC, MSC_SCAN, 0x70027),
    Event(1762160352, 320101, EV_KEY, 11, 1),
    Event(1762160352, 320101, EV_SYN, SYN_REPORT, 0),
    Event(1762160352, 328095, EV_MSC, MSC_SCAN, 0x70027),
    Event(1762160352, 328095, EV_KEY, 11, 0),
    Event(1762160352, 328095, EV_SYN, SYN_REPORT, 0),
    Event(1762160352, 336120, EV_MSC, MSC_SCAN, 0x70021),
    Event(1762160352, 336120, EV_KEY, 5, 1),  # KEY_4 down
    Event(1762160352, 336120, EV_SYN, SYN_REPORT, 0),
    Event(1762160352, 344090, EV_MSC, MSC_SCAN, 0x70021),
    Event(1762160352, 344090, EV_KEY, 5, 0),
    Event(1762160352, 344090, EV_SYN, SYN_REPORT, 0),
    Event(1762160352, 352106, EV_MSC, MSC_SCAN, 0x7001F),
    Event(1762160352, 352106, EV_KEY, 3, 1),  # KEY_2 down
    Event(1762160352, 352106, EV_SYN, SYN_REPORT, 0),
    Event(1762160352, 360093, EV_MSC, MSC_SCAN, 0x7001F),
    Event(1762160352, 360093, EV_KEY, 3, 0),
    Event(1762160352, 360093, EV_SYN, SYN_REPORT, 0),
    Event(1762160352, 368117, EV_MSC, MSC_SCAN, 0x70028),
    Event(1762160352, 368117, EV_KEY, 28, 1),  # KEY_ENTER down
    Event(1762160352, 368117, EV_SYN, SYN_REPORT, 0),
    Event(1762160352, 376098, EV_MSC, MSC_SCAN, 0x70028),
    Event(1762160352, 376098, EV_KEY, 28, 0),
    Event(1762160352, 376098, EV_SYN, SYN_REPORT, 0),
]
RECORDED_0042_MS = 1762160352_304


def typed(
    text: str,
    t_ms: int,
    *,
    key_ms: int = 16,
    down_ms: int = 8,
    keypad: bool = False,
    repeat: str = "",
) -> list[Event]:
    """The events of a reader typing ``text`` from ``t_ms`` ("\\n" is Enter), one key
    every ``key_ms``; characters in ``repeat`` are held long enough to autorepeat."""
    codes, usages = (KEYPAD_CODES, KEYPAD_USAGE) if keypad else (KEY_CODES, HID_USAGE)
    out: list[Event] = []
    for i, ch in enumerate(text):
        t = t_ms + i * key_ms
        code, scan = codes[ch], 0x70000 | usages[ch]
        out += [at(t, EV_MSC, MSC_SCAN, scan), at(t, EV_KEY, code, 1), at(t, EV_SYN, 0, 0)]
        if ch in repeat:
            out += [at(t + 2, EV_KEY, code, 2), at(t + 2, EV_SYN, 0, 0)]
        up = t + down_ms
        out += [at(up, EV_MSC, MSC_SCAN, scan), at(up, EV_KEY, code, 0), at(up, EV_SYN, 0, 0)]
    return out


def shifted(events: list[Event], t_ms: int) -> list[Event]:
    """A stream with a shift key held around it (readers that type upper case)."""
    t0 = events[0].sec * 1000 + events[0].usec // 1000
    return [at(t0 - 1, EV_KEY, 42, 1), *events, at(t_ms, EV_KEY, 42, 0)]
