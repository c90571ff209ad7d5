"""Alert push: which raised alerts reach which group robot or mailbox, and when.

Pure: the alerts just raised, each target's rules, what that target has had lately and
the time in; the messages to enqueue now, and what each alert became, out. The store
keeps the records (``server/outbound/alerts.py``) and the outbound queue delivers the
messages (``server/outbound/queue.py``). Per target, in this order:

1. **Routing**: the target takes the alert's unit (its site, or its district; a target
   naming neither takes every unit) and its kind.
2. **De-duplication**: an alert id the target already holds in any state is skipped,
   so a replayed batch or a second replica never sends it twice; alerts identical in
   what a person reads (one window, one kind) raised together travel as one message
   ("×3"), and one identical to an alert sent within ``repeat_ms`` is folded.
3. **Quiet hours** (in the target's time zone, e.g. 22:00-07:00): an alert is held, to
   go out in one summary after, or dropped, per the target's ``quiet.mode``.
4. **Rate limit**: at most ``max_messages`` per ``per_ms`` (a sliding window). The
   last slot of a window is kept for a summary: once a target has had
   ``max_messages - 1``, further alerts are folded, and the folded ones go out as
   one summary counting them when a slot is free and the first of them has waited
   ``fold_ms`` (so a storm gathers before it is counted). Hence no ``per_ms`` window
   ever holds more than ``max_messages`` messages, however many alerts are raised.

A storm of 200 alerts at a target allowing 5 per 10 minutes gives 4 messages and, a
minute later, one summary of the other 196::

    >>> rules = PushRules("ops", max_messages=5)
    >>> storm = [PushAlert(f"a{i}", "qingpu", f"w{i:03}", "offline", 0) for i in range(200)]
    >>> first = plan(0, storm, [rules], {})
    >>> [m.kind for m in first.messages]
    ['alert', 'alert', 'alert', 'alert']
    >>> state = TargetState.after(first, "ops")
    >>> later = plan(60_000, [], [rules], {"ops": state})
    >>> [(m.kind, len(m.alerts)) for m in later.messages]
    [('summary', 196)]
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Literal, TypeAlias
from zoneinfo import ZoneInfo

#: The alert kinds pushed when a target says only "alert" (issue 18: bad reviews, away
#: without the sign, terminals offline or silent, camera and terminal faults, cameras
#: that cannot see the clerk, overdue cases). Conduct misses stay on the page.
PUSH_KINDS: Final = frozenset(
    {
        "bad_review",
        "away_without_sign",
        "offline",
        "terminal_silent",
        "fault",
        "not_observed",
        "case_overdue",
    }
)
#: A queue key is at most 64 characters (``outbound_deliveries.key``).
KEY_MAX: Final = 64

Fingerprint: TypeAlias = tuple[str, str, str]  #: (site, window, kind): what a person reads
State: TypeAlias = Literal["sent", "folded", "held", "dropped", "summarised"]
Waits: TypeAlias = Literal["folded", "held"]


@dataclass(frozen=True)
class QuietHours:
    """A daily span in local time, ``start`` to ``end`` minutes after midnight; a start
    after the end spans midnight (22:00-07:00)."""

    start_min: int
    end_min: int
    mode: Literal["hold", "drop"] = "hold"

    @classmethod
    def parse(cls, span: str, mode: Literal["hold", "drop"] = "hold") -> QuietHours:
        """``"22:00-07:00"``; a ``ValueError`` says what is wrong."""
        try:
            a, b = span.split("-")
            start, end = (_minutes(x) for x in (a, b))
        except ValueError:
            raise ValueError(f"quiet hours {span!r}: expected HH:MM-HH:MM") from None
        if start == end:
            raise ValueError(f"quiet hours {span!r}: start and end are the same")
        return cls(start, end, mode)

    def covers(self, at_ms: int, tz: str) -> bool:
        local = datetime.fromtimestamp(at_ms / 1000, ZoneInfo(tz))
        m = local.hour * 60 + local.minute
        if self.start_min < self.end_min:
            return self.start_min <= m < self.end_min
        return m >= self.start_min or m < self.end_min


def _minutes(hhmm: str) -> int:
    h, m = hhmm.strip().split(":")
    if not (h.isdigit() and m.isdigit() and len(m) == 2 and int(h) < 24 and int(m) < 60):
        raise ValueError(hhmm)
    return int(h) * 60 + int(m)


@dataclass(frozen=True)
class PushRules:
    """What one target takes and how often (from its ``options`` in the outbound file)."""

    target: str
    sites: frozenset[str] = frozenset()
    districts: frozenset[str] = frozenset()
    kinds: frozenset[str] = PUSH_KINDS
    timezone: str = "Asia/Shanghai"
    quiet: QuietHours | None = None
    max_messages: int = 5
    per_ms: int = 600_000
    repeat_ms: int = 600_000
    fold_ms: int = 60_000

    def __post_init__(self) -> None:
        if self.max_messages < 2:
            # One slot is always kept for the summary; a target needs another to speak.
            raise ValueError(f"{self.target}: max_messages must be at least 2")

    def serves(self, site: str, district: str | None) -> bool:
        if not self.sites and not self.districts:
            return True
        return site in self.sites or (district is not None and district in self.districts)


@dataclass(frozen=True)
class PushAlert:
    """An alert as a message tells it: never a face or an image, the clerk by staff id."""

    alert_id: str
    site: str
    window: str
    kind: str
    ts_ms: int
    clerk_id: str | None = None
    detail: Mapping[str, object] = field(default_factory=dict, compare=False, hash=False)

    @property
    def fingerprint(self) -> Fingerprint:
        return (self.site, self.window, self.kind)


@dataclass(frozen=True)
class Waiting:
    """An alert a target holds for a later summary, since when, and why."""

    alert: PushAlert
    since_ms: int
    state: Waits


@dataclass(frozen=True)
class TargetState:
    """What the store says one target has had: ``sent_ms`` the time of each message
    within the rate window, ``last_sent`` when an identical alert last went out on its
    own, ``known`` which of the alerts at hand it already holds (any state), and
    ``waiting`` what it holds for a summary."""

    sent_ms: tuple[int, ...] = ()
    last_sent: Mapping[Fingerprint, int] = field(default_factory=dict)
    known: frozenset[str] = frozenset()
    waiting: tuple[Waiting, ...] = ()

    @classmethod
    def after(cls, done: Plan, target: str, before: TargetState | None = None) -> TargetState:
        """The state a plan leaves (what the store would read back): tests and
        simulations chain ``plan`` calls with it."""
        prev = before or cls()
        mine = [r for r in done.records if r.target == target]
        sent = [m.at_ms for m in done.messages if m.target == target]
        last = dict(prev.last_sent)
        for m in done.messages:
            if m.target == target and m.kind == "alert":
                last[m.alerts[0].fingerprint] = m.at_ms
        gone = {r.alert.alert_id for r in mine if r.state == "summarised"}
        waiting = [w for w in prev.waiting if w.alert.alert_id not in gone]
        waiting += [
            Waiting(r.alert, r.at_ms, r.state)
            for r in mine
            if r.state == "folded" or r.state == "held"
        ]
        return cls(
            sent_ms=(*prev.sent_ms, *sent),
            last_sent=last,
            known=prev.known | {r.alert.alert_id for r in mine},
            waiting=tuple(waiting),
        )


@dataclass(frozen=True)
class Message:
    """One message to one target: an alert (with the identical ones raised with it), or
    a summary of what was folded or held."""

    target: str
    key: str
    kind: Literal["alert", "summary"]
    at_ms: int
    alerts: tuple[PushAlert, ...]
    #: Summary only: "quiet" when it carries alerts held through quiet hours.
    reason: Literal["alert", "storm", "quiet"] = "alert"

    def counts(self) -> dict[str, int]:
        """Alerts per kind, most first (then by name)."""
        c: dict[str, int] = {}
        for a in self.alerts:
            c[a.kind] = c.get(a.kind, 0) + 1
        return dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))


@dataclass(frozen=True)
class Record:
    """What an alert became at a target; ``key`` names the message that carried it."""

    target: str
    alert: PushAlert
    state: State
    at_ms: int
    key: str | None = None


@dataclass(frozen=True)
class Plan:
    messages: tuple[Message, ...] = ()
    records: tuple[Record, ...] = ()


def alert_key(alert_id: str) -> str:
    """The queue key of an alert's own message: ``alert:<id>`` (hashed if too long)."""
    key = f"alert:{alert_id}"
    if len(key) <= KEY_MAX:
        return key
    return "alert:" + hashlib.sha256(alert_id.encode()).hexdigest()[:40]


