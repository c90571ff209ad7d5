"""Scripted service sessions with known truth, rendered into camera frames.

One ``Truth`` says what the clerk did (stood on the call, smiled at the greeting, stood
at the farewell and saw the citizen off, smiled then) and what the camera faces
(``Condition``). ``plan`` turns it into a timeline; ``render`` draws its frames with
``agent.vision.scenes`` from held-out face crops (never trained on); ``judge`` runs the
same session twice through the real rules: once fed by the real pipeline on the
frames, once fed the truth directly, and returns both summaries.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from agent.config import RuleConfig
from agent.observation import Observation
from agent.rules import ServiceRules
from agent.rules.inputs import Call, Finish, Tick
from agent.vision import scenes
from agent.vision.pipeline import Vision, VisionConfig

U8 = npt.NDArray[np.uint8]
Condition = Literal[
    "clear", "busy_wall", "dim", "backlit", "masked", "covered_lens", "hand_over_face"
]
VERDICTS = ("stood_on_call", "smiled_at_greeting", "stood_at_farewell", "smiled_at_farewell")

#: Smile scores the truth-fed rules see (a clear smile, a clear no-smile).
TRUE_SMILE, TRUE_NEUTRAL = 0.9, 0.05
FRAME_MS = 100
PRE_MS = 4000  # seated, neutral, before the call: the pipeline learns the seat


@dataclass(frozen=True)
class Truth:
    stood_on_call: bool
    smiled_at_greeting: bool
    stood_at_farewell: bool
    smiled_at_farewell: bool
    condition: Condition = "clear"

    def verdicts(self) -> dict[str, bool]:
        return {v: getattr(self, v) for v in VERDICTS}


@dataclass(frozen=True)
class Plan:
    """A session's timeline in ms from the scene start."""

    truth: Truth
    call_ms: int
    finish_ms: int
    end_ms: int
    standing: tuple[tuple[int, int], ...]
    smiling: tuple[tuple[int, int], ...]
    #: Spans where the camera's view is covered (a hand on the lens).
    covered: tuple[tuple[int, int], ...] = ()
    #: Spans where the clerk's face is hidden (a hand, a phone): the face crops 2 and 3.
    hidden: tuple[tuple[int, int], ...] = ()


def plan(truth: Truth, rng: random.Random, cfg: RuleConfig) -> Plan:
    """When the clerk stands and smiles, drawn at random within what ``truth`` says.

    A violation takes a real form: never standing or standing late; not smiling;
    staying seated at the farewell or sitting down before the see-off time."""
    within = round(cfg.stand_within_s * 1000)
    call = PRE_MS
    standing: list[tuple[int, int]] = []
    smiling: list[tuple[int, int]] = []
    if truth.stood_on_call:
        at = call + rng.randint(800, within - 1200)
        standing.append((at, at + rng.randint(3000, 5000)))
    elif rng.random() < 0.5:  # stands late
        at = call + within + rng.randint(1500, 3000)
        standing.append((at, at + 3000))
    if truth.smiled_at_greeting:
        at = call + rng.randint(800, 4000)
        smiling.append((at, at + rng.randint(2000, 3500)))
    finish = call + rng.randint(13_000, 16_000)
    fw_within = round(cfg.farewell_within_s * 1000)
    see_off = round(cfg.see_off_s * 1000)
    if truth.stood_at_farewell:
        at = finish + rng.randint(500, fw_within - 1800)
        standing.append((at, at + see_off + rng.randint(1500, 3000)))
        fw_stand = at
    elif rng.random() < 0.5:  # stands, but sits down before the see-off time
        at = finish + rng.randint(500, 1500)
        standing.append((at, at + see_off - rng.randint(1200, 2000)))
        fw_stand = at
    else:
        fw_stand = finish + 1000
    if truth.smiled_at_farewell:
        at = fw_stand + 300
        smiling.append((at, at + 2500))
    end = finish + fw_within + see_off + 4000
    covered: list[tuple[int, int]] = []
    hidden: list[tuple[int, int]] = []
    if truth.condition == "covered_lens":  # the whole greeting, then uncovered
        covered.append((call - 500, call + round(cfg.greet_within_s * 1000) + 500))
    if truth.condition == "hand_over_face":  # seen before the call, hidden from it on
        hidden.append((call - 300, end))
    return Plan(
        truth, call, finish, end, tuple(standing), tuple(smiling), tuple(covered), tuple(hidden)
    )


