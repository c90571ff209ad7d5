"""Procedural mouth occluders for training and evaluating the ``visible`` output.

The smile classifier's second output says whether the mouth can be seen at all; no
data set here has masked or covered faces, so the build draws occluders onto the
64x64 grey face crops: masks, hands and objects, placed from the face's own
keypoints (our detector's eyes, nose, mouth and ears on that crop).

Two disjoint families keep the evaluation honest. ``TRAIN`` draws light surgical
masks (light blue / white, pleats, ear loops), light-skinned hands held over the
lower face from the front, and generic light shapes (random polygons, ellipses,
bars; plain or grainy) near the mouth. ``EVAL`` draws what training never showed: black and
patterned cloth masks of another cut, KN95 shapes, darker hands, hands entering
from the side, partial covers (a mask under the nose, fingers across the mouth),
cups, phones, microphones and scarves. Each family also has harmless look-alikes
(a mask pulled down to the chin, a hand under the chin) that leave the mouth in view.

The label comes from the drawing, not from the family: the share of a mouth ellipse
the occluder hides. At least ``HIDDEN_COVER`` hidden -> not visible; at most
``VISIBLE_COVER`` -> visible; in between the crop is ambiguous and neither trains
nor scores the ``visible`` output.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import cv2
import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from agent.vision.detector import FaceDetector

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]

SIZE: Final = 64
#: Drawing is done at this multiple of the crop size, then area-averaged: soft edges.
SS: Final = 4
HIDDEN_COVER: Final = 0.8
VISIBLE_COVER: Final = 0.2


@dataclass(frozen=True, slots=True)
class FacePoints:
    """Keypoints of a face crop, in crop pixels (BlazeFace order, without the ears'
    ambiguity: ``ear_r`` is on the image's left)."""

    eye_r: tuple[float, float]
    eye_l: tuple[float, float]
    nose: tuple[float, float]
    mouth: tuple[float, float]
    ear_r: tuple[float, float]
    ear_l: tuple[float, float]

    @property
    def iod(self) -> float:
        """Distance between the eyes: the unit of every occluder's size."""
        return max(8.0, math.dist(self.eye_r, self.eye_l))

    @property
    def eye_y(self) -> float:
        return (self.eye_r[1] + self.eye_l[1]) / 2

    @property
    def chin_y(self) -> float:
        return self.mouth[1] + 0.85 * max(4.0, self.mouth[1] - self.nose[1])

    @property
    def half_width(self) -> float:
        return max(0.5 * (self.ear_l[0] - self.ear_r[0]), 0.8 * self.iod)

    @staticmethod
    def of(kp: Sequence[tuple[float, float]]) -> FacePoints:
        return FacePoints(*(tuple(map(float, p)) for p in kp[:6]))  # type: ignore[arg-type]


#: Where the points lie when the detector finds no face in a crop (median of
#: smiles-lfw training crops; GENKI crops sit a little lower).
DEFAULT_POINTS: Final = FacePoints(
    (17.4, 17.3), (47.7, 17.4), (32.5, 32.4), (32.2, 48.6), (0.3, 26.7), (64.1, 26.6)
)


def locate(images: Sequence[U8] | U8, detector: FaceDetector) -> list[FacePoints]:
    """Keypoints of each 64x64 crop: pasted on a plain 192x192 canvas (the detector
    wants some context around a face) and detected there."""
    from agent.vision.scenes import paste_person

    out: list[FacePoints] = []
    c = 96.0
    for img in images:
        canvas = np.full((192, 192), 120.0, np.float32)
        paste_person(canvas, img, c, c, SIZE, tone=100.0)
        faces = [
            f
            for f in detector.detect(np.clip(canvas, 0, 255).astype(np.uint8))
            if abs(f.cx - c) < SIZE / 2 and abs(f.cy - c) < SIZE / 2 and len(f.keypoints) >= 6
        ]
        if not faces:
            out.append(DEFAULT_POINTS)
            continue
        off = c - SIZE / 2
        out.append(FacePoints.of([(x - off, y - off) for x, y in faces[0].keypoints]))
    return out


# --------------------------------------------------------------------------- drawing


class _Canvas:
    """An occluder being drawn at ``SS`` x resolution: its coverage and its grey."""

    def __init__(self) -> None:
        n = SIZE * SS
        self.alpha = np.zeros((n, n), np.float32)
        self.grey = np.zeros((n, n), np.float32)
        yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
        self.xx, self.yy = xx / SS, yy / SS  # crop pixel coordinates

    def fill(self, shape: F32, grey: F32 | float) -> None:
        """Paint ``grey`` where ``shape`` (0..1) is, over what is already drawn."""
        self.grey = shape * grey + (1 - shape) * self.grey
        self.alpha = np.maximum(self.alpha, shape)

    def poly(self, pts: Sequence[tuple[float, float]]) -> F32:
        m = np.zeros_like(self.alpha)
        p = np.round(np.asarray(pts, np.float64) * SS).astype(np.int32)
        cv2.fillPoly(m, [p], 1.0)
        return m

    def ellipse(self, c: tuple[float, float], ax: tuple[float, float], ang: float = 0.0) -> F32:
        m = np.zeros_like(self.alpha)
        cv2.ellipse(
            m,
            (round(c[0] * SS), round(c[1] * SS)),
            (max(1, round(ax[0] * SS)), max(1, round(ax[1] * SS))),
            ang,
            0,
            360,
            1.0,
            -1,
        )
        return m

    def capsule(self, a: tuple[float, float], b: tuple[float, float], r: float) -> F32:
        m = np.zeros_like(self.alpha)
        pa = (round(a[0] * SS), round(a[1] * SS))
        pb = (round(b[0] * SS), round(b[1] * SS))
        cv2.line(m, pa, pb, 1.0, max(1, round(2 * r * SS)))
        cv2.circle(m, pa, max(1, round(r * SS)), 1.0, -1)
        cv2.circle(m, pb, max(1, round(r * SS)), 1.0, -1)
        return m

    def line(self, a: tuple[float, float], b: tuple[float, float], width: float) -> F32:
        m = np.zeros_like(self.alpha)
        cv2.line(
            m,
            (round(a[0] * SS), round(a[1] * SS)),
            (round(b[0] * SS), round(b[1] * SS)),
            1.0,
            max(1, round(width * SS)),
        )
        return m

    def finish(self) -> tuple[F32, F32]:
        """Coverage and grey at crop resolution (grey premultiplied by coverage)."""
        a = cv2.resize(self.alpha, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
        g = cv2.resize(self.alpha * self.grey, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
        return np.asarray(a, np.float32), np.asarray(g, np.float32)


def _rot(
    pts: Sequence[tuple[float, float]], c: tuple[float, float], deg: float
) -> list[tuple[float, float]]:
    t = math.radians(deg)
    cs, sn = math.cos(t), math.sin(t)
    return [
        (c[0] + (x - c[0]) * cs - (y - c[1]) * sn, c[1] + (x - c[0]) * sn + (y - c[1]) * cs)
        for x, y in pts
    ]


# Textures: a grey field over the canvas (crop pixel coordinates).


def _plain(cv: _Canvas, rng: np.random.Generator, tone: float) -> F32:
    n = cv.xx.shape[0]
    noise = cv2.GaussianBlur(rng.normal(0, 1, (n, n)).astype(np.float32), (0, 0), 2.0)
    shade = (
        1
        + rng.uniform(-0.12, 0.12) * (cv.xx - 32) / 32
        + rng.uniform(-0.1, 0.1) * (cv.yy - 32) / 32
    )
    return np.asarray(tone * shade + 6 * noise, np.float32)


def _stripes(cv: _Canvas, rng: np.random.Generator, a: float, b: float) -> F32:
    ang = rng.uniform(0, math.pi)
    period = rng.uniform(2.5, 6.0)
    u = cv.xx * math.cos(ang) + cv.yy * math.sin(ang)
    return np.where(np.sin(2 * math.pi * u / period) > 0, a, b).astype(np.float32)


def _dots(cv: _Canvas, rng: np.random.Generator, a: float, b: float) -> F32:
    period = rng.uniform(3.0, 6.0)
    r = period * rng.uniform(0.2, 0.35)
    u = (cv.xx % period) - period / 2
    v = (cv.yy % period) - period / 2
    return np.where(u * u + v * v < r * r, a, b).astype(np.float32)


def _check(cv: _Canvas, rng: np.random.Generator, a: float, b: float) -> F32:
    period = rng.uniform(3.0, 8.0)
    s = np.sin(2 * math.pi * cv.xx / period) * np.sin(2 * math.pi * cv.yy / period)
    return np.where(s > 0, a, b).astype(np.float32)


def _knit(cv: _Canvas, rng: np.random.Generator, a: float, b: float) -> F32:
    rib = 0.5 + 0.5 * np.sin(2 * math.pi * cv.xx / rng.uniform(1.5, 3.0))
    row = 0.5 + 0.5 * np.sin(2 * math.pi * cv.yy / rng.uniform(2.0, 4.0))
    return np.asarray(b + (a - b) * (0.6 * rib + 0.4 * row), np.float32)


_PATTERNS: Final = (_stripes, _dots, _check, _knit)


def _pattern(cv: _Canvas, rng: np.random.Generator) -> F32:
    a, b = float(rng.uniform(15, 120)), float(rng.uniform(130, 250))
    if rng.random() < 0.5:
        a, b = b, a
    return _PATTERNS[int(rng.integers(len(_PATTERNS)))](cv, rng, a, b)


# Shapes. Each draws into the canvas; ``p`` gives the face, ``rng`` the variation.


def _jitter(p: FacePoints, rng: np.random.Generator, k: float) -> tuple[float, float, float]:
    """A small shift (x, y) and scale of a placement, ``k`` sets how much."""
    return (
        float(rng.normal(0, k * p.iod * 0.12)),
        float(rng.normal(0, k * p.iod * 0.10)),
        float(math.exp(rng.normal(0, k * 0.06))),
    )


def _surgical(cv: _Canvas, p: FacePoints, rng: np.random.Generator, low: float = 0.0) -> None:
    """Pleated rectangle from the nose bridge to under the chin, ear loops; ``low``
    moves it down (in nose-to-mouth distances: 1.6 is a mask pulled to the chin)."""
    dx, dy, s = _jitter(p, rng, 1.0)
    cx = (p.nose[0] + p.mouth[0]) / 2 + dx
    nm = max(4.0, p.mouth[1] - p.nose[1])
    top = p.eye_y + 0.55 * (p.nose[1] - p.eye_y) + dy + low * nm
    bot = p.chin_y + 0.12 * p.iod + dy + low * nm
    hw = 0.92 * p.half_width * s
    pts = [
        (cx - hw, top + 0.08 * nm),
        (cx, top - 0.05 * nm),
        (cx + hw, top + 0.08 * nm),
        (cx + 0.9 * hw, bot - 0.25 * nm),
        (cx + 0.55 * hw, bot),
        (cx - 0.55 * hw, bot),
        (cx - 0.9 * hw, bot - 0.25 * nm),
    ]
    pts = _rot(pts, (cx, (top + bot) / 2), float(rng.uniform(-8, 8)))
    tone = float(rng.uniform(150, 240))  # light blue or white, seen in grey
    field = _plain(cv, rng, tone)
    for k in range(3):  # pleats: darker folds across the mask
        y = top + (bot - top) * (0.3 + 0.2 * k) + float(rng.normal(0, 0.4))
        fold = cv2.GaussianBlur(cv.line((cx - hw, y), (cx + hw, y), 0.8), (0, 0), SS * 0.4)
        field = field - float(rng.uniform(15, 35)) * fold
    cv.fill(cv.poly(pts), field)
    for ear, x in ((p.ear_r, cx - 0.95 * hw), (p.ear_l, cx + 0.95 * hw)):
        loop = tone * float(rng.uniform(0.8, 1.05))
        cv.fill(cv.line((x, top + 0.1 * nm), ear, 0.6), loop)
        cv.fill(cv.line((x, bot - 0.35 * nm), (ear[0], ear[1] + 0.3 * nm), 0.6), loop)


def _hand(
    cv: _Canvas,
    p: FacePoints,
    rng: np.random.Generator,
    tone: float,
    *,
    side: bool = False,
    low: float = 0.0,
) -> None:
    """A palm with four fingers. Front: palm on the mouth, fingers up towards the nose
    (tilted); side: fingers across the mouth from the crop's edge, palm outside."""
    dx, dy, s = _jitter(p, rng, 1.0)
    e = p.iod * s
    mx, my = p.mouth[0] + dx, p.mouth[1] + dy + low * max(4.0, p.mouth[1] - p.nose[1])
    field = _plain(cv, rng, tone)
    r = 0.16 * e
    if side:
        sign = 1.0 if rng.random() < 0.5 else -1.0
        edge = 32 + sign * 40  # palm beyond the crop's left or right side
        palm = cv.ellipse((edge, my), (0.75 * e, 0.7 * e))
        fingers = []
        for k in range(4):
            y = my + (k - 1.5) * 2.1 * r + float(rng.normal(0, 0.3))
            tip = mx - sign * (0.55 + 0.1 * rng.random()) * e
            fingers.append(((edge, y), (tip, y + float(rng.normal(0, 0.8)))))
        ang = 0.0
    else:
        ang = float(rng.uniform(-35, 35))
        palm = cv.ellipse((mx, my + 0.25 * e), (0.55 * e, 0.45 * e), ang)
        fingers = []
        for k in range(4):
            x0 = mx + (k - 1.5) * 2.1 * r
            length = e * (0.7 + (0.15 if k in (1, 2) else 0.0)) * float(rng.uniform(0.9, 1.1))
            a, b = (x0, my + 0.1 * e), (x0, my + 0.1 * e - length)
            fingers.append(tuple(_rot([a, b], (mx, my + 0.25 * e), ang)))  # type: ignore[arg-type]
    cv.fill(palm, field)
    for a, b in fingers:
        cv.fill(cv.capsule(a, b, r), field)
    for a, b in fingers[:-1]:  # the shadow along each finger's edge
        off = (r * math.cos(math.radians(ang)), r * math.sin(math.radians(ang)))
        if side:
            off = (0.0, r)
        gap = cv.line((a[0] + off[0], a[1] + off[1]), (b[0] + off[0], b[1] + off[1]), 0.4)
        cv.grey = cv.grey - float(rng.uniform(20, 45)) * gap * cv.alpha


def _cloth(
    cv: _Canvas, p: FacePoints, rng: np.random.Generator, field: F32, top_at: float = 0.5
) -> None:
    """Cut of a cloth mask: the top follows the nose, the bottom rounds under the chin,
    a centre seam. ``top_at``: top edge between the eyes (0) and the mouth (1)."""
    dx, dy, s = _jitter(p, rng, 1.0)
    cx = p.nose[0] + dx
    top = p.eye_y + top_at * (p.mouth[1] - p.eye_y) + dy
    bot = p.chin_y + 0.2 * p.iod + dy
    hw = 0.98 * p.half_width * s
    mid = (top + bot) / 2
    shape = cv.ellipse((cx, mid), (hw, (bot - top) / 2))
    shape = np.maximum(
        shape,
        cv.poly(
            [
                (cx - hw, mid),
                (cx - 0.6 * hw, top + 1),
                (cx, top - 1),
                (cx + 0.6 * hw, top + 1),
                (cx + hw, mid),
            ]
        ),
    )
    cv.fill(shape, field)
    cv.grey = cv.grey + float(rng.uniform(-25, 25)) * cv.line((cx, top), (cx, bot), 0.5) * shape


def _kn95(cv: _Canvas, p: FacePoints, rng: np.random.Generator) -> None:
    """A folded respirator: pointed over the nose, angular sides, two lit halves."""
    dx, dy, s = _jitter(p, rng, 1.0)
    cx = p.nose[0] + dx
    top = p.eye_y + 0.35 * (p.nose[1] - p.eye_y) + dy
    bot = p.chin_y + 0.15 * p.iod + dy
    hw = 0.85 * p.half_width * s
    tone = float(rng.uniform(120, 245))
    field = _plain(cv, rng, tone)
    half = np.where(cv.xx < cx, float(rng.uniform(0.75, 0.95)), 1.0).astype(np.float32)
    pts = [
        (cx, top - 0.05 * p.iod),
        (cx + 0.8 * hw, top + 0.35 * (bot - top)),
        (cx + hw, top + 0.55 * (bot - top)),
        (cx + 0.35 * hw, bot),
        (cx, bot + 0.05 * p.iod),
        (cx - 0.35 * hw, bot),
        (cx - hw, top + 0.55 * (bot - top)),
        (cx - 0.8 * hw, top + 0.35 * (bot - top)),
    ]
    cv.fill(cv.poly(_rot(pts, (cx, (top + bot) / 2), float(rng.uniform(-6, 6)))), field * half)
    seam = cv.line((cx, top), (cx, bot), 0.5)
    cv.grey = cv.grey - float(rng.uniform(15, 40)) * seam * cv.alpha
    for ear in (p.ear_r, p.ear_l):
        cv.fill(cv.line((cx, top + 0.4 * (bot - top)), ear, 0.7), tone * 0.9)


def _cup(cv: _Canvas, p: FacePoints, rng: np.random.Generator, low: float = 0.0) -> None:
    """A cup held to the lips: a tapered body from above the mouth down, rim, handle."""
    dx, dy, s = _jitter(p, rng, 1.0)
    e = p.iod * s
    cx = p.mouth[0] + dx
    top = p.nose[1] + 0.45 * (p.mouth[1] - p.nose[1]) + dy + low * (p.mouth[1] - p.nose[1])
    bot = top + 1.6 * e
    tw, bw = 0.7 * e, 0.55 * e
    tone = float(rng.uniform(30, 240))
    # A cylinder's shading: brightest off-centre, darker to both sides.
    shade = 1.0 - 0.35 * ((cv.xx - cx - 0.2 * tw) / tw) ** 2
    field = np.clip(_plain(cv, rng, tone) * shade, 0, 255).astype(np.float32)
    if rng.random() < 0.4:
        field = _pattern(cv, rng) * shade
    sign = 1.0 if rng.random() < 0.5 else -1.0
    handle = cv.ellipse((cx + sign * tw, top + 0.6 * e), (0.3 * e, 0.35 * e)) - cv.ellipse(
        (cx + sign * tw, top + 0.6 * e), (0.17 * e, 0.22 * e)
    )
    cv.fill(np.clip(handle, 0, 1), tone * 0.85)
    body = cv.poly([(cx - tw, top), (cx + tw, top), (cx + bw, bot), (cx - bw, bot)])
    cv.fill(body, field)
    cv.fill(cv.ellipse((cx, top), (tw, 0.12 * e)), tone * float(rng.uniform(0.5, 1.15)))


def _phone(cv: _Canvas, p: FacePoints, rng: np.random.Generator) -> None:
    """A phone held upright in front of the mouth: dark screen, a lighter case."""
    dx, dy, s = _jitter(p, rng, 1.0)
    e = p.iod * s
    c = (p.mouth[0] + dx, p.mouth[1] + 0.4 * e + dy)
    w, h = 0.62 * e * float(rng.uniform(0.95, 1.15)), 1.15 * e
    ang = float(rng.uniform(-30, 30))
    case = [(c[0] - w, c[1] - h), (c[0] + w, c[1] - h), (c[0] + w, c[1] + h), (c[0] - w, c[1] + h)]
    k = 0.85
    screen = [(c[0] + (x - c[0]) * k, c[1] + (y - c[1]) * 0.9) for x, y in case]
    cv.fill(cv.poly(_rot(case, c, ang)), float(rng.uniform(40, 230)))
    cv.fill(cv.poly(_rot(screen, c, ang)), _plain(cv, rng, float(rng.uniform(8, 60))))


def _mic(cv: _Canvas, p: FacePoints, rng: np.random.Generator, low: float = 0.0) -> None:
    """A hand-held microphone: a meshed ball at the mouth, its handle going down."""
    dx, dy, s = _jitter(p, rng, 0.7)
    e = p.iod * s
    c = (p.mouth[0] + dx, p.mouth[1] + dy + low * e)
    rad = 0.62 * e
    ang = float(rng.uniform(-25, 25))
    end = _rot([(c[0], c[1] + 2.5 * e)], c, ang)[0]
    cv.fill(cv.capsule(c, end, 0.22 * e), float(rng.uniform(10, 90)))
    a, b = (float(rng.uniform(10, 80)), float(rng.uniform(110, 200)))
    mesh = _check(cv, rng, a, b) if rng.random() < 0.6 else _plain(cv, rng, b)
    cv.fill(cv.ellipse(c, (rad, rad)), mesh)


def _scarf(cv: _Canvas, p: FacePoints, rng: np.random.Generator) -> None:
    """A scarf pulled up over the mouth: a wide band beyond the face's sides, knitted
    or patterned, a wavy upper edge with folds."""
    dx, dy, _ = _jitter(p, rng, 1.0)
    top = p.nose[1] + float(rng.uniform(-0.1, 0.35)) * (p.mouth[1] - p.nose[1]) + dy
    xs = np.linspace(-4, SIZE + 4, 12)
    wave = rng.normal(0, 0.8, len(xs))
    upper = [(float(x), float(top + w)) for x, w in zip(xs, wave, strict=True)]
    shape = cv.poly([*upper, (SIZE + 4, SIZE + 8), (-4, SIZE + 8)])
    a, b = float(rng.uniform(20, 230)), float(rng.uniform(20, 230))
    field = _knit(cv, rng, a, b) if rng.random() < 0.5 else _pattern(cv, rng)
    for k in range(2):
        y = top + (k + 1) * 0.3 * p.iod
        field = field - 30 * cv2.GaussianBlur(cv.line((-4, y), (SIZE + 4, y + dx), 1.0), (0, 0), 4)
    cv.fill(shape, field)


def _partial(cv: _Canvas, p: FacePoints, rng: np.random.Generator) -> None:
    """Partial covers: a cloth mask worn under the nose, or two fingers across the
    mouth from the side."""
    if rng.random() < 0.5:
        field = (
            _pattern(cv, rng)
            if rng.random() < 0.5
            else _plain(cv, rng, float(rng.uniform(20, 230)))
        )
        _cloth(cv, p, rng, field, top_at=float(rng.uniform(0.72, 0.8)))
        return
    e = p.iod
    tone = float(rng.uniform(60, 220))
    field = _plain(cv, rng, tone)
    sign = 1.0 if rng.random() < 0.5 else -1.0
    mx, my = p.mouth[0], p.mouth[1] + float(rng.normal(0, 0.05 * e))
    r = 0.2 * e
    for k in (-0.5, 0.5):
        y = my + k * 2.0 * r
        cv.fill(cv.capsule((32 + sign * 40, y + sign * 3), (mx - sign * 0.6 * e, y), r), field)


def _shapes(cv: _Canvas, p: FacePoints, rng: np.random.Generator) -> None:
    """Generic light things over the mouth: one to three random polygons, ellipses
    or bars near it, plain or grainy (no object's outline, no pattern, no dark tone:
    those are left to the evaluation families)."""
    e = p.iod
    for _ in range(int(rng.integers(1, 4))):
        c = (
            p.mouth[0] + float(rng.normal(0, 0.2 * e)),
            p.mouth[1] + float(rng.normal(0, 0.15 * e)),
        )
        field = _plain(cv, rng, float(rng.uniform(130, 240)))
        kind = rng.random()
        if kind < 0.4:
            k = int(rng.integers(5, 9))
            ang = np.sort(rng.uniform(0, 2 * math.pi, k))
            rad = rng.uniform(0.45, 0.9, k) * e
            shape = cv.poly(
                [
                    (c[0] + r * math.cos(a), c[1] + r * math.sin(a))
                    for a, r in zip(ang, rad, strict=True)
                ]
            )
        elif kind < 0.75:
            shape = cv.ellipse(
                c,
                (float(rng.uniform(0.5, 0.9)) * e, float(rng.uniform(0.3, 0.7)) * e),
                float(rng.uniform(0, 180)),
            )
        else:
            t = float(rng.uniform(0, math.pi))
            d = (math.cos(t) * 0.9 * e, math.sin(t) * 0.9 * e)
            shape = cv.capsule(
                (c[0] - d[0], c[1] - d[1]),
                (c[0] + d[0], c[1] + d[1]),
                float(rng.uniform(0.25, 0.45)) * e,
            )
        cv.fill(shape, field)


# --------------------------------------------------------------------------- families

Draw = Callable[[_Canvas, FacePoints, np.random.Generator], None]


def _light_hand(cv: _Canvas, p: FacePoints, rng: np.random.Generator) -> None:
    _hand(cv, p, rng, float(rng.uniform(150, 215)))


def _light_hand_chin(cv: _Canvas, p: FacePoints, rng: np.random.Generator) -> None:
    _hand(cv, p, rng, float(rng.uniform(150, 215)), low=float(rng.uniform(1.5, 2.0)))


def _mask_down(cv: _Canvas, p: FacePoints, rng: np.random.Generator) -> None:
    _surgical(cv, p, rng, low=float(rng.uniform(1.7, 2.1)))


def _cloth_black(cv: _Canvas, p: FacePoints, rng: np.random.Generator) -> None:
    _cloth(cv, p, rng, _plain(cv, rng, float(rng.uniform(10, 70))))


def _cloth_pattern(cv: _Canvas, p: FacePoints, rng: np.random.Generator) -> None:
    _cloth(cv, p, rng, _pattern(cv, rng))


def _dark_hand(cv: _Canvas, p: FacePoints, rng: np.random.Generator) -> None:
    _hand(cv, p, rng, float(rng.uniform(45, 120)))


def _side_hand(cv: _Canvas, p: FacePoints, rng: np.random.Generator) -> None:
    _hand(cv, p, rng, float(rng.uniform(60, 210)), side=True)


def _dark_chin_rest(cv: _Canvas, p: FacePoints, rng: np.random.Generator) -> None:
    _hand(cv, p, rng, float(rng.uniform(45, 140)), low=float(rng.uniform(1.5, 2.1)))


def _cup_low(cv: _Canvas, p: FacePoints, rng: np.random.Generator) -> None:
    _cup(cv, p, rng, low=float(rng.uniform(1.1, 1.6)))


#: Training occluders: light surgical masks, light hands over the lower face and
#: generic light shapes, and masks and hands below the mouth (visible).
TRAIN: Final[dict[str, Draw]] = {
    "surgical": _surgical,
    "hand_light": _light_hand,
    "shapes_light": _shapes,
    "mask_down": _mask_down,
    "hand_chin_light": _light_hand_chin,
}
#: Evaluation occluders: shapes, tones and positions training never drew.
EVAL: Final[dict[str, Draw]] = {
    "cloth_black": _cloth_black,
    "cloth_pattern": _cloth_pattern,
    "kn95": _kn95,
    "hand_dark": _dark_hand,
    "hand_side": _side_hand,
    "partial": _partial,
    "cup": _cup,
    "phone": _phone,
    "mic": _mic,
    "scarf": _scarf,
    "chin_rest_dark": _dark_chin_rest,
    "cup_low": _cup_low,
}
FAMILIES: Final[dict[str, Draw]] = {**TRAIN, **EVAL}


def mouth_region(p: FacePoints) -> F32:
    """The mouth ellipse (with a smile's corners), 0/1 at crop resolution."""
    m = np.zeros((SIZE, SIZE), np.float32)
    cv2.ellipse(
        m,
        (round(p.mouth[0] * SS), round(p.mouth[1] * SS)),
        (round(0.5 * p.iod * SS), round(0.2 * p.iod * SS)),
        0,
        0,
        360,
        1.0,
        -1,
        shift=2,
    )
    return m


@dataclass(frozen=True, slots=True)
class Occluded:
    image: U8
    family: str
    #: Share of the mouth ellipse hidden (0..1).
    cover: float

    @property
    def visible(self) -> float | None:
        """1.0 mouth visible, 0.0 hidden, None ambiguous (partly covered)."""
        if self.cover >= HIDDEN_COVER:
            return 0.0
        if self.cover <= VISIBLE_COVER:
            return 1.0
        return None


def occlude(img: U8, p: FacePoints, family: str, rng: np.random.Generator) -> Occluded:
    """``img`` (64x64 grey) with one occluder of ``family`` drawn over it."""
    if img.shape != (SIZE, SIZE):
        raise ValueError(f"occluders draw on {SIZE}x{SIZE} crops, got {img.shape}")
    cv = _Canvas()
    FAMILIES[family](cv, p, rng)
    alpha, grey = cv.finish()
    mouth = mouth_region(p)
    cover = float((alpha * mouth).sum() / max(mouth.sum(), 1.0))
    out = img.astype(np.float32) * (1 - alpha) + grey
    return Occluded(np.clip(out, 0, 255).astype(np.uint8), family, cover)


def hides_mouth(family: str) -> bool:
    """Whether the family is drawn to hide the mouth (the rest are look-alikes that
    leave it in view); the label still comes from each drawing's cover."""
    return family not in ("mask_down", "hand_chin_light", "chin_rest_dark", "cup_low")
