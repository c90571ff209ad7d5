"""Train smile.onnx: a tiny CNN on smiles-lfw + GENKI-4K crops (build time, torch).

Run through ``python -m models.build`` (or ``models.smile_train`` alone) in the
build venv. Seeded: the same data, seed and thread count give the same weights.

Crop geometry first: the product cuts the classifier's crop from a BlazeFace box, so
the build pastes training crops into scenes, runs our own detector on them and
measures where the box lies relative to the crop. Its median becomes the crop spec
stored in the model's metadata, its spread sizes the crop jitter of the training
augmentation (with brightness, contrast, gamma, blur, resolution loss and noise).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from agent.vision.scenes import soft_mask
from models import datasets

INPUT = 48
SRC = 64
U8 = npt.NDArray[np.uint8]


@dataclass
class CropCalibration:
    scale: float
    dx: float
    dy: float
    scale_sd: float
    shift_sd: float
    roll_sd_deg: float
    detected: int
    tried: int


def calibrate_crop(images: U8, rng: np.random.Generator, detector_path: Path) -> CropCalibration:
    """Where our detector puts its box on training crops pasted into a scene."""
    from agent.vision import scenes
    from agent.vision.detector import FaceDetector

    det = FaceDetector(detector_path)
    ks, dxs, dys, rolls = [], [], [], []
    cx, cy = 160.0, 120.0
    for img in images:
        canvas = scenes.background(rng).astype(np.float32)
        scenes.paste_person(canvas, img, cx, cy, SRC, tone=float(rng.uniform(40, 180)))
        faces = det.detect(np.clip(canvas, 0, 255).astype(np.uint8))
        faces = [f for f in faces if abs(f.cx - cx) < SRC / 2 and abs(f.cy - cy) < SRC / 2]
        if not faces:
            continue
        f = faces[0]
        ks.append(SRC / f.w)
        dxs.append((cx - f.cx) / f.w)
        dys.append((cy - f.cy) / f.w)
        (rx, ry), (lx, ly) = f.keypoints[0], f.keypoints[1]
        rolls.append(math.degrees(math.atan2(ly - ry, lx - rx)))
    k, dx, dy = (float(np.median(v)) for v in (ks, dxs, dys))

    def mad(v: list[float]) -> float:
        return float(1.4826 * np.median(np.abs(np.asarray(v) - np.median(v))))

    return CropCalibration(
        scale=k,
        dx=dx,
        dy=dy,
        scale_sd=mad([math.log(x) for x in ks]),
        shift_sd=max(mad(dxs), mad(dys)) / k,  # in crop sides
        roll_sd_deg=mad(rolls),
        detected=len(ks),
        tried=len(images),
    )


@dataclass
class Augment:
    scale_sd: float = 0.08
    shift_sd: float = 0.05
    roll_deg: float = 10.0
    flip: bool = True

    scene_p: float = 0.5

    def in_context(self, img: U8, rng: np.random.Generator) -> tuple[U8, float, float, float]:
        """The crop as a camera sees it: resampled to a frame size, edges blending into
        whatever is around the face (hair, wall), sensor noise. Returns the canvas and
        the face square in it (centre x, centre y, side)."""
        n = int(rng.integers(44, 78))
        face = cv2.resize(img, (n, n), interpolation=cv2.INTER_AREA).astype(np.float32)
        pad = n // 2
        size = n + 2 * pad
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        canvas = (
            rng.uniform(20, 220)
            + rng.uniform(-40, 40) * xx / size
            + rng.uniform(-40, 40) * yy / size
        ).astype(np.float32)
        alpha = soft_mask(n)
        region = canvas[pad : pad + n, pad : pad + n]
        region[:] = alpha * face + (1 - alpha) * region
        canvas += rng.normal(0, 3.0, canvas.shape).astype(np.float32)
        out = np.clip(canvas, 0, 255).astype(np.uint8)
        return out, size / 2, size / 2, float(n)

    def __call__(self, img: U8, rng: np.random.Generator) -> U8:
        src, cx, cy, side = img, SRC / 2, SRC / 2, float(SRC)
        if rng.random() < self.scene_p:
            src, cx, cy, side = self.in_context(img, rng)
        s = math.exp(float(rng.normal(0, self.scale_sd)))  # >1: zoom out (looser crop)
        sx, sy = rng.normal(0, self.shift_sd, 2) * side
        ang = float(rng.uniform(-self.roll_deg, self.roll_deg))
        c = (cx + sx, cy + sy)
        m = cv2.getRotationMatrix2D(c, ang, INPUT / (side * s))
        m[0, 2] += INPUT / 2 - c[0]
        m[1, 2] += INPUT / 2 - c[1]
        out = cv2.warpAffine(
            src, m, (INPUT, INPUT), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        ).astype(np.float32)
        if self.flip and rng.random() < 0.5:
            out = out[:, ::-1]
        r = rng.random()
        if r < 0.2:  # camera focus / motion
            out = np.asarray(
                cv2.GaussianBlur(out, (0, 0), float(rng.uniform(0.4, 1.2))), np.float32
            )
        elif r < 0.35:  # a small, far face upscaled from few pixels
            n = int(rng.integers(20, 40))
            small = cv2.resize(out, (n, n), interpolation=cv2.INTER_AREA)
            out = np.asarray(
                cv2.resize(small, (INPUT, INPUT), interpolation=cv2.INTER_LINEAR), np.float32
            )
        gamma = math.exp(float(rng.normal(0, 0.25)))
        out = 255.0 * (np.clip(out, 0, 255) / 255.0) ** gamma
        out = out * float(rng.uniform(0.6, 1.3)) + float(rng.uniform(-35, 35))
        out += rng.normal(0, float(rng.uniform(0, 6)), out.shape)
        return np.clip(out, 0, 255).astype(np.uint8)


def _net() -> Any:
    import torch
    from torch import nn

    def block(cin: int, cout: int) -> list[nn.Module]:
        return [
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        ]

    class SmileNet(nn.Module):
        """uint8 grey [N,1,48,48] -> smile probability [N,1]; normalisation inside."""

        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                *block(1, 16),
                nn.MaxPool2d(2),
                *block(16, 32),
                nn.MaxPool2d(2),
                *block(32, 64),
                *block(64, 64),
                nn.MaxPool2d(2),
                *block(64, 96),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
                nn.Dropout(0.2),
                nn.Linear(96, 1),
            )

        def logits(self, x: torch.Tensor) -> torch.Tensor:
            x = x.float()
            # Per-crop contrast normalisation: the lighting of a window changes all day.
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            std = x.std(dim=(1, 2, 3), keepdim=True) + 4.0
            return self.features((x - mean) / std)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            # Mirror averaging at inference: a face and its mirror image smile alike.
            return torch.sigmoid((self.logits(x) + self.logits(torch.flip(x, dims=[3]))) / 2)

    return SmileNet()


def _center(imgs: U8) -> U8:
    return np.stack([cv2.resize(i, (INPUT, INPUT), interpolation=cv2.INTER_AREA) for i in imgs])[
        :, None
    ]


def train(
    out: Path,
    detector_path: Path,
    *,
    seed: int = 20261129,
    epochs: int = 16,
    threads: int = 2,
    genki_repeat: int = 2,
    log: Any = print,
) -> dict[str, Any]:
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    sets: dict[str, dict[str, Any]] = {}
    for name in datasets.SETS:
        tr, ho = datasets.split(name)
        xtr, ytr = datasets.load(tr, SRC)
        xho, yho = datasets.load(ho, SRC)
        sets[name] = {"xtr": xtr, "ytr": ytr, "xho": xho, "yho": yho}
        log(f"{name}: train {len(tr)}, held out {len(ho)}")

    calib_pool = np.concatenate(
        [s["xtr"][rng.choice(len(s["xtr"]), 300, replace=False)] for s in sets.values()]
    )
    cal = calibrate_crop(calib_pool, rng, detector_path)
    log(f"crop calibration: {cal}")
    aug = Augment(scale_sd=max(0.06, cal.scale_sd), shift_sd=max(0.04, cal.shift_sd), roll_deg=10.0)

    # GENKI is a quarter the size: repeat it per epoch so neither domain dominates.
    xtr = np.concatenate(
        [sets["smiles-lfw"]["xtr"], *[sets["genki4k-train"]["xtr"]] * genki_repeat]
    )
    ytr = np.concatenate(
        [sets["smiles-lfw"]["ytr"], *[sets["genki4k-train"]["ytr"]] * genki_repeat]
    )
    net = _net()
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    batch = 128
    steps = epochs * math.ceil(len(xtr) / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    lossf = torch.nn.BCEWithLogitsLoss()

    def held_acc() -> dict[str, float]:
        net.eval()
        accs = {}
        with torch.no_grad():
            for name, s in sets.items():
                p = net(torch.from_numpy(_center(s["xho"]))).numpy()[:, 0]
                accs[name] = float(((p >= 0.5) == (s["yho"] == 1)).mean())
        net.train()
        return accs

    t0 = time.time()
    for ep in range(epochs):
        order = rng.permutation(len(xtr))
        x_ep = np.stack([aug(xtr[i], rng) for i in order])[:, None]
        y_ep = ytr[order].astype(np.float32)
        total = 0.0
        for b in range(0, len(order), batch):
            xb = torch.from_numpy(x_ep[b : b + batch])
            yb = torch.from_numpy(y_ep[b : b + batch])[:, None]
            loss = lossf(net.logits(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(xb)
        msg = f"epoch {ep + 1}/{epochs} loss {total / len(order):.4f} {time.time() - t0:.0f}s"
        if ep % 4 == 3 or ep == epochs - 1:
            # Progress only: the held-out sets never steer training (fixed schedule).
            msg += f" held-out {held_acc()}"
        log(msg)

    net.eval()
    meta = {
        "input_size": str(INPUT),
        "crop_scale": f"{cal.scale:.4f}",
        "crop_dx": f"{cal.dx:.4f}",
        "crop_dy": f"{cal.dy:.4f}",
        "seed": str(seed),
        "epochs": str(epochs),
        "training_sets": ",".join(datasets.SETS),
    }
    export(net, out, meta)
    return {
        "calibration": asdict(cal),
        "augment": asdict(aug),
        "seed": seed,
        "epochs": epochs,
        "genki_repeat": genki_repeat,
        "train_images": len(xtr),
        "train_seconds": round(time.time() - t0, 1),
    }


def export(net: Any, out: Path, meta: dict[str, str]) -> None:
    import onnx
    import torch

    dummy = torch.zeros((1, 1, INPUT, INPUT), dtype=torch.uint8)
    tmp = out.with_suffix(".tmp.onnx")
    torch.onnx.export(
        net,
        (dummy,),
        str(tmp),
        input_names=["crop"],
        output_names=["smile"],
        dynamic_axes={"crop": {0: "n"}, "smile": {0: "n"}},
        opset_version=17,
        dynamo=False,
    )
    model = onnx.load(str(tmp))
    tmp.unlink()
    for k, v in meta.items():
        p = model.metadata_props.add()
        p.key, p.value = k, v
    model.doc_string = "WarmWindow smile classifier (models/smile_train.py)"
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    # The exported graph must agree with torch on random crops.
    import onnxruntime as ort

    x = np.random.default_rng(0).integers(0, 256, (8, 1, INPUT, INPUT), dtype=np.uint8)
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"crop": x})[
        0
    ]
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    if not np.allclose(got, want, atol=1e-4):
        raise SystemExit(f"ONNX export differs from torch: {np.abs(got - want).max()}")


if __name__ == "__main__":
    import sys

    res = train(
        Path(sys.argv[1] if len(sys.argv) > 1 else "models/smile.onnx"),
        Path("models/face_detector.onnx"),
    )
    print(json.dumps(res, indent=1))
