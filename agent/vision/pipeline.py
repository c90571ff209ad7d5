"""Frame -> Observation: detect faces, pick the clerk, score the smile, judge posture.

One ``Vision`` per window. ``process(t_ms, gray)`` takes a 2-D uint8 frame (grey,
or the Y plane of the camera's YUV420 lores stream) and returns an
``agent.observation.Observation``. Only numpy, OpenCV and onnxruntime run here.

The clerk is the biggest face near the seat: before calibration a face must be at
least ``min_face_frac`` of the frame width; after it, at least ``min_face_ratio`` of
the seated face size, and faces far from the seat column are discounted, so a
citizen passing behind (smaller, elsewhere) is never taken for the clerk.
Presence is debounced (``present_ms`` to appear, ``absent_ms`` to go), bridging
single missed detections; while it is bridged the last smile and posture are held.

What could not be seen is said, never guessed (``agent/vision/quality.py``): a view
the camera cannot use (dark, covered, glare) makes the observation ``view_ok=False``;
a face too dark, too bright, too flat or turned too far, or whose mouth the classifier
reads as covered, gives ``smile=None`` with the reason in ``unseen``. A clerk lost by
the detector is reported absent only when the seat looks empty, not merely faceless.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from agent.observation import Observation, Unseen
from agent.vision.clerk import Clerk
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
        self.clerk = Clerk(self.cfg, self.posture)
        self.present = False
        self._seen_since: int | None = None
        self._missing_since: int | None = None
        self._smile: float | None = None
        self._unseen: Unseen | None = None
        self._last_t: int | None = None
        #: The clerk's face in the last frame (None if not seen), for overlays/debug.
        self.face: Face | None = None
        self.inference_ms = 0.0

    def recalibrate(self) -> None:
        """Learn the seated pose again (the ``recalibrate`` command)."""
        self.posture.recalibrate()

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

    def observe(self, t_ms: int, gray: U8, faces: list[Face]) -> Observation:
        """The decision part, given the detector's faces (the benchmark times it alone)."""
        view_ok = not view_unusable(gray, self.cfg.quality)
        face = self.clerk.choose(faces, gray.shape[1]) if view_ok else None
        self.face = face
        self._presence(t_ms, face is not None)
        if face is not None:
            self._read_smile(t_ms, gray, face)
            self.posture.update(t_ms, face.cx, face.cy, face.size)
        elif self._missing_since is not None:
            self.posture.absent(t_ms, self._missing_since)
        self._last_t = t_ms
        if not view_ok:
            return Observation(t_ms, False, view_ok=False, unseen=Unseen.VIEW)
        if not self.present:
            return Observation(t_ms, False)
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
