"""The installer's check: can the agent do its job with the camera where it is?

Owns the analysis behind ``warmwindow vision check-placement``. Pure: frames with
their times and the detector's faces in, a typed ``PlacementReport`` out; no clock,
no camera, no model here (the command runs the detector and passes the faces).
Frames are reduced to a few figures as they come and never kept.

The installer asks the clerk to sit about 20 s, stand about 10 s and sit again. The
checks, each OK, CHANGE (with a plain instruction) or UNKNOWN (not seen, so not
judged):

- the clerk's face is found in most frames, big enough for the detector and the
  agent's floor (``VisionConfig.min_face_frac``), and away from the frame's edges;
- standing raises the face well clear of the agent's threshold: the rise is measured
  in seated face heights, as ``agent.vision.posture`` measures it, and must be at least
  ``PostureConfig.stand_rise + rise_margin``; standing, the face keeps its size (the
  agent drops a face under ``min_face_ratio`` of the seated one) and stays in the
  picture;
- the face is neither dark, bright, flat nor backlit; the picture is neither dark,
  blown out nor uniform (a covered lens); the face is sharp;
- the camera delivers the frame rate the agent asks for;
- no other face as big as the clerk's is in view (a camera that sees the queue).

>>> wall = np.random.default_rng(0).integers(60, 180, (240, 320), dtype=np.uint8)
>>> check = PlacementCheck(asked_fps=10)
>>> for t in range(0, 3000, 100):     # three seconds of an empty seat
...     check.add(t, wall, faces=[])
>>> report = check.report()
>>> report.check("face").status, report.verdict, report.exit_code
('unknown', 'cannot judge', 1)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt

from agent.vision.clerk import Clerk
from agent.vision.detector import Face
from agent.vision.pipeline import VisionConfig
from agent.vision.posture import Posture

U8 = npt.NDArray[np.uint8]
Status = Literal["ok", "change", "unknown"]
Verdict = Literal["ready", "change placement", "cannot judge"]


@dataclass(frozen=True)
class PlacementConfig:
    """Thresholds of the installer's check; the agent's own come from ``VisionConfig``."""

    #: Standing must raise the face this many face heights beyond ``stand_rise``:
    #: people stand less straight in service than for the installer.
    rise_margin: float = 0.3
    #: A sustained rise below this (face heights) is taken for "never stood".
    min_observed_rise: float = 0.25
    #: Standing must be seen this long to be measured.
    min_standing_ms: int = 2000
    #: The clerk's face must be found in this share of the frames ...
    face_found_ok: float = 0.9
    #: ... and below this share (or ``min_face_frames``) nothing about it is judged.
    face_found_min: float = 0.1
    min_face_frames: int = 10
    #: The check looks for faces down to this share of the frame width (the agent stops
    #: at ``min_face_frac``), so that a small face is "move closer", not "no face".
    search_face_frac: float = 0.06
    #: The seated face must be this many times the agent's ``min_face_frac`` ...
    face_frac_margin: float = 1.25
    #: ... and at most this share of the frame width (standing it would leave it).
    max_face_frac: float = 0.5
    #: The seated face centre stays this share of the width away from either edge.
    edge_margin: float = 0.15
    #: Standing, the top of the face stays this share of the height below the top edge.
    headroom: float = 0.02
    #: Standing, the face keeps this multiple of the agent's ``min_face_ratio``.
    standing_size_margin: float = 1.1
    #: Face crop: mean brightness between these (0-255), spread at least ``face_flat``.
    face_dark: float = 60.0
    face_bright: float = 200.0
    face_flat: float = 15.0
    #: Face mean / picture mean below this: the face is backlit.
    backlight_ratio: float = 0.55
    #: Whole picture: mean brightness between these, saturated share at most this,
    #: spread at least ``uniform_std`` (below: a covered lens or a wall). Each is stricter
    #: than where the pipeline gives up on the view, so a ready camera has a margin.
    frame_dark: float = 50.0
    frame_bright: float = 210.0
    saturated_share: float = 0.05
    uniform_std: float = 8.0
    #: Variance of the Laplacian of the face scaled to ``sharp_px`` square, at least this.
    min_sharpness: float = 60.0
    sharp_px: int = 64
    #: Achieved frame rate at least this share of the asked one; no gap longer than this.
    fps_ok: float = 0.8
    max_gap_ms: int = 1500
    #: Frames with another face of at least ``min_face_ratio`` of the clerk's: at most this.
    rival_share: float = 0.02
    duration_ms: int = 60_000

    def __post_init__(self) -> None:
        if self.duration_ms <= 0:
            raise ValueError("duration_ms must be > 0")
        if not 0 <= self.face_found_min <= self.face_found_ok <= 1:
            raise ValueError("need 0 <= face_found_min <= face_found_ok <= 1")


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the report: what was measured and, when it must change, how."""

    name: str
    title: str
    status: Status
    measured: str
    instruction: str = ""


