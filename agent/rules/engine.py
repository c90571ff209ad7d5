"""The service-session state machine: observations, presses and time in; drafts out.

``ServiceRules`` owns every conduct rule a window terminal applies. It is pure: no
clock, no I/O, no threads. Each input arrives with the device time in ms
(``feed(t_ms, item)``) and the call returns the ``Draft`` events it caused, so a test
is a plain list of ``(t_ms, input)`` steps (see ``run``).

Time model
    Posture, smile and presence are piecewise constant between observations: the last
    observation holds until the next one. A frame without a face leaves the posture as
    last seen (only an observed sit-down fails a see-off) until the clerk is confirmed
    away; the smile of such a frame is unknown and never counts.

    Every deadline (end of a smile window, the farewell stand limit, the see-off time,
    the session timeout, a front desk's departure, away confirmation) is resolved *at
    the deadline's own time*, before any later input is applied, so the events do not
    depend on the frame rate or on how often the app ticks. Every limit is inclusive, as
    the config words it: standing exactly ``stand_within_s`` after the call is on time,
    sitting down exactly ``see_off_s`` after standing passes, no face for exactly
    ``away_after_s`` is away, the sign up for exactly ``sign_present_flag_s`` is
    flagged, a citizen unseen for exactly ``presence_hold_s`` has left; only presses
    "closer than" ``repeat_press_s`` are repeats. Inputs that arrive with a time earlier
    than the last one (threads racing into the app's queue) are taken as happening "now"
    and counted in ``counters.clock_backwards``.

Sessions (W-CALL, W-TWO-STANDS, G-SMILE, W-FAREWELL, W-EVALUATE, H-PRIORITY)
    * A ``Call`` opens a session (``SessionOpened``). A queue call repeating the open
      session's ticket (or its queue ``call_id``: MQTT delivers at least once) is a
      recall, and a ticketless bell press within ``repeat_press_s`` of the opening is a
      double press: neither opens a session (a junk zero-length session would fail the
      clerk's stands); both are counted, and the session keeps what its call brought.
    * What the call brought rides on the session: ``source``, ``ticket``, ``priority``
      and the queue call's own fields (``call_id``, ``matter_code``, ``matter_name``,
      ``priority_category``, ``case_number``; None from a bell) on ``SessionOpened``
      and on the ``SessionSummary``. A priority category makes the call a priority one.
    * Greeting stand: ``StoodUp(phase="greeting")`` when the clerk first stands after
      the call (already standing at the call = 0 ms), ``on_time`` if within
      ``stand_within_s``; a late stand is reported with its real delay. If the clerk
      never stands, it is emitted at session end with ``after_ms=None``.
    * Greeting smile: a window of ``greet_within_s`` from the call (cut short if the
      session ends first). ``Smiled(phase="greeting")`` is emitted when it closes, with
      the first time the score reached ``smile_threshold`` and the peak score;
      ``too_broad`` when the peak is above ``too_broad_threshold``. The summary's
      ``smile_peak`` is the greeting peak; ``smile_too_broad`` covers both windows.
    * A session ends on a (non-suspect) evaluation, the finish key, the next call,
      ``session_timeout_s`` after opening, or ``Shutdown``.
    * Farewell: from the end, the clerk must stand within ``farewell_within_s`` and not
      sit down before ``see_off_s`` has passed (already standing at the end counts from
      the end). A farewell smile window of ``farewell_within_s`` runs alongside; the
      summary's ``smiled_at_farewell`` and ``farewell_smile_after_ms`` say whether and
      when the score reached ``smile_threshold`` in it (a smile unseen - no face - is no
      smile, as at the greeting; None only for a session with no farewell: a front
      desk's). ``StoodUp(phase="farewell")`` carries the verdict in ``on_time``. The
      next call (or ``Shutdown``) forces the farewell to resolve at once: a clerk who
      stood and had not sat down when the next number was called passed - they never
      sat while the citizen was leaving. Hence the ``SessionSummary`` is emitted only once the
      farewell resolves, usually ``farewell_within_s``..``+see_off_s`` after the end.
      With no finish key or evaluation the end is the next call itself, so only the
      posture at that moment can be judged.
    * Evaluations (``Evaluated``) are never dropped. A press is suspect, with the first
      reason that applies: ``repeat`` (within ``repeat_press_s`` of the previous
      evaluation press, whatever it was), ``no_session`` (no session open or awaiting
      its farewell), ``sign_up`` (the please-wait sign is up), ``already_evaluated``.
      Only a non-suspect press sets the session's rating and ends an open session.
      A press after the finish key but before the summary belongs to that session.

Front desk (F-RECEIVE), ``role="front_desk"``
    The front desk receives whoever walks up: "on reception, stand up, greet first,
    smile". Its presence sensor (``Presence``) opens the session: a citizen arriving
    while none is open opens a reception (``SessionOpened(source="presence")``); a call,
    if the desk has a bell or the queue calls it, opens one too. Every session of a front
    desk is a reception:
    * Stand and smile are judged as after a call, from the arrival, within the desk's
      own ``stand_within_s`` and ``greet_within_s``, tagged F-RECEIVE; the summary's
      ``greeted_first`` is True when the clerk stood *and* smiled within them. Only
      posture and smile are measured: whether the clerk spoke first is not (no audio),
      so "greeted first" means stood and smiled before the limits passed.
    * The citizen has left once the sensor has not seen them for ``presence_hold_s``
      (seen again sooner, nothing happened); that ends the reception with
      ``closed_by="finish_key"`` (the contract has no word for a departure: it is the
      desk's end of service, as the key is a window's) and ``closed_ms`` the moment the
      sensor last saw them. An evaluation, the finish key, a call or the timeout end it
      as at a window.
    * No farewell is judged: the front desk's standard asks for none (两立 is the
      windows' rule). Its summary follows the end at once, with ``stood_at_farewell``
      False, ``see_off_ms`` None and the farewell smile None; no farewell events.
    * The panel reports changes of the sensor, so a citizen already at the desk when
      the agent starts opens nothing: their approach was not seen.
    Every other role ignores ``Presence``.

Away and the sign (W-AWAY-SIGN)
    * An absence starts at the first observation without a face and is *away* once it
      has lasted ``away_after_s``; shorter absences leave no trace.
    * It is a violation when, during it, the window was exposed - inside opening hours
      with the sign down - for ``away_after_s`` without a break. Exposure starts at the
      latest of: the absence, the sign coming down, opening time. So a clerk absent
      since 08:50 without the sign is in violation from 09:01 with the default 60 s.
    * Emission (two records sharing ``started_ms``): an open record
      (``ended_ms=None, violation=True``) the moment a violation is confirmed, so the
      centre learns of it even if the clerk does not come back before the power goes;
      and a closing record when the face returns, for every confirmed away, with
      ``ended_ms``, ``violation`` and ``with_sign`` (the sign was up at some point).
      The server keeps the closing record when both exist.
    * ``SignWhilePresent``: the sign up while the clerk is present (not away) inside
      opening hours. One continuous stretch is reported when it ends (sign down, the
      clerk confirmed away - the stretch then ends when the absence began - hours
      closing, or shutdown) if it lasted at least ``sign_present_flag_s``.

What could be seen (the burden of proof is on the system)
    Each observation says whether the smile and the posture could be seen
    (``Observation.smile_seen``, ``posture_seen``): a readable mouth, a found face, or
    the seat seen empty (``seat_occupied`` False: an absent clerk is seen not to stand
    or smile; no face with no seat cue is not seen). A mask, a hand,
    a turned head, backlight, a blocked lens, or a clerk at the seat whose face is lost
    is unseen, and so is a score the classifier is unsure of (between
    ``no_smile_below`` and ``smile_threshold``); before the first observation nothing
    is seen. A stand or smile that
    happened passes whatever else was unseen. One that did not is a failure only if
    the camera saw at least ``min_observed_share`` of the time the rule looked (the
    greeting's stand and smile windows, the farewell's); otherwise that verdict is *not
    observed*: ``not_observed`` on its ``StoodUp``/``Smiled`` and in the summary's
    ``not_observed`` (the verdict's field stays False and means nothing). A sit-down
    before the see-off is always seen (only an observed posture sits the clerk down).
    A front desk's ``greeted_first`` is not observed unless a part of it was seen
    failing. ``observed_share`` is the share of the session with the smile seen.
    Away needs no face with nobody seen at the seat (``Observation.seen_absent``): a
    clerk the camera cannot see (view lost, or the body seen in the seat) is not away,
    and an absence being timed ends there.

Opening hours come in as data (``Tick(in_hours=...)`` or the constructor), never read
from a clock here.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from agent.config import Role, RuleConfig
from agent.events import Draft
from agent.observation import Observation
from agent.protocol import (
    VERDICTS,
    Away,
    Clause,
    Evaluated,
    EventHeader,
    Rating,
    SessionOpened,
    SessionSummary,
    SignWhilePresent,
    Smiled,
    StoodUp,
)
from agent.rules.inputs import (
    Call,
    Evaluation,
    Finish,
    Presence,
    RuleInput,
    Shutdown,
    Sign,
    Tick,
)

ClosedBy: TypeAlias = Literal["evaluation", "finish_key", "next_call", "timeout", "shutdown"]
Source: TypeAlias = Literal["bell", "queue", "presence"]
SuspectReason: TypeAlias = Literal["no_session", "sign_up", "repeat", "already_evaluated"]
#: One step of a script: an observation (its own time) or ``(t_ms, input)``.
Step: TypeAlias = Observation | tuple[int, RuleInput]

_GREETING_STAND = (Clause.W_CALL, Clause.W_TWO_STANDS)
_GREETING_SMILE = (Clause.G_SMILE, Clause.W_CALL)
_FAREWELL_STAND = (Clause.W_FAREWELL, Clause.W_TWO_STANDS)
_FAREWELL_SMILE = (Clause.G_SMILE, Clause.W_FAREWELL)
_RECEIVE_STAND = (Clause.F_RECEIVE,)
_RECEIVE_SMILE = (Clause.G_SMILE, Clause.F_RECEIVE)
_AWAY = (Clause.W_AWAY_SIGN,)


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _flag_unseen(unseen: bool) -> dict[str, Any]:
    """A verdict event's ``not_observed``: set only when true (the wire leaves the field
    out otherwise, so a fully observed session costs no byte more than before)."""
    return {"not_observed": True} if unseen else {}


def _summary_unseen(unseen: set[str], observed_share: float | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if unseen:
        out["not_observed"] = tuple(v for v in VERDICTS if v in unseen)
    if observed_share is not None and observed_share < 1.0:
        out["observed_share"] = round(max(0.0, observed_share), 4)
    return out


def _call_fields(call: Call | None) -> dict[str, Any]:
    """The queue call's own fields, as ``SessionOpened`` and ``SessionSummary`` name them."""
    return {
        "call_id": None if call is None else call.call_id,
        "matter_code": None if call is None else call.matter_code,
        "matter_name": None if call is None else call.matter_name,
        "priority_category": None if call is None else call.priority_category,
        "case_number": None if call is None else call.case_number,
    }


