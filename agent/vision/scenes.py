"""Composed, labelled camera sequences for tests, benchmarks and model evaluation.

A scene is what the clerk camera of one window would see at the lores size: a
background (wall, desk edge), the clerk's head and shoulders, sometimes a citizen
passing behind, and the light changing. Faces come from the caller (face crops read
from disk by tests or build scripts): no image ships with the product.

A script is a list of ``Segment``s (``seated``, ``standing``, ``away``); moving
between seated and standing takes ``transition_ms`` and the ground truth flips half
way. Each ``SceneFrame`` carries its labels, so a pipeline run can be scored.

>>> rng = np.random.default_rng(0)
>>> faces = [np.full((64, 64), 120, np.uint8)]
>>> frames = list(compose(script([("seated", 1000)]), faces, rng=rng))
>>> frames[0].gray.shape, frames[0].standing
((240, 320), False)
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt

U8 = npt.NDArray[np.uint8]
Pose = Literal["seated", "standing", "away"]


@dataclass(frozen=True, slots=True)
class Segment:
    pose: Pose
    duration_ms: int
    #: Index into the faces list for this segment (changes expression); None = keep.
    face: int | None = None


@dataclass(frozen=True, slots=True)
class Passer:
    """A citizen's face crossing the background between ``start_ms`` and ``end_ms``."""

    start_ms: int
    end_ms: int
    face: int
    size: float = 30.0
    y: float = 70.0


@dataclass(frozen=True, slots=True)
class Lighting:
    """Gain ramps linearly to ``gain`` between ``start_ms`` and ``end_ms`` and stays."""

    start_ms: int
    end_ms: int
    gain: float


@dataclass(frozen=True)
class Script:
    segments: tuple[Segment, ...]
    passers: tuple[Passer, ...] = ()
    lighting: tuple[Lighting, ...] = ()
    transition_ms: int = 600
    frame_ms: int = 100

    @property
    def duration_ms(self) -> int:
        return sum(s.duration_ms for s in self.segments)


def script(
    segments: Sequence[tuple[Pose, int] | Segment],
    *,
    passers: Sequence[Passer] = (),
    lighting: Sequence[Lighting] = (),
    frame_ms: int = 100,
    transition_ms: int = 600,
) -> Script:
    segs = tuple(s if isinstance(s, Segment) else Segment(s[0], s[1]) for s in segments)
    return Script(segs, tuple(passers), tuple(lighting), transition_ms, frame_ms)


@dataclass(frozen=True)
class Geometry:
    """Where this window's camera sees the clerk; drawn at random per sequence."""

    seat_x: float = 160.0
    seat_y: float = 150.0
    size: float = 60.0
    #: Rise of the face centre when standing, in seated face sizes.
    rise: float = 1.2
    #: Face size standing / seated (further from a low camera, or leaning in).
    stand_scale: float = 0.95

    @staticmethod
    def random(rng: np.random.Generator) -> Geometry:
        return Geometry(
            seat_x=float(rng.uniform(120, 200)),
            seat_y=float(rng.uniform(140, 165)),
            size=float(rng.uniform(52, 72)),
            rise=float(rng.uniform(1.0, 1.5)),
            stand_scale=float(rng.uniform(0.88, 1.08)),
        )


@dataclass(frozen=True, slots=True)
class SceneFrame:
    t_ms: int
    gray: U8
    present: bool
    standing: bool | None
    face: int | None
    #: The clerk's face square as x, y, size in pixels (None when away).
    box: tuple[float, float, float] | None = field(default=None)
    #: True while moving between seated and standing (ground truth is ambiguous there).
    transition: bool = False


