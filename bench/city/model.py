"""The simulated city: centre and window names, their registration, and a scripted day.

Perception is scripted, not the rules engine: each window serves citizens in sessions of
six conduct events (opened, stood up and smiled at the greeting, evaluated, stood up at
the farewell, summary), the shape ``agent/rules`` gives a served citizen. What is real is
everything after the draft: ``Outbox.add`` stamps and stores it, ``Transport`` sends it.
"""

from __future__ import annotations

import heapq
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from agent.config import GpioConfig, Site, SiteConfig, WindowConfig
from agent.events import Draft
from agent.protocol import (
    Clause,
    Evaluated,
    EventHeader,
    Rating,
    SessionOpened,
    SessionSummary,
    Smiled,
    StoodUp,
)

#: Events one served citizen produces (see the module docstring).
EVENTS_PER_SESSION: Final = 6
#: The working day being compressed: 09:00-17:00.
DAY_MINUTES: Final = 8 * 60
_RATINGS: Final = list(Rating)
_RATING_WEIGHTS: Final = (0.55, 0.28, 0.10, 0.05, 0.02)
_GPIO: Final = GpioConfig(
    call_button=5, finish_button=6, eval_buttons=[13, 19, 26, 16, 20], sign_sensor=21
)


def centre_slug(i: int) -> str:
    return f"c{i:03d}"


def window_slug(i: int) -> str:
    return f"w{i:03d}"


def city_layout(windows: int, centres: int) -> list[tuple[str, str]]:
    """(site, window) for every simulated window, spread evenly over the centres."""
    if windows < 1 or centres < 1:
        raise ValueError("need at least one window and one centre")
    centres = min(centres, windows)
    out = []
    for i in range(windows):
        c = i % centres
        out.append((centre_slug(c), window_slug(i // centres + 1)))
    return out


def city_sites(layout: list[tuple[str, str]]) -> list[Site]:
    """In-memory site configurations for ``Store.register_site`` (no files needed)."""
    by_site: dict[str, list[str]] = {}
    for site, window in layout:
        by_site.setdefault(site, []).append(window)
    sites = []
    for slug, windows in sorted(by_site.items()):
        cfg = SiteConfig(
            site=slug,
            name=f"模拟中心 {slug}",
            district=f"d{int(slug[1:]) % 16:02d}",
            unit_kind="community_centre",
        )
        sites.append(
            Site(
                path=Path("/nonexistent") / slug,
                site=cfg,
                windows=tuple(
                    WindowConfig(window=w, label=w, role="comprehensive", gpio=_GPIO)
                    for w in windows
                ),
            )
        )
    return sites


@dataclass(order=True)
class _Due:
    at_s: float
    window: int
    step: int = field(compare=False)
    session: uuid.UUID = field(compare=False)
    opened_ms: int = field(compare=False)
    rating: Rating = field(compare=False)


class ScriptedDay:
    """Yields ``(due_s, window_index, draft_factory)`` in time order for a compressed day.

    ``sessions`` per window are spread at random over ``duration_s``; within a session
    the six events are ``step_s`` apart. Lazy (a heap of one entry per window), so a
    10,000-window day never sits in memory as a list.
    """

    def __init__(
        self,
        windows: int,
        sessions: int,
        duration_s: float,
        seed: int,
        step_s: float = 0.5,
    ) -> None:
        self.rng = random.Random(seed)
        self.sessions = sessions
        self.duration_s = duration_s
        self.step_s = step_s
        self._left = [sessions] * windows
        # Each window's sessions start at sorted uniform times: a Poisson-like day.
        self._starts = [
            sorted(self.rng.uniform(0, max(0.0, duration_s - 6 * step_s)) for _ in range(sessions))
            for _ in range(windows)
        ]
        self._heap: list[_Due] = []
        for w in range(windows):
            if sessions:
                self._push_session(w)

    def _push_session(self, w: int) -> None:
        at = self._starts[w][self.sessions - self._left[w]]
        self._left[w] -= 1
        rating = self.rng.choices(_RATINGS, weights=_RATING_WEIGHTS)[0]
        heapq.heappush(self._heap, _Due(at, w, 0, uuid.uuid4(), 0, rating))

    def next_due_s(self) -> float | None:
        return self._heap[0].at_s if self._heap else None

    def pop_due(self, now_s: float, now_ms: int, limit: int) -> Iterator[tuple[int, Draft]]:
        """Drafts due by ``now_s`` (day seconds), at most ``limit``; ts is ``now_ms``."""
        n = 0
        while self._heap and self._heap[0].at_s <= now_s and n < limit:
            d = heapq.heappop(self._heap)
            if d.step == 0:
                d.opened_ms = now_ms
            yield d.window, draft_for(d.step, d.session, d.opened_ms, now_ms, d.rating)
            n += 1
            if d.step + 1 < EVENTS_PER_SESSION:
                d.step += 1
                d.at_s += self.step_s
                heapq.heappush(self._heap, d)
            elif self._left[d.window] > 0:
                self._push_session(d.window)

    @property
    def done(self) -> bool:
        return not self._heap


def draft_for(
    step: int,
    session: uuid.UUID,
    opened_ms: int,
    now_ms: int,
    rating: Rating,
    smiled: bool = True,
) -> Draft:
    """Step ``step`` (0-5) of a served citizen's session; ``smiled=False`` misses the
    greeting smile (the session summary then raises a conduct alert)."""
    kind: type[EventHeader]
    fields: dict[str, Any]
    clauses: tuple[Clause, ...] = ()
    if step == 0:
        kind, fields = SessionOpened, {"source": "queue", "ticket": f"A{now_ms % 1000:03d}"}
        clauses = (Clause.W_CALL,)
    elif step == 1:
        kind, fields = StoodUp, {"phase": "greeting", "on_time": True, "after_ms": 1800}
        clauses = (Clause.W_TWO_STANDS,)
    elif step == 2:
        kind = Smiled
        fields = {"phase": "greeting", "on_time": smiled, "after_ms": 2100, "score": 0.81}
        clauses = (Clause.G_SMILE,)
    elif step == 3:
        kind, fields = Evaluated, {"rating": rating}
        clauses = (Clause.W_EVALUATE,)
    elif step == 4:
        kind, fields = StoodUp, {"phase": "farewell", "on_time": True, "after_ms": 900}
        clauses = (Clause.W_FAREWELL,)
    else:
        kind = SessionSummary
        fields = {
            "opened_ms": opened_ms,
            "closed_ms": now_ms,
            "closed_by": "evaluation",
            "stood_on_call": True,
            "stand_after_ms": 1800,
            "smiled_at_greeting": smiled,
            "smile_after_ms": 2100 if smiled else None,
            "smile_peak": 0.81,
            "stood_at_farewell": True,
            "see_off_ms": 3200,
            "rating": rating,
        }
    return Draft(kind=kind, ts_ms=now_ms, clauses=clauses, session_id=session, fields=fields)
