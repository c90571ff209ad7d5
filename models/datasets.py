"""Smile data sets on disk (training and evaluation only; never shipped).

Each set is a folder with ``smile/`` and ``no_smile/`` image folders. The held-out
split is a hash of the set name, label and file name: stable across machines and
runs, independent of file order, and unchanged if files are added elsewhere.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import cv2
import numpy as np
import numpy.typing as npt

LABELS: Final = {"no_smile": 0, "smile": 1}
IMAGE_EXT: Final = (".jpg", ".jpeg", ".png", ".bmp")
HOLDOUT_PERCENT: Final = 20
#: The default location beside the repository checkout (shared/data).
SHARED_DATA: Final = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
SETS: Final = ("smiles-lfw", "genki4k-train")


def data_root() -> Path:
    return Path(os.environ.get("WW_DATA", str(SHARED_DATA)))


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int

    def held_out(self, set_name: str) -> bool:
        key = f"{set_name}/{self.path.parent.name}/{self.path.name}".encode()
        return int(hashlib.sha1(key).hexdigest(), 16) % 100 < HOLDOUT_PERCENT


def list_samples(root: Path) -> list[Sample]:
    """Every labelled image under ``root/smile`` and ``root/no_smile``, sorted."""
    out: list[Sample] = []
    for name, label in LABELS.items():
        folder = root / name
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} is missing (need smile/ and no_smile/)")
        out.extend(
            Sample(p, label) for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_EXT
        )
    return out


def split(set_name: str, root: Path | None = None) -> tuple[list[Sample], list[Sample]]:
    """(train, held_out) of a named set under the data root."""
    samples = list_samples((root or data_root()) / set_name)
    held = [s for s in samples if s.held_out(set_name)]
    train = [s for s in samples if not s.held_out(set_name)]
    return train, held


def read_gray(path: Path) -> npt.NDArray[np.uint8]:
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise ValueError(f"cannot read image {path}")
    return np.asarray(img, dtype=np.uint8)


def load(
    samples: list[Sample], size: int = 64
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """Images as ``[N, size, size]`` uint8 grey and labels ``[N]``."""
    imgs = np.empty((len(samples), size, size), np.uint8)
    for i, s in enumerate(samples):
        g = read_gray(s.path)
        if g.shape != (size, size):
            g = np.asarray(cv2.resize(g, (size, size), interpolation=cv2.INTER_AREA), np.uint8)
        imgs[i] = g
    return imgs, np.array([s.label for s in samples], np.int64)
