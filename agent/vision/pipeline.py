"""Frame -> Observation: detect faces, pick the clerk, score the smile, judge posture.

One ``Vision`` per window. ``process(t_ms, gray)`` takes a 2-D uint8 frame (grey,
or the Y plane of the camera's YUV420 lores stream) and returns an
``agent.observation.Observation``. Only numpy, OpenCV and onnxruntime run here.

The clerk is chosen by the learnt seat (``agent/vision/clerk.py``: a size band both
ways, continuity over frames, a new track only at the seat), so a citizen passing
behind or a poster's face is never taken for the clerk. Presence is debounced
(``present_ms`` to appear, ``absent_ms`` to go), bridging single missed detections;
while it is bridged the last smile and posture are held.

What could not be seen is said, never guessed (``agent/vision/quality.py``): a view
the camera cannot use (dark, covered, glare) makes the observation ``view_ok=False``;
a face too dark, too bright, too flat or turned too far, or whose mouth the classifier
reads as covered, gives ``smile=None`` with the reason in ``unseen``. A clerk lost by
the detector (masked, turned, a hand over the face) is not reported absent while the
clerk's body is still seen in the seat (``SeatWatch``): ``seat_occupied=True``, and the
rules take presence, posture and smile as unseen; only a seat seen empty is an absence.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from agent.observation import Observation, Unseen
from agent.vision.clerk import Clerk, ClerkConfig, SeatWatch
from agent.vision.detector import Face, FaceDetector
from agent.vision.posture import Posture, PostureConfig
from agent.vision.quality import QualityConfig, face_unreadable, view_unusable
from agent.vision.runtime import model_path
from agent.vision.smile import SmileClassifier

U8 = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class VisionConfig:
    #: Before calibration: the clerk's face is at least this fraction of frame width.
    min_face_frac: float = 0.12
    #: After calibration: at least this fraction of the seated face size ...
    min_face_ratio: float = 0.7
    #: ... and within this many seated face sizes of the seat, sideways.
    max_seat_offset: float = 2.0
    present_ms: int = 250
    absent_ms: int = 800
    #: Smile score smoothing time constant (one noisy frame must not make a smile).
    smile_tau_ms: int = 250
    posture: PostureConfig = field(default_factory=PostureConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    clerk: ClerkConfig = field(default_factory=ClerkConfig)
    #: The seat's body region is learnt from faces at least this confident, seated
    #: within these shares of a face size of the seat (sideways, up or down) ...
    seat_learn_score: float = 0.65
    seat_learn_dx: float = 0.3
    seat_learn_dy: float = 0.2
    seat_learn_every_ms: int = 500
    #: A face lost while the body was in the seat is "not ruled out" (not absent) for
    #: this long after the body was last seen, however the seat looks: a clerk who
    #: stands up with the face hidden leaves the seat region too. An absence is timed
    #: from then: ``away_after_s`` runs this much later than the clerk really left.
    lost_grace_ms: int = 10_000
    #: The empty seat is learnt once no face or body has been seen for this long (so
    #: beyond ``lost_grace_ms``).
    empty_seat_after_ms: int = 15_000


class Vision:
    """The whole perception pipeline of one window.

    >>> vision = Vision()                               # doctest: +SKIP
    >>> obs = vision.process(t_ms, gray_frame)          # doctest: +SKIP
    >>> obs.face_present, obs.smile, obs.standing       # doctest: +SKIP
    """

    def __init__(
        self,
        cfg: VisionConfig | None = None,
        *,
        detector: FaceDetector | None = None,
        smile: SmileClassifier | None = None,
        model_dir: Path | None = None,
    ) -> None:
        self.cfg = cfg or VisionConfig()
        self.detector = detector or FaceDetector(model_path("face_detector.onnx", model_dir))
        self.smile = smile or SmileClassifier(model_path("smile.onnx", model_dir))
        self.posture = Posture(self.cfg.posture)
        self.clerk = Clerk(self.cfg, self.posture, seat=self.cfg.clerk)
        self.seat = SeatWatch()
        self.present = False
        self._seen_since: int | None = None
        self._missing_since: int | None = None
        self._smile: float | None = None
        self._unseen: Unseen | None = None
        #: When the clerk's face, or body in the seat, was last seen.
        self._body_seen_ms: int | None = None
        self._seat_learnt_ms: int | None = None
        self._last_t: int | None = None
        #: The clerk's face in the last frame (None if not seen), for overlays/debug.
        self.face: Face | None = None
        self.inference_ms = 0.0

    def recalibrate(self) -> None:
        """Learn the seated pose again (the ``recalibrate`` command)."""
        self.posture.recalibrate()
        self.seat.forget()

    @property
    def calibrated(self) -> bool:
        return self.posture.baseline is not None

    def away_since(self) -> int | None:
        """When the clerk was last seen before the current absence (None if present)."""
        return None if self.present else self._missing_since

    def _presence(self, t_ms: int, seen: bool) -> None:
        if seen:
            self._missing_since = None
            if self._seen_since is None:
                self._seen_since = t_ms
            if not self.present and t_ms - self._seen_since >= self.cfg.present_ms:
                self.present = True
        else:
            self._seen_since = None
            if self._missing_since is None:
                self._missing_since = t_ms
            # A glimpse that never became a presence leaves no smile to smooth from.
            if not self.present or t_ms - self._missing_since >= self.cfg.absent_ms:
                self.present = False
                self._smile = None

    def _smooth(self, t_ms: int, score: float) -> float:
        if self._smile is None or self._last_t is None:
            return score
        a = 1.0 - math.exp(-max(t_ms - self._last_t, 0) / self.cfg.smile_tau_ms)
        return self._smile + a * (score - self._smile)

    def _read_smile(self, t_ms: int, gray: U8, face: Face) -> None:
        """Smooth the smile of a readable face; forget it for one that cannot be read."""
        q = self.cfg.quality
        why = face_unreadable(gray, face, q)
        if why is None:
            reading = self.smile.read(gray, face)
            if reading.visible < q.min_mouth_visible:
                why = Unseen.MOUTH_COVERED
            else:
                self._smile = self._smooth(t_ms, reading.smile)
        if why is not None:
            self._smile = None  # unseen: smoothing starts again once it can be read
        self._unseen = why

    def _learn_seat(self, t_ms: int, gray: U8, face: Face | None) -> None:
        """Keep the seat's body reference from confident seated sightings at the seat
        (at most every ``seat_learn_every_ms``: the reference follows slow change)."""
        cfg, b = self.cfg, self.posture.baseline
        if b is None:
            if self.seat.learnt:
                self.seat.forget()  # the seat is being learnt again
            return
        last = self._seat_learnt_ms
        due = not self.seat.learnt or last is None or t_ms - last >= cfg.seat_learn_every_ms
        seated_at_seat = (
            face is not None
            and not self.posture.standing
            and face.score >= cfg.seat_learn_score
            and abs(face.cx - b.cx) < cfg.seat_learn_dx * b.size
            and abs(face.cy - b.cy) < cfg.seat_learn_dy * b.size
        )
        if due and seated_at_seat and face is not None and self.seat.learn(gray, face):
            self._seat_learnt_ms = t_ms

    def _seat_occupied(self, t_ms: int, gray: U8, faces: list[Face]) -> bool | None:
        """With no clerk face: is the clerk's body still in the seat (True also while it
        is not ruled out: ``lost_grace_ms``)? Learns the empty seat once nobody has been
        there for ``empty_seat_after_ms``."""
        if not self.seat.learnt or self._body_seen_ms is None:
            return None  # the seat is learnt from a face seen, so both come together
        occupied = self.seat.occupied(gray)
        if occupied:
            self._body_seen_ms = t_ms
            return True
        gone = t_ms - self._body_seen_ms
        if gone < self.cfg.lost_grace_ms:
            # The body was there moments ago: a clerk who stood up with the face hidden
            # leaves the seat region too. Not ruled out yet, so not yet an absence.
            return True
        if occupied is False and not faces and gone >= self.cfg.empty_seat_after_ms:
            self.seat.learn_empty(gray)
        return occupied

    def observe(self, t_ms: int, gray: U8, faces: list[Face]) -> Observation:
        """The decision part, given the detector's faces (the benchmark times it alone)."""
        face = self.clerk.choose(faces, gray.shape[1])
        # A clerk's face found is a view in use; only a frame without one is checked.
        view_ok = face is not None or not view_unusable(gray, self.cfg.quality)
        self.face = face
        if view_ok:
            self._learn_seat(t_ms, gray, face)
        self._presence(t_ms, face is not None)
        occupied: bool | None = None
        if face is not None:
            self._read_smile(t_ms, gray, face)
            self.posture.update(t_ms, face.cx, face.cy, face.size)
            self._body_seen_ms = t_ms
        elif self._missing_since is not None:
            occupied = self._seat_occupied(t_ms, gray, faces) if view_ok else None
            if occupied is not True:  # someone in the seat is not a long absence
                self.posture.absent(t_ms, self._missing_since)
        self._last_t = t_ms
        if not view_ok:
            return Observation(t_ms, False, view_ok=False, unseen=Unseen.VIEW)
        if not self.present:
            if occupied:
                return Observation(t_ms, False, seat_occupied=True, unseen=Unseen.FACE_LOST)
            return Observation(t_ms, False, seat_occupied=occupied)
        unseen = self._unseen if self._smile is None else None
        return Observation(
            t_ms, True, smile=self._smile, standing=self.posture.standing, unseen=unseen
        )

    def process(self, t_ms: int, gray: U8) -> Observation:
        if gray.ndim != 2:
            raise ValueError("Vision.process takes a 2-D grey (or Y-plane) frame")
        t0 = time.perf_counter()
        obs = self.observe(t_ms, gray, self.detector.detect(gray))
        ms = 1000 * (time.perf_counter() - t0)
        # Smoothed per-frame cost, for the health message (Health.inference_ms).
        self.inference_ms = ms if self.inference_ms == 0.0 else 0.9 * self.inference_ms + 0.1 * ms
        return obs
