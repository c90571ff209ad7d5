"""What the clock causes: bad-review cases gone overdue, terminals gone silent, and
windows whose camera cannot see the clerk.

``due(now_ms, cases, terminals)`` is pure: the time and plain rows in, the alerts that
are due at that time out. Every alert's id and content follow from the rows alone,
never from ``now_ms``, so a sweep that runs twice, late, or on two replicas at once
raises each alert once (the store skips ids it holds).

>>> due(2_000, [OpenCase("c1", "qingpu", "w01", due_ms=1_000)], [])[0]["alert_id"]
'overdue-c1'

* A case is overdue once ``now_ms`` is past its ``due_ms`` while it is still open,
  never before: a case inside its 15 working days is not overdue. The measures count
  it so (``due_ms < now``, ``now`` the time asked for, or the wall clock, and at most
  the period's end). The alert is stamped at ``due_ms``. ``due_ms`` comes from
  ``server.policy.events.case_due`` (official working days, ``server.workdays``).
* A terminal is silent when it is online and nothing came from it (an event, a state,
  a health report, its birth message) for more than ``silent_after_ms``. The alert is
  stamped when that limit passed, and keyed by the device and the last time it was
  heard: it falls silent again only after it has spoken again.
* A window's camera is badly placed or lit when, of its sessions opened in the last
  ``lookback_ms`` (a day), at least ``min_sessions`` (10) there were and at least
  ``share`` (30 %) had a verdict *not observed* (contract version 3): the terminal could
  not see the clerk's face, mouth or posture. Those verdicts are no violations, so the
  problem is the view, and it is the fleet's to fix (``not_observed``). The alert is
  stamped at ``now_ms`` and keyed by the window and the ``lookback_ms`` period of the
  UTC clock it was found in, and it is not raised for a window that had one within
  ``lookback_ms`` (``recent``): one a day at most while the view stays bad, none once
  it is fixed. Its detail is the count when it was first raised.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Final

from server.policy.rows import AlertRow

#: A terminal reports its health every minute; five missed reports is silence.
SILENT_AFTER_MS: Final = 5 * 60_000
# Site and window slugs hold dashes and run to 32 characters each, so a readable
# "silent-<site>-<window>-<ms>" could collide or overflow the 64-character id.
_SILENT_IDS: Final = uuid.UUID("6f1c8a52-3d0e-4b7a-9c45-2e8d1f0a7b93")


@dataclass(frozen=True, slots=True)
class OpenCase:
    """A bad-review case as the clock needs it."""

    case_id: str
    site: str
    window: str
    due_ms: int
    status: str = "open"
    clerk_id: str | None = None
    rating: str | None = None


@dataclass(frozen=True, slots=True)
class Terminal:
    """A window terminal as the clock needs it: whether it is online and when it was
    last heard from (``last_seen_ms``: events, state, health; ``availability_ms``: its
    online/offline message)."""

    site: str
    window: str
    online: bool
    last_seen_ms: int | None = None
    availability_ms: int | None = None

    @property
    def heard_ms(self) -> int | None:
        """The last time anything came from it (a terminal back from an outage is heard
        when it says it is online, before its old events catch up)."""
        times = [t for t in (self.last_seen_ms, self.availability_ms) if t is not None]
        return max(times) if times else None


@dataclass(frozen=True, slots=True)
class NotObservedLimits:
    """When a window's share of sessions not observed raises an alert (see above)."""

    share: float = 0.30
    min_sessions: int = 10
    lookback_ms: int = 86_400_000

    def __post_init__(self) -> None:
        if not 0 < self.share <= 1 or self.min_sessions < 1 or self.lookback_ms < 60_000:
            raise ValueError(f"not-observed alert limits out of range: {self}")


@dataclass(frozen=True, slots=True)
class WindowView:
    """A window's sessions over the look-back, and those with a verdict not observed."""

    site: str
    window: str
    sessions: int
    not_observed: int


def due(
    now_ms: int,
    cases: Iterable[OpenCase],
    terminals: Iterable[Terminal],
    *,
    silent_after_ms: int = SILENT_AFTER_MS,
    views: Iterable[WindowView] = (),
    recent: Collection[tuple[str, str]] = (),
    limits: NotObservedLimits | None = None,
) -> list[AlertRow]:
    """The alerts due at ``now_ms``: overdue cases first, then silent terminals, then
    windows not seeing their clerk (``views``; ``recent``: the windows alerted on within
    the look-back)."""
    return (
        overdue_cases(now_ms, cases)
        + silent_terminals(now_ms, terminals, silent_after_ms)
        + unobserved_windows(now_ms, views, recent, limits or NotObservedLimits())
    )


def overdue_cases(now_ms: int, cases: Iterable[OpenCase]) -> list[AlertRow]:
    return [
        {
            "alert_id": f"overdue-{c.case_id}",
            "site": c.site,
            "window": c.window,
            "kind": "case_overdue",
            "ts_ms": c.due_ms,
            "detail": {
                "case_id": c.case_id,
                "due_ms": c.due_ms,
                "clerk_id": c.clerk_id,
                "rating": c.rating,
            },
        }
        for c in cases
        if is_overdue(c, now_ms)
    ]


def is_overdue(case: OpenCase, now_ms: int) -> bool:
    """Still open and past its due time (due at this very ms: not yet)."""
    return case.status == "open" and case.due_ms < now_ms


def silent_terminals(
    now_ms: int, terminals: Iterable[Terminal], silent_after_ms: int = SILENT_AFTER_MS
) -> list[AlertRow]:
    out: list[AlertRow] = []
    for t in terminals:
        heard = t.heard_ms
        if not t.online or heard is None or now_ms - heard <= silent_after_ms:
            continue
        out.append(
            {
                "alert_id": silent_alert_id(t.site, t.window, heard),
                "site": t.site,
                "window": t.window,
                "kind": "terminal_silent",
                "ts_ms": heard + silent_after_ms,
                "detail": {"last_heard_ms": heard, "silent_after_ms": silent_after_ms},
            }
        )
    return out


def silent_alert_id(site: str, window: str, heard_ms: int) -> str:
    """One alert per silence: the device and the last time it was heard."""
    return str(uuid.uuid5(_SILENT_IDS, f"{site}/{window}/{heard_ms}"))


_UNOBSERVED_IDS: Final = uuid.UUID("0b7e3c1d-5a2f-4e86-b9d4-71c3a8e65f20")


def unobserved_windows(
    now_ms: int,
    views: Iterable[WindowView],
    recent: Collection[tuple[str, str]] = (),
    limits: NotObservedLimits | None = None,
) -> list[AlertRow]:
    """Windows with too many sessions not observed: "camera placement or lighting: N of
    M sessions not observed"."""
    lim = limits or NotObservedLimits()
    out: list[AlertRow] = []
    for v in views:
        if v.sessions < lim.min_sessions or v.not_observed < lim.share * v.sessions:
            continue
        if (v.site, v.window) in recent:
            continue
        period = now_ms // lim.lookback_ms
        out.append(
            {
                "alert_id": str(uuid.uuid5(_UNOBSERVED_IDS, f"{v.site}/{v.window}/{period}")),
                "site": v.site,
                "window": v.window,
                "kind": "not_observed",
                "ts_ms": now_ms,
                "detail": {
                    "sessions": v.sessions,
                    "not_observed": v.not_observed,
                    "share": round(v.not_observed / v.sessions, 4),
                    "since_ms": now_ms - lim.lookback_ms,
                },
            }
        )
    return out
