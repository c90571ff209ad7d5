"""Clerks signing in and out at the terminal: a badge or a panel PIN in, events out.

``SignIn`` decides who is at the window from what the terminal reads: a badge number
from the reader (``agent.hardware.badge``) or a PIN typed on the evaluation panel in
*service mode*. It is pure, in the manner of ``agent.rules``: no clock, no I/O, no
threads; every call takes the device time in ms and returns an ``Outcome`` (the
``ClerkAtTerminal`` drafts it caused, a ``Signal`` for the panel, and whether a key
press was *consumed*). ``ClerkDirectory`` is who may sign in here.

Badges and PINs
    * A credential of one of this centre's clerks signs that clerk in; the same clerk's
      credential again while signed in signs them out (a toggle, as a time clock works:
      one card, no second action to learn). A clerk signing in while another is signed
      in simply takes over: the server's attribution rule closes the previous shift at
      the sign-in's time, so no sign-out is invented for someone who did not ask for one.
    * A reader re-reads a card left on it: the same badge again within ``repeat_s`` of
      its previous reading (sliding: each re-read extends it) is ignored and counted in
      ``repeats``, so a card resting on the reader neither toggles nor floods refusals.
    * A badge of another centre's clerk is refused ``other_centre``: the directory holds
      the city's other badges as bare hashes (``elsewhere``), without their clerk ids,
      because this terminal has no business knowing who they are. Any other badge is
      refused ``unknown`` (a citizen's transit card, a misread). PINs are only ever
      checked against this centre: with 4-6 presses of 5 keys they are not unique
      city-wide, so a PIN that matches nobody here is ``unknown``.
    * Refusals are events (``action="sign_in"``: an unknown credential can only be an
      attempt to sign in; ``clerk_id=None``) and counted. The events carry the staff id
      only, never a badge number or a PIN.

Service mode (PIN entry on the evaluation panel)
    * Enter: hold the finish key at least ``hold_s`` (3 s) and let go. Service mode
      begins at the release; ``Signal.SERVICE_MODE`` tells the clerk to type. The press
      that starts the hold is an ordinary finish press (the rules see it: at a shift
      change no session is open, and if one is, the finish key ends it as it should).
      The gesture needs the release, on purpose: were releases never reported, service
      mode could never start, rather than every finish press starting it and swallowing
      the citizen's evaluation. A hold longer than ``hold_max_s`` (a stuck key, a file
      resting on it) is not the gesture. A chord was rejected: the clerk pressing finish
      while the citizen presses a rating would turn an evaluation into service mode.
    * Type: the PIN is the sequence of evaluation keys, numbered 1..5 best first as the
      panel is wired (``gpio.RATINGS_5``). Every key press in service mode is consumed:
      the app must not give it to the rules, so it never counts as an evaluation.
    * Confirm: the finish key. A PIN of a clerk of this centre signs in (or out, as a
      badge does), anything else is refused ``unknown``; service mode ends either way.
      A finish press with nothing typed is consumed and ignored (the release of the
      hold can bounce into a press).
    * Leave: ``service_timeout_s`` after the last press in service mode (or its start)
      it ends by itself (``Signal.SERVICE_ENDED``, counted); a press at or after that
      time is an ordinary press again. The bell ends it too and rings as usual (the
      clerk chose to call a citizen), and so does a badge, which is read as usual.
    * ``pin_failures`` wrong PINs in a row lock PIN entry for ``lockout_s``: the hold
      then gives ``Signal.REFUSED``. Badges still work.

Deadlines resolve at their own time before the input that comes after them, so the
outcome does not depend on how often the app ticks. Inputs with a time earlier than the
last one (threads racing into the app's queue) are taken as happening now.

Hashes: ``credential_digest`` is SHA-256 over the method, the site slug, the directory's
random ``salt`` and the normalised value, so no plain number is stored and digests from
one directory match nothing in another. Salting cannot make short secrets safe from
someone holding the directory: a 4-6 key PIN is one of under 20,000, and a badge number
of ten digits falls to a GPU in minutes. So the directory must travel only on this
window's retained config topic (readable by this terminal alone), and a server that
would rather not expose the city's badges sends ``elsewhere`` empty (they then read as
``unknown``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, Self, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agent.directory import PIN_LENGTHS, ClerkDirectory, Match, Method, Refusal
from agent.events import Draft
from agent.protocol import ClerkAtTerminal

#: A key of the panel: an evaluation key by its number (1 = best), the finish key, the bell.
PanelKey: TypeAlias = Literal[1, 2, 3, 4, 5, "finish", "call"]


# --------------------------------------------------------------------------- settings


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SignInConfig(_Model):
    """How the terminal takes sign-ins (defaults suit a 5-key panel and a USB reader)."""

    hold_s: float = Field(
        3.0, ge=1.0, le=10.0, description="Hold the finish key this long, then let go: PIN entry."
    )
    hold_max_s: float = Field(
        10.0, ge=2.0, le=60.0, description="A longer hold is a stuck key, not the gesture."
    )
    service_timeout_s: float = Field(
        15.0, ge=3.0, le=120.0, description="PIN entry ends this long after its last press."
    )
    repeat_s: float = Field(
        5.0, ge=0.0, le=60.0, description="The same badge again within this is a re-read."
    )
    pin_failures: int = Field(
        5, ge=1, le=100, description="Wrong PINs in a row that lock PIN entry."
    )
    lockout_s: float = Field(
        300.0, ge=0.0, le=86_400.0, description="How long PIN entry is locked."
    )

    @model_validator(mode="after")
    def _hold_range(self) -> Self:
        if self.hold_max_s <= self.hold_s:
            raise ValueError("hold_max_s must be longer than hold_s")
        return self


# --------------------------------------------------------------------------- outcomes


class Signal(StrEnum):
    """What the panel should show; the app maps it to the LED and the buzzer."""

    SIGNED_IN = "signed_in"
    SIGNED_OUT = "signed_out"
    REFUSED = "refused"
    SERVICE_MODE = "service_mode"  #: PIN entry began: type the PIN, then finish
    SERVICE_ENDED = "service_ended"  #: PIN entry ended with no PIN (timeout, bell)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one input caused. ``consumed``: the press belongs to service mode, and the
    app must not pass it to the rules. ``signal``: the latest thing to show, if any."""

    consumed: bool = False
    drafts: tuple[Draft, ...] = ()
    signal: Signal | None = None


