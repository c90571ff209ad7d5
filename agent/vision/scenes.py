"""Composed, labelled camera sequences for tests, benchmarks and model evaluation.

A scene is what the clerk camera of one window would see at the lores size: a
background (wall, desk edge), the clerk's head and shoulders, sometimes a citizen
passing behind, and the light changing. Faces come from the caller (face crops read
from disk by tests or build scripts): no image ships with the product.

A script is a list of ``Segment``s (``seated``, ``standing``, ``away``); moving
between seated and standing takes ``transition_ms`` and the ground truth flips half
way. Each ``SceneFrame`` carries its labels, so a pipeline run can be scored.

The hard cases are options, each off by default (a default scene is drawn exactly as
before, random stream included): a wall of another kind (``background(kind=...)``,
``compose(wall=...)``: textured, patterned, covered in posters with face-like
drawings), a hall window behind the clerk (``Backlight``), a citizen crossing at the
empty seat itself (``Passer(at_seat=True)``), and a segment's face crop swapped for an
occluded one (``Segment.face``: a masked face, a hand over it).

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
F32 = npt.NDArray[np.float32]
Pose = Literal["seated", "standing", "away"]
#: plain: a gradient and a poster or two; textured: grain or brick; patterned: stripes,
#: checks or tiles; posters: many, with face-like drawings and text-like strokes.
WallKind = Literal["plain", "textured", "patterned", "posters"]
WALL_KINDS: tuple[WallKind, ...] = ("plain", "textured", "patterned", "posters")


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
    #: Cross at the seat's height (``y`` is then ignored): behind an empty seat.
    at_seat: bool = False
    #: The face size as a fraction of the clerk's seated size (``size`` is then ignored).
    scale: float | None = None

    def placed(self, geo: Geometry) -> tuple[float, float]:
        """(face centre y, face size) of this passer in a scene of that geometry."""
        size = self.size if self.scale is None else self.scale * geo.size
        return (geo.seat_y if self.at_seat else self.y), size


@dataclass(frozen=True, slots=True)
class Lighting:
    """Gain ramps linearly to ``gain`` between ``start_ms`` and ``end_ms`` and stays."""

    start_ms: int
    end_ms: int
    gain: float


@dataclass(frozen=True, slots=True)
class Backlight:
    """A bright hall window behind the clerk from ``start_ms`` until ``end_ms``.

    The window (``half_width`` seated face sizes either side of the seat, from the top
    of the frame to the clerk's shoulders) is near-saturated, 230-255; the people in
    front of it are darkened to ``subject_gain``, as an exposure set for the window
    leaves them.
    """

    start_ms: int
    end_ms: int
    subject_gain: float = 0.45
    half_width: float = 1.6

    def on(self, t_ms: int) -> bool:
        return self.start_ms <= t_ms < self.end_ms


@dataclass(frozen=True)
class Script:
    segments: tuple[Segment, ...]
    passers: tuple[Passer, ...] = ()
    lighting: tuple[Lighting, ...] = ()
    transition_ms: int = 600
    frame_ms: int = 100
    backlight: tuple[Backlight, ...] = ()

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
    backlight: Sequence[Backlight] = (),
) -> Script:
    segs = tuple(s if isinstance(s, Segment) else Segment(s[0], s[1]) for s in segments)
    return Script(segs, tuple(passers), tuple(lighting), transition_ms, frame_ms, tuple(backlight))


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


def background(
    rng: np.random.Generator, w: int = 320, h: int = 240, kind: WallKind = "plain"
) -> U8:
    """A wall of that kind with a gradient, posters and a desk edge at the bottom.

    >>> walls = [background(np.random.default_rng(1), kind=k) for k in WALL_KINDS]
    >>> [round(float(b.std())) > 0 for b in walls]
    [True, True, True, True]
    """
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(90, 170)
    img = base + rng.uniform(-30, 30) * xx / w + rng.uniform(-30, 30) * yy / h
    if kind == "textured":
        img += _texture(rng, xx, yy)
    elif kind == "patterned":
        img += _pattern(rng, xx, yy)
    if kind == "posters":
        _posters(rng, img)
    else:
        for _ in range(int(rng.integers(1, 4))):
            x0, y0 = int(rng.integers(0, w - 40)), int(rng.integers(0, h // 2))
            x1, y1 = x0 + int(rng.integers(20, 80)), y0 + int(rng.integers(20, 60))
            cv2.rectangle(img, (x0, y0), (x1, y1), float(rng.uniform(40, 220)), -1)
    img[int(h * 0.88) :] = rng.uniform(50, 110)  # desk
    return np.clip(img, 0, 255).astype(np.uint8)


def _texture(rng: np.random.Generator, xx: F32, yy: F32) -> F32:
    """Grain (noise at two scales, as plaster or fabric) or brick courses with mortar."""
    if rng.random() < 0.5:
        fine = rng.normal(0, float(rng.uniform(6, 14)), xx.shape).astype(np.float32)
        coarse = rng.normal(0, float(rng.uniform(20, 40)), xx.shape).astype(np.float32)
        return fine + cv2.GaussianBlur(coarse, (0, 0), float(rng.uniform(2, 5)))
    bh, bw = float(rng.uniform(9, 18)), float(rng.uniform(22, 42))
    row = np.floor(yy / bh)
    col = np.floor((xx + (row % 2) * bw / 2) / bw)
    # One tone per brick, from a hash of its row and column (no per-pixel draw needed).
    jitter = rng.uniform(-25, 25, 997).astype(np.float32)
    out = jitter[((row * 131 + col * 17) % 997).astype(np.int64)]
    mortar = (yy % bh < 2) | ((xx + (row % 2) * bw / 2) % bw < 2)
    out[mortar] = float(rng.uniform(-50, 50))
    return out.astype(np.float32)


def _pattern(rng: np.random.Generator, xx: F32, yy: F32) -> F32:
    """Stripes (any angle), checks, or tiles with grout lines: strong repeated edges."""
    amp = float(rng.uniform(25, 55))
    period = float(rng.uniform(6, 26))
    which = int(rng.integers(3))
    if which == 0:
        a = float(rng.uniform(0, np.pi))
        u = xx * np.cos(a) + yy * np.sin(a)
        return (amp * np.sign(np.sin(2 * np.pi * u / period))).astype(np.float32)
    if which == 1:
        checks = (np.floor(xx / period) + np.floor(yy / period)) % 2
        return (amp * (2 * checks - 1)).astype(np.float32)
    tile = period + 10
    grout = (xx % tile < 2) | (yy % tile < 2)
    return np.where(grout, -amp, 0.0).astype(np.float32)


def _posters(rng: np.random.Generator, img: F32) -> None:
    """Three to six posters, each with text-like strokes, most with a drawn face (a
    head, eyes, a mouth) small enough to be on the wall, not at the window."""
    h, w = img.shape
    for _ in range(int(rng.integers(3, 7))):
        pw, ph = int(rng.integers(30, 90)), int(rng.integers(40, 100))
        x0, y0 = int(rng.integers(0, w - pw)), int(rng.integers(0, max(1, h * 3 // 4 - ph)))
        paper = float(rng.uniform(150, 240))
        ink = float(rng.uniform(10, 90))
        cv2.rectangle(img, (x0, y0), (x0 + pw, y0 + ph), paper, -1)
        cv2.rectangle(img, (x0, y0), (x0 + pw, y0 + ph), ink, 1)
        top = y0 + 4
        if rng.random() < 0.75:
            fs = int(rng.integers(10, min(32, pw - 4, ph // 2) + 1))
            fx, fy = x0 + pw // 2, y0 + 4 + fs // 2
            skin = float(rng.uniform(60, 200))
            cv2.ellipse(img, (fx, fy), (fs // 2, round(fs * 0.6)), 0, 0, 360, skin, -1)
            e = max(1, fs // 8)
            for ex in (fx - fs // 4, fx + fs // 4):
                cv2.circle(img, (ex, fy - fs // 8), e, ink, -1)
            cv2.line(img, (fx - fs // 5, fy + fs // 4), (fx + fs // 5, fy + fs // 4), ink, e)
            top = fy + round(fs * 0.6) + 4
        for ty in range(top, y0 + ph - 3, int(rng.integers(5, 9))):
            tx = x0 + 3
            while tx < x0 + pw - 6:
                n = int(rng.integers(3, 12))
                cv2.line(img, (tx, ty), (min(tx + n, x0 + pw - 3), ty), ink, 1)
                tx += n + int(rng.integers(2, 5))


def soft_mask(n: int) -> npt.NDArray[np.float32]:
    """Alpha for a pasted face crop: opaque centre, edges feathered into the scene."""
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    d = np.maximum(np.abs(xx - (n - 1) / 2), np.abs(yy - (n - 1) / 2)) / (n / 2)
    return np.clip((1.0 - d) / 0.12, 0, 1).astype(np.float32)


def paste_person(
    canvas: npt.NDArray[np.float32],
    face: U8,
    cx: float,
    cy: float,
    size: float,
    tone: float,
    gain: float = 1.0,
) -> None:
    """Draw shoulders and hair, then the face crop centred at (cx, cy), ``size`` wide;
    ``gain`` darkens the person alone (backlight)."""
    h, w = canvas.shape
    s = size
    tone *= gain
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
    crop = cv2.resize(face, (n, n), interpolation=cv2.INTER_AREA).astype(np.float32) * gain
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


def window_lit(bg: F32, geo: Geometry, light: Backlight) -> F32:
    """The background with the hall window behind the seat near-saturated (230-255)."""
    out = bg.copy()
    h, w = out.shape
    x0 = max(0, round(geo.seat_x - light.half_width * geo.size))
    x1 = min(w, round(geo.seat_x + light.half_width * geo.size))
    y1 = min(h, round(geo.seat_y + 0.8 * geo.size))
    sky = 255.0 - 25.0 * np.arange(y1, dtype=np.float32)[:, None] / max(y1, 1)
    out[:y1, x0:x1] = sky
    # A mullion and a transom: the dark frame bars of the window.
    out[:y1, max(x0, (x0 + x1) // 2 - 2) : (x0 + x1) // 2 + 2] = 70.0
    out[max(0, y1 // 3 - 2) : y1 // 3 + 2, x0:x1] = 70.0
    return out


def compose(
    sc: Script,
    faces: Sequence[U8],
    *,
    rng: np.random.Generator,
    geometry: Geometry | None = None,
    t0_ms: int = 0,
    noise: float = 3.0,
    wall: WallKind | U8 = "plain",
) -> Iterator[SceneFrame]:
    """Render a script frame by frame; faces are 2-D uint8 crops (any square size).

    ``wall`` is a kind for ``background`` or a ready grey background (the frame size).
    """
    geo = geometry or Geometry.random(rng)
    if isinstance(wall, str):
        bg = background(rng, kind=wall).astype(np.float32)
    else:
        bg = np.asarray(wall, dtype=np.float32)
    lit = {light: window_lit(bg, geo, light) for light in sc.backlight}
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
        backlit = next((b for b in sc.backlight if b.on(t)), None)
        canvas = bg.copy() if backlit is None else lit[backlit].copy()
        gain = 1.0 if backlit is None else backlit.subject_gain
        for p in sc.passers:
            if p.start_ms <= t < p.end_ms:
                u = (t - p.start_ms) / (p.end_ms - p.start_ms)
                py, ps = p.placed(geo)
                paste_person(
                    canvas,
                    faces[p.face % len(faces)],
                    -ps + u * (canvas.shape[1] + 2 * ps),
                    py,
                    ps,
                    tone=float(rng.uniform(60, 160)),
                    gain=gain,
                )
        box = None
        if level is not None:
            sway = rng.normal(0, 1.0, 2)
            size = geo.size * (1 + (geo.stand_scale - 1) * level)
            cx = geo.seat_x + sway[0]
            cy = geo.seat_y - geo.rise * geo.size * level + sway[1]
            paste_person(canvas, faces[face_idx % len(faces)], cx, cy, size, tone, gain)
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
