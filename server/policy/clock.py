"""What the clock causes: bad-review cases gone overdue and terminals gone silent.

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
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
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


def due(
    now_ms: int,
    cases: Iterable[OpenCase],
    terminals: Iterable[Terminal],
    *,
    silent_after_ms: int = SILENT_AFTER_MS,
) -> list[AlertRow]:
    """The alerts due at ``now_ms``: overdue cases first, then silent terminals."""
    return overdue_cases(now_ms, cases) + silent_terminals(now_ms, terminals, silent_after_ms)


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