@dataclass(frozen=True)
class Measures:
    """The figures behind the checks (None: not measured)."""

    frames: int
    seconds: float
    asked_fps: float
    fps: float | None
    longest_gap_ms: int | None
    face_frames: int
    face_found_share: float
    #: Seated face size (px), as a share of the frame width, centre x as a share of it.
    face_px: float | None
    face_frac: float | None
    face_x_frac: float | None
    #: Standing rise in seated face heights; how long standing was seen.
    standing_rise: float | None
    standing_s: float
    standing_size_ratio: float | None
    #: Top of the standing face as a share of the frame height (0 = top edge).
    standing_top_frac: float | None
    stand_rise: float
    required_rise: float
    face_mean: float | None
    face_std: float | None
    #: Face mean / picture mean (backlight below ``backlight_ratio``).
    face_to_frame: float | None
    frame_mean: float | None
    frame_std: float | None
    saturated_share: float | None
    sharpness: float | None
    rival_frames: int
    rival_share: float
    smaller_face_frames: int


@dataclass(frozen=True)
class PlacementReport:
    verdict: Verdict
    checks: tuple[Check, ...]
    measures: Measures

    @property
    def exit_code(self) -> int:
        """0 ready; 1 something must change, or the check must be run again."""
        return 0 if self.verdict == "ready" else 1

    def check(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)

    def as_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "exit_code": self.exit_code,
            "checks": [asdict(c) for c in self.checks],
            "measures": asdict(self.measures),
        }

    def render(self) -> str:
        m = self.measures
        label = {"ok": "OK", "change": "CHANGE", "unknown": "UNKNOWN"}
        lines = [f"Placement check: {m.frames} frames over {m.seconds:.1f} s"]
        for c in self.checks:
            lines.append(f"  {label[c.status]:<8}{c.title:<18}{c.measured}")
            if c.instruction:
                lines.append(f"  {'':<8}-> {c.instruction}")
        changes = [c.title for c in self.checks if c.status == "change"]
        unknown = [c.title for c in self.checks if c.status == "unknown"]
        if self.verdict == "ready":
            lines.append("Verdict: READY - the camera is well placed for this window.")
        elif self.verdict == "change placement":
            lines.append(f"Verdict: CHANGE PLACEMENT - fix: {', '.join(changes)}; then run again.")
        else:
            lines.append(
                f"Verdict: CANNOT JUDGE - not seen: {', '.join(unknown)}; "
                "follow the instructions and run again."
            )
        return "\n".join(lines)


@dataclass(slots=True)
class _FaceSample:
    t_ms: int
    cx: float
    cy: float
    size: float
    top: float
    mean: float | None
    std: float | None
    sharpness: float | None
    frame_mean: float


