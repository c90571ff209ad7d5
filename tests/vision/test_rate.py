"""Adaptive frame rate."""

from __future__ import annotations

import pytest

from agent.config import CameraConfig
from agent.observation import Observation
from agent.vision.rate import AdaptiveRate


def test_idle_until_boosted_then_idle_again() -> None:
    r = AdaptiveRate.from_camera(CameraConfig(idle_fps=2, active_fps=10))
    assert r.interval_ms(0) == 500
    r.boost(1000, 5000)
    assert r.fps(1000) == 10 and r.fps(5999) == 10
    assert r.fps(6000) == 2


def test_changes_keep_it_active_for_a_while() -> None:
    r = AdaptiveRate(1, 8, linger_ms=2000)
    r.note(Observation(0, False))
    assert not r.active(0)
    r.note(Observation(1000, True, 0.1, False))  # clerk arrives
    assert r.active(2500) and not r.active(3000)


def test_rates_are_checked() -> None:
    with pytest.raises(ValueError):
        AdaptiveRate(10, 2)
