"""Which detected face is the clerk's.

The clerk is the biggest face near the seat: before calibration a face must be at
least ``min_face_frac`` of the frame width; after it, at least ``min_face_ratio`` of
the seated face size, and faces far from the seat column are discounted, so a
citizen passing behind (smaller, elsewhere) is never taken for the clerk.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.vision.detector import Face
from agent.vision.posture import Posture

if TYPE_CHECKING:
    from agent.vision.pipeline import VisionConfig


class Clerk:
    """Chooses the clerk's face among the detections of one frame."""

    def __init__(self, cfg: VisionConfig, posture: Posture) -> None:
        self.cfg = cfg
        self.posture = posture

    def choose(self, faces: list[Face], frame_w: int) -> Face | None:
        b = self.posture.baseline
        best: Face | None = None
        best_score = 0.0
        for f in faces:
            if b is None:
                if f.w < self.cfg.min_face_frac * frame_w:
                    continue
                score = f.w
            else:
                # Standing moves the face up, not sideways: distance from the seat column.
                d = abs(f.cx - b.cx) / b.size
                if f.w < self.cfg.min_face_ratio * b.size or d > self.cfg.max_seat_offset:
                    continue
                score = f.w / (1.0 + d * d)
            if score > best_score:
                best, best_score = f, score
        return best
