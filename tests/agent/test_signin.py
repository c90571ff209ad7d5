"""Signing in at the terminal: badge streams and panel PINs through ``SignIn``, wired as
the app wires them.

``Terminal`` is that wiring in miniature: the reader's key events go through the badge
decoder into ``SignIn.badge``; every panel press goes to ``SignIn.press`` first and on to
the rules (``to_rules``) only when it was not consumed. Times are device ms.

Settings (``CFG``): hold the finish key 3-10 s and let go for PIN entry, which ends 15 s
after its last press; a badge again within 5 s is a re-read; 5 wrong PINs lock PIN entry
for 300 s.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from pydantic import ValidationError

from agent.directory import ClerkDirectory, Credentials, credential_digest
from agent.events import Draft
from agent.hardware.badge import BadgeDecoder, event_ms
from agent.protocol import ClerkAtTerminal
from agent.signin import Outcome, PanelKey, Signal, SignIn, SignInConfig
from tests.data.badge_streams import RECORDED_0042, RECORDED_0042_MS, Event, typed

Brief = tuple[str, int, dict[str, Any]]

CFG = SignInConfig(
    hold_s=3.0,
    hold_max_s=10.0,
    service_timeout_s=15.0,
    repeat_s=5.0,
    pin_failures=5,
    lockout_s=300.0,
)
SALT = "00112233445566778899aabbccddeeff"
ZHAO_BADGE, LI_BADGE, WANG_BADGE = "0042", "0012345678", "0012345679"
ELSEWHERE_BADGE, STRANGER_BADGE = "0099000001", "7700000001"
LI_PIN, WANG_PIN = "1234", "55123"

DIRECTORY = ClerkDirectory.build(
    "qingpu",
    {
        "c-zhao": Credentials(badges=(ZHAO_BADGE,)),
        "c-li": Credentials(badges=(LI_BADGE,), pin=LI_PIN),
        "c-wang": Credentials(badges=(WANG_BADGE,), pin=WANG_PIN),
    },
    elsewhere=[ELSEWHERE_BADGE],
    salt=SALT,
)
T = RECORDED_0042_MS


class Terminal:
    """Reader -> decoder -> SignIn; panel -> SignIn, then the rules if not consumed."""

    def __init__(self, directory: ClerkDirectory = DIRECTORY, config: SignInConfig = CFG):
        self.decoder = BadgeDecoder()
        self.signin = SignIn(directory, config)
        self.drafts: list[Draft] = []
        self.signals: list[Signal] = []
        self.to_rules: list[tuple[int, PanelKey]] = []

    def _take(self, out: Outcome) -> Outcome:
        self.drafts += out.drafts
        if out.signal is not None:
            self.signals.append(out.signal)
        return out

    def reader_sends(self, events: list[Event]) -> None:
        for e in events:
            badge = self.decoder.feed(event_ms(e), e)
            if badge is not None:
                self._take(self.signin.badge(event_ms(e), badge))

    def swipe(self, t_ms: int, badge: str) -> None:
        self.reader_sends(typed(badge + "\n", t_ms))

    def press(self, t_ms: int, key: PanelKey) -> Outcome:
        asked = self.signin.consumes(t_ms, key)
        out = self._take(self.signin.press(t_ms, key))
        assert out.consumed == asked  # the question and the press agree
        if not out.consumed:
            self.to_rules.append((t_ms, key))
        return out

    def release(self, t_ms: int, key: PanelKey) -> None:
        self._take(self.signin.release(t_ms, key))

    def hold_finish(self, t_ms: int, for_s: float = 3.0) -> int:
        """Hold the finish key from ``t_ms``; returns the time it was let go."""
        self.press(t_ms, "finish")
        up = t_ms + round(for_s * 1000)
        self.release(up, "finish")
        return up

    def type_pin(self, t_ms: int, pin: str, every_ms: int = 600) -> int:
        """Press the PIN's keys from ``t_ms``; returns the time of the last one."""
        for i, key in enumerate(pin):
            self.press(t_ms + i * every_ms, int(key))  # type: ignore[arg-type]
        return t_ms + (len(pin) - 1) * every_ms

    def tick(self, t_ms: int) -> None:
        self._take(self.signin.tick(t_ms))

    def events(self) -> list[Brief]:
        """The drafts as ``(kind, ts, fields)``, each checked to make a valid event."""
        out = []
        for d in self.drafts:
            d.kind(  # what the outbox builds from a draft; raises if a field is wrong
                event_id=uuid.uuid4(),
                site="qingpu",
                window="w01",
                seq=1,
                boot_id=uuid.uuid4(),
                ts_ms=d.ts_ms,
                session_id=d.session_id,
                clauses=d.clauses,
                **d.fields,
            )
            out.append((d.kind.__name__, d.ts_ms, dict(d.fields)))
        return out