@dataclass(frozen=True, slots=True)
class RulesState:
    """What the window looks like now (feeds the retained ``WindowState``).

    ``present`` is the last observation's face (raw); ``away`` is the confirmed
    absence, for a caller that wants a steadier signal than single frames.
    """

    present: bool
    standing: bool
    in_session: bool
    sign_up: bool
    away: bool
    in_hours: bool


@dataclass(slots=True)
class RuleCounters:
    """Inputs that produced no event of their own, counted for the health report."""

    suspect_presses: int = 0
    recalls: int = 0
    repeated_calls: int = 0
    stray_finish: int = 0
    clock_backwards: int = 0


_LONG_AGO = -(2**62)


@dataclass(slots=True)
class _Unseen:
    """When one thing the rules judge (the smile, or the posture) could not be seen.

    ``spans`` are the past unseen stretches ``[start, end)``; ``since`` is when the
    current one began (None: seen now). Before the first observation nothing has been
    seen, so it starts unseen.
    """

    spans: list[tuple[int, int]] = field(default_factory=list)
    since: int | None = _LONG_AGO

    def mark(self, t: int, seen: bool) -> None:
        if seen and self.since is not None:
            self.spans.append((self.since, t))
            self.since = None
        elif not seen and self.since is None:
            self.since = t

    def unseen_ms(self, start: int, end: int) -> int:
        stretches = self.spans if self.since is None else [*self.spans, (self.since, end)]
        return sum(max(0, min(end, b) - max(start, a)) for a, b in stretches)

    def unseen_at(self, t: int) -> bool:
        return (self.since is not None and self.since <= t) or any(
            a <= t < b for a, b in self.spans
        )

    def forget_before(self, t: int) -> None:
        self.spans = [(a, b) for a, b in self.spans if b > t]


