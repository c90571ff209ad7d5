"""Rebuild every shipped model file, then measure it and write models/manifest.json.

    .venv-build/bin/python -m models.build            # detector + smile + report
    .venv-build/bin/python -m models.build --only detector

Needs the build tools of ``models/requirements-build.txt`` (mediapipe for the BlazeFace
weights, tflite2onnx, tflite-runtime, onnx, torch) and the face data under
``shared/data`` (or ``$WW_DATA``). Writes ``face_detector.onnx``, ``smile.onnx``,
``manifest.json`` (file, sha256, size, version, source, licence) and
``build_report.json`` (verification, accuracy with 95 % intervals, robustness,
occlusion and speed figures quoted in MODEL_CARD.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

MODELS_DIR = Path(__file__).resolve().parent
MEDIAPIPE_VERSION = "0.10.21"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _verification_frames(seed: int) -> list[np.ndarray]:
    """Composed 320x240 scenes with real faces from both data sets."""
    from agent.vision import scenes
    from models import datasets

    rng = np.random.default_rng(seed)
    frames = []
    for name in datasets.SETS:
        train, _ = datasets.split(name)
        for i in rng.choice(len(train), 40, replace=False):
            face = datasets.read_gray(train[int(i)].path)
            pose: scenes.Pose = "standing" if rng.random() < 0.3 else "seated"
            frames.append(next(scenes.compose(scenes.script([(pose, 100)]), [face], rng=rng)).gray)
    return frames


def build_detector(out_dir: Path, seed: int) -> dict[str, Any]:
    from models import facedet

    out = out_dir / "face_detector.onnx"
    v, sha_src = facedet.build(out, _verification_frames(seed))
    print(f"face_detector.onnx: {v}")
    return {"verification": v.__dict__, "source_sha256": sha_src}


def build_smile(out_dir: Path, seed: int, epochs: int, genki_repeat: int) -> dict[str, Any]:
    from models import smile_train

    return smile_train.train(
        out_dir / "smile.onnx",
        out_dir / "face_detector.onnx",
        seed=seed,
        epochs=epochs,
        genki_repeat=genki_repeat,
    )


def _posture(out_dir: Path) -> dict[str, Any]:
    """Standing F1 of the whole pipeline on generated sequences of held-out faces."""
    from agent.vision.detector import FaceDetector
    from agent.vision.smile import SmileClassifier
    from models import datasets, evaluate

    held = datasets.split("smiles-lfw")[1]
    rng = np.random.default_rng(3)
    faces = [datasets.read_gray(held[int(i)].path) for i in rng.choice(len(held), 24, False)]
    res = evaluate.posture_report(
        faces,
        sequences=12,
        det=FaceDetector(out_dir / "face_detector.onnx"),
        clf=SmileClassifier(out_dir / "smile.onnx"),
    )
    return {
        "sequences": len(res.f1),
        "frames_scored": res.frames,
        "standing_f1_mean": round(res.mean_f1, 4),
        "standing_f1_min": round(min(res.f1), 4),
        "min_ms_between_changes": res.min_gap_ms,
        "max_wrong_posture_run_ms": res.max_lag_ms,
        "presence_missed_frames": res.presence_missed,
    }


def write_manifest(out_dir: Path, report: dict[str, Any]) -> dict[str, Any]:
    fd, sm = out_dir / "face_detector.onnx", out_dir / "smile.onnx"
    fd_sha, sm_sha = _sha256(fd), _sha256(sm)
    files = [
        {
            "file": fd.name,
            "sha256": fd_sha,
            "size": fd.stat().st_size,
            "version": f"blazeface-short-mp{MEDIAPIPE_VERSION}-gray1",
            "source": f"mediapipe=={MEDIAPIPE_VERSION} wheel, mediapipe/"
            "modules/face_detection/face_detection_short_range.tflite "
            f"(sha256 {report.get('detector', {}).get('source_sha256', '?')}), "
            "converted by tflite2onnx, grey uint8 input added by models/facedet.py",
            "licence": "Apache-2.0 (MediaPipe)",
        },
        {
            "file": sm.name,
            "sha256": sm_sha,
            "size": sm.stat().st_size,
            "version": f"smilecnn48-{sm_sha[:8]}",
            "source": "trained by models/smile_train.py on smiles-lfw and genki4k-train "
            "(training data not shipped)",
            "licence": "Apache-2.0 (weights, this project); training images: LFW research "
            "use, GENKI-4K acknowledgement, not redistributed",
        },
    ]
    manifest = {"version": f"fd-{fd_sha[:8]}-smile-{sm_sha[:8]}", "files": files}
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="models.build", description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=["detector", "smile", "report"], default=None)
    ap.add_argument("--seed", type=int, default=20261129)
    ap.add_argument("--epochs", type=int, default=24)
    ap.add_argument("--genki-repeat", type=int, default=2, help="GENKI copies per epoch")
    ap.add_argument("--out-dir", type=Path, default=MODELS_DIR)
    ap.add_argument(
        "--skip-landmarks",
        action="store_true",
        help="skip the landmark-features comparison (about a minute)",
    )
    args = ap.parse_args(argv)
    out_dir: Path = args.out_dir
    rep_path = out_dir / "build_report.json"
    report: dict[str, Any] = json.loads(rep_path.read_text()) if rep_path.exists() else {}
    t0 = time.time()
    if args.only in (None, "detector"):
        report["detector"] = build_detector(out_dir, args.seed)
    if args.only in (None, "smile"):
        report["smile"] = build_smile(out_dir, args.seed, args.epochs, args.genki_repeat)
        # Written at once: the training is the long part, the figures can be redone
        # with --only report.
        rep_path.write_text(json.dumps(report, indent=2) + "\n")
    manifest = write_manifest(out_dir, report)
    if args.only in (None, "smile", "report"):
        from models import evaluate, occluders

        report["accuracy"] = evaluate.held_out_report(out_dir)
        print(json.dumps(report["accuracy"], indent=1))
        report["robustness"] = evaluate.robustness_report(out_dir)
        report["occlusion"] = evaluate.occlusion_report(out_dir)
        # The training families on held-out faces: the in-distribution reference.
        report["occlusion_train_families"] = evaluate.occlusion_report(
            out_dir, families=tuple(occluders.TRAIN), scene_limit=0
        )["pooled"]
        print(json.dumps(report["occlusion"]["pooled"], indent=1))
        report["smile_ms_per_face_1thread"] = evaluate.ms_per_face(out_dir)
        report["posture"] = _posture(out_dir)
        print(json.dumps(report["posture"], indent=1))
    if args.only in (None, "report") and not args.skip_landmarks:
        from models import compare_landmarks

        lm_out = out_dir / ".landmarks.json"
        compare_landmarks.main(["--out", str(lm_out)])
        report["landmark_comparison"] = json.loads(lm_out.read_text())
        lm_out.unlink()
    report["manifest_version"] = manifest["version"]
    report["build_seconds"] = round(time.time() - t0, 1)
    rep_path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out_dir}/manifest.json and build_report.json ({report['build_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
