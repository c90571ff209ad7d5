"""Perception sources the agent loop can poll: ``observe(t_ms) -> Observation``.

``ScriptedClerk`` stands in for the camera pipeline in the demo and in tests: a seeded
clerk who reacts to calls and farewells with configurable reliability. It is labelled
``scripted`` everywhere it shows up (retained state, page, demo output).
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from typing import Literal, Protocol

from agent.observation import Observation, Unseen


class Perception(Protocol):
    kind: Literal["camera", "scripted"]

    def observe(self, t_ms: int) -> Observation: ...


@dataclass(frozen=True)
class ClerkProfile:
    """How reliably a scripted clerk follows the standard."""

    stand_on_call: float = 0.9
    smile_at_greeting: float = 0.85
    stand_at_farewell: float = 0.8
    too_broad: float = 0.03
    #: Wears a face mask for a session (the smile cannot be seen: "not observed").
    masked: float = 0.04


EXEMPLARY = ClerkProfile(0.98, 0.97, 0.95, 0.0, masked=0.02)
TYPICAL = ClerkProfile()
CARELESS = ClerkProfile(0.5, 0.4, 0.3, 0.1)


@dataclass
class _Span:
    start_ms: int
    end_ms: int

    def covers(self, t_ms: int) -> bool:
        return self.start_ms <= t_ms < self.end_ms


class ScriptedClerk:
    """A seated clerk who stands, smiles and leaves when the scenario says so.

    The scenario's thread tells it what happens while the perception thread observes it,
    so both hold one lock. ``stand_delays_ms`` is the truth to check a run against: after
    each call, how long the clerk was scripted to take to stand up.
    """

    kind: Literal["camera", "scripted"] = "scripted"

    def __init__(self, profile: ClerkProfile, rng: random.Random) -> None:
        self.profile = profile
        self.rng = rng
        self._lock = threading.Lock()
        self._standing: list[_Span] = []
        self._smiling: list[tuple[_Span, float]] = []
        self._away: list[_Span] = []
        self._masked: list[_Span] = []
        self.stand_delays_ms: list[int] = []

    def on_call(self, t_ms: int) -> None:
        with self._lock:
            self._on_call(t_ms)

    def _on_call(self, t_ms: int) -> None:
        r, p = self.rng, self.profile
        if r.random() < p.masked:
            self._masked.append(_Span(t_ms - 500, t_ms + 60_000))
        if r.random() < p.stand_on_call:
            start = t_ms + r.randint(800, 3500)
        else:
            start = t_ms + r.randint(7000, 12000)  # late, or not before the limit
        self._standing.append(_Span(start, start + r.randint(3000, 6000)))
        self.stand_delays_ms.append(start - t_ms)
        if r.random() < p.smile_at_greeting:
            s = t_ms + r.randint(1000, 5000)
            score = 0.99 if r.random() < p.too_broad else r.uniform(0.65, 0.92)
            self._smiling.append((_Span(s, s + r.randint(2000, 5000)), score))

    def on_end(self, t_ms: int) -> None:
        with self._lock:
            self._on_end(t_ms)

    def _on_end(self, t_ms: int) -> None:
        r, p = self.rng, self.profile
        if r.random() < p.stand_at_farewell:
            start = t_ms + r.randint(300, 2500)
            self._standing.append(_Span(start, start + r.randint(3500, 6000)))
            s = start + 200
            self._smiling.append((_Span(s, s + 2500), r.uniform(0.6, 0.9)))

    def leave(self, t_ms: int, duration_ms: int) -> None:
        with self._lock:
            self._away.append(_Span(t_ms, t_ms + duration_ms))

    def observe(self, t_ms: int) -> Observation:
        with self._lock:
            return self._observe(t_ms)

    def _observe(self, t_ms: int) -> Observation:
        horizon = t_ms - 60_000
        self._standing = [s for s in self._standing if s.end_ms > horizon]
        self._smiling = [s for s in self._smiling if s[0].end_ms > horizon]
        self._away = [s for s in self._away if s.end_ms > horizon]
        self._masked = [s for s in self._masked if s.end_ms > horizon]
        if any(s.covers(t_ms) for s in self._away):
            return Observation(t_ms=t_ms, face_present=False, seat_occupied=False)
        standing = any(s.covers(t_ms) for s in self._standing)
        if any(s.covers(t_ms) for s in self._masked):
            return Observation(
                t_ms, True, smile=None, standing=standing, unseen=Unseen.MOUTH_COVERED
            )
        smile = max((score for s, score in self._smiling if s.covers(t_ms)), default=0.1)
        return Observation(t_ms=t_ms, face_present=True, smile=smile, standing=standing)
