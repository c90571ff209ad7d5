"""Verdicts against the truth: the real pipeline and rules on rendered sessions.

    python -m bench.verdicts [--sessions 40] [--seed 16] [--json FILE] [--rule NAME=VALUE]

Each scripted session (``bench/verdicts/sessions.py``) says what the clerk did; it is
rendered into 10 frames/s camera frames from held-out faces (the models never trained
on them) and run through the real ``Vision`` pipeline and the real ``ServiceRules``,
and, beside it, through the same rules fed the truth directly. Per condition (clear,
dim, masked, a hand over the lens during the greeting, a hand over the face) and per
verdict it prints: agreement with the truth-fed rules; false violations (the clerk
complied, the verdict says not: must stay <= 1 % of verdicts); missed violations (the
clerk did not comply, the verdict says complied: <= 5 % of the real violations); and
the share "not observed". Nothing here asserts: it measures.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from agent.config import RuleConfig
from agent.vision.detector import FaceDetector
from agent.vision.pipeline import Vision
from agent.vision.smile import SmileClassifier
from bench.verdicts import sessions as ss

CONDITIONS: tuple[ss.Condition, ...] = (
    "clear",
    "busy_wall",
    "dim",
    "backlit",
    "masked",
    "covered_lens",
    "hand_over_face",
)


def _mask(face: ss.U8, rng: np.random.Generator) -> ss.U8:
    """A face mask over nose, mouth and chin (a simple cloth shape)."""
    n = face.shape[0]
    out = face.copy()
    top = int(n * rng.uniform(0.5, 0.58))
    pts = np.array(
        [[int(n * 0.12), top], [int(n * 0.88), top], [int(n * 0.8), int(n * 0.95)],
         [int(n * 0.2), int(n * 0.95)]],
        np.int32,
    )  # fmt: skip
    cv2.fillPoly(out, [pts], int(rng.choice([40, 180, 225])))
    return out


def _hand(face: ss.U8, rng: np.random.Generator) -> ss.U8:
    """A palm held in front of most of the face (the detector loses it)."""
    n = face.shape[0]
    out = face.copy()
    cv2.ellipse(
        out, (n // 2, int(n * 0.55)), (int(n * 0.5), int(n * 0.42)), 0, 0, 360,
        int(rng.uniform(120, 200)), -1,
    )  # fmt: skip
    return out


@dataclass
class Tally:
    n: int = 0
    violations: int = 0  # the truth-fed rules say "did not"
    agree: int = 0
    false_violation: int = 0
    missed: int = 0
    not_observed: int = 0

    def add(self, direct: bool, real: bool, unseen: bool) -> None:
        self.n += 1
        self.violations += not direct
        if unseen:
            self.not_observed += 1
        elif real == direct:
            self.agree += 1
        elif direct:
            self.false_violation += 1
        else:
            self.missed += 1

    def row(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "violations": self.violations,
            "agree": self.agree,
            "false_violations": self.false_violation,
            "false_violation_rate": self.false_violation / self.n if self.n else None,
            "missed": self.missed,
            "missed_rate": self.missed / self.violations if self.violations else None,
            "not_observed": self.not_observed,
            "not_observed_share": self.not_observed / self.n if self.n else None,
        }


def faces_from_data(seed: int) -> ss.Faces:
    from models import datasets

    held = [s for name in datasets.SETS for s in datasets.split(name)[1]]
    rng = random.Random(seed)
    neutral = [s for s in held if s.label == 0]
    smiling = [s for s in held if s.label == 1]
    pick = 300
    return ss.Faces(
        neutral=[datasets.read_gray(s.path) for s in rng.sample(neutral, pick)],
        smiling=[datasets.read_gray(s.path) for s in rng.sample(smiling, pick)],
    )


def run(n: int, seed: int, rules: dict[str, Any] | None = None) -> dict[str, Any]:
    cfg = RuleConfig(**(rules or {}))
    faces = faces_from_data(seed)
    det, smile = FaceDetector(), SmileClassifier()
    rng = random.Random(seed)
    tallies: dict[str, dict[str, Tally]] = defaultdict(lambda: defaultdict(Tally))
    truth_ok = truth_n = frames = 0
    t0 = time.perf_counter()
    for condition in CONDITIONS:
        for i in range(n):
            did = [rng.random() < 0.6 for _ in range(4)]
            truth = ss.Truth(did[0], did[1], did[2], did[3], condition=condition)
            plan = ss.plan(truth, rng, cfg)
            nrng = np.random.default_rng(seed * 100_000 + i * 10 + CONDITIONS.index(condition))
            pair = faces.pair(nrng)
            if condition == "masked":  # a mask all day
                pair = [_mask(f, nrng) for f in pair]
            hidden = [_hand(f, nrng) for f in pair]  # faces 2, 3: hand_over_face only
            vision = Vision(detector=det, smile=smile)
            out = ss.judge(plan, ss.render(plan, pair + hidden, nrng, i), vision, cfg)
            frames += out.frames
            for v in ss.VERDICTS:
                real, unseen = out.pipeline[v]
                tallies[condition][v].add(out.direct[v], real, unseen)
                truth_ok += out.direct[v] == truth.verdicts()[v]
                truth_n += 1
    away: dict[str, dict[str, int]] = {}
    away_cfg = cfg.model_copy(update={"away_after_s": 10.0})
    for case in ("left", "left_citizens_cross_the_seat", "face_hidden_at_seat", "masked_at_seat"):
        row = {"n": 0, "truth": 0, "truth_fed": 0, "pipeline": 0, "false": 0, "missed": 0}
        for i in range(max(4, n // 3)):
            nrng = np.random.default_rng(seed * 7_000 + i)
            neutral = faces.pair(nrng)[0]
            cover = _hand if case == "face_hidden_at_seat" else _mask
            passer = faces.pair(nrng)[0]
            aw = ss.judge_away(
                case,
                [neutral, cover(neutral, nrng), passer],
                Vision(detector=det, smile=smile),
                away_cfg,
                rng,
                nrng,
            )
            frames += aw.frames
            row["n"] += 1
            row["truth"] += aw.truth_violation
            row["truth_fed"] += aw.direct_violation
            row["pipeline"] += aw.pipeline_violation
            row["false"] += aw.pipeline_violation and not aw.truth_violation
            row["missed"] += aw.truth_violation and not aw.pipeline_violation
        away[case] = row
    return {
        "away": away,
        "away_after_s": away_cfg.away_after_s,
        "sessions_per_condition": n,
        "seed": seed,
        "frames": frames,
        "seconds": round(time.perf_counter() - t0, 1),
        "truth_fed_rules_match_the_script": f"{truth_ok}/{truth_n}",
        "conditions": {c: {v: t.row() for v, t in vs.items()} for c, vs in tallies.items()},
    }


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def report(res: dict[str, Any]) -> str:
    lines = [
        f"{res['sessions_per_condition']} sessions per condition, seed {res['seed']}, "
        f"{res['frames']} frames in {res['seconds']} s; truth-fed rules match the "
        f"scripts: {res['truth_fed_rules_match_the_script']}",
        "",
        "| condition | verdict | n | real violations | agree | false violations "
        "(of verdicts) | missed violations (of real ones) | not observed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for cond, verdicts in res["conditions"].items():
        total = Tally()
        for v, r in verdicts.items():
            lines.append(
                f"| {cond} | {v} | {r['n']} | {r['violations']} | {r['agree']} | "
                f"{r['false_violations']} ({_pct(r['false_violation_rate'])}) | "
                f"{r['missed']} ({_pct(r['missed_rate'])}) | "
                f"{r['not_observed']} ({_pct(r['not_observed_share'])}) |"
            )
            for k in ("n", "violations", "agree", "not_observed"):
                setattr(total, k, getattr(total, k) + r[k])
            total.false_violation += r["false_violations"]
            total.missed += r["missed"]
        t = total.row()
        lines.append(
            f"| **{cond}** | all | {t['n']} | {t['violations']} | {t['agree']} | "
            f"**{t['false_violations']} ({_pct(t['false_violation_rate'])})** | "
            f"**{t['missed']} ({_pct(t['missed_rate'])})** | "
            f"{t['not_observed']} ({_pct(t['not_observed_share'])}) |"
        )
    lines += [
        "",
        f"Away without the sign (away_after_s = {res['away_after_s']:g} s for the bench; "
        "the rule is the same at 60 s):",
        "",
        "| case | n | real violations | truth-fed rules | pipeline | false violations | "
        "missed violations |",
        "|---|---|---|---|---|---|---|",
    ]
    for case, r in res["away"].items():
        lines.append(
            f"| {case} | {r['n']} | {r['truth']} | {r['truth_fed']} | {r['pipeline']} | "
            f"{r['false']} | {r['missed']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.verdicts", description=__doc__)
    ap.add_argument("--sessions", type=int, default=40, help="sessions per condition")
    ap.add_argument("--seed", type=int, default=16)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument(
        "--rule",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a RuleConfig setting to try instead of its default (repeatable)",
    )
    args = ap.parse_args(argv)
    rules = {k: float(v) for k, v in (r.split("=", 1) for r in args.rule)}
    res = run(args.sessions, args.seed, rules)
    res["rules"] = RuleConfig(**rules).model_dump()
    print(report(res))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