@dataclass(slots=True)
class _SmileWindow:
    start_ms: int
    end_ms: int
    first_ms: int | None = None
    peak: float | None = None
    closed: bool = False

    def see(self, t_ms: int, score: float, threshold: float) -> None:
        if self.closed:
            return
        # Models can overshoot [0, 1] slightly; the wire's Score cannot.
        score = min(1.0, max(0.0, score))
        self.peak = score if self.peak is None else max(self.peak, score)
        if self.first_ms is None and score >= threshold:
            self.first_ms = t_ms


@dataclass(slots=True)
class _Session:
    id: uuid.UUID
    opened_ms: int
    source: Source
    ticket: str | None
    priority: bool
    call: dict[str, Any]  # _call_fields of what opened it
    reception: bool  # a front desk's (F-RECEIVE): no farewell, greeted_first
    greet_smile: _SmileWindow
    stand_ms: int | None = None
    ended_ms: int | None = None
    closed_by: ClosedBy | None = None
    rating: Rating | None = None
    fw_smile: _SmileWindow | None = None
    fw_stood_ms: int | None = None
    fw_done: bool = False
    fw_ok: bool = False
    see_off_ms: int | None = None
    too_broad: bool = False
    left_ms: int | None = None  # front desk: when the sensor stopped seeing the citizen
    # Verdicts the camera could not see enough of to say "did not" (VERDICTS names).
    unseen: set[str] = field(default_factory=set)

    @property
    def open(self) -> bool:
        return self.ended_ms is None


@dataclass(slots=True)
class _Deadline:
    t_ms: int
    order: int  # ties resolve in this order, so equal-time deadlines stay deterministic
    fire: Callable[[int], None] = field(compare=False)
    # A limit the clerk must meet *by* the deadline resolves after an input at the same
    # ms (that input still counts); a duration that must *last* until the deadline
    # (see-off, away, exposure) resolves before it (it did last).
    before_input: bool = False


