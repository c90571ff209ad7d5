"""Smile score of a face: crop from the detector's box, tiny CNN on onnxruntime.

``models/smile.onnx`` takes a uint8 grey crop ``[N, 1, 48, 48]`` framed like its
training images (brows to chin) and returns, from one inference, ``smile`` (the
smile probability ``[N, 1]``) and ``visible`` (the probability that the mouth can be
seen at all: not behind a mask, a hand, a cup ``[N, 1]``); the per-crop contrast
normalisation is inside the graph. A model with the smile output alone reads as
mouth always visible. The model's metadata (``outputs``) says what each output
means. How to cut that crop from a BlazeFace box (side and centre offset, in box
widths) was measured by the build on the training images themselves and is stored
in the model's metadata, so the product cuts crops the way the model was trained to
see them.

The intensity band: the rules compare the score with ``RuleConfig.smile_threshold``
and ``too_broad_threshold``; ``band()`` is that comparison in one place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from agent.vision.detector import Face
from agent.vision.runtime import make_session, model_path

U8 = npt.NDArray[np.uint8]


class SmileBand(StrEnum):
    NONE = "none"
    SMILE = "smile"  # moderate: what G-SMILE asks for
    TOO_BROAD = "too_broad"


def band(score: float | None, smile_threshold: float, too_broad_threshold: float) -> SmileBand:
    if score is None or score < smile_threshold:
        return SmileBand.NONE
    return SmileBand.TOO_BROAD if score >= too_broad_threshold else SmileBand.SMILE


@dataclass(frozen=True, slots=True)
class MouthReading:
    """What the classifier reads from one face crop."""

    #: Smile probability (not an intensity).
    smile: float
    #: Probability that the mouth is visible at all (not behind a mask, a hand, ...);
    #: 1.0 from a model without that output.
    visible: float = 1.0


@dataclass(frozen=True, slots=True)
class CropSpec:
    """The classifier's crop relative to a detector box, in box widths."""

    size: int = 48
    scale: float = 1.0
    dx: float = 0.0
    dy: float = 0.0
    #: Level the eyes (BlazeFace keypoints) up to this many degrees of head roll.
    max_roll_deg: float = 30.0


class SmileClassifier:
    """Smile probability for a detected face in a grayscale frame."""

    def __init__(self, path: Path | None = None, *, threads: int = 1) -> None:
        self.session = make_session(path or model_path("smile.onnx"), threads)
        self.input_name = self.session.get_inputs()[0].name
        names = [o.name for o in self.session.get_outputs()]
        # The first output is the smile (models before the visibility head had only it).
        self._outputs = [names[0], *(["visible"] if "visible" in names[1:] else [])]
        meta = self.session.get_modelmeta().custom_metadata_map
        self.crop = CropSpec(
            size=int(meta.get("input_size", 48)),
            scale=float(meta.get("crop_scale", 1.0)),
            dx=float(meta.get("crop_dx", 0.0)),
            dy=float(meta.get("crop_dy", 0.0)),
        )
        n = self.crop.size
        self._buf: U8 = np.zeros((1, 1, n, n), np.uint8)
        self.score_images(self._buf)  # warm up

    @property
    def has_visibility(self) -> bool:
        """Whether the model reads mouth visibility (else ``visible`` is always 1.0)."""
        return len(self._outputs) == 2

    def read_images(self, batch: U8) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """(smile, visible) probabilities ``[N]`` each for ready crops ``[N, 1, size,
        size]`` uint8, from one inference."""
        outs = self.session.run(self._outputs, {self.input_name: batch})
        smile = np.asarray(outs[0], np.float32).reshape(-1)
        if len(outs) == 1:
            return smile, np.ones_like(smile)
        return smile, np.asarray(outs[1], np.float32).reshape(-1)

    def score_images(self, batch: U8) -> npt.NDArray[np.float32]:
        """Smile scores for ready crops ``[N, 1, size, size]`` uint8 (no detector)."""
        return self.read_images(batch)[0]

    def prepare(self, image: U8) -> U8:
        """A whole face image (already framed like the training crops) as one input."""
        n = self.crop.size
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
        small = cv2.resize(gray, (n, n), interpolation=cv2.INTER_AREA)
        return np.asarray(small, np.uint8).reshape(1, 1, n, n)

    def cut(self, gray: U8, face: Face, out: U8 | None = None) -> U8:
        """Cut the classifier's crop for ``face`` from the frame, eyes levelled."""
        c = self.crop
        n = c.size
        side = c.scale * face.w
        cx = face.cx + c.dx * face.w
        cy = face.cy + c.dy * face.w
        angle = 0.0
        if len(face.keypoints) >= 2:
            (rx, ry), (lx, ly) = face.keypoints[0], face.keypoints[1]
            angle = math.degrees(math.atan2(ly - ry, lx - rx))
            angle = max(-c.max_roll_deg, min(c.max_roll_deg, angle))
        # Rotate about the crop centre by the head roll and scale side -> n pixels.
        m = cv2.getRotationMatrix2D((cx, cy), angle, n / side)
        m[0, 2] += n / 2 - cx
        m[1, 2] += n / 2 - cy
        dst = out if out is not None else np.empty((1, 1, n, n), np.uint8)
        cv2.warpAffine(
            gray, m, (n, n), dst=dst[0, 0], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        return dst

    def score(self, gray: U8, face: Face) -> float:
        return self.read(gray, face).smile

    def read(self, gray: U8, face: Face) -> MouthReading:
        """Smile and mouth visibility of ``face`` (one inference for both)."""
        smile, visible = self.read_images(self.cut(gray, face, self._buf))
        return MouthReading(float(smile[0]), float(visible[0]))