def background(rng: np.random.Generator, w: int = 320, h: int = 240) -> U8:
    """A wall with a gradient, a poster or two and a desk edge at the bottom."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(90, 170)
    img = base + rng.uniform(-30, 30) * xx / w + rng.uniform(-30, 30) * yy / h
    for _ in range(int(rng.integers(1, 4))):
        x0, y0 = int(rng.integers(0, w - 40)), int(rng.integers(0, h // 2))
        x1, y1 = x0 + int(rng.integers(20, 80)), y0 + int(rng.integers(20, 60))
        cv2.rectangle(img, (x0, y0), (x1, y1), float(rng.uniform(40, 220)), -1)
    img[int(h * 0.88) :] = rng.uniform(50, 110)  # desk
    return np.clip(img, 0, 255).astype(np.uint8)


def soft_mask(n: int) -> npt.NDArray[np.float32]:
    """Alpha for a pasted face crop: opaque centre, edges feathered into the scene."""
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    d = np.maximum(np.abs(xx - (n - 1) / 2), np.abs(yy - (n - 1) / 2)) / (n / 2)
    return np.clip((1.0 - d) / 0.12, 0, 1).astype(np.float32)


def paste_person(
    canvas: npt.NDArray[np.float32], face: U8, cx: float, cy: float, size: float, tone: float
) -> None:
    """Draw shoulders and hair, then the face crop centred at (cx, cy), ``size`` wide."""
    h, w = canvas.shape
    s = size
    cv2.ellipse(
        canvas,
        (round(cx), round(cy + 1.6 * s)),
        (round(1.2 * s), round(1.0 * s)),
        0,
        180,
        360,
        tone,
        -1,
    )
    cv2.rectangle(
        canvas, (round(cx - 1.2 * s), round(cy + 1.6 * s)), (round(cx + 1.2 * s), h), tone, -1
    )
    cv2.ellipse(
        canvas,
        (round(cx), round(cy - 0.1 * s)),
        (round(0.62 * s), round(0.7 * s)),
        0,
        0,
        360,
        tone * 0.5,
        -1,
    )
    n = max(8, round(s))
    crop = cv2.resize(face, (n, n), interpolation=cv2.INTER_AREA).astype(np.float32)
    x0, y0 = round(cx - n / 2), round(cy - n / 2)
    ax0, ay0, ax1, ay1 = max(x0, 0), max(y0, 0), min(x0 + n, w), min(y0 + n, h)
    if ax1 <= ax0 or ay1 <= ay0:
        return
    alpha = soft_mask(n)[ay0 - y0 : ay1 - y0, ax0 - x0 : ax1 - x0]
    patch = crop[ay0 - y0 : ay1 - y0, ax0 - x0 : ax1 - x0]
    region = canvas[ay0:ay1, ax0:ax1]
    region[:] = alpha * patch + (1 - alpha) * region


def _gain(lighting: Sequence[Lighting], t: int) -> float:
    g = 1.0
    for lt in lighting:
        if t >= lt.end_ms:
            g = lt.gain
        elif t > lt.start_ms:
            g = g + (lt.gain - g) * (t - lt.start_ms) / (lt.end_ms - lt.start_ms)
    return g


def compose(
    sc: Script,
    faces: Sequence[U8],
    *,
    rng: np.random.Generator,
    geometry: Geometry | None = None,
    t0_ms: int = 0,
    noise: float = 3.0,
) -> Iterator[SceneFrame]:
    """Render a script frame by frame; faces are 2-D uint8 crops (any square size)."""
    geo = geometry or Geometry.random(rng)
    bg = background(rng).astype(np.float32)
    tone = float(rng.uniform(30, 200))
    # Pose as a number per time: 0 seated, 1 standing, None away; transitions ramp.
    starts = np.cumsum([0] + [s.duration_ms for s in sc.segments])
    face_idx = 0
    prev_pose: Pose | None = None
    for t in range(0, sc.duration_ms, sc.frame_ms):
        k = int(np.searchsorted(starts, t, side="right") - 1)
        seg = sc.segments[k]
        if seg.face is not None:
            face_idx = seg.face
        into = t - int(starts[k])
        prev_pose = sc.segments[k - 1].pose if k > 0 else None
        level: float | None
        moving = False
        if seg.pose == "away":
            level = None
        else:
            level = 1.0 if seg.pose == "standing" else 0.0
            if prev_pose in ("seated", "standing") and prev_pose != seg.pose:
                ramp = min(1.0, into / sc.transition_ms)
                moving = ramp < 1.0
                level = ramp if seg.pose == "standing" else 1.0 - ramp
        canvas = bg.copy()
        for p in sc.passers:
            if p.start_ms <= t < p.end_ms:
                u = (t - p.start_ms) / (p.end_ms - p.start_ms)
                paste_person(
                    canvas,
                    faces[p.face % len(faces)],
                    -p.size + u * (320 + 2 * p.size),
                    p.y,
                    p.size,
                    tone=float(rng.uniform(60, 160)),
                )
        box = None
        if level is not None:
            sway = rng.normal(0, 1.0, 2)
            size = geo.size * (1 + (geo.stand_scale - 1) * level)
            cx = geo.seat_x + sway[0]
            cy = geo.seat_y - geo.rise * geo.size * level + sway[1]
            paste_person(canvas, faces[face_idx % len(faces)], cx, cy, size, tone)
            box = (cx - size / 2, cy - size / 2, size)
        canvas *= _gain(sc.lighting, t)
        if noise:
            canvas += rng.normal(0, noise, canvas.shape).astype(np.float32)
        gray = np.clip(canvas, 0, 255).astype(np.uint8)
        yield SceneFrame(
            t_ms=t0_ms + t,
            gray=gray,
            present=level is not None,
            standing=None if level is None else level >= 0.5,
            face=None if level is None else face_idx,
            box=box,
            transition=moving,
        )


def save(frames: Iterable[SceneFrame], folder: Path) -> int:
    """Write frames as ``<n>.png`` with ``timestamps.csv`` (for ReplaySource) and the
    ground truth in ``labels.csv``; returns the number of frames written."""
    folder.mkdir(parents=True, exist_ok=True)
    n = 0
    with (
        (folder / "timestamps.csv").open("w", newline="") as ts,
        (folder / "labels.csv").open("w", newline="") as lab,
    ):
        tw, lw = csv.writer(ts), csv.writer(lab)
        tw.writerow(["file", "t_ms"])
        lw.writerow(["t_ms", "present", "standing", "transition", "face"])
        for fr in frames:
            name = f"{n:06d}.png"
            cv2.imwrite(str(folder / name), fr.gray)
            tw.writerow([name, fr.t_ms])
            lw.writerow(
                [
                    fr.t_ms,
                    int(fr.present),
                    "" if fr.standing is None else int(fr.standing),
                    int(fr.transition),
                    "" if fr.face is None else fr.face,
                ]
            )
            n += 1
    return n
