"""Measure the shipped models through the product code (onnxruntime only).

Used by the build (figures for the model card), by ``models eval-smile`` and by the
tests. Nothing here trains or imports a training framework.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.vision import scenes
from agent.vision.detector import FaceDetector
from agent.vision.smile import SmileClassifier
from models import datasets


@dataclass(frozen=True)
class Accuracy:
    correct: int
    n: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0

    def line(self) -> str:
        return f"accuracy={self.accuracy:.4f} n={self.n}"


def eval_images(clf: SmileClassifier, samples: list[datasets.Sample], batch: int = 64) -> Accuracy:
    """Whole images (framed like the training crops) straight into the classifier."""
    correct = 0
    for b in range(0, len(samples), batch):
        part = samples[b : b + batch]
        x = np.concatenate([clf.prepare(datasets.read_gray(s.path)) for s in part])
        p = clf.score_images(x)
        correct += int(((p >= 0.5) == np.array([s.label == 1 for s in part])).sum())
    return Accuracy(correct, len(samples))


def eval_dir(root: Path, clf: SmileClassifier | None = None) -> Accuracy:
    return eval_images(clf or SmileClassifier(), datasets.list_samples(root))


@dataclass(frozen=True)
class SceneResult:
    crops: Accuracy  # on frames where the detector found the clerk
    frames: int
    detected: int

    @property
    def detection_rate(self) -> float:
        return self.detected / self.frames if self.frames else 0.0


def eval_scenes(
    samples: list[datasets.Sample],
    *,
    seed: int = 7,
    det: FaceDetector | None = None,
    clf: SmileClassifier | None = None,
) -> SceneResult:
    """Each face pasted into a composed 320x240 scene (random seat, size, posture,
    light, a background citizen for some); our detector finds it, the product cuts
    the crop, the classifier scores it."""
    det = det or FaceDetector()
    clf = clf or SmileClassifier()
    rng = np.random.default_rng(seed)
    correct = detected = 0
    for i, s in enumerate(samples):
        face = datasets.read_gray(s.path)
        other = datasets.read_gray(samples[(i * 7919 + 13) % len(samples)].path)
        pose: scenes.Pose = "standing" if rng.random() < 0.3 else "seated"
        passers = (
            [
                scenes.Passer(
                    0, 100, 1, size=float(rng.uniform(24, 34)), y=float(rng.uniform(40, 90))
                )
            ]
            if rng.random() < 0.3
            else []
        )
        light = [scenes.Lighting(0, 1, float(rng.uniform(0.6, 1.3)))]
        sc = scenes.script([(pose, 100)], passers=passers, lighting=light)
        frame = next(scenes.compose(sc, [face, other], rng=rng))
        assert frame.box is not None
        bx, by, bs = frame.box
        # The clerk is the face whose centre lies in the pasted square.
        hits = [
            f for f in det.detect(frame.gray) if bx <= f.cx <= bx + bs and by <= f.cy <= by + bs
        ]
        if not hits:
            continue
        detected += 1
        correct += int((clf.score(frame.gray, hits[0]) >= 0.5) == (s.label == 1))
    return SceneResult(Accuracy(correct, detected), len(samples), detected)


def held_out_report(
    models_dir: Path | None = None, *, seed: int = 7, scene_limit: int = 600
) -> dict[str, dict[str, float]]:
    """Per-set held-out accuracy on whole images and on detector crops from scenes
    (the shipped models, or those in ``models_dir``)."""
    if models_dir is None:
        det, clf = FaceDetector(), SmileClassifier()
    else:
        det = FaceDetector(models_dir / "face_detector.onnx")
        clf = SmileClassifier(models_dir / "smile.onnx")
    out: dict[str, dict[str, float]] = {}
    for name in datasets.SETS:
        _, held = datasets.split(name)
        img = eval_images(clf, held)
        pick = np.random.default_rng(seed).permutation(len(held))[:scene_limit]
        sc = eval_scenes([held[i] for i in sorted(pick)], seed=seed, det=det, clf=clf)
        out[name] = {
            "held_out_n": img.n,
            "held_out_accuracy": round(img.accuracy, 4),
            "scene_frames": sc.frames,
            "scene_detection_rate": round(sc.detection_rate, 4),
            "scene_crop_accuracy": round(sc.crops.accuracy, 4),
        }
    return out


@dataclass(frozen=True)
class PostureResult:
    f1: tuple[float, ...]  # standing F1 per sequence
    frames: int  # scored frames (clerk there, not mid-movement)
    min_gap_ms: int | None  # shortest time between two posture changes
    #: Longest run of a wrong posture output (clerk seen, outside movements): mostly
    #: the delay from the end of a movement to the output's change.
    max_lag_ms: int
    #: Scored frames where the pipeline did not (yet) report the clerk present: the
    #: presence debounce at arrival and detector misses; they count against F1.
    presence_missed: int

    @property
    def mean_f1(self) -> float:
        return float(np.mean(self.f1))


POSTURE_SCRIPTS: tuple[tuple[tuple[scenes.Pose, int], ...], ...] = (
    (("seated", 4000), ("standing", 4000), ("seated", 5000), ("standing", 3000), ("seated", 3000)),
    (
        ("seated", 3000),
        ("standing", 2500),
        ("seated", 3000),
        ("away", 3000),
        ("seated", 3000),
        ("standing", 5000),
        ("seated", 2000),
    ),
    (("seated", 5000), ("standing", 6000), ("seated", 6000)),
)


def posture_report(
    faces: list[np.ndarray],
    *,
    sequences: int = 6,
    seed: int = 21,
    det: FaceDetector | None = None,
    clf: SmileClassifier | None = None,
) -> PostureResult:
    """Run the whole pipeline on generated sequences (a citizen passing behind, the
    light changing) and score 'standing' per frame. Frames while the clerk moves
    between postures are left out: half-way up, the truth is a matter of definition;
    ``max_lag_ms`` bounds how late the output follows a finished movement instead."""
    from agent.vision.pipeline import Vision

    det = det or FaceDetector()
    clf = clf or SmileClassifier()
    rng = np.random.default_rng(seed)
    half = len(faces) // 2
    scores: list[float] = []
    n = 0
    gaps: list[int] = []
    lag = missed = 0
    for k in range(sequences):
        sc = scenes.script(
            POSTURE_SCRIPTS[k % len(POSTURE_SCRIPTS)],
            passers=[scenes.Passer(1500, 4500, 1, size=30, y=60)],
            lighting=[scenes.Lighting(6000, 8000, float(rng.uniform(0.6, 1.3)))],
        )
        frames = list(scenes.compose(sc, [faces[k % half], faces[half + k % half]], rng=rng))
        vision = Vision(detector=det, smile=clf)
        obs = [vision.process(f.t_ms, f.gray) for f in frames]
        tp = fp = fn = 0
        changes: list[int] = []
        last: bool | None = None
        pending: int | None = None  # end of a movement not yet followed by the output
        for fr, o in zip(frames, obs, strict=True):
            if o.face_present and o.standing is not None and o.standing != last:
                if last is not None:
                    changes.append(o.t_ms)
                last = o.standing
            if fr.present and not fr.transition and fr.standing is not None:
                if not o.face_present:
                    missed += 1
                elif o.standing == fr.standing:
                    if pending is not None:
                        lag = max(lag, o.t_ms - pending)
                    pending = None
                elif pending is None:
                    pending = fr.t_ms
                n += 1
                truth, said = bool(fr.standing), bool(o.face_present and o.standing)
                tp += truth and said
                fp += said and not truth
                fn += truth and not said
        scores.append(2 * tp / max(2 * tp + fp + fn, 1))
        gaps += [b - a for a, b in itertools.pairwise(changes)]
    return PostureResult(tuple(scores), n, min(gaps) if gaps else None, lag, missed)