def _inside(spans: Sequence[tuple[int, int]], t: int) -> bool:
    return any(a <= t < b for a, b in spans)


def segments(p: Plan) -> list[scenes.Segment]:
    """The plan as scene segments: a new segment at every change of pose or face
    (face 0 neutral, 1 smiling; 2 and 3 the same hidden)."""
    spans = p.standing + p.smiling + p.hidden
    cuts = sorted({0, p.end_ms, *(t for span in spans for t in span)})
    out: list[scenes.Segment] = []
    for a, b in itertools.pairwise(cuts):
        if b <= a or a >= p.end_ms:
            continue
        b = min(b, p.end_ms)
        pose: scenes.Pose = "standing" if _inside(p.standing, a) else "seated"
        face = (1 if _inside(p.smiling, a) else 0) + (2 if _inside(p.hidden, a) else 0)
        out.append(scenes.Segment(pose, b - a, face=face))
    return out


@dataclass
class Faces:
    """Held-out face crops by label."""

    neutral: list[U8]
    smiling: list[U8]

    def pair(self, rng: np.random.Generator) -> list[U8]:
        """A neutral and a smiling face (the clerk's two expressions)."""
        n = self.neutral[int(rng.integers(len(self.neutral)))]
        s = self.smiling[int(rng.integers(len(self.smiling)))]
        return [n, s]


def render(
    p: Plan, faces: list[U8], rng: np.random.Generator, wall_seed: int
) -> Iterator[scenes.SceneFrame]:
    cond = p.truth.condition
    sc = scenes.script(
        segments(p),
        frame_ms=FRAME_MS,
        lighting=[scenes.Lighting(0, 1, 0.45)] if cond == "dim" else [],
        # The hall's window behind the clerk: the first seconds without it (the seat is
        # learnt in the morning light), then on for the whole session.
        backlight=[scenes.Backlight(PRE_MS - 1500, p.end_ms)] if cond == "backlit" else [],
    )
    wall: scenes.WallKind = "plain"
    if cond == "busy_wall":
        wall = scenes.WALL_KINDS[1 + wall_seed % (len(scenes.WALL_KINDS) - 1)]
    for fr in scenes.compose(sc, faces, rng=rng, wall=wall):
        if _inside(p.covered, fr.t_ms):
            flat = np.full_like(fr.gray, int(rng.integers(8, 30)))
            fr = scenes.SceneFrame(fr.t_ms, flat, fr.present, fr.standing, fr.face, fr.box)
        yield fr


@dataclass(frozen=True)
class Outcome:
    truth: Truth
    #: verdict -> (complied as the pipeline's rules say, not observed)
    pipeline: dict[str, tuple[bool, bool]]
    #: verdict -> complied as the truth-fed rules say
    direct: dict[str, bool]
    frames: int


def _summary(drafts: list[Any]) -> dict[str, Any]:
    for d in drafts:
        if d.kind.__name__ == "SessionSummary":
            return dict(d.fields)
    raise AssertionError("no session summary")


def _verdicts(summary: dict[str, Any]) -> dict[str, tuple[bool, bool]]:
    unseen = set(summary.get("not_observed") or ())
    return {v: (bool(summary[v]), v in unseen) for v in VERDICTS}