@dataclass
class PlacementCheck:
    """Accumulates frames (``add``) and judges the placement (``report``).

    ``asked_fps`` is the rate the agent asks of the camera (``CameraConfig.active_fps``).
    """

    cfg: PlacementConfig = field(default_factory=PlacementConfig)
    vision: VisionConfig = field(default_factory=VisionConfig)
    asked_fps: float = 10.0
    # Per frame, a few figures; the frames themselves are never kept.
    width: int | None = field(default=None, init=False)
    height: int | None = field(default=None, init=False)
    _times: list[int] = field(default_factory=list, init=False, repr=False)
    _frame_mean: list[float] = field(default_factory=list, init=False, repr=False)
    _frame_std: list[float] = field(default_factory=list, init=False, repr=False)
    _saturated: list[float] = field(default_factory=list, init=False, repr=False)
    _faces: list[_FaceSample] = field(default_factory=list, init=False, repr=False)
    #: The biggest face that is not the clerk's (0 when none).
    _others: list[float] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        self._posture = Posture(self.vision.posture)
        self._clerk = Clerk(
            replace(self.vision, min_face_frac=self.cfg.search_face_frac), self._posture
        )

    def done(self, t_ms: int) -> bool:
        """True once ``duration_ms`` has passed since the first frame."""
        return bool(self._times) and t_ms - self._times[0] >= self.cfg.duration_ms

    def add(self, t_ms: int, gray: U8, faces: Sequence[Face]) -> None:
        """One frame (2-D uint8) at ``t_ms`` and the faces the detector found in it."""
        if gray.ndim != 2:
            raise ValueError("PlacementCheck.add takes a 2-D grey frame")
        h, w = gray.shape
        self.width, self.height = w, h
        self._times.append(t_ms)
        mean, std = (float(v[0][0]) for v in cv2.meanStdDev(gray))
        self._frame_mean.append(mean)
        self._frame_std.append(std)
        self._saturated.append(float(np.count_nonzero(gray >= 250)) / gray.size)
        clerk = self._clerk.choose(list(faces), w)
        self._others.append(max((f.size for f in faces if f is not clerk), default=0.0))
        if clerk is None:
            return
        self._posture.update(t_ms, clerk.cx, clerk.cy, clerk.size)
        x0, y0 = max(round(clerk.x), 0), max(round(clerk.y), 0)
        x1, y1 = min(round(clerk.x + clerk.w), w), min(round(clerk.y + clerk.h), h)
        f_mean = f_std = sharp = None
        if x1 - x0 >= 4 and y1 - y0 >= 4:
            crop = gray[y0:y1, x0:x1]
            fm, fs = cv2.meanStdDev(crop)
            f_mean, f_std = float(fm[0][0]), float(fs[0][0])
            n = self.cfg.sharp_px
            scaled = cv2.resize(crop, (n, n), interpolation=cv2.INTER_AREA)
            sharp = float(cv2.Laplacian(scaled, cv2.CV_64F).var())
        self._faces.append(
            _FaceSample(t_ms, clerk.cx, clerk.cy, clerk.size, clerk.y, f_mean, f_std, sharp, mean)
        )

    def report(self) -> PlacementReport:
        return _judge(self)


def _median(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.median(vals)) if vals else None


