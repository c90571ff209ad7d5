"""Per-stage time of the perception pipeline on one thread at the lores size.

    python -m bench.vision [--frames 300] [--rounds 5] [--replay DIR]

Frames: a composed sequence (seated, standing, away, a citizen passing, light
changing) from held-out faces in ../shared/data, or a recorded folder/video. Prints
per-stage ms per frame, frames/s, and the pipeline's time as a ratio to the bare
onnxruntime inference (the two models' ``session.run`` on the same inputs) measured
in the same run; then the resident memory of a fresh process running the pipeline.
Rounds are interleaved and the fastest round of each kind is kept: other processes
on a shared machine only ever slow a round down. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from agent.vision import scenes
from agent.vision.detector import FaceDetector
from agent.vision.pipeline import Vision
from agent.vision.smile import SmileClassifier

U8 = npt.NDArray[np.uint8]
#: Assumed slowdown of one Pi 4 Cortex-A72 core against one core of this machine for
#: small float32 CNNs on onnxruntime (not measured here: no Pi in CI).
PI4_FACTOR = 15.0


def compose_frames(n: int, seed: int = 1) -> list[U8]:
    from models import datasets

    held = datasets.split("smiles-lfw")[1]
    rng = np.random.default_rng(seed)
    faces = [datasets.read_gray(held[int(i)].path) for i in rng.choice(len(held), 4, False)]
    sc = scenes.script(
        [("seated", 8000), ("standing", 6000), ("seated", 8000), ("away", 3000), ("seated", 5000)],
        passers=[scenes.Passer(2000, 7000, 3, size=30, y=60)],
        lighting=[scenes.Lighting(10000, 14000, 0.7)],
    )
    frames = [f.gray for f in scenes.compose(sc, faces, rng=rng)]
    return (frames * (n // len(frames) + 1))[:n]


def replay_frames(path: Path, n: int) -> list[U8]:
    from agent.hardware.camera import ReplaySource

    with ReplaySource(path, size=(320, 240)) as src:
        frames = [g for _, g in src]
    return (frames * (n // len(frames) + 1))[:n]


def time_stages(vision: Vision, frames: list[U8]) -> dict[str, float]:
    """One pass with a timer between stages; returns ms per frame for each stage."""
    det, clf = vision.detector, vision.smile
    acc = dict.fromkeys(
        ("letterbox", "detect_infer", "decode_nms", "clerk_crop", "smile_infer", "posture_etc"), 0.0
    )
    clock = time.perf_counter
    buf = np.zeros((1, 1, clf.crop.size, clf.crop.size), np.uint8)
    for i, g in enumerate(frames):
        t0 = clock()
        lb = det.letterbox_for(g)
        x = lb(g)
        t1 = clock()
        reg, cls = det.raw(x)
        t2 = clock()
        faces = det.decode(reg, cls, lb)
        t3 = clock()
        face = vision.clerk.choose(faces, g.shape[1])
        if face is not None:
            clf.cut(g, face, buf)
        t4 = clock()
        if face is not None:
            clf.score_images(buf)
        t5 = clock()
        # The rest of observe(): presence, smoothing, posture (smile already timed).
        vision._presence(i * 100, face is not None)
        if face is not None:
            vision.posture.update(i * 100, face.cx, face.cy, face.size)
        t6 = clock()
        for k, a, b in (
            ("letterbox", t0, t1),
            ("detect_infer", t1, t2),
            ("decode_nms", t2, t3),
            ("clerk_crop", t3, t4),
            ("smile_infer", t4, t5),
            ("posture_etc", t5, t6),
        ):
            acc[k] += b - a
    return {k: 1000 * v / len(frames) for k, v in acc.items()}


def time_pipeline(make: Callable[[], Vision], frames: list[U8]) -> float:
    vision = make()
    t0 = time.perf_counter()
    for i, g in enumerate(frames):
        vision.process(i * 100, g)
    return 1000 * (time.perf_counter() - t0) / len(frames)


def time_bare(
    det: FaceDetector, clf: SmileClassifier, tensors: list[U8], crops: list[U8 | None]
) -> float:
    """Only the two models' session.run, on inputs prepared beforehand."""
    t0 = time.perf_counter()
    for x, c in zip(tensors, crops, strict=True):
        det.raw(x)
        if c is not None:
            clf.score_images(c)
    return 1000 * (time.perf_counter() - t0) / len(tensors)