def signed(ts: int, action: str, method: str, clerk: str) -> Brief:
    fields = dict(action=action, method=method, clerk_id=clerk, refused=None)
    return ("ClerkAtTerminal", ts, fields)


def refused(ts: int, method: str, why: str) -> Brief:
    fields = dict(action="sign_in", method=method, clerk_id=None, refused=why)
    return ("ClerkAtTerminal", ts, fields)


def enter_ms(stream: list[Event]) -> int:
    return event_ms(next(e for e in stream if e.type == 1 and e.code == 28 and e.value == 1))


# --------------------------------------------------------------------------- badges


def test_a_recorded_badge_signs_the_clerk_in_and_the_same_badge_again_signs_out() -> None:
    term = Terminal()
    term.reader_sends(RECORDED_0042)
    assert term.signin.signed_in == "c-zhao"
    again = typed(ZHAO_BADGE + "\n", T + 3_600_000)  # an hour later, end of the shift
    term.reader_sends(again)
    assert term.events() == [
        signed(enter_ms(RECORDED_0042), "sign_in", "badge", "c-zhao"),
        signed(enter_ms(again), "sign_out", "badge", "c-zhao"),
    ]
    assert term.signals == [Signal.SIGNED_IN, Signal.SIGNED_OUT]
    assert term.signin.signed_in is None
    assert all(d.kind is ClerkAtTerminal and d.session_id is None for d in term.drafts)


def test_a_card_left_on_the_reader_is_a_re_read_not_a_toggle() -> None:
    term = Terminal()
    for dt in (0, 1_000, 2_000, 6_999):  # the reader reads it again every second or so
        term.swipe(T + dt, LI_BADGE)
    term.swipe(T + 12_000, LI_BADGE)  # 5 s after the last reading: a new swipe
    assert [(b[2]["action"], b[2]["clerk_id"]) for b in term.events()] == [
        ("sign_in", "c-li"),
        ("sign_out", "c-li"),
    ]
    assert term.signin.counters.repeats == 3


def test_another_clerk_takes_over_without_an_invented_sign_out() -> None:
    term = Terminal()
    term.swipe(T, LI_BADGE)
    term.swipe(T + 60_000, WANG_BADGE)
    assert [(b[2]["action"], b[2]["clerk_id"]) for b in term.events()] == [
        ("sign_in", "c-li"),
        ("sign_in", "c-wang"),
    ]
    assert term.signin.signed_in == "c-wang"


def test_an_other_centre_badge_and_an_unknown_one_are_refused_and_counted() -> None:
    term = Terminal()
    term.swipe(T, LI_BADGE)
    elsewhere, stranger = (
        typed(ELSEWHERE_BADGE + "\n", T + 10_000),
        typed("7700000001\n", T + 20_000),
    )
    term.reader_sends(elsewhere)
    term.reader_sends(stranger)
    assert term.events()[1:] == [
        refused(enter_ms(elsewhere), "badge", "other_centre"),
        refused(enter_ms(stranger), "badge", "unknown"),
    ]
    assert term.signals == [Signal.SIGNED_IN, Signal.REFUSED, Signal.REFUSED]
    c = term.signin.counters
    assert (c.refused_other_centre, c.refused_unknown, c.refused) == (1, 1, 2)
    assert term.signin.signed_in == "c-li"  # a refusal changes nobody's shift


def test_a_half_typed_number_times_out_and_the_next_swipe_signs_in() -> None:
    term = Terminal()
    term.reader_sends(typed(LI_BADGE[:4], T))  # the card was pulled away mid-read
    term.swipe(T + 2_000, LI_BADGE)
    assert [b[2]["clerk_id"] for b in term.events()] == ["c-li"]
    assert term.decoder.counters.timed_out == 1
    assert term.signin.counters.refused == 0


def test_events_never_carry_a_badge_number_or_a_pin() -> None:
    term = Terminal()
    term.swipe(T, LI_BADGE)
    term.swipe(T + 10_000, STRANGER_BADGE)
    term.type_pin(term.hold_finish(T + 20_000) + 500, WANG_PIN)
    term.press(T + 40_000, "finish")
    text = json.dumps([d.fields for d in term.drafts])
    assert len(term.drafts) == 3
    for secret in (LI_BADGE, STRANGER_BADGE, WANG_PIN):
        assert secret not in text


# --------------------------------------------------------------------------- PINs