@dataclass(slots=True)
class SignInCounters:
    """Attempts, for the health report."""

    signed_in: int = 0
    signed_out: int = 0
    refused_unknown: int = 0
    refused_other_centre: int = 0
    repeats: int = 0  #: badge re-reads ignored
    service_timeouts: int = 0
    lockouts: int = 0  #: times PIN entry was locked
    locked_holds: int = 0  #: holds refused while it was
    clock_backwards: int = 0

    @property
    def refused(self) -> int:
        return self.refused_unknown + self.refused_other_centre


@dataclass(slots=True)
class _Service:
    last_ms: int
    keys: list[str] = field(default_factory=list)


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


# --------------------------------------------------------------------------- sign-in


class SignIn:
    """The terminal's sign-in state machine.

    >>> d = ClerkDirectory.build("qingpu", {"c-li": Credentials(badges=("77",))}, salt="0" * 32)
    >>> s = SignIn(d)
    >>> s.badge(1_000, "77").signal, s.signed_in
    (<Signal.SIGNED_IN: 'signed_in'>, 'c-li')

    ``signed_in`` is who the terminal believes is signed in at start-up (None: nobody).
    """

    def __init__(
        self,
        directory: ClerkDirectory,
        config: SignInConfig | None = None,
        *,
        signed_in: str | None = None,
    ) -> None:
        cfg = config if config is not None else SignInConfig()
        self.config = cfg
        self.directory = directory  #: replace it when a new one arrives
        self.counters = SignInCounters()
        self._hold = _ms(cfg.hold_s)
        self._hold_max = _ms(cfg.hold_max_s)
        self._timeout = _ms(cfg.service_timeout_s)
        self._repeat = _ms(cfg.repeat_s)
        self._lockout = _ms(cfg.lockout_s)
        self._signed_in = signed_in
        self._now: int | None = None
        self._held_since: int | None = None  # the finish key went down, not yet up
        self._service: _Service | None = None
        self._last_badge: tuple[str, int] | None = None  # (digest, last reading)
        self._failures = 0
        self._locked_until: int | None = None
        self._drafts: list[Draft] = []
        self._signal: Signal | None = None

    # ------------------------------------------------------------------ state

    @property
    def signed_in(self) -> str | None:
        """The clerk signed in at this terminal, if any."""
        return self._signed_in

    def in_service_mode(self, t_ms: int) -> bool:
        """Whether PIN entry is on at ``t_ms`` (its timeout taken into account)."""
        s = self._service
        return s is not None and self._clamp(t_ms) < s.last_ms + self._timeout

    def consumes(self, t_ms: int, key: PanelKey) -> bool:
        """Whether a press of ``key`` at ``t_ms`` would belong to service mode (and so
        must not reach the rules); ``press`` answers the same in ``Outcome.consumed``."""
        return key != "call" and self.in_service_mode(t_ms)

    # ------------------------------------------------------------------ inputs

    def press(self, t_ms: int, key: PanelKey) -> Outcome:
        """A panel key went down."""
        t = self._begin(t_ms)
        consumed = False
        s = self._service
        if s is not None:
            if key == "call":
                self._leave()
            elif key == "finish":
                consumed = True
                if s.keys:
                    self._confirm(t, "".join(s.keys))
            else:
                consumed = True
                s.last_ms = t
                if len(s.keys) <= PIN_LENGTHS.stop:  # bounded; too long is refused anyway
                    s.keys.append(str(key))
        elif key == "finish":
            self._held_since = t
        return self._end(consumed)

    def release(self, t_ms: int, key: PanelKey) -> Outcome:
        """A panel key went up (only the finish key's matters). Releases never reach
        the rules, so ``consumed`` is always False."""
        t = self._begin(t_ms)
        if key == "finish" and self._held_since is not None:
            held, self._held_since = t - self._held_since, None
            if self._service is None and self._hold <= held <= self._hold_max:
                if self._locked_until is not None:
                    self.counters.locked_holds += 1
                    self._signal = Signal.REFUSED
                else:
                    self._service = _Service(last_ms=t)
                    self._signal = Signal.SERVICE_MODE
        return self._end(False)

    def badge(self, t_ms: int, number: str) -> Outcome:
        """The reader read a badge number."""
        t = self._begin(t_ms)
        digest = self.directory.digest("badge", number)
        last = self._last_badge
        self._last_badge = (digest, t)
        if last is not None and last[0] == digest and t - last[1] < self._repeat:
            self.counters.repeats += 1
            return self._end(False)
        if self._service is not None:
            self._service = None  # a badge is the clerk's answer too
        self._decide(t, "badge", self.directory.lookup_digest("badge", digest))
        return self._end(False)

    def tick(self, t_ms: int) -> Outcome:
        """Let time pass (service mode's timeout, the lockout's end)."""
        self._begin(t_ms)
        return self._end(False)

    # ------------------------------------------------------------------ internals

    def _clamp(self, t_ms: int) -> int:
        return t_ms if self._now is None else max(t_ms, self._now)

    def _begin(self, t_ms: int) -> int:
        if self._now is not None and t_ms < self._now:
            self.counters.clock_backwards += 1
            t_ms = self._now
        self._now = t_ms
        self._drafts, self._signal = [], None
        s = self._service
        if s is not None and t_ms >= s.last_ms + self._timeout:
            self._service = None
            self.counters.service_timeouts += 1
            self._signal = Signal.SERVICE_ENDED
        if self._locked_until is not None and t_ms >= self._locked_until:
            self._locked_until, self._failures = None, 0
        if self._held_since is not None and t_ms - self._held_since > self._hold_max:
            self._held_since = None  # a release this late would not count anyway
        return t_ms

    def _end(self, consumed: bool) -> Outcome:
        out = Outcome(consumed, tuple(self._drafts), self._signal)
        self._drafts, self._signal = [], None
        return out

    def _leave(self) -> None:
        self._service = None
        self._signal = Signal.SERVICE_ENDED

    def _confirm(self, t: int, pin: str) -> None:
        self._service = None
        who = Match(None, "unknown")
        if len(pin) in PIN_LENGTHS:
            who = self.directory.lookup("pin", pin)
        if who.clerk_id is None:
            self._failures += 1
            if self._failures >= self.config.pin_failures:
                self._locked_until = t + self._lockout
                self.counters.lockouts += 1
        else:
            self._failures = 0
        self._decide(t, "pin", who)

    def _decide(self, t: int, method: Method, who: Match) -> None:
        clerk = who.clerk_id
        if clerk is None:
            if who.refused == "other_centre":
                self.counters.refused_other_centre += 1
            else:
                self.counters.refused_unknown += 1
            self._emit(t, "sign_in", method, None, who.refused or "unknown")
            self._signal = Signal.REFUSED
        elif clerk == self._signed_in:
            self._signed_in = None
            self.counters.signed_out += 1
            self._emit(t, "sign_out", method, clerk, None)
            self._signal = Signal.SIGNED_OUT
        else:
            self._signed_in = clerk
            self.counters.signed_in += 1
            self._emit(t, "sign_in", method, clerk, None)
            self._signal = Signal.SIGNED_IN

    def _emit(
        self,
        t: int,
        action: Literal["sign_in", "sign_out"],
        method: Method,
        clerk_id: str | None,
        refused: Refusal | None,
    ) -> None:
        fields: dict[str, Any] = {
            "action": action,
            "method": method,
            "clerk_id": clerk_id,
            "refused": refused,
        }
        self._drafts.append(Draft(ClerkAtTerminal, t, (), None, fields))
