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
    from models.evaluate import eval_dir, eval_images

    clf = SmileClassifier(args.model) if args.model else SmileClassifier()
    try:
        if args.held_out:
            # Only the images the training never saw (split by set name, as in training).
            _, held = datasets.split(args.data.name, args.data.parent)
            acc = eval_images(clf, held)
        else:
            acc = eval_dir(args.data, clf)
    except FileNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(acc.line())
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    models = subparsers.add_parser("models", help="build and evaluate the on-device models")
    sub = models.add_subparsers(dest="models_command", required=True)

    build = sub.add_parser("build", help="rebuild every ONNX file, manifest and report")
    build.add_argument("--only", choices=["detector", "smile", "report"], default=None)
    build.add_argument("--epochs", type=int, default=16)
    build.add_argument("--seed", type=int, default=20261129)
    build.set_defaults(func=_build)

    ev = sub.add_parser(
        "eval-smile",
        help="run the shipped smile classifier on DIR/smile and DIR/no_smile images; "
        "last line: accuracy=<0..1> n=<count>",
    )
    ev.add_argument("--data", type=Path, required=True, help="folder with smile/ and no_smile/")
    ev.add_argument("--model", type=Path, default=None, help="another smile ONNX file")
    ev.add_argument(
        "--held-out",
        action="store_true",
        help="only the held-out split (DIR named like a training set)",
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
