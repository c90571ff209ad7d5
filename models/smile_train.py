"""Train smile.onnx: a tiny CNN on smiles-lfw + GENKI-4K crops (build time, torch).

Run through ``python -m models.build`` (or ``models.smile_train`` alone) in the
build venv. Seeded: the same data, seed and thread count give the same weights.

One trunk, two heads, one inference: ``smile`` (probability of a smile, meaningful
where the mouth can be seen) and ``visible`` (probability that the mouth is not
hidden behind a mask, a hand or an object). The ``visible`` head learns from
procedural occluders of the *training* families of ``models/occluders.py`` drawn on
the training crops; the evaluation families are never drawn here. A crop whose
mouth is hidden (or partly hidden) does not train the smile head.

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
from models import datasets, occluders

INPUT = 48
SRC = 64
U8 = npt.NDArray[np.uint8]
#: Trunk widths (conv3x3 + BN + ReLU each; max-pools after the 1st, 2nd and 4th).
WIDTHS = (20, 40, 80, 80, 128)
#: What the model's outputs mean; stored in its metadata for the product to read.
OUTPUTS_DOC = (
    "smile: P(smiling) [N,1], meaningful where visible >= 0.5; "
    "visible: P(mouth visible, not behind a mask, hand or object) [N,1]"
)


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


def _net(widths: tuple[int, ...] = WIDTHS) -> Any:
    import torch
    from torch import nn

    def block(cin: int, cout: int) -> list[nn.Module]:
        return [
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        ]

    w1, w2, w3, w4, w5 = widths

    class SmileNet(nn.Module):
        """uint8 grey [N,1,48,48] -> (smile [N,1], visible [N,1]); normalisation inside."""

        def __init__(self) -> None:
            super().__init__()
            self.trunk = nn.Sequential(
                *block(1, w1),
                nn.MaxPool2d(2),
                *block(w1, w2),
                nn.MaxPool2d(2),
                *block(w2, w3),
                *block(w3, w4),
                nn.MaxPool2d(2),
                *block(w4, w5),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
            )
            self.smile = nn.Sequential(nn.Dropout(0.2), nn.Linear(w5, 1))
            self.visible = nn.Sequential(nn.Linear(w5, 32), nn.ReLU(inplace=True), nn.Linear(32, 1))

        def logits(self, x: torch.Tensor) -> torch.Tensor:
            """[N, 2] logits: smile, visible."""
            x = x.float()
            # Per-crop contrast normalisation: the lighting of a window changes all day.
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            std = x.std(dim=(1, 2, 3), keepdim=True) + 4.0
            f = self.trunk((x - mean) / std)
            return torch.cat([self.smile(f), self.visible(f)], dim=1)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            # Mirror averaging at inference: a face and its mirror image read alike.
            p = torch.sigmoid((self.logits(x) + self.logits(torch.flip(x, dims=[3]))) / 2)
            return p[:, 0:1], p[:, 1:2]

    return SmileNet()


@dataclass
class OcclusionPlan:
    """Share of training samples drawn with a mouth-hiding occluder and with a
    harmless look-alike (the rest stay clean); training families only."""

    hidden_p: float = 0.3
    harmless_p: float = 0.1
    hidden: tuple[str, ...] = ("surgical", "hand_light", "shapes_light")
    harmless: tuple[str, ...] = ("mask_down", "hand_chin_light")

    def __post_init__(self) -> None:
        if set(self.hidden + self.harmless) - set(occluders.TRAIN):
            raise ValueError("training draws training occluder families only")

    def draw(
        self, img: U8, pts: occluders.FacePoints, rng: np.random.Generator
    ) -> tuple[U8, float, float]:
        """(image, visible target, visible weight): weight 0 for a partly covered,
        ambiguous mouth. The smile head trains where target x weight is 1."""
        r = rng.random()
        if r >= self.hidden_p + self.harmless_p:
            return img, 1.0, 1.0
        fams = self.hidden if r < self.hidden_p else self.harmless
        o = occluders.occlude(img, pts, fams[int(rng.integers(len(fams)))], rng)
        v = o.visible
        return o.image, 1.0 if v is None else v, 0.0 if v is None else 1.0


def _center(imgs: U8) -> U8:
    return np.stack([cv2.resize(i, (INPUT, INPUT), interpolation=cv2.INTER_AREA) for i in imgs])[
        :, None
    ]


def train(
    out: Path,
    detector_path: Path,
    *,
    seed: int = 20261129,
    epochs: int = 24,
    threads: int = 2,
    genki_repeat: int = 2,
    label_smoothing: float = 0.1,
    limit: int | None = None,
    log: Any = print,
) -> dict[str, Any]:
    """Train and export. ``limit`` keeps that many training images (a smoke run)."""
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
    if limit is not None:
        keep = rng.choice(len(xtr), min(limit, len(xtr)), replace=False)
        xtr, ytr = xtr[keep], ytr[keep]
    # Where each crop's eyes, nose and mouth are: occluders are placed from them.
    from agent.vision.detector import FaceDetector

    t_pts = time.time()
    pts = occluders.locate(xtr, FaceDetector(detector_path))
    found = sum(p is not occluders.DEFAULT_POINTS for p in pts)
    log(f"keypoints: {found}/{len(pts)} crops found ({time.time() - t_pts:.0f}s)")
    plan = OcclusionPlan()
    net = _net()
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    batch = 128
    steps = epochs * math.ceil(len(xtr) / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    lossf = torch.nn.BCEWithLogitsLoss(reduction="none")

    def held_acc() -> dict[str, float]:
        net.eval()
        accs = {}
        with torch.no_grad():
            for name, s in sets.items():
                p, v = (t.numpy()[:, 0] for t in net(torch.from_numpy(_center(s["xho"]))))
                accs[name] = round(float(((p >= 0.5) == (s["yho"] == 1)).mean()), 4)
                accs[name + ":not_visible"] = round(float((v < 0.5).mean()), 4)
        net.train()
        return accs

    t0 = time.time()
    for ep in range(epochs):
        order = rng.permutation(len(xtr))
        drawn = [plan.draw(xtr[i], pts[i], rng) for i in order]
        x_ep = np.stack([aug(d[0], rng) for d in drawn])[:, None]
        # Targets per sample: smile, visible; weights: smile only where the mouth
        # shows, visible except on ambiguous (partly covered) mouths.
        y_ep = np.stack(
            [
                ytr[order] * (1 - label_smoothing) + label_smoothing / 2,
                np.array([d[1] for d in drawn]),
            ],
            axis=1,
        ).astype(np.float32)
        w_ep = np.stack(
            [np.array([d[1] * d[2] for d in drawn]), np.array([d[2] for d in drawn])], axis=1
        ).astype(np.float32)
        total = 0.0
        for b in range(0, len(order), batch):
            xb = torch.from_numpy(x_ep[b : b + batch])
            yb = torch.from_numpy(y_ep[b : b + batch])
            wb = torch.from_numpy(w_ep[b : b + batch])
            loss = (lossf(net.logits(xb), yb) * wb).sum() / wb.sum().clamp(min=1.0)
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
        "outputs": OUTPUTS_DOC,
        "visible_threshold": "0.5",
        "occluders_trained": ",".join(plan.hidden + plan.harmless),
    }
    export(net, out, meta)
    return {
        "calibration": asdict(cal),
        "augment": asdict(aug),
        "occlusion": asdict(plan),
        "keypoints_found": found,
        "widths": list(WIDTHS),
        "label_smoothing": label_smoothing,
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
        output_names=["smile", "visible"],
        dynamic_axes={"crop": {0: "n"}, "smile": {0: "n"}, "visible": {0: "n"}},
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
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = np.concatenate(sess.run(["smile", "visible"], {"crop": x}), axis=1)
    with torch.no_grad():
        want = torch.cat(net(torch.from_numpy(x)), dim=1).numpy()
    if not np.allclose(got, want, atol=1e-4):
        raise SystemExit(f"ONNX export differs from torch: {np.abs(got - want).max()}")


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(prog="models.smile_train")
    ap.add_argument("out", type=Path, nargs="?", default=Path("models/smile.onnx"))
    ap.add_argument("--epochs", type=int, default=24)
    ap.add_argument("--limit", type=int, default=None, help="training images (smoke run)")
    args = ap.parse_args()
    res = train(args.out, Path("models/face_detector.onnx"), epochs=args.epochs, limit=args.limit)
    print(json.dumps(res, indent=1))