class ServiceRules:
    """The window's conduct rules as a pure state machine.

    >>> from agent.config import RuleConfig
    >>> from agent.rules.inputs import Call
    >>> rules = ServiceRules(RuleConfig(), new_id=lambda: uuid.UUID(int=1))
    >>> [d.kind.__name__ for d in rules.feed(1_000, Call(source="bell"))]
    ['SessionOpened']

    ``role`` is the window's (``WindowConfig.role``): a ``front_desk`` runs the
    reception rules, every other role the window rules. ``in_hours`` and ``sign_up`` are
    the state at start-up. Opening hours default to open: a terminal that was never told
    the hours should report an unattended window rather than excuse it. ``new_id`` makes
    session ids (inject a counter in tests).
    """

    def __init__(
        self,
        config: RuleConfig | None = None,
        *,
        role: Role = "comprehensive",
        in_hours: bool = True,
        sign_up: bool = False,
        new_id: Callable[[], uuid.UUID] = uuid.uuid4,
    ) -> None:
        cfg = config if config is not None else RuleConfig()
        self.config = cfg
        self.role = role
        self._front_desk = role == "front_desk"
        self._new_id = new_id
        self._stand_within = _ms(cfg.stand_within_s)
        self._greet_within = _ms(cfg.greet_within_s)
        self._farewell_within = _ms(cfg.farewell_within_s)
        self._see_off = _ms(cfg.see_off_s)
        self._away_after = _ms(cfg.away_after_s)
        self._sign_flag = _ms(cfg.sign_present_flag_s)
        self._repeat = _ms(cfg.repeat_press_s)
        self._timeout = _ms(cfg.session_timeout_s)
        self._hold = _ms(cfg.presence_hold_s)
        self._min_seen = cfg.min_observed_share
        self._no_smile_below = (
            cfg.smile_threshold if cfg.no_smile_below is None else cfg.no_smile_below
        )
        self.counters = RuleCounters()

        self._now: int | None = None
        self._out: list[Draft] = []
        self._in_hours = in_hours
        self._sign_up = sign_up
        self._face = False
        self._standing = False
        self._smile: float | None = None
        self._smile_unseen = _Unseen()
        self._posture_unseen = _Unseen()
        self._session: _Session | None = None
        self._last_eval_ms: int | None = None
        # absence / away
        self._absent_since: int | None = None
        self._away_confirmed = False
        self._away_sign_seen = False
        self._away_violation = False
        self._exposed_since: int | None = None
        # sign shown while present
        self._sign_seg_start: int | None = None

    # ------------------------------------------------------------------ public API

    def feed(self, t_ms: int, item: RuleInput) -> list[Draft]:
        """Apply one input at ``t_ms``; return the drafts it (and elapsed deadlines) caused."""
        if isinstance(item, Observation) and item.t_ms != t_ms:
            raise ValueError(f"observation time {item.t_ms} differs from step time {t_ms}")
        if self._now is not None and t_ms < self._now:
            self.counters.clock_backwards += 1
            t_ms = self._now
        self._out = []
        self._advance(t_ms, inclusive=False)
        self._now = t_ms
        self._apply(t_ms, item)
        self._advance(t_ms, inclusive=True)
        out, self._out = self._out, []
        return out

    def observe(self, obs: Observation) -> list[Draft]:
        """Feed one perception observation at its own time."""
        return self.feed(obs.t_ms, obs)

    def tick(self, t_ms: int, in_hours: bool | None = None) -> list[Draft]:
        """Let time pass (and optionally update the opening-hours state)."""
        return self.feed(t_ms, Tick(in_hours=in_hours))

    def run(self, script: Iterable[Step]) -> list[Draft]:
        """Feed every step in order and return all drafts, in emission order."""
        out: list[Draft] = []
        for step in script:
            if isinstance(step, Observation):
                out.extend(self.observe(step))
            else:
                t_ms, item = step
                out.extend(self.feed(t_ms, item))
        return out

    def state(self) -> RulesState:
        return RulesState(
            present=self._face,
            standing=self._standing,
            in_session=self._session is not None and self._session.open,
            sign_up=self._sign_up,
            away=self._away_confirmed,
            in_hours=self._in_hours,
        )

    @property
    def session_id(self) -> uuid.UUID | None:
        """The session open or awaiting its farewell, if any."""
        return self._session.id if self._session is not None else None

    # ------------------------------------------------------------------ dispatch

    def _apply(self, t: int, item: RuleInput) -> None:
        if isinstance(item, Observation):
            self._on_observation(t, item)
        elif isinstance(item, Call):
            self._on_call(t, item)
        elif isinstance(item, Presence):
            self._on_presence(t, item.here)
        elif isinstance(item, Finish):
            if self._session is not None and self._session.open:
                self._end_session(t, "finish_key")
            else:
                self.counters.stray_finish += 1
        elif isinstance(item, Evaluation):
            self._on_evaluation(t, item.rating)
        elif isinstance(item, Sign):
            self._on_sign(t, item.up)
        elif isinstance(item, Tick):
            if item.in_hours is not None and item.in_hours != self._in_hours:
                self._on_hours(t, item.in_hours)
        elif isinstance(item, Shutdown):
            self._on_shutdown(t)
        else:  # pragma: no cover - guarded by the type checker
            raise TypeError(f"not a rule input: {item!r}")
        self._maybe_summarise(t)

    def _emit(
        self,
        kind: type[EventHeader],
        ts_ms: int,
        clauses: tuple[Clause, ...],
        session_id: uuid.UUID | None = None,
        **fields: Any,
    ) -> None:
        self._out.append(Draft(kind, ts_ms, clauses, session_id, fields))

    # ------------------------------------------------------------------ deadlines

    def _deadlines(self) -> Iterable[_Deadline]:
        s = self._session
        if s is not None:
            if s.open:
                if not s.greet_smile.closed:
                    yield _Deadline(s.greet_smile.end_ms, 0, self._close_greet_smile)
                yield _Deadline(s.opened_ms + self._timeout, 1, self._timeout_session)
                if s.left_ms is not None:
                    yield _Deadline(s.left_ms + self._hold, 7, self._citizen_left, True)
            else:
                assert s.ended_ms is not None
                if not s.fw_done and s.fw_stood_ms is None:
                    yield _Deadline(s.ended_ms + self._farewell_within, 2, self._farewell_missed)
                if not s.fw_done and s.fw_stood_ms is not None:
                    yield _Deadline(s.fw_stood_ms + self._see_off, 3, self._farewell_seen_off, True)
                if s.fw_smile is not None and not s.fw_smile.closed:
                    yield _Deadline(s.fw_smile.end_ms, 4, self._close_farewell_smile)
        if self._absent_since is not None and not self._away_confirmed:
            yield _Deadline(self._absent_since + self._away_after, 5, self._confirm_away, True)
        if self._exposed_since is not None:
            yield _Deadline(
                self._exposed_since + self._away_after, 6, self._confirm_violation, True
            )

    def _advance(self, t: int, *, inclusive: bool) -> None:
        """Fire every deadline up to ``t`` in time order (``inclusive``: after the input)."""
        while True:
            due = min(
                (
                    d
                    for d in self._deadlines()
                    if d.t_ms < t or (d.t_ms == t and (inclusive or d.before_input))
                ),
                key=lambda d: (d.t_ms, d.order),
                default=None,
            )
            if due is None:
                return
            self._now = due.t_ms
            due.fire(due.t_ms)
            self._maybe_summarise(due.t_ms)

    # ------------------------------------------------------------------ observability

    def _saw_enough(self, unseen: _Unseen, start: int, end: int) -> bool:
        """Whether the camera saw enough of ``[start, end]`` to say "did not"."""
        if end <= start:
            return not unseen.unseen_at(start)
        return unseen.unseen_ms(start, end) <= (1.0 - self._min_seen) * (end - start)

    def _judge(self, verdict: str, ok: bool, unseen: _Unseen, start: int, end: int) -> bool:
        """Record ``verdict`` as not observed when it failed unseen; True if it was."""
        s = self._session
        assert s is not None
        if ok or self._saw_enough(unseen, start, end):
            return False
        s.unseen.add(verdict)
        return True

    # ------------------------------------------------------------------ sessions

    def _on_call(self, t: int, call: Call) -> None:
        s = self._session
        if s is not None and s.open:
            same_ticket = call.ticket is not None and call.ticket == s.ticket
            same_call = call.call_id is not None and call.call_id == s.call["call_id"]
            if same_ticket or same_call:
                self.counters.recalls += 1
                return
            if (
                call.ticket is None
                and call.call_id is None
                and call.source == s.source
                and t - s.opened_ms < self._repeat
            ):
                self.counters.repeated_calls += 1
                return
            self._end_session(t, "next_call")
        self._open(t, call.source, call.ticket, call.priority, _call_fields(call))

    def _on_presence(self, t: int, here: bool) -> None:
        if not self._front_desk:
            return  # a window's sessions open on calls alone
        s = self._session
        if here:
            if s is not None and s.open:
                s.left_ms = None  # still there (a sensor's quiet spell), or back in time
            else:
                self._open(t, "presence", None, False, _call_fields(None))
        elif s is not None and s.open and s.left_ms is None:
            s.left_ms = t

    def _citizen_left(self, t: int) -> None:
        s = self._session
        assert s is not None and s.left_ms is not None
        self._end_session(t, "finish_key", ended_ms=s.left_ms)

    def _open(
        self, t: int, source: Source, ticket: str | None, priority: bool, call: dict[str, Any]
    ) -> None:
        if self._session is not None:  # awaiting its farewell: the next citizen is here
            self._force_farewell(t)
            self._maybe_summarise(t)
        self._smile_unseen.forget_before(t)
        self._posture_unseen.forget_before(t)
        s = _Session(
            id=self._new_id(),
            opened_ms=t,
            source=source,
            ticket=ticket,
            priority=priority,
            call=call,
            reception=self._front_desk,
            greet_smile=_SmileWindow(t, t + self._greet_within),
        )
        self._session = s
        clauses: tuple[Clause, ...] = (Clause.F_RECEIVE,) if s.reception else (Clause.W_CALL,)
        if priority:
            clauses += (Clause.H_PRIORITY,)
        self._emit(
            SessionOpened, t, clauses, s.id,
            source=source, ticket=ticket, priority=priority, **call,
        )  # fmt: skip
        # Posture and expression at the call count as seen at the call.
        if self._standing:
            self._greeting_stood(t)
        if self._smile is not None:
            s.greet_smile.see(t, self._smile, self.config.smile_threshold)

    def _greeting_stood(self, t: int) -> None:
        s = self._session
        assert s is not None and s.stand_ms is None
        s.stand_ms = t
        after = t - s.opened_ms
        on_time = after <= self._stand_within
        # A late stand after a limit the camera could not watch: maybe stood unseen.
        unseen = self._judge(
            "stood_on_call", on_time, self._posture_unseen,
            s.opened_ms, s.opened_ms + self._stand_within,
        )  # fmt: skip
        self._emit(
            StoodUp, t, _RECEIVE_STAND if s.reception else _GREETING_STAND, s.id,
            phase="greeting", on_time=on_time, after_ms=after, **_flag_unseen(unseen),
        )  # fmt: skip

    def _close_smile(self, t: int, window: _SmileWindow, phase: str) -> None:
        s = self._session
        assert s is not None
        window.closed = True
        too_broad = window.peak is not None and window.peak > self.config.too_broad_threshold
        s.too_broad = s.too_broad or too_broad
        verdict = "smiled_at_greeting" if phase == "greeting" else "smiled_at_farewell"
        smiled = window.first_ms is not None
        unseen = self._judge(verdict, smiled, self._smile_unseen, window.start_ms, t)
        if phase == "greeting":
            clauses = _RECEIVE_SMILE if s.reception else _GREETING_SMILE
        else:
            clauses = _FAREWELL_SMILE
        self._emit(
            Smiled, t, clauses, s.id,
            phase=phase,
            on_time=smiled,
            after_ms=None if window.first_ms is None else window.first_ms - window.start_ms,
            score=window.peak,
            too_broad=too_broad,
            **_flag_unseen(unseen),
        )  # fmt: skip

    def _close_greet_smile(self, t: int) -> None:
        assert self._session is not None
        self._close_smile(t, self._session.greet_smile, "greeting")

    def _close_farewell_smile(self, t: int) -> None:
        assert self._session is not None and self._session.fw_smile is not None
        self._close_smile(t, self._session.fw_smile, "farewell")

    def _timeout_session(self, t: int) -> None:
        self._end_session(t, "timeout")

    def _end_session(self, t: int, closed_by: ClosedBy, ended_ms: int | None = None) -> None:
        """End the open session at ``t`` (``ended_ms``: when it really ended, if earlier)."""
        s = self._session
        assert s is not None and s.open
        if not s.greet_smile.closed:
            self._close_greet_smile(t)
        if s.stand_ms is None:
            unseen = self._judge(
                "stood_on_call", False, self._posture_unseen,
                s.opened_ms, min(t, s.opened_ms + self._stand_within),
            )  # fmt: skip
            self._emit(
                StoodUp, t, _RECEIVE_STAND if s.reception else _GREETING_STAND, s.id,
                phase="greeting", on_time=False, after_ms=None, **_flag_unseen(unseen),
            )  # fmt: skip
        s.ended_ms = t if ended_ms is None else ended_ms
        s.closed_by = closed_by
        if s.reception:
            s.fw_done = True  # the front desk's standard asks for no see-off
            return
        s.fw_smile = _SmileWindow(t, t + self._farewell_within)
        if self._smile is not None:
            s.fw_smile.see(t, self._smile, self.config.smile_threshold)
        if self._standing:
            s.fw_stood_ms = t

    def _resolve_farewell_stand(
        self, t: int, ok: bool, see_off_ms: int | None, *, seen_sitting: bool = False
    ) -> None:
        s = self._session
        assert s is not None and s.ended_ms is not None and not s.fw_done
        s.fw_done = True
        s.fw_ok = ok
        s.see_off_ms = see_off_ms
        # Sitting down too soon is seen (only an observed posture sits the clerk down);
        # never standing is a failure only if the camera watched the farewell.
        unseen = not seen_sitting and self._judge(
            "stood_at_farewell", ok, self._posture_unseen, s.ended_ms, t
        )
        self._emit(
            StoodUp, t, _FAREWELL_STAND, s.id,
            phase="farewell",
            on_time=ok,
            after_ms=None if s.fw_stood_ms is None else s.fw_stood_ms - s.ended_ms,
            **_flag_unseen(unseen),
        )  # fmt: skip

    def _farewell_missed(self, t: int) -> None:
        self._resolve_farewell_stand(t, ok=False, see_off_ms=None)

    def _farewell_seen_off(self, t: int) -> None:
        assert self._session is not None and self._session.fw_stood_ms is not None
        self._resolve_farewell_stand(t, ok=True, see_off_ms=t - self._session.fw_stood_ms)

    def _force_farewell(self, t: int) -> None:
        s = self._session
        assert s is not None and not s.open
        if not s.fw_done:
            if s.fw_stood_ms is not None:
                # Still standing (sitting down would have resolved it): never sat down
                # while the citizen was leaving.
                self._resolve_farewell_stand(t, ok=True, see_off_ms=t - s.fw_stood_ms)
            else:
                self._resolve_farewell_stand(t, ok=False, see_off_ms=None)
        if s.fw_smile is not None and not s.fw_smile.closed:
            self._close_farewell_smile(t)

    def _maybe_summarise(self, t: int) -> None:
        s = self._session
        if s is None or s.open or not s.fw_done:
            return
        fw = s.fw_smile
        if fw is not None and not fw.closed:
            return
        assert s.ended_ms is not None and s.closed_by is not None
        clauses: tuple[Clause, ...]
        if s.reception:
            clauses = (Clause.F_RECEIVE, Clause.G_SMILE)
        else:
            clauses = (
                Clause.W_CALL, Clause.W_TWO_STANDS, Clause.G_SMILE, Clause.W_FAREWELL,
                Clause.W_EVALUATE,
            )  # fmt: skip
        if s.priority:
            clauses += (Clause.H_PRIORITY,)
        g = s.greet_smile
        stand_after = None if s.stand_ms is None else s.stand_ms - s.opened_ms
        stood = stand_after is not None and stand_after <= self._stand_within
        smiled = g.first_ms is not None
        greeted_first: bool | None = None
        if s.reception:
            greeted_first = stood and smiled
            # Not greeted first only if a part of it was seen failing.
            seen_failing = (not stood and "stood_on_call" not in s.unseen) or (
                not smiled and "smiled_at_greeting" not in s.unseen
            )
            if not greeted_first and not seen_failing:
                s.unseen.add("greeted_first")
        lasted = s.ended_ms - s.opened_ms
        observed_share = (
            None
            if lasted <= 0
            else 1.0 - self._smile_unseen.unseen_ms(s.opened_ms, s.ended_ms) / lasted
        )
        self._emit(
            SessionSummary, t, clauses, s.id,
            opened_ms=s.opened_ms,
            closed_ms=s.ended_ms,
            closed_by=s.closed_by,
            stood_on_call=stood,
            stand_after_ms=stand_after,
            smiled_at_greeting=smiled,
            smile_after_ms=None if g.first_ms is None else g.first_ms - g.start_ms,
            smile_peak=g.peak,
            smile_too_broad=s.too_broad,
            stood_at_farewell=s.fw_ok,
            see_off_ms=s.see_off_ms,
            rating=s.rating,
            priority=s.priority,
            source=s.source,
            ticket=s.ticket,
            **s.call,
            smiled_at_farewell=None if fw is None else fw.first_ms is not None,
            farewell_smile_after_ms=(
                None if fw is None or fw.first_ms is None else fw.first_ms - fw.start_ms
            ),
            greeted_first=greeted_first,
            **_summary_unseen(s.unseen, observed_share),
        )  # fmt: skip
        self._session = None

    # ------------------------------------------------------------------ evaluation

    def _on_evaluation(self, t: int, rating: Rating) -> None:
        s = self._session
        reason: SuspectReason | None = None
        if self._last_eval_ms is not None and t - self._last_eval_ms < self._repeat:
            reason = "repeat"
        elif s is None:
            reason = "no_session"
        elif self._sign_up:
            reason = "sign_up"
        elif s.rating is not None:
            reason = "already_evaluated"
        self._last_eval_ms = t
        if reason is not None:
            self.counters.suspect_presses += 1
        self._emit(
            Evaluated, t, (Clause.W_EVALUATE,), None if s is None else s.id,
            rating=rating, suspect=reason is not None, suspect_reason=reason,
        )  # fmt: skip
        if reason is None and s is not None:
            s.rating = rating
            if s.open:
                self._end_session(t, "evaluation")

    # ------------------------------------------------------------------ perception

    def _on_observation(self, t: int, obs: Observation) -> None:
        unsure = (
            obs.face_present
            and obs.smile is not None
            and self._no_smile_below <= obs.smile < self.config.smile_threshold
        )
        self._smile_unseen.mark(t, obs.smile_seen and not unsure)
        self._posture_unseen.mark(t, obs.posture_seen)
        # Away needs no face and nobody seen at the seat: a clerk the camera cannot see
        # (view blocked, or the body in the seat) is not away; an absence ends there.
        if obs.seen_absent:
            self._face_lost(t)
        else:
            self._face_returned(t)
        self._face = obs.face_present or obs.seat_occupied is True
        # Without a face, posture is unknown and the last known posture holds: the
        # face detector drops frames exactly when the clerk turns to hand documents
        # over, and a dropped frame must not read as sitting down mid see-off. Only an
        # observed posture changes it (and a confirmed away clears it).
        if obs.face_present and obs.standing is not None:
            standing = obs.standing
            if standing and not self._standing:
                self._stood_up(t)
            elif not standing and self._standing:
                self._sat_down(t)
            self._standing = standing
        # An unknown smile is no smile: it can never pass G-SMILE.
        smile = obs.smile if obs.face_present else None
        self._smile = smile
        s = self._session
        if smile is not None and s is not None:
            threshold = self.config.smile_threshold
            if s.open:
                s.greet_smile.see(t, smile, threshold)
            elif s.fw_smile is not None:
                s.fw_smile.see(t, smile, threshold)

    def _stood_up(self, t: int) -> None:
        s = self._session
        if s is None:
            return
        if s.open:
            if s.stand_ms is None:
                self._greeting_stood(t)
        elif not s.fw_done and s.fw_stood_ms is None:
            s.fw_stood_ms = t

    def _sat_down(self, t: int) -> None:
        s = self._session
        if s is not None and not s.open and not s.fw_done and s.fw_stood_ms is not None:
            self._resolve_farewell_stand(
                t, ok=False, see_off_ms=t - s.fw_stood_ms, seen_sitting=True
            )

    # ------------------------------------------------------------------ away and sign

    def _face_lost(self, t: int) -> None:
        if self._absent_since is not None:
            return
        self._absent_since = t
        self._away_confirmed = False
        self._away_violation = False
        self._away_sign_seen = self._sign_up
        if self._in_hours and not self._sign_up:
            self._exposed_since = t

    def _face_returned(self, t: int) -> None:
        started = self._absent_since
        if started is None:
            return
        if self._away_confirmed:
            self._emit(
                Away, t, _AWAY,
                started_ms=started, ended_ms=t,
                with_sign=self._away_sign_seen, violation=self._away_violation,
            )  # fmt: skip
            if self._sign_up and self._in_hours:
                self._sign_seg_start = t
        self._absent_since = None
        self._exposed_since = None
        self._away_confirmed = False
        self._away_violation = False

    def _confirm_away(self, t: int) -> None:
        assert self._absent_since is not None
        self._away_confirmed = True
        self._standing = False  # gone for a minute: the last posture means nothing now
        # The clerk really left when the absence began, not when we became sure.
        self._end_sign_segment(t, self._absent_since)

    def _confirm_violation(self, t: int) -> None:
        assert self._absent_since is not None
        self._away_violation = True
        self._exposed_since = None
        self._emit(
            Away, t, _AWAY,
            started_ms=self._absent_since, ended_ms=None,
            with_sign=self._away_sign_seen, violation=True,
        )  # fmt: skip

    def _on_sign(self, t: int, up: bool) -> None:
        if up == self._sign_up:
            return
        self._sign_up = up
        if up:
            if self._absent_since is not None:
                self._away_sign_seen = True
            self._exposed_since = None
            if not self._away_confirmed and self._in_hours:
                self._sign_seg_start = t
        else:
            self._end_sign_segment(t, t)
            self._maybe_expose(t)

    def _on_hours(self, t: int, in_hours: bool) -> None:
        self._in_hours = in_hours
        if in_hours:
            self._maybe_expose(t)
            if self._sign_up and not self._away_confirmed:
                self._sign_seg_start = t
        else:
            self._exposed_since = None
            self._end_sign_segment(t, t)

    def _maybe_expose(self, t: int) -> None:
        if (
            self._absent_since is not None
            and not self._away_violation
            and self._in_hours
            and not self._sign_up
        ):
            self._exposed_since = t

    def _end_sign_segment(self, now: int, end_ms: int) -> None:
        start = self._sign_seg_start
        if start is None:
            return
        self._sign_seg_start = None
        duration = max(0, end_ms - start)
        if duration >= self._sign_flag:
            self._emit(SignWhilePresent, now, _AWAY, started_ms=start, duration_ms=duration)

    def _on_shutdown(self, t: int) -> None:
        if self._session is not None and self._session.open:
            self._end_session(t, "shutdown")
        if self._session is not None:
            self._force_farewell(t)
        self._end_sign_segment(t, t)


def run(
    script: Iterable[Step],
    config: RuleConfig | None = None,
    *,
    role: Role = "comprehensive",
    in_hours: bool = True,
    sign_up: bool = False,
    new_id: Callable[[], uuid.UUID] = uuid.uuid4,
) -> list[Draft]:
    """Run a script through fresh rules and return every draft (handy in tests)."""
    rules = ServiceRules(config, role=role, in_hours=in_hours, sign_up=sign_up, new_id=new_id)
    return rules.run(script)
