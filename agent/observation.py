"""What perception tells the rules, one frame (or scripted step) at a time."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Observation:
    """The clerk as seen at ``t_ms`` (device clock, UTC ms).

    ``smile`` and ``standing`` are None when no clerk face is present; ``standing``
    is the debounced posture (hysteresis and minimum durations already applied).
    """

    t_ms: int
    face_present: bool
    smile: float | None = None
    standing: bool | None = None
