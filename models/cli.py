"""``warmwindow models ...``: rebuild the shipped models, evaluate the smile classifier.

Registered by ``agent.cli``; also runnable alone as ``python -m models.cli ...``.
Importing this module is cheap: the work imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
BUILD_VENV = REPO / ".venv-build"


def _build(args: argparse.Namespace) -> int:
    argv = ["--epochs", str(args.epochs), "--seed", str(args.seed)]
    if args.only:
        argv += ["--only", args.only]
    if all(importlib.util.find_spec(m) for m in ("torch", "tflite2onnx", "tflite_runtime")):
        from models.build import main as build_main

        return build_main(argv)
    # The product venv has no build tools by design: hand over to the build venv.
    py = BUILD_VENV / "bin" / "python"
    if not py.exists():
        print(
            "models build needs the build tools, kept out of the product venv:\n"
            f"  python3 -m venv {BUILD_VENV}\n"
            f"  {BUILD_VENV}/bin/pip install -r {REPO}/models/requirements-build.txt",
            file=sys.stderr,
        )
        return 2
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.call([str(py), "-m", "models.build", *argv], cwd=REPO, env=env)


def _eval_smile(args: argparse.Namespace) -> int:
    from agent.vision.smile import SmileClassifier
    from models import datasets

    clf = SmileClassifier(args.model) if args.model else SmileClassifier()
    try:
        if args.held_out:
            # Only the images the training never saw (split by set name, as in training).
            _, samples = datasets.split(args.data.name, args.data.parent)
        else:
            samples = datasets.list_samples(args.data)
    except FileNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 2
    if not samples:
        print(f"no labelled images under {args.data}", file=sys.stderr)
        return 2
    if args.occluded:
        if args.predictions:
            print("--predictions is for the smile reading, not with --occluded", file=sys.stderr)
            return 2
        return _eval_occluded(clf, samples, args.occluded)
    from models.evaluate import accuracy_of, smile_scores, write_predictions

    p_smile = smile_scores(clf, samples)
    if args.predictions:
        write_predictions(args.predictions, samples, p_smile, args.data)
    print(accuracy_of(samples, p_smile).line())
    return 0


def _eval_occluded(clf: Any, samples: list[Any], which: str) -> int:
    """One occluder per image for each family of the set; the ``visible`` output's
    reading per family, then the pooled rate over the mouth-hiding families."""
    from agent.vision.detector import FaceDetector
    from models import occluders
    from models.evaluate import Accuracy, eval_occluded, load_gray, read_all

    imgs = load_gray(samples)
    labels = np.array([s.label for s in samples])
    pts = occluders.locate(imgs, FaceDetector())
    fams = occluders.TRAIN if which == "train" else occluders.EVAL
    k = n = 0
    for fam in fams:
        r = eval_occluded(clf, imgs, labels, pts, fam)
        what = "not_visible" if r.hides else "visible"
        print(f"{fam}: {r.visible_head.line(what)} smile_{r.smile_accuracy.line()}")
        if r.hides:
            k, n = k + r.visible_head.correct, n + r.visible_head.n
    # Clean crops: how often a visible mouth is taken for a hidden one.
    _, v = read_all(clf, imgs)
    print(f"clean: {Accuracy(int((v < 0.5).sum()), len(v)).line('false_not_visible')}")
    print(Accuracy(k, n).line("not_visible"))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    models = subparsers.add_parser("models", help="build and evaluate the on-device models")
    sub = models.add_subparsers(dest="models_command", required=True)

    build = sub.add_parser("build", help="rebuild every ONNX file, manifest and report")
    build.add_argument("--only", choices=["detector", "smile", "report"], default=None)
    build.add_argument("--epochs", type=int, default=24)
    build.add_argument("--seed", type=int, default=20261129)
    build.set_defaults(func=_build)

    ev = sub.add_parser(
        "eval-smile",
        help="run the shipped smile classifier on DIR/smile and DIR/no_smile images; "
        "last line: accuracy=<0..1> n=<count> ci95=[<low>,<high>] (Wilson)",
    )
    ev.add_argument("--data", type=Path, required=True, help="folder with smile/ and no_smile/")
    ev.add_argument("--model", type=Path, default=None, help="another smile ONNX file")
    ev.add_argument(
        "--held-out",
        action="store_true",
        help="only the held-out split (DIR named like a training set)",
    )
    ev.add_argument(
        "--occluded",
        choices=["train", "eval"],
        default=None,
        help="draw each occluder family of that set (models/occluders.py) on every image "
        "and score the mouth-visibility output instead; last line: "
        "not_visible=<share of hidden mouths read as hidden> n= ci95=",
    )
    ev.add_argument(
        "--predictions",
        type=Path,
        default=None,
        metavar="FILE.csv",
        help="also write one row per image: image (relative to DIR), label, p_smile, "
        "predicted; to compare two machines or two models image by image "
        "(not with --occluded)",
    )
    ev.set_defaults(func=_eval_smile)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.cli")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(["models", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
