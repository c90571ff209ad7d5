"""Smile intensity labels (see PROTOCOL.md): sample, contact sheets, agreement, check.

python -m models.intensity sample            # writes models/intensity/sample.csv
python -m models.intensity sheets OUT_DIR    # numbered contact sheets for labelling
python -m models.intensity agreement         # Cohen's kappa of the two passes
python -m models.intensity check             # the 'too broad' flag against the labels
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from models import datasets

HERE = Path(__file__).resolve().parent
SAMPLE = HERE / "sample.csv"
SEED = 20261202
PASSES = ("a", "b")


def draw_sample() -> list[tuple[int, str]]:
    root = datasets.data_root()
    rng = random.Random(SEED)
    picked: list[str] = []
    for set_name, label, n in (
        ("smiles-lfw", "smile", 120),
        ("genki4k-train", "smile", 120),
        ("smiles-lfw", "no_smile", 60),
        ("genki4k-train", "no_smile", 60),
    ):
        files = sorted(p.name for p in (root / set_name / label).iterdir())
        picked += [f"{set_name}/{label}/{f}" for f in rng.sample(files, n)]
    rng.shuffle(picked)
    return list(enumerate(picked, start=1))


def read_sample() -> list[tuple[int, str]]:
    with SAMPLE.open() as f:
        return [(int(r["id"]), r["path"]) for r in csv.DictReader(f)]


def sheets(out: Path, per_sheet: int = 20, cell: int = 160) -> int:
    out.mkdir(parents=True, exist_ok=True)
    items = read_sample()
    root = datasets.data_root()
    cols = 5
    for k in range(0, len(items), per_sheet):
        chunk = items[k : k + per_sheet]
        rows = (len(chunk) + cols - 1) // cols
        sheet = np.full((rows * (cell + 24), cols * cell, 3), 255, np.uint8)
        for j, (ident, rel) in enumerate(chunk):
            img = cv2.imread(str(root / rel), cv2.IMREAD_COLOR)
            if img is None:
                raise ValueError(f"cannot read image {root / rel}")
            big = cv2.resize(img, (cell, cell), interpolation=cv2.INTER_CUBIC)
            y, x = (j // cols) * (cell + 24), (j % cols) * cell
            sheet[y + 24 : y + 24 + cell, x : x + cell] = big
            cv2.putText(sheet, str(ident), (x + 4, y + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                        (0, 0, 200), 2)  # fmt: skip
        cv2.imwrite(str(out / f"sheet_{k // per_sheet + 1:02d}.png"), sheet)
    return (len(items) + per_sheet - 1) // per_sheet


def read_labels(name: str) -> dict[int, str]:
    with (HERE / f"labels_{name}.csv").open() as f:
        return {int(r["id"]): r["level"].strip() for r in csv.DictReader(f)}


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float:
    n = len(a)
    levels = sorted(set(a) | set(b))
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    ca, cb = Counter(a), Counter(b)
    expected = sum(ca[lv] * cb[lv] for lv in levels) / (n * n)
    return (observed - expected) / (1 - expected) if expected < 1 else 1.0


def agreement() -> dict[str, object]:
    la, lb = (read_labels(p) for p in PASSES)
    both = sorted(i for i in la if i in lb and la[i] != "x" and lb[i] != "x")
    a = [la[i] for i in both]
    b = [lb[i] for i in both]
    table = Counter(zip(a, b, strict=True))
    return {
        "labelled_by_both": len(both),
        "agree": sum(x == y for x, y in zip(a, b, strict=True)),
        "kappa": round(cohen_kappa(a, b), 3),
        "confusion": {f"{x}/{y}": c for (x, y), c in sorted(table.items())},
        "levels_a": dict(Counter(a)),
        "levels_b": dict(Counter(b)),
    }


def check() -> dict[str, object]:
    """The shipped classifier's 'too broad' flag (probability > too_broad_threshold)
    against the crops both passes label the same."""
    from agent.config import RuleConfig
    from agent.vision.smile import SmileClassifier

    la, lb = (read_labels(p) for p in PASSES)
    paths = dict(read_sample())
    agreed = {i: la[i] for i in la if i in lb and la[i] == lb[i] and la[i] != "x"}
    clf = SmileClassifier()
    root = datasets.data_root()
    threshold = RuleConfig().too_broad_threshold
    rows = []
    for i, level in sorted(agreed.items()):
        img = datasets.read_gray(root / paths[i])
        p = float(clf.score_images(clf.prepare(img))[0])
        rows.append((int(level), p))
    smiling = [(lv, p) for lv, p in rows if lv >= 1]
    flagged = [(lv, p) for lv, p in smiling if p > threshold]
    broad = [(lv, p) for lv, p in smiling if lv == 2]
    hits = sum(1 for lv, _ in flagged if lv == 2)
    return {
        "threshold": threshold,
        "agreed_crops": len(rows),
        "smiling (level 1 or 2)": len(smiling),
        "broad (level 2)": len(broad),
        "flagged too broad": len(flagged),
        "precision (flagged that are broad)": round(hits / len(flagged), 3) if flagged else None,
        "recall (broad that are flagged)": round(hits / len(broad), 3) if broad else None,
        "moderate smiles flagged": sum(1 for lv, _ in flagged if lv == 1),
    }


def _mouth_features(gray: npt.NDArray[np.uint8]) -> list[float]:
    """Mouth-opening cues of a 64x64 crop, contrast-normalised: dark (cavity) and bright
    (teeth) shares of the mouth region, its spread and its darkest row."""
    g = cv2.resize(gray, (64, 64)).astype(np.float32)
    g = (g - g.mean()) / (g.std() + 1e-6)
    m = g[40:60, 16:48]
    rows = m.mean(axis=1)
    return [
        float((m < -1.2).mean()), float((m < -0.8).mean()), float((m > 1.2).mean()),
        float((m > 0.8).mean()), float(m.std()), float(np.abs(np.diff(m, axis=0)).mean()),
        float(rows.min()), float(rows.max() - rows.min()),
    ]  # fmt: skip


def _logistic(x: npt.NDArray[np.float64], y: npt.NDArray[np.bool_]) -> Callable[..., Any]:
    """Class-balanced L2 logistic regression by gradient descent (no sklearn here)."""
    mu, sd = x.mean(0), x.std(0) + 1e-9
    z = np.c_[(x - mu) / sd, np.ones(len(x))]
    w = np.zeros(z.shape[1])
    weight = np.where(y, len(y) / (2 * y.sum()), len(y) / (2 * (~y).sum()))
    for _ in range(3000):
        p = 1 / (1 + np.exp(-z @ w))
        w -= 0.5 * (z.T @ ((p - y) * weight) + np.r_[w[:-1], 0]) / len(y)
    return lambda x2: 1 / (1 + np.exp(-np.c_[(x2 - mu) / sd, np.ones(len(x2))] @ w))


def probe() -> dict[str, object]:
    """Can a simple mouth-opening measure tell broad (2) from moderate (1) smiles on the
    agreed labels? Five-fold cross-validated AUC and the flag rates at 0.7."""
    la, lb = (read_labels(p) for p in PASSES)
    paths = dict(read_sample())
    root = datasets.data_root()
    agreed = [(i, int(la[i])) for i in sorted(la) if i in lb and la[i] == lb[i] and la[i] in "12"]
    x = np.array([_mouth_features(datasets.read_gray(root / paths[i])) for i, _ in agreed])
    y = np.array([lv == 2 for _, lv in agreed])
    folds = np.random.default_rng(0).permutation(len(y)) % 5
    p = np.zeros(len(y))
    for k in range(5):
        train = folds != k
        p[~train] = _logistic(x[train], y[train])(x[~train])
    auc = float((p[y][:, None] > p[~y][None, :]).mean())
    flagged = p > 0.7
    return {
        "smiles (agreed level 1 or 2)": len(y),
        "broad": int(y.sum()),
        "cross-validated AUC": round(auc, 3),
        "at 0.7: precision": round(float(y[flagged].mean()), 3) if flagged.any() else None,
        "at 0.7: recall": round(float(flagged[y].mean()), 3),
        "at 0.7: moderate smiles flagged": round(float(flagged[~y].mean()), 3),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.intensity", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("sample")
    sh = sub.add_parser("sheets")
    sh.add_argument("out", type=Path)
    sub.add_parser("agreement")
    sub.add_parser("check")
    sub.add_parser("probe")
    args = ap.parse_args(argv)
    if args.cmd == "sample":
        with SAMPLE.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "path"])
            w.writerows(draw_sample())
        print(f"wrote {SAMPLE}")
    elif args.cmd == "sheets":
        print(f"wrote {sheets(args.out)} sheets to {args.out}")
    elif args.cmd == "agreement":
        print(agreement())
    elif args.cmd == "check":
        print(check())
    else:
        print(probe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