def _judge(pc: PlacementCheck) -> PlacementReport:
    cfg, vcfg, pcfg = pc.cfg, pc.vision, pc.vision.posture
    w, h = pc.width or 1, pc.height or 1
    n = len(pc._times)
    times = np.asarray(pc._times, dtype=np.int64)
    seconds = float(times[-1] - times[0]) / 1000 if n > 1 else 0.0
    gaps = np.diff(times) if n > 1 else np.zeros(0, np.int64)
    fps = (n - 1) / seconds if seconds > 0 else None
    frame_ms = float(np.median(gaps)) if gaps.size else 1000 / pc.asked_fps
    faces = pc._faces
    share = len(faces) / n if n else 0.0
    seen = len(faces) >= cfg.min_face_frames and share >= cfg.face_found_min

    # The seated pose as Posture learns it: the lower half of the face centres.
    face_px = face_frac = face_x = rise = size_ratio = top_frac = None
    standing_s = 0.0
    if seen:
        arr = np.asarray([(f.cx, f.cy, f.size, f.top) for f in faces], dtype=np.float64)
        seated = arr[arr[:, 1] >= np.median(arr[:, 1])]
        base_cx, base_cy, base_size = (float(np.median(seated[:, k])) for k in range(3))
        face_px, face_frac, face_x = base_size, base_size / w, base_cx / w
        r = (base_cy - arr[:, 1]) / base_size
        high = float(np.percentile(r, 95))
        if high >= cfg.min_observed_rise:
            up = arr[r >= high / 2]
            standing_s = len(up) * frame_ms / 1000
            if standing_s * 1000 >= cfg.min_standing_ms:
                rise = float(np.median(r[r >= high / 2]))
                size_ratio = float(np.median(up[:, 2])) / base_size
                top_frac = float(np.percentile(up[:, 3], 5)) / h

    face_mean = _median([f.mean for f in faces]) if seen else None
    face_std = _median([f.std for f in faces]) if seen else None
    sharpness = _median([f.sharpness for f in faces]) if seen else None
    ratios = [f.mean / f.frame_mean for f in faces if f.mean is not None and f.frame_mean > 0]
    face_to_frame = _median(ratios) if seen else None
    rival_floor = vcfg.min_face_ratio * face_px if face_px is not None else math.inf
    rivals = sum(1 for s in pc._others if s >= rival_floor)
    smaller = sum(1 for s in pc._others if 0 < s < rival_floor)

    m = Measures(
        frames=n,
        seconds=seconds,
        asked_fps=pc.asked_fps,
        fps=fps,
        longest_gap_ms=int(gaps.max()) if gaps.size else None,
        face_frames=len(faces),
        face_found_share=share,
        face_px=face_px,
        face_frac=face_frac,
        face_x_frac=face_x,
        standing_rise=rise,
        standing_s=standing_s,
        standing_size_ratio=size_ratio,
        standing_top_frac=top_frac,
        stand_rise=pcfg.stand_rise,
        required_rise=pcfg.stand_rise + cfg.rise_margin,
        face_mean=face_mean,
        face_std=face_std,
        face_to_frame=face_to_frame,
        frame_mean=_median(pc._frame_mean),
        frame_std=_median(pc._frame_std),
        saturated_share=_median(pc._saturated),
        sharpness=sharpness,
        rival_frames=rivals,
        rival_share=rivals / n if n else 0.0,
        smaller_face_frames=smaller,
    )
    checks = (
        _face_found(m, cfg, seen),
        _face_size(m, cfg, vcfg),
        _position(m, cfg),
        _posture(m, cfg, vcfg),
        _face_exposure(m, cfg),
        _frame_exposure(m, cfg),
        _sharpness(m, cfg),
        _frame_rate(m, cfg),
        _other_faces(m, cfg),
    )
    verdict: Verdict = "ready"
    if any(c.status == "change" for c in checks):
        verdict = "change placement"
    elif any(c.status == "unknown" for c in checks):
        verdict = "cannot judge"
    return PlacementReport(verdict, checks, m)


_NO_FACE = "not measured: no clerk's face"


def _face_found(m: Measures, cfg: PlacementConfig, seen: bool) -> Check:
    title = "face found"
    got = f"the clerk's face in {m.face_found_share:.0%} of the frames"
    if not seen:
        return Check(
            "face",
            title,
            "unknown",
            got,
            "Ask the clerk to sit in their seat facing the camera and run the check again; "
            "if they were seated, aim the camera at the seat.",
        )
    if m.face_found_share < cfg.face_found_ok:
        return Check(
            "face",
            title,
            "change",
            got,
            f"Aim the camera straight at the clerk's face: it was lost in "
            f"{1 - m.face_found_share:.0%} of the frames (at most {1 - cfg.face_found_ok:.0%}); "
            "nothing may stand between them (a monitor, a glass sign).",
        )
    return Check("face", title, "ok", got)


def _face_size(m: Measures, cfg: PlacementConfig, vcfg: VisionConfig) -> Check:
    title = "face size"
    if m.face_px is None or m.face_frac is None:
        return Check("face_size", title, "unknown", _NO_FACE)
    need = vcfg.min_face_frac * cfg.face_frac_margin
    got = f"{m.face_px:.0f} px, {m.face_frac:.0%} of the frame width (needs {need:.0%})"
    if m.face_frac < need:
        return Check(
            "face_size",
            title,
            "change",
            got,
            f"Move the camera closer to the seat: the face is {m.face_frac:.0%} of the width; "
            f"the agent ignores faces under {vcfg.min_face_frac:.0%} and this check asks "
            f"{need:.0%} for a margin.",
        )
    if m.face_frac > cfg.max_face_frac:
        return Check(
            "face_size",
            title,
            "change",
            got,
            f"Move the camera back: the face fills {m.face_frac:.0%} of the width "
            f"(at most {cfg.max_face_frac:.0%}), standing it would leave the picture.",
        )
    return Check("face_size", title, "ok", got)


