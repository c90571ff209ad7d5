"""Fixtures for perception tests: shipped models (loaded once) and face images.

The face images live in ../shared/data (training/evaluation only, never shipped);
a missing folder fails the tests loudly rather than skipping them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from agent.vision.detector import FaceDetector
from agent.vision.smile import SmileClassifier
from models import datasets

U8 = npt.NDArray[np.uint8]


@pytest.fixture(scope="session")
def detector() -> FaceDetector:
    return FaceDetector()


@pytest.fixture(scope="session")
def smile_model() -> SmileClassifier:
    return SmileClassifier()


@pytest.fixture(scope="session")
def held_out() -> dict[str, list[datasets.Sample]]:
    root = datasets.data_root()
    if not (root / "smiles-lfw").is_dir():
        pytest.fail(f"face data missing at {root} (set WW_DATA)")
    return {name: datasets.split(name)[1] for name in datasets.SETS}


@pytest.fixture(scope="session")
def face_bank(held_out: dict[str, list[datasets.Sample]]) -> Callable[[int, int], list[U8]]:
    """``face_bank(label, n)``: n held-out faces with that label (1 smile, 0 not)."""
    pool = [s for s in held_out["smiles-lfw"] + held_out["genki4k-train"]]

    def pick(label: int, n: int, seed: int = 0) -> list[U8]:
        cand = [s for s in pool if s.label == label]
        idx = np.random.default_rng(seed).choice(len(cand), n, replace=False)
        return [datasets.read_gray(cand[int(i)].path) for i in idx]

    return pick


def write_images(folder: Path, samples: list[datasets.Sample]) -> None:
    import shutil

    for s in samples:
        dst = folder / s.path.parent.name
        dst.mkdir(parents=True, exist_ok=True)
        shutil.copy(s.path, dst / s.path.name)
