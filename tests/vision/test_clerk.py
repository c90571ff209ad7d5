"""The clerk, and only the clerk: the seat's size band, track and start, on synthetic
faces and through the whole pipeline; the seat watch when the face is lost."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest

from agent.vision import scenes
from agent.vision.clerk import Clerk, ClerkConfig, SeatWatch
from agent.vision.detector import Face, FaceDetector
from agent.vision.pipeline import Vision, VisionConfig
from agent.vision.posture import Baseline, Posture
from agent.vision.smile import SmileClassifier

U8 = npt.NDArray[np.uint8]
CFG = VisionConfig()
#: Presence may take absent_ms (and a frame) to go after the clerk leaves.
SETTLE_MS = CFG.absent_ms + 100


@pytest.fixture
def vision(detector: FaceDetector, smile_model: SmileClassifier) -> Vision:
    return Vision(CFG, detector=detector, smile=smile_model)


def in_box(f: Face, box: tuple[float, float, float] | None) -> bool:
    assert box is not None
    x, y, s = box
    return x <= f.cx <= x + s and y <= f.cy <= y + s


def seat_face(dx: float = 0.0, rise: float = 0.0, scale: float = 1.0, score: float = 0.9) -> Face:
    """A face ``dx`` seated sizes beside and ``rise`` above the seat at (160, 150), 60 px."""
    s = 60 * scale
    return Face(160 + 60 * dx - s / 2, 150 - 60 * rise - s / 2, s, s, score)


@pytest.fixture
def clerk() -> Clerk:
    return Clerk(CFG, Posture(baseline=Baseline(cx=160, cy=150, size=60)))


# --- the seat, on synthetic faces -------------------------------------------------


def test_size_band_both_ways(clerk: Clerk) -> None:
    assert clerk.choose([seat_face(scale=0.65)], 320) is None  # a citizen behind
    assert clerk.choose([seat_face(scale=1.5)], 320) is None  # too big to be the clerk
    seated = seat_face()
    assert clerk.choose([seat_face(scale=0.65), seated, seat_face(scale=1.5)], 320) is seated
    standing = seat_face(rise=1.2, scale=0.9)
    assert clerk.choose([standing], 320) is standing


def test_a_huge_false_box_at_the_seat_is_not_the_clerk(clerk: Clerk) -> None:
    """A textured wall boxed at 3x the seated face, centred on the seat."""
    wall = seat_face(scale=3.0, score=0.7)
    assert clerk.choose([wall], 320) is None
    seated = seat_face()
    assert clerk.choose([wall, seated], 320) is seated


def test_bounds_of_the_band_are_the_configured_ones(clerk: Clerk) -> None:
    lo, hi = CFG.min_face_ratio, clerk.seat.max_ratio
    for scale, taken in (
        (lo - 0.02, False),
        (lo + 0.02, True),
        (hi - 0.02, True),
        (hi + 0.02, False),
    ):
        fresh = Clerk(CFG, clerk.posture)
        assert (fresh.choose([seat_face(scale=scale)], 320) is not None) is taken, scale


def test_a_track_may_lean_aside_but_a_face_aside_starts_none(clerk: Clerk) -> None:
    lean = [seat_face(dx=0.3 * k) for k in range(6)]  # 0 .. 1.5 sizes, 0.3 a frame
    slow = [seat_face(dx=0.05 * k) for k in range(31)]  # 0 .. 1.5 sizes, slowly
    assert all(clerk.choose([f], 320) is f for f in slow)
    assert Clerk(CFG, clerk.posture).choose([seat_face(dx=1.5)], 320) is None
    # Leaning as fast as a walker: the track is dropped once it drifts.
    fast = Clerk(CFG, clerk.posture)
    assert [fast.choose([f], 320) is f for f in lean][-1] is False


def test_a_walker_crossing_the_seat_is_never_taken_three_frames_running(clerk: Clerk) -> None:
    """0.15 seated sizes a frame at the clerk's size, through the seat column: the
    pipeline needs four frames running (present_ms at 10 fps) to call it present."""
    walker = [seat_face(dx=-1.5 + 0.15 * k) for k in range(21)]
    taken = "".join("x" if clerk.choose([f], 320) is f else "." for f in walker)
    assert "x" in taken and "xxx" not in taken, taken


def test_a_weak_detection_continues_a_track_but_starts_one_only_at_the_seated_face(
    clerk: Clerk,
) -> None:
    weak = clerk.seat.start_score - 0.05
    poster = seat_face(dx=0.25, rise=0.8, scale=0.8, score=weak)  # uncovered by leaving
    assert clerk.choose([poster], 320) is None
    assert clerk.choose([], 320) is None
    assert clerk.choose([seat_face(score=weak)], 320) is not None  # sitting down again
    leaning = [seat_face(dx=0.05 * k, rise=0.8, score=weak) for k in range(1, 12)]
    assert clerk.choose([seat_face(rise=0.8)], 320) is not None
    assert all(clerk.choose([f], 320) is f for f in leaning)


def test_standing_up_between_two_frames_stays_the_clerk(clerk: Clerk) -> None:
    """At the idle frame rate a whole stand-up falls between two frames."""
    assert clerk.choose([seat_face()], 320) is not None
    standing = seat_face(rise=1.3, scale=0.95)
    assert clerk.choose([standing], 320) is standing


def test_before_calibration_the_biggest_face_within_bounds(clerk: Clerk) -> None:
    clerk.posture.baseline = None
    small, near, filling = (
        Face(0, 0, 30, 30, 0.9),
        Face(100, 80, 70, 70, 0.9),
        Face(0, 0, 220, 220, 0.6),
    )
    assert clerk.choose([small, near, filling], 320) is near  # 220 px > 0.6 x 320
    assert clerk.choose([small, filling], 320) is None


def test_config_is_checked() -> None:
    with pytest.raises(ValueError):
        ClerkConfig(max_ratio=0.9)
    with pytest.raises(ValueError):
        ClerkConfig(speed_weight=0)


# --- through the pipeline ---------------------------------------------------------


def empty_seat_sequence(k: int, faces: list[U8], wall: scenes.WallKind) -> list[scenes.SceneFrame]:
    """The clerk seated 4 s, away 24 s while citizens 0.4-0.7x the clerk's size cross
    at the seat one after another, back for 3 s."""
    rng = np.random.default_rng(1000 + k)
    geo = scenes.Geometry.random(rng)
    passers: list[scenes.Passer] = []
    t = 5000
    while t < 26000:
        dur = int(rng.uniform(2500, 6000))
        scale = float(rng.uniform(0.4, 0.7))
        passers.append(scenes.Passer(t, t + dur, 1 + len(passers), at_seat=True, scale=scale))
        t += dur + int(rng.uniform(0, 800))
    sc = scenes.script([("seated", 4000), ("away", 24000), ("seated", 3000)], passers=passers)
    return list(scenes.compose(sc, faces, rng=rng, geometry=geo, wall=wall))


#: Of 48 such sequences (k 0-11, four walls) the former rule (>= 0.7x the clerk, no
#: track) kept the absent clerk present in these four, for 9-34 frames; and one more.
EMPTY_SEAT_CASES = [(0, "textured"), (4, "patterned"), (6, "textured"), (10, "textured")]
EMPTY_SEAT_CASES += [(1, "posters")]


@pytest.mark.parametrize(("k", "wall"), EMPTY_SEAT_CASES)
def test_citizens_crossing_the_empty_seat_are_never_the_clerk(
    vision: Vision, face_bank: Callable[..., list[U8]], k: int, wall: scenes.WallKind
) -> None:
    frames = empty_seat_sequence(k, face_bank(0, 6, k) + face_bank(1, 6, k), wall)
    obs = [vision.process(f.t_ms, f.gray) for f in frames]
    assert vision.calibrated
    assert obs[39].face_present  # seated, seen
    away = [o for f, o in zip(frames, obs, strict=True) if 4000 + SETTLE_MS <= f.t_ms < 28000]
    assert away and not any(o.face_present for o in away)
    assert obs[-1].face_present  # back


def wall_sequence(kind: scenes.WallKind, k: int, face: U8) -> list[scenes.SceneFrame]:
    rng = np.random.default_rng(2000 + k + 100 * len(kind))
    sc = scenes.script(
        [
            ("seated", 4000),
            ("standing", 3000),
            ("seated", 3000),
            ("away", 8000),
            ("standing", 2000),
            ("seated", 2000),
        ]
    )
    return list(scenes.compose(sc, [face], rng=rng, wall=kind))


#: posters 17: a poster's face behind the seat, boxed at 0.8x the clerk, uncovered
#: when the clerk leaves; the former rule took it for the clerk for 8 s.
WALL_CASES = [("textured", 0), ("textured", 1), ("patterned", 0), ("patterned", 2)]
WALL_CASES += [("posters", 0), ("posters", 5), ("posters", 17)]


@pytest.mark.parametrize(("kind", "k"), WALL_CASES)
def test_on_busy_walls_the_chosen_face_is_the_clerks(
    vision: Vision, face_bank: Callable[..., list[U8]], kind: scenes.WallKind, k: int
) -> None:
    frames = wall_sequence(kind, k, face_bank(k % 2, 1, k)[0])
    chosen = wrong = 0
    for fr in frames:
        obs = vision.process(fr.t_ms, fr.gray)
        if fr.present and vision.face is not None:
            chosen += 1
            wrong += not in_box(vision.face, fr.box)
        if not fr.present and fr.t_ms >= 10000 + SETTLE_MS:
            assert vision.face is None and not obs.face_present, fr.t_ms
    assert wrong == 0
    assert chosen >= 0.9 * sum(fr.present for fr in frames)


# --- the seat watch ---------------------------------------------------------------


def box_face(fr: scenes.SceneFrame) -> Face:
    assert fr.box is not None
    x, y, s = fr.box
    return Face(x, y, s, s, 1.0)


def masked(face: U8) -> U8:
    out = face.copy()
    out[face.shape[0] // 2 :] = 210  # a surgical mask over the mouth and chin
    return out


@pytest.mark.parametrize("seed", range(4))
def test_seat_watch_sees_a_masked_clerk_and_an_empty_seat(
    face_bank: Callable[..., list[U8]], detector: FaceDetector, seed: int
) -> None:
    face = face_bank(0, 1, seed)[0]
    cover = masked(face) if seed % 2 else np.full_like(face, 140)
    sc = scenes.script(
        [
            scenes.Segment("seated", 3000, 0),
            scenes.Segment("seated", 3000, 1),  # face covered
            scenes.Segment("away", 3000),
            scenes.Segment("seated", 3000, 1),  # covered, after the light drops
            scenes.Segment("away", 2000),
        ],
        lighting=[scenes.Lighting(9000, 9001, 0.6)],
    )
    rng = np.random.default_rng(40 + seed)
    frames = list(scenes.compose(sc, [face, cover], rng=rng, wall=scenes.WALL_KINDS[seed]))
    watch = SeatWatch()
    assert watch.occupied(frames[0].gray) is None  # nothing learnt yet
    seen = [f for f in frames[:30] if watch.learn(f.gray, box_face(f))]
    assert len(seen) == 30

    def answers(t0: int, t1: int) -> set[bool | None]:
        return {watch.occupied(f.gray) for f in frames if t0 <= f.t_ms < t1}

    assert answers(3000, 6000) == {True}
    assert answers(6000, 9000) == {False}  # empty seat, body reference only
    for f in frames:
        if 7000 <= f.t_ms < 9000:
            watch.learn_empty(f.gray)
    assert answers(9000, 12000) == {True}  # covered face, 0.6x the light
    assert answers(12000, 14000) == {False}


def test_seat_watch_says_nothing_when_the_clerk_looks_like_the_empty_seat() -> None:
    wall = np.full((240, 320), 120, np.uint8)
    watch = SeatWatch()
    seated = Face(130, 120, 60, 60, 0.9)
    assert watch.learn(wall, seated)
    assert watch.learn_empty(wall)
    assert watch.occupied(wall) is None


def test_seat_watch_learns_only_at_its_seat() -> None:
    gray = np.full((240, 320), 100, np.uint8)
    watch = SeatWatch()
    assert not watch.learn_empty(gray)  # no seat yet
    assert watch.learn(gray, Face(130, 120, 60, 60, 0.9))
    assert not watch.learn(gray, Face(130, 40, 60, 60, 0.9))  # standing: not a seat sample
    watch.forget()
    assert watch.occupied(gray) is None