def _position(m: Measures, cfg: PlacementConfig) -> Check:
    title = "position"
    if m.face_x_frac is None:
        return Check("position", title, "unknown", _NO_FACE)
    got = f"face centre at {m.face_x_frac:.0%} of the frame width"
    todo = []
    lo, hi = cfg.edge_margin, 1 - cfg.edge_margin
    if not lo <= m.face_x_frac <= hi:
        side = "left" if m.face_x_frac < lo else "right"
        todo.append(
            f"Re-aim the camera at the seat: the face is near the {side} edge of the picture "
            f"(keep its centre between {lo:.0%} and {hi:.0%} of the width)."
        )
    if m.standing_top_frac is not None:
        got += f"; standing, {m.standing_top_frac:.0%} of the height above the face"
        if m.standing_top_frac < cfg.headroom:
            todo.append(
                "Tilt the camera up or move it back: standing, the face reaches the top "
                "of the picture."
            )
    return Check("position", title, "change" if todo else "ok", got, " ".join(todo))


def _posture(m: Measures, cfg: PlacementConfig, vcfg: VisionConfig) -> Check:
    title = "standing/seated"
    if m.face_px is None:
        return Check("posture", title, "unknown", _NO_FACE)
    if m.standing_rise is None or m.standing_size_ratio is None:
        return Check(
            "posture",
            title,
            "unknown",
            f"standing not seen ({m.standing_s:.1f} s with the face raised)",
            "Ask the clerk to stand for about 10 s in the middle of the check and run it "
            "again; if they did stand, the camera is far too high or too far: move it lower "
            "or closer.",
        )
    got = (
        f"standing raises the face {m.standing_rise:.2f} face heights "
        f"(needs {m.required_rise:.2f}; the agent counts standing above {m.stand_rise:.2f})"
    )
    todo = []
    if m.standing_rise < m.required_rise:
        todo.append(
            f"Move the camera lower or closer: standing raises the face "
            f"{m.standing_rise:.2f} face heights, it must be at least {m.required_rise:.2f}."
        )
    floor = vcfg.min_face_ratio * cfg.standing_size_margin
    if m.standing_size_ratio < floor:
        todo.append(
            f"Move the camera back or a little higher: standing, the face shrinks to "
            f"{m.standing_size_ratio:.2f} of its seated size, it must stay above {floor:.2f} "
            f"(the agent drops faces under {vcfg.min_face_ratio:.2f})."
        )
    return Check("posture", title, "change" if todo else "ok", got, " ".join(todo))


def _face_exposure(m: Measures, cfg: PlacementConfig) -> Check:
    title = "face exposure"
    if m.face_mean is None or m.face_std is None:
        return Check("face_exposure", title, "unknown", _NO_FACE)
    got = f"face brightness {m.face_mean:.0f} of 255, contrast {m.face_std:.0f}"
    if m.face_to_frame is not None:
        got += f", {m.face_to_frame:.2f} of the picture's"
    todo = []
    if m.face_to_frame is not None and m.face_to_frame < cfg.backlight_ratio:
        todo.append(
            f"The face is backlit ({m.face_to_frame:.2f} of the picture's brightness, at "
            f"least {cfg.backlight_ratio:.2f}): turn the camera away from the window or lamp "
            "behind the clerk, close the blind, or light the clerk's face."
        )
    elif m.face_mean < cfg.face_dark:
        todo.append(
            f"The face is too dark ({m.face_mean:.0f}, at least {cfg.face_dark:.0f}): "
            "light the clerk's face or raise the camera's exposure."
        )
    elif m.face_mean > cfg.face_bright:
        todo.append(
            f"The face is too bright ({m.face_mean:.0f}, at most {cfg.face_bright:.0f}): "
            "a lamp or the sun falls on it; shade it or lower the exposure."
        )
    elif m.face_std < cfg.face_flat:
        # Only on a well-lit face: a dark one is flat anyway and the light is the fix.
        todo.append(
            f"The face is flat (contrast {m.face_std:.0f}, at least {cfg.face_flat:.0f}): "
            "clean the lens and check the light on the face."
        )
    return Check("face_exposure", title, "change" if todo else "ok", got, " ".join(todo))


