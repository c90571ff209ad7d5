"""The alternative to the smile CNN, measured: mouth geometry from face landmarks.

Build-time experiment (.venv-build): MediaPipe's ``face_landmark.tflite`` (468
points, from the same wheel) runs in the TFLite interpreter on training crops;
mouth features (width, opening, corner lift, lip height, each over the eye
distance, and their pairwise products) feed a logistic regression fitted on the
training split and scored on the same held-out splits as the CNN. Also times the
landmark model on one thread and checks whether tflite2onnx converts it at all.

    .venv-build/bin/python -m models.compare_landmarks [--train 3000] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from models import datasets

F64 = npt.NDArray[np.float64]
# Face-mesh indices: mouth corners, inner lips, outer lips, outer eye corners.
R_CORNER, L_CORNER, UP_IN, LO_IN, UP_OUT, LO_OUT, R_EYE, L_EYE = 61, 291, 13, 14, 0, 17, 33, 263


def landmark_model() -> Path:
    from models.facedet import tflite_path

    return tflite_path().parent.parent / "face_landmark" / "face_landmark.tflite"


class Landmarks:
    def __init__(self, path: Path) -> None:
        import tflite_runtime.interpreter as tfl

        self.it = tfl.Interpreter(model_path=str(path), num_threads=1)
        self.it.allocate_tensors()
        self.inp = self.it.get_input_details()[0]
        self.out = self.it.get_output_details()
        self.size = int(self.inp["shape"][1])

    def __call__(self, gray: npt.NDArray[np.uint8]) -> F64:
        # The landmark model expects a face with a margin (MediaPipe scales the box 1.5x).
        m = gray.shape[0] // 4
        padded = cv2.copyMakeBorder(gray, m, m, m, m, cv2.BORDER_REPLICATE)
        img = cv2.resize(padded, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
        x = (img.astype(np.float32) / 255.0)[None, :, :, None].repeat(3, -1)
        self.it.set_tensor(self.inp["index"], x)
        self.it.invoke()
        big = max(self.out, key=lambda d: int(np.prod(d["shape"])))
        return np.asarray(self.it.get_tensor(big["index"]), np.float64).reshape(-1, 3)[:, :2]


def features(p: F64) -> F64:
    d = np.linalg.norm(p[L_EYE] - p[R_EYE]) + 1e-6
    width = np.linalg.norm(p[L_CORNER] - p[R_CORNER]) / d
    opening = np.linalg.norm(p[LO_IN] - p[UP_IN]) / d
    lift = ((p[UP_IN, 1] + p[LO_IN, 1]) / 2 - (p[R_CORNER, 1] + p[L_CORNER, 1]) / 2) / d
    lips = np.linalg.norm(p[LO_OUT] - p[UP_OUT]) / d
    base = np.array([width, opening, lift, lips])
    pairs = np.outer(base, base)[np.triu_indices(4)]
    return np.concatenate([base, pairs])


def fit_logistic(x: F64, y: F64, steps: int = 3000, lr: float = 0.5) -> tuple[F64, F64, F64]:
    mu, sd = x.mean(0), x.std(0) + 1e-9
    z = (x - mu) / sd
    w = np.zeros(z.shape[1] + 1)
    zb = np.hstack([z, np.ones((len(z), 1))])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-zb @ w))
        w -= lr * (zb.T @ (p - y) / len(y) + 1e-4 * w)
    return w, mu, sd


def predict(w: F64, mu: F64, sd: F64, x: F64) -> F64:
    zb = np.hstack([(x - mu) / sd, np.ones((len(x), 1))])
    return np.asarray(1 / (1 + np.exp(-zb @ w)), np.float64)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="models.compare_landmarks")
    ap.add_argument("--train", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    path = landmark_model()
    result: dict[str, Any] = {"model": str(path.name), "size_bytes": path.stat().st_size}
    try:
        import tempfile

        import tflite2onnx

        with tempfile.TemporaryDirectory() as tmp:
            tflite2onnx.convert(str(path), str(Path(tmp) / "lm.onnx"))
        result["tflite2onnx"] = "converted"
    except Exception as exc:  # the converter raises assorted errors on unsupported ops
        result["tflite2onnx"] = f"failed: {type(exc).__name__}: {exc}"[:160]
    lm = Landmarks(path)
    rng = np.random.default_rng(args.seed)
    train: list[datasets.Sample] = []
    for name in datasets.SETS:
        tr, _ = datasets.split(name)
        train += [tr[int(i)] for i in rng.choice(len(tr), args.train // 2, replace=False)]
    t0 = time.perf_counter()
    xtr = np.stack([features(lm(datasets.read_gray(s.path))) for s in train])
    per_image_ms = 1000 * (time.perf_counter() - t0) / len(train)
    ytr = np.array([s.label for s in train], np.float64)
    w, mu, sd = fit_logistic(xtr, ytr)
    result["train_images"] = len(train)
    result["landmark_ms_per_face_tflite_1thread"] = round(per_image_ms, 2)
    for name in datasets.SETS:
        _, held = datasets.split(name)
        xho = np.stack([features(lm(datasets.read_gray(s.path))) for s in held])
        yho = np.array([s.label for s in held])
        acc = float(((predict(w, mu, sd, xho) >= 0.5) == (yho == 1)).mean())
        result[f"held_out_accuracy_{name}"] = round(acc, 4)
        result[f"held_out_n_{name}"] = len(held)
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