def test_a_pin_in_service_mode_signs_in_and_its_presses_are_not_evaluations() -> None:
    term = Terminal()
    up = term.hold_finish(T)  # an ordinary finish press, held 3 s and let go
    assert term.signals == [Signal.SERVICE_MODE]
    last = term.type_pin(up + 1_000, LI_PIN)
    term.press(last + 800, "finish")  # confirm
    assert term.events() == [signed(last + 800, "sign_in", "pin", "c-li")]
    assert term.signals[-1] == Signal.SIGNED_IN
    term.press(last + 5_000, 1)  # service mode is over: a rating again
    assert term.to_rules == [(T, "finish"), (last + 5_000, 1)]


def test_a_pin_signs_out_like_the_badge() -> None:
    term = Terminal()
    term.swipe(T, LI_BADGE)
    term.type_pin(term.hold_finish(T + 60_000) + 500, LI_PIN)
    term.press(T + 70_000, "finish")
    assert [(b[2]["action"], b[2]["method"]) for b in term.events()] == [
        ("sign_in", "badge"),
        ("sign_out", "pin"),
    ]


def test_a_wrong_pin_is_refused_and_ends_service_mode() -> None:
    term = Terminal()
    last = term.type_pin(term.hold_finish(T) + 500, "5555")
    term.press(last + 500, "finish")
    assert term.events() == [refused(last + 500, "pin", "unknown")]
    assert term.signals == [Signal.SERVICE_MODE, Signal.REFUSED]
    assert term.signin.counters.refused_unknown == 1
    term.press(last + 2_000, 2)
    assert term.to_rules == [(T, "finish"), (last + 2_000, 2)]


@pytest.mark.parametrize("pin", ["123", "1234512"])
def test_a_pin_of_the_wrong_length_is_refused(pin: str) -> None:
    term = Terminal()
    last = term.type_pin(term.hold_finish(T) + 500, pin)
    term.press(last + 500, "finish")
    assert term.events() == [refused(last + 500, "pin", "unknown")]


def test_service_mode_times_out_after_its_last_press() -> None:
    term = Terminal()
    up = term.hold_finish(T)
    term.type_pin(up + 1_000, "12")  # the clerk gives up after two keys
    last = up + 1_600
    term.tick(last + 14_999)
    assert term.signin.in_service_mode(last + 14_999)
    assert term.signin.consumes(last + 14_999, 3)
    term.tick(last + 15_000)
    assert term.signals == [Signal.SERVICE_MODE, Signal.SERVICE_ENDED]
    assert term.signin.counters.service_timeouts == 1
    term.press(last + 15_000, 3)  # an evaluation again
    assert term.to_rules == [(T, "finish"), (last + 15_000, 3)]
    assert term.events() == []


def test_a_press_at_the_timeout_is_a_rating_even_without_a_tick() -> None:
    term = Terminal()
    up = term.hold_finish(T)
    out = term.press(up + 15_000, 4)  # the app never ticked in between
    assert (out.consumed, out.signal) == (False, Signal.SERVICE_ENDED)
    assert term.to_rules == [(T, "finish"), (up + 15_000, 4)]


def test_a_short_press_an_endless_hold_or_a_lost_release_is_not_the_gesture() -> None:
    term = Terminal()
    term.hold_finish(T, for_s=2.999)
    term.hold_finish(T + 10_000, for_s=10.001)  # something rests on the key
    term.press(T + 30_000, "finish")  # its release is never reported
    term.tick(T + 40_000)
    term.press(T + 41_000, 1)
    assert term.signals == []
    assert [key for _, key in term.to_rules] == ["finish", "finish", "finish", 1]


def test_an_empty_confirm_is_ignored_and_the_bell_leaves_service_mode_and_rings() -> None:
    term = Terminal()
    up = term.hold_finish(T)
    out = term.press(up + 30, "finish")  # the release bounced
    assert out.consumed and out.drafts == () and term.signin.in_service_mode(up + 30)
    term.press(up + 1_000, 1)
    out = term.press(up + 2_000, "call")
    assert (out.consumed, out.signal) == (False, Signal.SERVICE_ENDED)
    assert term.to_rules == [(T, "finish"), (up + 2_000, "call")]
    assert term.events() == []


def test_a_badge_during_service_mode_ends_it() -> None:
    term = Terminal()
    up = term.hold_finish(T)
    term.press(up + 1_000, 1)
    term.swipe(up + 2_000, WANG_BADGE)
    term.press(up + 4_000, 2)
    assert [b[2]["clerk_id"] for b in term.events()] == ["c-wang"]
    assert term.to_rules == [(T, "finish"), (up + 4_000, 2)]


