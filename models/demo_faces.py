"""Cut the demo's two face crops from public-domain photographs shipped in PyPI wheels.

``python -m models.demo_faces --skimage-wheel W1 --matplotlib-wheel W2`` (wheels from
``pip download --no-deps scikit-image matplotlib``) writes ``agent/demo_faces/*.png``:

* ``smile.png``  - Eileen Collins, NASA portrait (scikit-image ``data/astronaut.png``):
  "No known copyright restrictions, released into the public domain" (scikit-image docs).
* ``neutral.png`` - Commodore Grace M. Hopper, official U.S. Navy photograph
  (matplotlib ``mpl-data/sample_data/grace_hopper.jpg``): a work of the U.S. federal
  government, public domain.

The crops are cut by the product's own face detector, 96x96 grey. The training sets in
../shared/data are research-only and never shipped; these two images are.
"""

from __future__ import annotations

import argparse
import zipfile
from pathlib import Path

import cv2
import numpy as np

from agent.vision.detector import FaceDetector

OUT = Path(__file__).resolve().parent.parent / "agent" / "demo_faces"
SOURCES = {
    "smile.png": ("skimage_wheel", "skimage/data/astronaut.png"),
    "neutral.png": ("matplotlib_wheel", "matplotlib/mpl-data/sample_data/grace_hopper.jpg"),
}


def crop(image: np.ndarray, detector: FaceDetector, size: int = 96) -> np.ndarray:
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    scale = 320 / gray.shape[1]
    small = cv2.resize(gray, (320, round(gray.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    face = max(detector.detect(np.asarray(small, dtype=np.uint8)), key=lambda f: f.w)
    # the detector's box, a little looser: the pipeline's own crop adds its margin
    cx, cy, s = face.cx / scale, face.cy / scale, face.w / scale * 1.1
    x0, y0 = max(0, round(cx - s / 2)), max(0, round(cy - s / 2))
    square = gray[y0 : y0 + round(s), x0 : x0 + round(s)]
    return cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--skimage-wheel", type=Path, required=True)
    ap.add_argument("--matplotlib-wheel", type=Path, required=True)
    args = ap.parse_args()
    detector = FaceDetector()
    OUT.mkdir(parents=True, exist_ok=True)
    for name, (wheel_arg, member) in SOURCES.items():
        with zipfile.ZipFile(getattr(args, wheel_arg)) as zf:
            data = np.frombuffer(zf.read(member), np.uint8)
        image = cv2.imdecode(data, cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"cannot decode {member}")
        cv2.imwrite(str(OUT / name), crop(image, detector))
        print(f"wrote {OUT / name} from {member}")


if __name__ == "__main__":
    main()
