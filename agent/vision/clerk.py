"""Which detected face is the clerk's, and whether the seat is taken when none is.

``Clerk`` chooses among one frame's faces by the learnt seat (``Posture.baseline``):

- size, both ways: ``min_face_ratio`` .. ``max_ratio`` of the seated face size. Near
  the detector's floor BlazeFace boxes a small face too large (a citizen 0.4-0.7x the
  clerk behind the seat is boxed at up to 1.1x), so size alone cannot tell them
  apart; the upper bound drops the wall textures and posters boxed at 2-3x;
- a track: a face continues the clerk's track if it is near the clerk last chosen
  (``max_jump``) and the track does not drift sideways (``max_speed``: the clerk's
  face jitters about a place, a walker's steps add up); the track may lean away from
  the seat up to ``max_seat_offset``;
- a new track starts only at the seat column (``seat_half_width``, from slouching to
  standing height), on a confident detection (``start_score``) that has not just
  moved sideways (``max_step``): a citizen crossing behind an empty seat, or a poster's
  face that the clerk uncovers by leaving, does not start one.

Before calibration the clerk is the biggest face of ``min_face_frac`` .. ``max_face_frac``
of the frame width.

``SeatWatch`` answers, for a frame where the detector lost the clerk's face (a mask, a
turned head, a hand), whether the body below the seat still looks like the clerk's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np
import numpy.typing as npt

from agent.vision.detector import Face
from agent.vision.posture import Posture

if TYPE_CHECKING:
    from agent.vision.pipeline import VisionConfig

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class ClerkConfig:
    """The seat's bounds, in seated face sizes (``VisionConfig`` holds the lower size
    bound ``min_face_ratio``, the sideways reach ``max_seat_offset`` and the
    uncalibrated ``min_face_frac``)."""

    #: Largest clerk face / seated face size. Measured on composed scenes: seated
    #: 0.88-1.23x, standing 0.82-1.20x; false boxes on walls and posters 2-3x.
    max_ratio: float = 1.35
    #: Before calibration: the clerk's face is at most this fraction of frame width.
    max_face_frac: float = 0.6
    #: Half the width of the seat column, either side of the seated face centre (the
    #: clerk's face, seated or standing, stayed within 0.14 in the scenes).
    seat_half_width: float = 0.5
    #: How far below the seated face centre (slouching) and above it (standing up,
    #: 1.0-1.5 in the scenes, 2.0 at the most) the clerk's face may be.
    seat_below: float = 0.75
    seat_above: float = 2.5
    #: A face within this distance (sideways plus up) of the clerk last chosen continues
    #: the clerk's track, and may leave the seat column up to ``max_seat_offset`` ...
    max_jump: float = 0.5
    #: ... where the clerk last chosen is at most this many frames old (a single missed
    #: detection must not lose a clerk leaning aside) ...
    max_missed: int = 4
    #: ... and a track whose sideways speed (an average of its steps, sizes per frame)
    #: exceeds this is a citizen walking past: the clerk's face jitters about a place,
    #: a walker's steps add up (0.05-0.25 a frame for slow walkers at 10 fps).
    max_speed: float = 0.09
    #: Weight of the newest step in that average.
    speed_weight: float = 0.6
    #: A face taken up at the seat column must not have moved sideways more than this
    #: since the nearest face of the frame before ...
    max_step: float = 0.2
    #: ... and must be a confident detection: a track starts on a confident face and
    #: continues on weaker ones (ByteTrack's two thresholds). The clerk's faces scored
    #: 0.87 in the median, the false boxes on passers and posters 0.55 ...
    start_score: float = 0.58
    #: ... except right at the seated face (this far from it, sideways and up), where a
    #: weakly detected clerk sits down again (a walker there is dropped by its speed).
    seated_spot: float = 0.3

    def __post_init__(self) -> None:
        if not self.max_ratio > 1.0:
            raise ValueError("max_ratio must be > 1 (the seated face itself is 1)")
        if min(self.seat_half_width, self.max_jump, self.max_speed, self.max_step) <= 0:
            raise ValueError("seat_half_width, max_jump, max_speed and max_step must be > 0")
        if not 0 < self.speed_weight <= 1:
            raise ValueError("speed_weight must be in (0, 1]")


class Clerk:
    """Chooses the clerk's face among the detections of one frame.

    >>> from agent.vision.pipeline import VisionConfig
    >>> from agent.vision.posture import Baseline
    >>> clerk = Clerk(VisionConfig(), Posture(baseline=Baseline(cx=160, cy=150, size=60)))
    >>> seated, poster = Face(130, 120, 60, 60, 0.9), Face(90, 60, 150, 150, 0.6)
    >>> clerk.choose([poster, seated], 320) is seated
    True
    """

    def __init__(
        self, cfg: VisionConfig, posture: Posture, *, seat: ClerkConfig | None = None
    ) -> None:
        self.cfg = cfg
        self.posture = posture
        self.seat = seat or ClerkConfig()
        #: The clerk's face last chosen, at most ``max_missed`` frames ago.
        self.last: Face | None = None
        #: Its track's sideways speed, seated face sizes per frame.
        self.speed = 0.0
        self._missed = 0
        self._seen: list[Face] = []

    def choose(self, faces: list[Face], frame_w: int) -> Face | None:
        best: Face | None
        if self.posture.baseline is None:
            best, speed = self._biggest(faces, frame_w), 0.0
        else:
            judged = [(f, v) for f in faces if (v := self.judge(f)) is not None]
            best, speed = max(judged, key=lambda fv: self._closeness(fv[0]), default=(None, 0.0))
        self._missed = 0 if best is not None else self._missed + 1
        if best is not None or self._missed > self.seat.max_missed:
            self.last, self.speed = best, speed
        self._seen = faces
        return best

    def _biggest(self, faces: list[Face], frame_w: int) -> Face | None:
        lo, hi = self.cfg.min_face_frac * frame_w, self.seat.max_face_frac * frame_w
        return max((f for f in faces if lo <= f.w <= hi), key=lambda f: f.w, default=None)

    def judge(self, f: Face) -> float | None:
        """The track speed ``f`` would have as the clerk, or None if it is not the clerk
        (calibrated only; depends on the frames chosen before)."""
        b = self.posture.baseline
        if b is None:
            raise RuntimeError("the seat is not learnt yet")
        s = self.seat
        if not self.cfg.min_face_ratio <= f.size / b.size <= s.max_ratio:
            return None
        rise = (b.cy - f.cy) / b.size
        side = abs(f.cx - b.cx) / b.size
        if not -s.seat_below <= rise <= s.seat_above or side > self.cfg.max_seat_offset:
            return None
        last = self.last
        if last is not None and abs(f.cx - last.cx) + abs(f.cy - last.cy) <= s.max_jump * b.size:
            step = (f.cx - last.cx) / b.size
            speed = (1 - s.speed_weight) * self.speed + s.speed_weight * step
            return speed if abs(speed) <= s.max_speed else None
        if side > s.seat_half_width:
            return None
        # Taken up at the seat: standing up moves the face up, walking moves it sideways.
        step = self._step(f, b.size)
        seated = side <= s.seated_spot and abs(rise) <= s.seated_spot
        if abs(step) > s.max_step or (f.score < s.start_score and not seated):
            return None
        return s.speed_weight * step

    def _step(self, f: Face, size: float) -> float:
        """Sideways move since the nearest face of the frame before (0 if none near)."""
        steps = [
            (f.cx - p.cx) / size
            for p in self._seen
            if abs(f.cx - p.cx) < size and abs(f.size / p.size - 1) < 0.3
        ]
        return min(steps, key=abs, default=0.0)

    def _closeness(self, f: Face) -> float:
        """Bigger and nearer the seat column (or the clerk last chosen) is better."""
        b = self.posture.baseline
        assert b is not None
        ref = self.last.cx if self.last is not None else b.cx
        d = abs(f.cx - ref) / b.size
        return f.size / (1.0 + d * d)


Rect = tuple[int, int, int, int]

#: log(v + 4) of every grey level: a table look-up instead of a log per pixel.
_LOG = np.log(np.arange(256, dtype=np.float32) + 4.0)
#: The frame is sampled every _STRIDE pixels, both ways, for its gain.
_STRIDE = 8


def _sample(gray: U8) -> F32:
    return _LOG[gray[_STRIDE // 2 :: _STRIDE, _STRIDE // 2 :: _STRIDE]]


def body_region(face: Face, frame_w: int, frame_h: int) -> Rect:
    """x0, y0, x1, y1 of the shoulders and chest below a seated face: 2.4 face widths
    wide, from the chin down 1.2 face heights, clipped to the frame."""
    x0 = max(0, round(face.cx - 1.2 * face.w))
    x1 = min(frame_w, round(face.cx + 1.2 * face.w))
    y0 = max(0, round(face.y + face.h))
    y1 = min(frame_h, round(face.y + 2.2 * face.h))
    return x0, y0, x1, y1


class SeatWatch:
    """Whether the clerk's body is still in the seat when the detector lost the face.

    It keeps a small reference of the body region below the seated face (shoulders and
    chest, area-averaged into ``grid`` cells) and, once seen, of the same region with the
    seat empty. Brightness is compared in log units after taking out the frame's
    overall gain, the median change of a sparse sample of the frame outside the
    clerk's place, so exposure or the hall lights changing do not move the answer.
    The result is a distance in log brightness (0.05: about 5 %) per cell, on average.

    >>> watch = SeatWatch()
    >>> watch.occupied(np.full((240, 320), 100, np.uint8)) is None   # nothing learnt
    True
    """

    def __init__(
        self,
        *,
        grid: tuple[int, int] = (8, 4),
        rate: float = 0.1,
        tolerance: float = 0.05,
        spread_k: float = 4.0,
    ) -> None:
        #: Body region cells, columns and rows.
        self.grid = grid
        #: How fast the references follow new samples.
        self.rate = rate
        #: The least distance that differs from the body (the scenes' masked clerk:
        #: 0.00-0.05 from the body reference; their empty seats 0.05-0.51) ...
        self.tolerance = tolerance
        #: ... or the body reference's own spread times this, if larger.
        self.spread_k = spread_k
        self.forget()

    def forget(self) -> None:
        """Drop every reference (the seat is learnt again, e.g. on recalibration)."""
        self.seat: Face | None = None
        self.region: Rect | None = None
        self.body: F32 | None = None
        self.empty: F32 | None = None
        self.spread = 0.0
        self._frame: F32 | None = None
        self._outside: npt.NDArray[np.bool_] | None = None

    @property
    def learnt(self) -> bool:
        return self.body is not None

    def _cells(self, gray: U8) -> F32:
        assert self.region is not None
        x0, y0, x1, y1 = self.region
        cells = cv2.resize(gray[y0:y1, x0:x1], self.grid, interpolation=cv2.INTER_AREA)
        return _LOG[cells]

    def _gain(self, gray: U8) -> float:
        """Log gain of this frame against the learnt one, where the clerk never is."""
        assert self._frame is not None and self._outside is not None
        change = (_sample(gray) - self._frame)[self._outside]
        # The median, by a partial sort (np.median costs several times more).
        return float(np.partition(change, change.size // 2)[change.size // 2])

    def learn(self, gray: U8, face: Face) -> bool:
        """Learn from a frame where the clerk's face is seen, seated, at the seat. False
        (nothing learnt) for a face off the learnt seat by over half a face size, or a
        seat whose body region is mostly out of the frame."""
        seat = self.seat
        if seat is not None and abs(face.cx - seat.cx) + abs(face.cy - seat.cy) > seat.w / 2:
            return False
        if seat is None:
            h, w = gray.shape
            x0, y0, x1, y1 = body_region(face, w, h)
            cols, rows = self.grid
            if x1 - x0 < 2 * cols or y1 - y0 < 2 * rows:
                return False
            self.seat, self.region = face, (x0, y0, x1, y1)
            self._frame = _sample(gray)
            self._outside = _outside_mask(face, w, h, self._frame.shape)
            self.body = self._cells(gray)
            return True
        assert self.body is not None and self._frame is not None
        g = self._gain(gray)
        cells = self._cells(gray) - g
        self.spread += self.rate * (float(np.abs(cells - self.body).mean()) - self.spread)
        self.body += self.rate * (cells - self.body)
        frame = _sample(gray) - g
        self._frame += self.rate * (frame - self._frame)
        return True

    def learn_empty(self, gray: U8) -> bool:
        """Learn the empty seat, from a frame where the clerk has been away long enough
        (False, nothing learnt, before the seat itself is known)."""
        if self.body is None:
            return False
        cells = self._cells(gray) - self._gain(gray)
        if self.empty is None:
            self.empty = cells
        else:
            self.empty += self.rate * (cells - self.empty)
        return True

    def distances(self, gray: U8) -> tuple[float, float | None]:
        """Distance of this frame's body region to the body reference and to the empty
        seat (None while the empty seat is unknown)."""
        assert self.body is not None
        cells = self._cells(gray) - self._gain(gray)
        to_body = float(np.abs(cells - self.body).mean())
        to_empty = None if self.empty is None else float(np.abs(cells - self.empty).mean())
        return to_body, to_empty

    @property
    def limit(self) -> float:
        """The largest distance to the body reference that still is the body."""
        return max(self.spread_k * self.spread, self.tolerance)

    @property
    def alike(self) -> bool:
        """The clerk's body and the empty seat look the same (clothes like the chair)."""
        if self.body is None or self.empty is None:
            return False
        return float(np.abs(self.body - self.empty).mean()) < 1.5 * self.limit

    def occupied(self, gray: U8) -> bool | None:
        """True while the body region still looks like the clerk's (and less like the
        empty seat, once known); False when it looks like the empty seat or clearly
        differs from the body; None when it cannot tell (nothing learnt yet, or the
        clerk's clothes look like the empty seat)."""
        if self.body is None or self.alike:
            return None
        to_body, to_empty = self.distances(gray)
        near = to_body <= self.limit
        return near if to_empty is None else near and to_body < to_empty


def _outside_mask(face: Face, w: int, h: int, shape: tuple[int, ...]) -> npt.NDArray[np.bool_]:
    """Samples of the frame clear of the clerk's place: the seat column from standing
    head height down, one and a half face widths either side of the face centre."""
    rows, cols = shape
    x = _STRIDE // 2 + _STRIDE * np.arange(cols)
    y = _STRIDE // 2 + _STRIDE * np.arange(rows)
    beside = np.abs(x - face.cx) > 1.5 * face.w
    above = y < face.cy - 2.3 * face.h
    out = above[:, None] | beside[None, :]
    # A clerk filling the frame leaves no wall: fall back to the whole frame.
    return out if out.sum() >= 16 else np.ones(shape, dtype=bool)
