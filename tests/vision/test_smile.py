"""Smile accuracy on held-out data, through the product code only."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agent.vision.detector import FaceDetector
from agent.vision.smile import SmileBand, SmileClassifier, band
from models import datasets
from models.evaluate import eval_images, eval_scenes, wilson
from tests.vision.conftest import write_images

REPO = Path(__file__).resolve().parents[2]


def test_held_out_accuracy_per_set(
    smile_model: SmileClassifier, held_out: dict[str, list[datasets.Sample]]
) -> None:
    lfw = eval_images(smile_model, held_out["smiles-lfw"])
    genki = eval_images(smile_model, held_out["genki4k-train"])
    assert lfw.n > 2000 and genki.n > 500
    # Measured 0.9339 and 0.9120 (build_report.json); floors about 2 SE below.
    assert lfw.accuracy >= 0.92, lfw.line()
    assert genki.accuracy >= 0.89, genki.line()


def test_accuracy_on_crops_cut_by_our_detector(
    detector: FaceDetector,
    smile_model: SmileClassifier,
    held_out: dict[str, list[datasets.Sample]],
) -> None:
    """A regression guard on 400 faces per set (the model card quotes the build's
    larger run: 0.943 and 0.915); one set's scene sample varies by about +-0.013
    (1 SE)."""
    rng = np.random.default_rng(11)
    floor = {"smiles-lfw": 0.915, "genki4k-train": 0.885}
    for name in datasets.SETS:
        held = held_out[name]
        pick = [held[int(i)] for i in sorted(rng.choice(len(held), 400, replace=False))]
        res = eval_scenes(pick, seed=5, det=detector, clf=smile_model)
        assert res.detection_rate >= 0.94, name
        assert res.crops.accuracy >= floor[name], (name, res.crops.line())


def test_held_out_split_is_disjoint_and_stable() -> None:
    train, held = datasets.split("smiles-lfw")
    assert not {s.path for s in train} & {s.path for s in held}
    again = datasets.split("smiles-lfw")[1]
    assert [s.path for s in again] == [s.path for s in held]
    assert 0.15 < len(held) / (len(held) + len(train)) < 0.25


def test_band() -> None:
    assert band(None, 0.5, 0.97) is SmileBand.NONE
    assert band(0.2, 0.5, 0.97) is SmileBand.NONE
    assert band(0.7, 0.5, 0.97) is SmileBand.SMILE
    assert band(0.99, 0.5, 0.97) is SmileBand.TOO_BROAD


def test_eval_smile_command(tmp_path: Path, held_out: dict[str, list[datasets.Sample]]) -> None:
    held = held_out["smiles-lfw"]
    picked = [s for s in held if s.label == 1][:20] + [s for s in held if s.label == 0][:20]
    write_images(tmp_path, picked)
    out = subprocess.run(
        [sys.executable, "-m", "models.cli", "eval-smile", "--data", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    last = out.stdout.strip().splitlines()[-1]
    m = re.fullmatch(r"accuracy=(\d\.\d+) n=(\d+) ci95=\[(\d\.\d+),(\d\.\d+)\]", last)
    assert m, last
    assert int(m.group(2)) == 40
    assert 0.8 <= float(m.group(1)) <= 1.0
    assert float(m.group(3)) <= float(m.group(1)) <= float(m.group(4))


def test_wilson_interval() -> None:
    lo, hi = wilson(2030, 2165)  # a held-out accuracy of 0.938
    assert lo == pytest.approx(0.9267, abs=5e-4) and hi == pytest.approx(0.9471, abs=5e-4)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == 1.0
    assert wilson(0, 0) == (0.0, 1.0)


def test_eval_smile_command_fails_without_labels(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "models.cli", "eval-smile", "--data", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
