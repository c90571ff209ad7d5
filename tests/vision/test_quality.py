"""What the pipeline cannot see it says: the view, the face, the mouth."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest

from agent.observation import Unseen
from agent.vision import scenes
from agent.vision.detector import Face, FaceDetector
from agent.vision.pipeline import Vision
from agent.vision.quality import QualityConfig, face_unreadable, turn, view_unusable
from agent.vision.smile import MouthReading, SmileClassifier

U8 = npt.NDArray[np.uint8]
Q = QualityConfig()


def frames(faces: list[U8], ms: int = 4000, **kw: object) -> list[scenes.SceneFrame]:
    sc = scenes.script([("seated", ms)])
    rng = np.random.default_rng(5)
    geo = scenes.Geometry(seat_x=160, seat_y=150, size=64)
    return list(scenes.compose(sc, faces, rng=rng, geometry=geo))


def face_with(nose_dx: float, roll_deg: float = 0.0) -> Face:
    """A 60 px face whose nose sits ``nose_dx`` eye distances off the eyes' midpoint."""
    a = np.radians(roll_deg)
    ux, uy = np.cos(a), np.sin(a)
    eyes = 24.0
    rx, ry = 100 - ux * eyes / 2, 100 - uy * eyes / 2
    lx, ly = 100 + ux * eyes / 2, 100 + uy * eyes / 2
    nx, ny = 100 + ux * nose_dx * eyes - uy * 10, 100 + uy * nose_dx * eyes + ux * 10
    return Face(70, 70, 60, 60, 0.9, ((rx, ry), (lx, ly), (nx, ny), (100, 120)))


def test_a_scene_is_usable_and_a_covered_lens_dark_frame_or_glare_is_not(
    face_bank: Callable[..., list[U8]],
) -> None:
    scene = frames(face_bank(0, 1))[0].gray
    assert not view_unusable(scene, Q)
    assert view_unusable(np.full_like(scene, 14), Q)  # a hand over the lens
    rng = np.random.default_rng(1)
    flat = np.clip(rng.normal(120, 2, scene.shape), 0, 255).astype(np.uint8)
    assert view_unusable(flat, Q)  # paper over it: bright but featureless
    glare = scene.copy()
    glare[:, : scene.shape[1] * 3 // 4] = 255
    assert view_unusable(glare, Q)
    assert not view_unusable((scene * 0.5).astype(np.uint8), Q)  # dim is still a view


def test_head_turn_from_the_keypoints() -> None:
    assert turn(face_with(0.0)) == pytest.approx(0.0, abs=1e-6)
    assert turn(face_with(0.7)) == pytest.approx(0.7, abs=1e-6)
    # A rolled head with the nose centred is not turned (the crop levels the roll).
    assert turn(face_with(0.0, roll_deg=25)) == pytest.approx(0.0, abs=1e-6)
    gray = np.random.default_rng(2).integers(40, 200, (240, 320)).astype(np.uint8)
    assert face_unreadable(gray, face_with(0.1), Q) is None
    assert face_unreadable(gray, face_with(0.8), Q) is Unseen.TURNED


def test_frontal_held_out_faces_are_readable(
    detector: FaceDetector, face_bank: Callable[..., list[U8]]
) -> None:
    faces = face_bank(0, 30, 3) + face_bank(1, 30, 3)
    unreadable = 0
    found = 0
    for f in faces:
        gray = frames([f], ms=100)[0].gray
        dets = detector.detect(gray)
        if not dets:
            continue
        found += 1
        unreadable += face_unreadable(gray, max(dets, key=lambda d: d.w), Q) is not None
    assert found >= 50 and unreadable <= 1, (found, unreadable)


def test_a_backlit_face_is_unreadable(face_bank: Callable[..., list[U8]]) -> None:
    fr = frames(face_bank(1, 1, 4), ms=100)[0]
    assert fr.box is not None
    x, y, size = (int(v) for v in fr.box)
    dark = fr.gray.copy()
    dark[y : y + size, x : x + size] //= 12  # a face in shadow against the hall windows
    face = Face(x, y, size, size, 0.9)
    assert face_unreadable(fr.gray, face, Q) is None
    assert face_unreadable(dark, face, Q) is Unseen.FACE_EXPOSURE


class CoveredMouths(SmileClassifier):
    """The shipped classifier, reading every mouth as covered (its visible output low)."""

    def read(self, gray: U8, face: Face) -> MouthReading:
        return MouthReading(super().read(gray, face).smile, visible=0.1)


def test_the_pipeline_reports_a_covered_mouth_and_a_covered_lens(
    detector: FaceDetector, face_bank: Callable[..., list[U8]]
) -> None:
    seq = frames(face_bank(1, 1, 6))
    vision = Vision(detector=detector, smile=CoveredMouths())
    obs = [vision.process(f.t_ms, f.gray) for f in seq]
    present = [o for o in obs if o.face_present]
    assert len(present) > 30
    assert all(o.smile is None and o.unseen is Unseen.MOUTH_COVERED for o in present)
    assert all(o.standing is not None for o in present)  # the posture is still seen
    blocked = vision.process(seq[-1].t_ms + 100, np.full_like(seq[0].gray, 10))
    assert (blocked.face_present, blocked.view_ok, blocked.unseen) == (False, False, Unseen.VIEW)
    assert not blocked.seen_absent and not blocked.smile_seen