def judge(p: Plan, frames: Iterator[scenes.SceneFrame], vision: Vision, cfg: RuleConfig) -> Outcome:
    """Both runs of one session: the pipeline's rules and the truth-fed rules."""
    real = ServiceRules(cfg)
    direct = ServiceRules(cfg)
    out_real: list[Any] = []
    out_direct: list[Any] = []
    n = 0
    called = finished = False
    for fr in frames:
        t = fr.t_ms
        for rules, out in ((real, out_real), (direct, out_direct)):
            if not called and t >= p.call_ms:
                out.extend(rules.feed(p.call_ms, Call(source="bell")))
            if not finished and t >= p.finish_ms:
                out.extend(rules.feed(p.finish_ms, Finish()))
        called = called or t >= p.call_ms
        finished = finished or t >= p.finish_ms
        out_real.extend(real.observe(vision.process(t, fr.gray)))
        smile = TRUE_SMILE if fr.face in (1, 3) else TRUE_NEUTRAL
        truth_obs = Observation(t, fr.present, smile=smile, standing=fr.standing)
        out_direct.extend(direct.observe(truth_obs))
        n += 1
    out_real.extend(real.feed(p.end_ms + 60_000, Tick()))
    out_direct.extend(direct.feed(p.end_ms + 60_000, Tick()))
    d = _summary(out_direct)
    return Outcome(p.truth, _verdicts(_summary(out_real)), {v: bool(d[v]) for v in VERDICTS}, n)


# --------------------------------------------------------------------------- away

AwayCase = Literal["left", "left_citizens_cross_the_seat", "face_hidden_at_seat", "masked_at_seat"]


@dataclass(frozen=True)
class AwayOutcome:
    case: AwayCase
    truth_violation: bool
    direct_violation: bool
    pipeline_violation: bool
    frames: int


def away_script(case: AwayCase, rng: random.Random, cfg: RuleConfig) -> scenes.Script:
    """Seated, then ``away_after_s`` + the pipeline's grace + 6 s of the case, then
    seated again: the clerk really leaves in the first two cases (a violation: no sign),
    stays in the others (face covered by a hand, or masked). Citizens cross the empty
    seat at 0.4-0.7 of the clerk's size, at the seat's height."""
    # The pipeline times an absence from VisionConfig.lost_grace_ms after the clerk left.
    gone_ms = round(cfg.away_after_s * 1000) + VisionConfig().lost_grace_ms + 6000
    middle: scenes.Segment
    passers: list[scenes.Passer] = []
    if case.startswith("left"):
        middle = scenes.Segment("away", gone_ms)
    else:
        middle = scenes.Segment("seated", gone_ms, face=1)  # face 1: the covered crop
    if case == "left_citizens_cross_the_seat":
        for k in range(3):
            start = PRE_MS + 1500 + k * (gone_ms // 3)
            scale = rng.uniform(0.4, 0.7)
            passers.append(scenes.Passer(start, start + 3000, 2, at_seat=True, scale=scale))
    return scenes.Script(
        (
            scenes.Segment("seated", PRE_MS + 2000, face=0),
            middle,
            scenes.Segment("seated", 5000, 0),
        ),
        tuple(passers),
        frame_ms=FRAME_MS,
    )


def judge_away(
    case: AwayCase,
    faces: list[U8],
    vision: Vision,
    cfg: RuleConfig,
    rng: random.Random,
    nrng: np.random.Generator,
) -> AwayOutcome:
    """One absence (or non-absence) through the pipeline's rules and the truth-fed ones."""
    sc = away_script(case, rng, cfg)
    geo = scenes.Geometry.random(nrng)
    real, direct = ServiceRules(cfg), ServiceRules(cfg)
    got_real: list[Any] = []
    got_direct: list[Any] = []
    n = 0
    for fr in scenes.compose(sc, faces, rng=nrng, geometry=geo):
        got_real.extend(real.observe(vision.process(fr.t_ms, fr.gray)))
        got_direct.extend(direct.observe(Observation(fr.t_ms, fr.present, 0.05, fr.standing)))
        n += 1

    def violated(drafts: list[Any]) -> bool:
        return any(d.kind.__name__ == "Away" and d.fields["violation"] for d in drafts)

    return AwayOutcome(case, case.startswith("left"), violated(got_direct), violated(got_real), n)