RSS_PROBE = """
import resource, sys
from agent.hardware.camera import ReplaySource
from agent.vision.pipeline import Vision
v = Vision()
with ReplaySource(sys.argv[1]) as src:
    for t, g in src:
        v.process(t, g)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_rss_mb(frames: list[U8]) -> float:
    """Peak resident memory of a fresh process replaying the frames through Vision."""
    with tempfile.TemporaryDirectory() as tmp:
        seq = [scenes.SceneFrame(i * 100, g, False, None, None) for i, g in enumerate(frames)]
        scenes.save(seq[:100], Path(tmp))
        root = Path(__file__).resolve().parents[2]
        out = subprocess.run(
            [sys.executable, "-c", RSS_PROBE, tmp],
            cwd=root,
            check=True,
            capture_output=True,
            text=True,
            env=dict(os.environ),
        )
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.vision", description=__doc__)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--replay", type=Path, default=None, help="recorded folder or video")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)

    frames = replay_frames(args.replay, args.frames) if args.replay else compose_frames(args.frames)
    det, clf = FaceDetector(threads=1), SmileClassifier(threads=1)

    def make() -> Vision:
        return Vision(detector=det, smile=clf)

    # Inputs for the bare-inference baseline: exactly what the pipeline feeds the models.
    prep = make()
    tensors: list[U8] = []
    crops: list[U8 | None] = []
    faces_found = 0
    for g in frames:
        tensors.append(det.letterbox_for(g)(g).copy())
        face = prep.clerk.choose(det.detect(g), g.shape[1])
        faces_found += face is not None
        crops.append(None if face is None else clf.cut(g, face))

    best_pipe = best_bare = float("inf")
    best_stages: dict[str, float] = {}
    for _ in range(args.rounds):
        best_bare = min(best_bare, time_bare(det, clf, tensors, crops))
        best_pipe = min(best_pipe, time_pipeline(make, frames))
        st = time_stages(make(), frames)
        if not best_stages or sum(st.values()) < sum(best_stages.values()):
            best_stages = st

    rss = peak_rss_mb(frames)
    fig = {
        "frames": len(frames),
        "frames_with_clerk": faces_found,
        "rounds": args.rounds,
        "size": "320x240",
        "intra_op_threads": 1,
        "cpu": platform.processor() or platform.machine(),
        "stages_ms": {k: round(v, 4) for k, v in best_stages.items()},
        "pipeline_ms": round(best_pipe, 4),
        "bare_inference_ms": round(best_bare, 4),
        "ratio_pipeline_to_bare": round(best_pipe / best_bare, 3),
        "fps_one_core": round(1000 / best_pipe, 1),
        "pi4_fps_estimate": round(1000 / best_pipe / PI4_FACTOR, 1),
        "peak_rss_mb": round(rss, 1),
    }
    print(
        f"perception pipeline, {fig['size']} grey, onnxruntime intra_op_num_threads=1, "
        f"{len(frames)} frames ({faces_found} with the clerk), best of {args.rounds} rounds"
    )
    for k, v in best_stages.items():
        print(f"  {k:<13} {v:8.3f} ms/frame")
    print(f"  {'sum':<13} {sum(best_stages.values()):8.3f} ms/frame (with stage timers)")
    print(f"pipeline       {best_pipe:8.3f} ms/frame = {fig['fps_one_core']} frames/s on one core")
    print(f"bare inference {best_bare:8.3f} ms/frame (detector + smile session.run only)")
    print(f"ratio pipeline / bare inference = {fig['ratio_pipeline_to_bare']} (goal <= 1.3)")
    print(
        f"Pi 4 estimate  ~{fig['pi4_fps_estimate']} frames/s (this core / {PI4_FACTOR:g}, "
        "assumed, not measured)"
    )
    print(f"peak resident memory of a replaying agent process: {rss:.1f} MB (goal <= 150)")
    if args.json:
        args.json.write_text(json.dumps(fig, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
