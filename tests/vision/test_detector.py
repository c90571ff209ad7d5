"""BlazeFace decoding and detection on composed scenes of real faces."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from agent.vision import scenes
from agent.vision.detector import NUM_ANCHORS, FaceDetector, Letterbox, ssd_anchors, weighted_nms

U8 = npt.NDArray[np.uint8]


def test_anchor_layout() -> None:
    a = ssd_anchors()
    assert a.shape == (NUM_ANCHORS, 2)
    # 16x16 map with 2 anchors per cell first, then 8x8 with 6 per cell.
    assert np.allclose(a[0], [0.5 / 16, 0.5 / 16]) and np.allclose(a[1], a[0])
    assert np.allclose(a[512], [0.5 / 8, 0.5 / 8]) and np.allclose(a[517], a[512])
    assert np.allclose(a[-1], [7.5 / 8, 7.5 / 8])


def test_letterbox_round_trip() -> None:
    lb = Letterbox(320, 240)
    assert (lb.inner_w, lb.inner_h, lb.pad_y) == (128, 96, 16)
    # The model-space centre of a 320x240 frame maps back to its centre.
    assert np.allclose(lb.to_frame(np.array([[0.5, 0.5]], np.float32)), [[160, 120]])


def test_weighted_nms_merges_overlaps_and_keeps_separate_faces() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    out = weighted_nms(boxes, np.array([0.9, 0.6, 0.8], np.float32))
    assert len(out) == 2
    merged, score = out[0]
    assert score == np.float32(0.9) or abs(score - 0.9) < 1e-6
    assert 0 < merged[0] < 1  # averaged, weighted to the better box


def test_finds_faces_in_composed_scenes(
    detector: FaceDetector, face_bank: Callable[..., list[U8]]
) -> None:
    rng = np.random.default_rng(3)
    faces = face_bank(0, 30) + face_bank(1, 30)
    found = 0
    for face in faces:
        fr = next(scenes.compose(scenes.script([("seated", 100)]), [face], rng=rng))
        assert fr.box is not None
        x, y, s = fr.box
        hits = [f for f in detector.detect(fr.gray) if x <= f.cx <= x + s and y <= f.cy <= y + s]
        found += bool(hits)
    assert found / len(faces) >= 0.95


def test_no_face_in_an_empty_scene(detector: FaceDetector) -> None:
    rng = np.random.default_rng(4)
    for _ in range(10):
        assert detector.detect(scenes.background(rng)) == []