def summary_key(alert_ids: Iterable[str]) -> str:
    """One summary, one key: a digest of the alert ids it counts (any order)."""
    digest = hashlib.sha256("\n".join(sorted(alert_ids)).encode()).hexdigest()
    return f"alert-summary:{digest[:40]}"


def plan(
    now_ms: int,
    alerts: Sequence[PushAlert],
    rules: Sequence[PushRules],
    states: Mapping[str, TargetState],
    district_of: Mapping[str, str] | None = None,
) -> Plan:
    """What to send at ``now_ms``: the new ``alerts`` routed to each target in ``rules``,
    and each target's waiting alerts summarised when their time has come (call it with
    no alerts, e.g. every minute, for those)."""
    districts = district_of or {}
    messages: list[Message] = []
    records: list[Record] = []
    for r in rules:
        mine = [a for a in alerts if a.kind in r.kinds and r.serves(a.site, districts.get(a.site))]
        m, rec = _plan_target(now_ms, mine, r, states.get(r.target, TargetState()))
        messages += m
        records += rec
    return Plan(tuple(messages), tuple(records))


def _plan_target(
    now_ms: int, alerts: Sequence[PushAlert], r: PushRules, st: TargetState
) -> tuple[list[Message], list[Record]]:
    seen = set(st.known)
    fresh: list[PushAlert] = []
    for a in sorted(alerts, key=lambda a: (a.ts_ms, a.alert_id)):
        if a.alert_id not in seen:
            seen.add(a.alert_id)
            fresh.append(a)
    if r.quiet is not None and r.quiet.covers(now_ms, r.timezone):
        state: State = "dropped" if r.quiet.mode == "drop" else "held"
        return [], [Record(r.target, a, state, now_ms) for a in fresh]

    messages: list[Message] = []
    records: list[Record] = []
    free = r.max_messages - sum(1 for t in st.sent_ms if t > now_ms - r.per_ms)
    waiting = list(st.waiting)
    groups: dict[Fingerprint, list[PushAlert]] = {}
    for a in fresh:
        groups.setdefault(a.fingerprint, []).append(a)
    for fp, group in groups.items():
        repeat = st.last_sent.get(fp, -r.repeat_ms - 1) > now_ms - r.repeat_ms
        if free > 1 and not waiting and not repeat:
            key = alert_key(group[0].alert_id)
            messages.append(Message(r.target, key, "alert", now_ms, tuple(group)))
            records += [Record(r.target, a, "sent", now_ms, key) for a in group]
            free -= 1
        else:
            records += [Record(r.target, a, "folded", now_ms) for a in group]
            waiting += [Waiting(a, now_ms, "folded") for a in group]
    if waiting and free >= 1 and min(w.since_ms for w in waiting) <= now_ms - r.fold_ms:
        held = [w.alert for w in waiting]
        key = summary_key(a.alert_id for a in held)
        reason: Literal["storm", "quiet"] = (
            "quiet" if any(w.state == "held" for w in waiting) else "storm"
        )
        ordered = tuple(sorted(held, key=lambda a: (a.ts_ms, a.alert_id)))
        messages.append(Message(r.target, key, "summary", now_ms, ordered, reason))
        # The folded alerts of this very call are recorded once, as summarised.
        now_folded = {id(x) for x in records if x.state == "folded"}
        records = [x for x in records if id(x) not in now_folded]
        records += [Record(r.target, a, "summarised", now_ms, key) for a in ordered]
    return messages, records
