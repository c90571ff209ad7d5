"""Measure the shipped models through the product code (onnxruntime only).

Used by the build (figures for the model card), by ``models eval-smile`` and by the
tests. Nothing here trains or imports a training framework.
"""

from __future__ import annotations

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
        passers = [scenes.Passer(0, 100, 1, size=float(rng.uniform(24, 34)),
                                 y=float(rng.uniform(40, 90)))] if rng.random() < 0.3 else []
        light = [scenes.Lighting(0, 1, float(rng.uniform(0.6, 1.3)))]
        sc = scenes.script([(pose, 100)], passers=passers, lighting=light)
        frame = next(scenes.compose(sc, [face, other], rng=rng))
        assert frame.box is not None
        bx, by, bs = frame.box
        # The clerk is the face whose centre lies in the pasted square.
        hits = [f for f in det.detect(frame.gray)
                if bx <= f.cx <= bx + bs and by <= f.cy <= by + bs]
        if not hits:
            continue
        detected += 1
        correct += int((clf.score(frame.gray, hits[0]) >= 0.5) == (s.label == 1))
    return SceneResult(Accuracy(correct, detected), len(samples), detected)


def held_out_report(seed: int = 7, scene_limit: int = 600) -> dict[str, dict[str, float]]:
    """Per-set held-out accuracy on whole images and on detector crops from scenes."""
    det, clf = FaceDetector(), SmileClassifier()
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