def _frame_exposure(m: Measures, cfg: PlacementConfig) -> Check:
    title = "picture exposure"
    if m.frame_mean is None or m.frame_std is None or m.saturated_share is None:
        return Check("frame_exposure", title, "unknown", "no frames")
    got = (
        f"brightness {m.frame_mean:.0f} of 255, spread {m.frame_std:.0f}, "
        f"{m.saturated_share:.1%} blown out"
    )
    todo = []
    dark = m.frame_mean < cfg.frame_dark
    if m.frame_std < cfg.uniform_std and dark:
        todo.append(
            f"The picture is dark and almost uniform (brightness {m.frame_mean:.0f}, at least "
            f"{cfg.frame_dark:.0f}; spread {m.frame_std:.0f}, at least {cfg.uniform_std:.0f}): "
            "uncover the lens (the cap, tape, a hand), or bring more light to the window."
        )
    elif m.frame_std < cfg.uniform_std:
        todo.append(
            f"The picture is almost uniform (spread {m.frame_std:.0f}, at least "
            f"{cfg.uniform_std:.0f}): is the lens covered, or the camera facing a wall?"
        )
    elif dark:
        todo.append(
            f"The picture is too dark ({m.frame_mean:.0f}, at least {cfg.frame_dark:.0f}): "
            "more light at the window, or a longer exposure."
        )
    elif m.frame_mean > cfg.frame_bright:
        todo.append(
            f"The picture is too bright ({m.frame_mean:.0f}, at most {cfg.frame_bright:.0f}): "
            "lower the exposure or turn the camera away from the light."
        )
    if m.saturated_share > cfg.saturated_share:
        todo.append(
            f"{m.saturated_share:.0%} of the picture is blown out (at most "
            f"{cfg.saturated_share:.0%}): a window or lamp is in view; turn the camera away "
            "from it."
        )
    return Check("frame_exposure", title, "change" if todo else "ok", got, " ".join(todo))


def _sharpness(m: Measures, cfg: PlacementConfig) -> Check:
    title = "sharpness"
    if m.sharpness is None:
        return Check("sharpness", title, "unknown", _NO_FACE)
    got = f"face sharpness {m.sharpness:.0f} (needs {cfg.min_sharpness:.0f})"
    if m.sharpness < cfg.min_sharpness:
        return Check(
            "sharpness",
            title,
            "change",
            got,
            f"The face is blurred ({m.sharpness:.0f}, at least {cfg.min_sharpness:.0f}): "
            "clean the lens, check its focus, and fix the camera so that it does not shake.",
        )
    return Check("sharpness", title, "ok", got)


def _frame_rate(m: Measures, cfg: PlacementConfig) -> Check:
    title = "frame rate"
    if m.fps is None or m.longest_gap_ms is None:
        return Check("frame_rate", title, "unknown", f"{m.frames} frames: too few to measure")
    got = (
        f"{m.fps:.1f} fps of the {m.asked_fps:g} asked, longest gap {m.longest_gap_ms / 1000:.1f} s"
    )
    todo = []
    if m.fps < cfg.fps_ok * m.asked_fps:
        todo.append(
            f"The camera gives {m.fps:.1f} fps, the agent asks {m.asked_fps:g} (at least "
            f"{cfg.fps_ok * m.asked_fps:.1f}): check the camera cable and the Pi's load and "
            "cooling, or ask a lower rate in the window's camera settings."
        )
    if m.longest_gap_ms > cfg.max_gap_ms:
        todo.append(
            f"The frames stopped for {m.longest_gap_ms / 1000:.1f} s (at most "
            f"{cfg.max_gap_ms / 1000:.1f}): check the camera cable and the power supply."
        )
    return Check("frame_rate", title, "change" if todo else "ok", got, " ".join(todo))


def _other_faces(m: Measures, cfg: PlacementConfig) -> Check:
    title = "other faces"
    if m.face_px is None:
        return Check("other_faces", title, "unknown", _NO_FACE)
    got = (
        f"one as big as the clerk's in {m.rival_share:.0%} of the frames"
        if m.rival_frames
        else "none as big as the clerk's"
    )
    if m.smaller_face_frames:
        got += f"; smaller ones (ignored) in {m.smaller_face_frames} frames"
    if m.rival_share > cfg.rival_share:
        return Check(
            "other_faces",
            title,
            "change",
            got,
            f"The camera sees citizens at the clerk's size ({m.rival_frames} frames, at most "
            f"{cfg.rival_share:.0%}): aim it so that only the clerk's seat is in view, not the "
            "counter or the queue.",
        )
    return Check("other_faces", title, "ok", got)
