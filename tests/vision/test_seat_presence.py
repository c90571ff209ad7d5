"""A clerk the detector loses at the seat is not absent; a clerk who left is."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import numpy.typing as npt

from agent.observation import Unseen
from agent.vision import scenes
from agent.vision.detector import FaceDetector
from agent.vision.pipeline import Vision, VisionConfig
from agent.vision.smile import SmileClassifier

U8 = npt.NDArray[np.uint8]
GRACE = VisionConfig().lost_grace_ms


def hand_over(face: U8) -> U8:
    """A palm held in front of most of the face."""
    n = face.shape[0]
    out = face.copy()
    cv2.ellipse(out, (n // 2, int(n * 0.55)), (n // 2, int(n * 0.42)), 0, 0, 360, 170, -1)
    return out


def run(
    segments: list[scenes.Segment], faces: list[U8], detector: FaceDetector, smile: SmileClassifier
) -> list[tuple[bool, bool, bool | None, Unseen | None, bool]]:
    """(truth present, face found, seat occupied, unseen, seen absent) per frame."""
    vision = Vision(detector=detector, smile=smile)
    rng = np.random.default_rng(9)
    geo = scenes.Geometry(seat_x=160, seat_y=150, size=62)
    out = []
    for fr in scenes.compose(scenes.script(segments), faces, rng=rng, geometry=geo):
        o = vision.process(fr.t_ms, fr.gray)
        out.append((fr.present, o.face_present, o.seat_occupied, o.unseen, o.seen_absent))
    return out


def test_a_face_hidden_at_the_seat_is_never_an_absence(
    detector: FaceDetector, smile_model: SmileClassifier, face_bank: Callable[..., list[U8]]
) -> None:
    for face in face_bank(0, 4, 11):
        got = run(
            [scenes.Segment("seated", 6000, 0), scenes.Segment("seated", 30_000, 1)],
            [face, hand_over(face)],
            detector,
            smile_model,
        )
        hidden = got[60:]
        assert sum(not found for _, found, *_ in hidden) > 0.8 * len(hidden)  # detector lost it
        assert not any(absent for *_, absent in hidden)
        assert all(u is Unseen.FACE_LOST for _, found, _, u, _ in hidden if not found)


def test_a_clerk_who_left_is_seen_absent_once_the_grace_is_over(
    detector: FaceDetector, smile_model: SmileClassifier, face_bank: Callable[..., list[U8]]
) -> None:
    faces = face_bank(0, 4, 12)
    for face in faces:
        got = run(
            [scenes.Segment("seated", 6000, 0), scenes.Segment("away", GRACE + 20_000, 0)],
            [face],
            detector,
            smile_model,
        )
        away = got[60:]
        late = away[(GRACE + 2000) // 100 :]
        assert all(absent for *_, absent in late), [a for *_, a in away]
