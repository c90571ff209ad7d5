"""Standing vs seated from where the clerk's face is, against a learnt seated pose.

Pure logic: face positions and times in, debounced state out; no clock, no model.

Calibration is automatic: while uncalibrated every clerk-face sample is kept, and
after ``calib_samples`` spanning ``calib_ms`` the seated baseline is the median of the
lower half of the face centres (a clerk who stands during calibration cannot drag it
up, being seated most of the time) and the median face size there. While seated the
baseline then follows slow drift (chair height). ``recalibrate()`` forgets it (the
``recalibrate`` command), and so does a long absence (maybe another clerk).

The measure is the rise of the face centre above the seated baseline in seated face
sizes, so it holds for any camera distance. Hysteresis: stand above ``stand_rise``,
sit again below ``sit_rise``. A candidate state must hold for ``confirm_ms`` and a
state lasts at least ``min_state_ms``: the output never flickers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class PostureConfig:
    stand_rise: float = 0.5
    sit_rise: float = 0.3
    confirm_ms: int = 200
    min_state_ms: int = 1000
    calib_samples: int = 15
    calib_ms: int = 2000
    #: Fraction of the way the baseline moves toward each calm seated sample.
    drift_rate: float = 0.02
    recalibrate_after_away_ms: int = 120_000

    def __post_init__(self) -> None:
        if not 0 < self.sit_rise < self.stand_rise:
            raise ValueError("need 0 < sit_rise < stand_rise (hysteresis)")
        if self.min_state_ms < 0 or self.confirm_ms < 0:
            raise ValueError("durations must be >= 0")


@dataclass
class Baseline:
    """The clerk's seated face centre y and size, in frame pixels."""

    cx: float
    cy: float
    size: float


@dataclass
class Posture:
    """Debounced standing/seated state of one window's clerk."""

    cfg: PostureConfig = field(default_factory=PostureConfig)
    baseline: Baseline | None = None
    standing: bool = False
    since_ms: int | None = None
    _pending_since: int | None = None
    _samples: list[tuple[int, float, float, float]] = field(default_factory=list)

    def recalibrate(self) -> None:
        """Forget the seated pose; it is learnt again from the next samples."""
        self.baseline = None
        self._samples.clear()
        self.standing = False
        self._pending_since = None

    def absent(self, t_ms: int, since_ms: int) -> None:
        """The clerk has been gone since ``since_ms``; a long absence re-learns the seat."""
        self._pending_since = None
        if t_ms - since_ms >= self.cfg.recalibrate_after_away_ms and self.baseline is not None:
            self.recalibrate()

    def rise(self, cy: float) -> float | None:
        b = self.baseline
        return None if b is None else (b.cy - cy) / b.size

    def _learn(self, t_ms: int, cx: float, cy: float, size: float) -> None:
        self._samples.append((t_ms, cx, cy, size))
        first = self._samples[0][0]
        if len(self._samples) < self.cfg.calib_samples or t_ms - first < self.cfg.calib_ms:
            return
        arr = np.asarray(self._samples, dtype=np.float64)
        lower = arr[arr[:, 2] >= np.median(arr[:, 2])]
        self.baseline = Baseline(
            float(np.median(lower[:, 1])),
            float(np.median(lower[:, 2])),
            float(np.median(lower[:, 3])),
        )
        self._samples.clear()

    def update(self, t_ms: int, cx: float, cy: float, size: float) -> bool:
        """Feed the clerk's face (centre, size) at ``t_ms``; returns the debounced state."""
        if self.since_ms is None:
            self.since_ms = t_ms
        if self.baseline is None:
            self._learn(t_ms, cx, cy, size)
            return self.standing
        b = self.baseline
        r = (b.cy - cy) / b.size
        want = r > (self.cfg.sit_rise if self.standing else self.cfg.stand_rise)
        if want == self.standing:
            self._pending_since = None
            # Follow slow drift only on calm seated samples of about the seated size, so
            # a smaller face (a citizen behind) can never drag the baseline toward it.
            if (
                not self.standing
                and abs(r) < self.cfg.sit_rise / 2
                and abs(size - b.size) < 0.15 * b.size
            ):
                k = self.cfg.drift_rate
                b.cx += k * (cx - b.cx)
                b.cy += k * (cy - b.cy)
                b.size += k * (size - b.size)
            return self.standing
        if self._pending_since is None:
            self._pending_since = t_ms
        if (
            t_ms - self._pending_since >= self.cfg.confirm_ms
            and t_ms - self.since_ms >= self.cfg.min_state_ms
        ):
            self.standing = want
            self.since_ms = t_ms
            self._pending_since = None
        return self.standing
