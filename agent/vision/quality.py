"""Can the frame, and the clerk's face in it, be read at all? Pure checks, no model.

The rules judge a smile or a posture only where it could be seen (burden of proof on
the system), so the pipeline says when it could not: the whole view (a blocked lens,
darkness, glare from the hall windows) or the face (too dark, too bright or too flat
to read, turned too far). A covered mouth is the classifier's own ``visible`` output
(``agent/vision/smile.py``). Thresholds are in ``QualityConfig``; the figures behind
them are in models/MODEL_CARD.md ("What could be seen").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from agent.observation import Unseen
from agent.vision.detector import Face

U8 = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class QualityConfig:
    #: The view: mean grey below this is dark (or a lens cap) ...
    view_dark_mean: float = 20.0
    #: ... a spread below this is a flat frame (a hand or paper on the lens) ...
    view_flat_std: float = 6.0
    #: ... and this share of saturated pixels (>= 250) is glare.
    view_glare_share: float = 0.6
    #: The face region: mean grey outside [dark, bright] or spread below flat: unreadable.
    face_dark_mean: float = 30.0
    face_bright_mean: float = 230.0
    face_flat_std: float = 7.0
    #: Head turn: the nose's offset from the eyes' midpoint, in eye distances.
    max_turn: float = 0.5
    #: The classifier's mouth-visible probability below this: the mouth is covered.
    min_mouth_visible: float = 0.5


def _mean_std(image: U8) -> tuple[float, float]:
    """Mean and standard deviation of a grey image in one C call (numpy's take ~10x)."""
    m, sd = cv2.meanStdDev(image)
    return float(m[0, 0]), float(sd[0, 0])


def view_unusable(gray: U8, cfg: QualityConfig) -> bool:
    """The camera cannot see the seat: dark, flat (covered) or glare (every 4th pixel)."""
    sample = np.ascontiguousarray(gray[::4, ::4])
    mean, spread = _mean_std(sample)
    if mean < cfg.view_dark_mean or spread < cfg.view_flat_std:
        return True
    return float(np.count_nonzero(sample >= 250)) / sample.size >= cfg.view_glare_share


def turn(face: Face) -> float | None:
    """How far the head is turned: the nose's sideways offset from the eyes' midpoint
    in eye distances (about 0 frontal); None without keypoints."""
    if len(face.keypoints) < 3:
        return None
    (rx, ry), (lx, ly), (nx, ny) = face.keypoints[:3]
    eyes = math.hypot(lx - rx, ly - ry)
    if eyes < 1e-6:
        return None
    # Offset along the eye line, so a rolled head (levelled for the crop) is not "turned".
    ux, uy = (lx - rx) / eyes, (ly - ry) / eyes
    along = (nx - (rx + lx) / 2) * ux + (ny - (ry + ly) / 2) * uy
    return abs(along) / eyes


def face_unreadable(gray: U8, face: Face, cfg: QualityConfig) -> Unseen | None:
    """Why the clerk's face cannot be read (exposure, turn), or None if it can."""
    h, w = gray.shape
    x0, y0 = max(0, int(face.x)), max(0, int(face.y))
    x1, y1 = min(w, int(face.x + face.w)), min(h, int(face.y + face.h))
    if x1 - x0 < 4 or y1 - y0 < 4:
        return Unseen.FACE_EXPOSURE
    mean, spread = _mean_std(gray[y0:y1, x0:x1])
    if mean < cfg.face_dark_mean or mean > cfg.face_bright_mean or spread < cfg.face_flat_std:
        return Unseen.FACE_EXPOSURE
    t = turn(face)
    if t is not None and t > cfg.max_turn:
        return Unseen.TURNED
    return None
