"""BlazeFace (short range) on onnxruntime: letterbox, anchors, decode, weighted NMS.

The shipped ``models/face_detector.onnx`` is MediaPipe's
``face_detection_short_range.tflite`` converted at build time (``models/facedet.py``)
with one change: it takes a uint8 grayscale tensor ``[1, 1, 128, 128]`` and does the
``x / 127.5 - 1`` scaling and the grey-to-RGB fold inside the graph, so the frame
needs only one resize here. Outputs are the raw ``regressors [1, 896, 16]`` and
``classificators [1, 896, 1]``; decoding follows MediaPipe's
``face_detection_short_range.pbtxt`` (SSD anchors, strides 8/16/16/16).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import cv2
import numpy as np
import numpy.typing as npt

from agent.vision.runtime import make_session, model_path

INPUT_SIZE: Final = 128
NUM_ANCHORS: Final = 896

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class Face:
    """One detected face in frame pixels (``x``, ``y`` = top-left corner)."""

    x: float
    y: float
    w: float
    h: float
    score: float
    #: right eye, left eye, nose tip, mouth, right ear, left ear (x, y) in frame pixels.
    keypoints: tuple[tuple[float, float], ...] = ()

    @property
    def cx(self) -> float:
        return self.x + self.w / 2

    @property
    def cy(self) -> float:
        return self.y + self.h / 2

    @property
    def size(self) -> float:
        return math.sqrt(self.w * self.h)


def ssd_anchors() -> F32:
    """The 896 anchor centres (x, y), in [0, 1], in the model's output order.

    MediaPipe SsdAnchorsCalculator options of the short-range model: 4 layers with
    strides 8, 16, 16, 16, one aspect ratio plus the interpolated scale, fixed anchor
    size. Layers of the same stride are merged, giving 2 anchors per cell on the 16x16
    map and 6 per cell on the 8x8 map.
    """
    centres: list[tuple[float, float]] = []
    for stride, per_cell in ((8, 2), (16, 6)):
        n = INPUT_SIZE // stride
        for yy in range(n):
            for xx in range(n):
                centres.extend([((xx + 0.5) / n, (yy + 0.5) / n)] * per_cell)
    out = np.asarray(centres, dtype=np.float32)
    assert out.shape == (NUM_ANCHORS, 2)
    return out


def _iou(a: F32, b: F32) -> F32:
    """IoU of box ``a`` (4,) with boxes ``b`` (n, 4), boxes as x0, y0, x1, y1."""
    x0 = np.maximum(a[0], b[:, 0])
    y0 = np.maximum(a[1], b[:, 1])
    x1 = np.minimum(a[2], b[:, 2])
    y1 = np.minimum(a[3], b[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return (inter / np.maximum(area_a + area_b - inter, 1e-9)).astype(np.float32)


def weighted_nms(boxes: F32, scores: F32, iou_threshold: float = 0.3) -> list[tuple[F32, float]]:
    """MediaPipe's WEIGHTED non-max suppression: overlapping candidates are averaged.

    ``boxes`` rows are x0, y0, x1, y1 followed by keypoints; returns (row, score) pairs,
    best first. Averaging (rather than keeping the single best) steadies the box from
    frame to frame, which the posture estimate depends on.
    """
    order = np.argsort(-scores)
    boxes = boxes[order]
    scores = scores[order]
    out: list[tuple[F32, float]] = []
    alive = np.ones(len(scores), dtype=bool)
    for i in range(len(scores)):
        if not alive[i]:
            continue
        overlap = _iou(boxes[i, :4], boxes[:, :4]) > iou_threshold
        group = overlap & alive
        alive &= ~group
        w = scores[group]
        merged = (boxes[group] * w[:, None]).sum(axis=0) / w.sum()
        out.append((merged.astype(np.float32), float(scores[i])))
    return out


class Letterbox:
    """Fits a frame of a fixed size into the square model input, keeping its aspect.

    Buffers are allocated once: the camera size does not change while running.
    """

    def __init__(self, width: int, height: int, size: int = INPUT_SIZE) -> None:
        self.width, self.height, self.size = width, height, size
        self.scale = size / max(width, height)
        self.inner_w = round(width * self.scale)
        self.inner_h = round(height * self.scale)
        self.pad_x = (size - self.inner_w) // 2
        self.pad_y = (size - self.inner_h) // 2
        # Mid-grey padding: zero after the model's x/127.5-1 scaling, as MediaPipe pads.
        self.buffer: U8 = np.full((1, 1, size, size), 128, dtype=np.uint8)
        self._inner = self.buffer[
            0, 0, self.pad_y : self.pad_y + self.inner_h, self.pad_x : self.pad_x + self.inner_w
        ]

    def __call__(self, gray: U8) -> U8:
        if gray.shape != (self.height, self.width):
            raise ValueError(f"frame is {gray.shape}, expected {(self.height, self.width)}")
        cv2.resize(
            gray, (self.inner_w, self.inner_h), dst=self._inner, interpolation=cv2.INTER_AREA
        )
        return self.buffer

    def to_frame(self, xy: F32) -> F32:
        """Map normalised model coordinates (..., 2) to frame pixels."""
        px = (xy * self.size - np.array([self.pad_x, self.pad_y], np.float32)) / self.scale
        return px.astype(np.float32)


class FaceDetector:
    """Finds faces in grayscale frames; one onnxruntime session, one thread.

    >>> det = FaceDetector()                       # doctest: +SKIP
    >>> faces = det.detect(gray_320x240)           # doctest: +SKIP
    """

    def __init__(
        self,
        path: Path | None = None,
        *,
        score_threshold: float = 0.5,
        iou_threshold: float = 0.3,
        threads: int = 1,
    ) -> None:
        self.session = make_session(path or model_path("face_detector.onnx"), threads)
        self.input_name = self.session.get_inputs()[0].name
        self.anchors = ssd_anchors()
        # Compare raw logits with logit(threshold): no sigmoid over all 896 anchors.
        self.logit_threshold = math.log(score_threshold / (1 - score_threshold))
        self.iou_threshold = iou_threshold
        self._letterbox: Letterbox | None = None
        # Warm up now so that the first real frame is not slow (Frigate's habit).
        self.raw(np.full((1, 1, INPUT_SIZE, INPUT_SIZE), 128, np.uint8))

    def letterbox_for(self, gray: U8) -> Letterbox:
        h, w = gray.shape[:2]
        lb = self._letterbox
        if lb is None or (lb.width, lb.height) != (w, h):
            lb = self._letterbox = Letterbox(w, h)
        return lb

    def raw(self, tensor: U8) -> tuple[F32, F32]:
        """Run the model on a prepared ``[1, 1, 128, 128]`` uint8 tensor."""
        reg, cls = self.session.run(None, {self.input_name: tensor})
        return reg[0], cls[0, :, 0]

    def decode(self, reg: F32, cls: F32, lb: Letterbox) -> list[Face]:
        idx = np.nonzero(cls > self.logit_threshold)[0]
        if idx.size == 0:
            return []
        scores = (1.0 / (1.0 + np.exp(-np.clip(cls[idx], -100, 100)))).astype(np.float32)
        r = (reg[idx] / INPUT_SIZE).astype(np.float32)
        a = self.anchors[idx]
        cx = r[:, 0] + a[:, 0]
        cy = r[:, 1] + a[:, 1]
        half = r[:, 2:4] / 2
        x0y0 = lb.to_frame(np.stack([cx - half[:, 0], cy - half[:, 1]], axis=1))
        x1y1 = lb.to_frame(np.stack([cx + half[:, 0], cy + half[:, 1]], axis=1))
        kps = lb.to_frame(r[:, 4:16].reshape(-1, 6, 2) + a[:, None, :]).reshape(-1, 12)
        rows = np.concatenate([x0y0, x1y1, kps], axis=1).astype(np.float32)
        faces = []
        for row, score in weighted_nms(rows, scores, self.iou_threshold):
            x0, y0, x1, y1 = (float(v) for v in row[:4])
            kp = tuple((float(row[4 + 2 * k]), float(row[5 + 2 * k])) for k in range(6))
            faces.append(Face(x0, y0, x1 - x0, y1 - y0, score, kp))
        return faces

    def detect(self, gray: U8) -> list[Face]:
        """Faces in a grayscale (or YUV Y-plane) frame, best score first."""
        lb = self.letterbox_for(gray)
        reg, cls = self.raw(lb(gray))
        return self.decode(reg, cls, lb)
