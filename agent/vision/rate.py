"""Adaptive frame rate: slow while nothing happens, fast around calls and farewells.

The stand-up and smile after a call are what the standard measures, and their
timing matters to the second; the rest of the day only presence matters, which a
couple of frames a second settles at a fraction of the CPU (and heat) of a Pi.

>>> rate = AdaptiveRate(idle_fps=2, active_fps=10)
>>> rate.interval_ms(0)
500
>>> rate.boost(0, 8000)          # a number was called
>>> rate.interval_ms(1000)
100
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.observation import Observation

if TYPE_CHECKING:
    from agent.config import CameraConfig


class AdaptiveRate:
    def __init__(self, idle_fps: float, active_fps: float, *, linger_ms: int = 3000) -> None:
        if not 0 < idle_fps <= active_fps:
            raise ValueError("need 0 < idle_fps <= active_fps")
        self.idle_fps = idle_fps
        self.active_fps = active_fps
        self.linger_ms = linger_ms
        self._active_until = -1
        self._last: Observation | None = None

    @classmethod
    def from_camera(cls, camera: CameraConfig) -> AdaptiveRate:
        return cls(camera.idle_fps, camera.active_fps)

    def boost(self, t_ms: int, for_ms: int) -> None:
        """Run fast until ``t_ms + for_ms`` (call, finish key, farewell window)."""
        self._active_until = max(self._active_until, t_ms + for_ms)

    def note(self, obs: Observation) -> None:
        """Any change seen (arrival, departure, posture) keeps the rate up a little."""
        last = self._last
        if last is not None and (last.face_present, last.standing) != (
            obs.face_present,
            obs.standing,
        ):
            self.boost(obs.t_ms, self.linger_ms)
        self._last = obs

    def active(self, t_ms: int) -> bool:
        return t_ms < self._active_until

    def fps(self, t_ms: int) -> float:
        return self.active_fps if self.active(t_ms) else self.idle_fps

    def interval_ms(self, t_ms: int) -> int:
        return round(1000 / self.fps(t_ms))