def test_wrong_pins_in_a_row_lock_pin_entry_for_a_while() -> None:
    term = Terminal(config=CFG.model_copy(update={"pin_failures": 3}))
    t = T
    for _ in range(3):
        t = term.type_pin(term.hold_finish(t) + 500, "2222") + 500
        term.press(t, "finish")
        t += 1_000
    assert term.signin.counters.lockouts == 1
    locked_at = t - 1_000
    term.hold_finish(t)
    assert term.signals[-1] == Signal.REFUSED and term.signin.counters.locked_holds == 1
    term.press(t + 4_000, 1)
    assert term.to_rules[-1] == (t + 4_000, 1)  # no service mode: a rating
    t = locked_at + 300_000
    last = term.type_pin(term.hold_finish(t) + 500, LI_PIN)
    term.press(last + 500, "finish")
    assert term.events()[-1] == signed(last + 500, "sign_in", "pin", "c-li")
    assert term.signin.counters.refused_unknown == 3


def test_a_clock_that_steps_back_is_taken_as_now() -> None:
    term = Terminal()
    up = term.hold_finish(T)
    term.press(up - 60_000, 1)  # a press that raced into the queue with an older time
    assert term.signin.counters.clock_backwards == 1
    assert term.to_rules == [(T, "finish")]  # consumed: it happened in service mode


# --------------------------------------------------------------------------- directory


def test_the_directory_loads_from_json_and_holds_no_plain_credential() -> None:
    raw = DIRECTORY.model_dump_json()
    loaded = ClerkDirectory.model_validate_json(raw)
    assert loaded == DIRECTORY
    assert loaded.clerk_ids == {"c-zhao", "c-li", "c-wang"}
    assert loaded.lookup("badge", LI_BADGE).clerk_id == "c-li"
    assert loaded.lookup("pin", WANG_PIN).clerk_id == "c-wang"
    assert loaded.lookup("badge", ELSEWHERE_BADGE).refused == "other_centre"
    assert loaded.lookup("badge", STRANGER_BADGE).refused == "unknown"
    assert loaded.lookup("pin", "4444").refused == "unknown"
    for secret in (ZHAO_BADGE, LI_BADGE, WANG_BADGE, ELSEWHERE_BADGE, LI_PIN, WANG_PIN):
        assert f'"{secret}"' not in raw
    assert set(json.loads(raw)) == {"site", "salt", "clerks", "elsewhere"}


def test_digests_are_salted_with_the_site_and_the_directory() -> None:
    base = credential_digest("qingpu", SALT, "badge", LI_BADGE)
    assert credential_digest("qingpu", SALT, "badge", " " + LI_BADGE.lower() + " ") == base
    assert credential_digest("jingan", SALT, "badge", LI_BADGE) != base
    assert credential_digest("qingpu", "f" * 32, "badge", LI_BADGE) != base
    assert credential_digest("qingpu", SALT, "pin", LI_BADGE) != base
    fresh = ClerkDirectory.build("qingpu", {"c-li": Credentials(badges=(LI_BADGE,))})
    assert fresh.salt != SALT and len(fresh.salt) == 32
    assert fresh.lookup("badge", "0012345678").clerk_id == "c-li"
    assert fresh.lookup("badge", "ab01").refused == "unknown"


def test_a_badge_with_letters_matches_as_the_reader_types_it() -> None:
    d = ClerkDirectory.build("qingpu", {"c-li": Credentials(badges=("04a3bf",))}, salt=SALT)
    assert SignIn(d).badge(T, "04A3BF").signal == Signal.SIGNED_IN


@pytest.mark.parametrize(
    ("clerks", "elsewhere", "error"),
    [
        ({"c-li": Credentials(pin="1111"), "c-wang": Credentials(pin="1111")}, [], "same PIN"),
        ({"c-li": Credentials(badges=("1",)), "c-wang": Credentials(badges=("1",))}, [], "also"),
        ({"c-li": Credentials(badges=("1",))}, ["1"], "listed elsewhere"),
        ({"c-li": Credentials(pin="1236")}, [], "keys 12345"),
        ({"c-li": Credentials(pin="12")}, [], "4-6"),
        ({"c-li": Credentials(badges=("00-12",))}, [], "letters or digits"),
    ],
)
def test_an_ambiguous_or_unusable_directory_is_refused(
    clerks: dict[str, Credentials], elsewhere: list[str], error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        ClerkDirectory.build("qingpu", clerks, elsewhere=elsewhere, salt=SALT)


def test_the_json_is_checked_as_strictly_as_the_config() -> None:
    data = json.loads(DIRECTORY.model_dump_json())
    with pytest.raises(ValidationError, match="listed twice"):
        ClerkDirectory.model_validate({**data, "clerks": data["clerks"] * 2})
    with pytest.raises(ValidationError, match="Extra inputs"):
        ClerkDirectory.model_validate({**data, "badge_numbers": ["0042"]})
    with pytest.raises(ValidationError, match="pattern"):
        ClerkDirectory.model_validate({**data, "elsewhere": ["0099000001"]})  # a plain number
    with pytest.raises(ValidationError, match="hold_max_s"):
        SignInConfig(hold_s=5.0, hold_max_s=4.0)
