"""``warmwindow vision ...``: on-device perception tools. Registered by ``agent.cli``;
also ``python -m agent.vision.cli replay FILE``.

- ``replay FILE``: run the perception pipeline on a recording (a video or an image
  folder, see ``agent.hardware.camera.ReplaySource``); one line per frame:
  ``t_ms present smile standing``.
- ``check-placement``: the installer's check of the camera's placement over a minute,
  from the camera or a replay folder (``agent.vision.placement``; docs/placement.md).
  Exit 0 ready, 1 something must change (or cannot judge: run it again), 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.hardware.camera import FrameSource


def _replay(args: argparse.Namespace) -> int:
    from agent.hardware.camera import CameraError, ReplaySource
    from agent.vision.pipeline import Vision

    vision = Vision()
    n = 0
    t0 = time.perf_counter()
    try:
        with ReplaySource(args.file, size=(args.width, args.height), fps=args.fps) as src:
            for t_ms, gray in src:
                obs = vision.process(t_ms, gray)
                n += 1
                if args.json:
                    print(
                        json.dumps(
                            {
                                "t_ms": obs.t_ms,
                                "face_present": obs.face_present,
                                "smile": obs.smile,
                                "standing": obs.standing,
                            }
                        )
                    )
                else:
                    smile = "-" if obs.smile is None else f"{obs.smile:.3f}"
                    standing = "-" if obs.standing is None else str(int(obs.standing))
                    print(
                        f"t_ms={obs.t_ms} present={int(obs.face_present)} smile={smile} "
                        f"standing={standing}"
                    )
    except CameraError as exc:
        print(exc, file=sys.stderr)
        return 2
    dt = time.perf_counter() - t0
    print(
        f"# frames={n} seconds={dt:.2f} fps={n / dt if dt else 0:.1f} "
        f"calibrated={int(vision.calibrated)}",
        file=sys.stderr,
    )
    return 0


#: What the installer asks of the clerk: (from s, say). Seated first, so that the seated
#: pose is learnt, then standing long enough to be measured.
PLACEMENT_STEPS = (
    (0, "Sit in your usual place, facing the window, for 20 s."),
    (20, "Now stand up as you would for a citizen, for 10 s."),
    (30, "Sit down again until the check ends."),
)


def _placement_source(args: argparse.Namespace) -> tuple[FrameSource, float]:
    """The frame source and the frame rate the agent would ask of it."""
    from agent.config import CameraConfig, load_site
    from agent.hardware.camera import ReplaySource, open_source

    size = (args.width, args.height)
    if args.replay is not None:
        fps = args.fps or CameraConfig().active_fps
        # Flat out, not at the recorded pace: the recorded times are what is judged.
        return ReplaySource(args.replay, size=size, fps=fps), fps
    if args.site is not None:
        camera = load_site(args.site).window(args.window).camera
    else:
        camera = CameraConfig(
            source=args.source, device=args.device, lores_width=size[0], lores_height=size[1]
        )
    if args.fps:
        camera = camera.model_copy(update={"active_fps": args.fps})
    return open_source(camera), camera.active_fps


def _check_placement(args: argparse.Namespace) -> int:
    from agent.config import ConfigError
    from agent.hardware.camera import CameraError
    from agent.vision.detector import FaceDetector
    from agent.vision.placement import PlacementCheck, PlacementConfig
    from agent.vision.runtime import ModelError, model_path

    if args.duration <= 0:
        print("check-placement: --duration must be > 0", file=sys.stderr)
        return 2
    if (args.site is None) != (args.window is None):
        print("check-placement: --site and --window go together", file=sys.stderr)
        return 2
    try:
        source, fps = _placement_source(args)
        detector = FaceDetector(model_path("face_detector.onnx", args.model_dir))
    except (CameraError, ModelError) as exc:
        print(f"check-placement: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"check-placement: {problem}", file=sys.stderr)
        return 2
    except KeyError as exc:
        print(f"check-placement: no window {exc} in {args.site}", file=sys.stderr)
        return 2
    check = PlacementCheck(PlacementConfig(duration_ms=round(args.duration * 1000)), asked_fps=fps)
    # Instructions go to stderr with --json, so that stdout stays one JSON document.
    say = sys.stderr if args.json else sys.stdout
    live = args.replay is None
    steps = list(PLACEMENT_STEPS) if live else []
    first: int | None = None
    try:
        with source as src:
            if live:
                print(f"Placement check: {args.duration:g} s from the camera.", file=say)
            else:
                print(f"Placement check of {args.replay} (up to {args.duration:g} s).", file=say)
            for t_ms, gray in src:
                if check.done(t_ms):
                    break
                first = t_ms if first is None else first
                while steps and (t_ms - first) / 1000 >= steps[0][0]:
                    print(f"[{steps[0][0]:>2} s] {steps.pop(0)[1]}", file=say, flush=True)
                check.add(t_ms, gray, detector.detect(gray))
    except CameraError as exc:
        print(f"check-placement: {exc}", file=sys.stderr)
        return 2
    if first is None:
        print("check-placement: no frames", file=sys.stderr)
        return 2
    report = check.report()
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(report.render())
    return report.exit_code


def register(subparsers: argparse._SubParsersAction) -> None:
    vision = subparsers.add_parser("vision", help="on-device perception tools")
    sub = vision.add_subparsers(dest="vision_command", required=True)
    rp = sub.add_parser("replay", help="print the per-frame observations of a recording")
    rp.add_argument("file", type=Path, help="video file or image folder")
    rp.add_argument("--width", type=int, default=320, help="lores width frames are scaled to")
    rp.add_argument("--height", type=int, default=240)
    rp.add_argument("--fps", type=float, default=10.0, help="for image folders without times")
    rp.add_argument("--json", action="store_true", help="JSON lines instead of text")
    rp.set_defaults(func=_replay)

    cp = sub.add_parser(
        "check-placement",
        help="the installer's check: is the camera placed so that the agent can work?",
        description="Watch the clerk sit, stand and sit again for a minute and report, check by "
        "check, what to change. Exit 0 ready, 1 change placement or cannot judge, 2 bad input.",
    )
    where = cp.add_mutually_exclusive_group()
    where.add_argument(
        "--replay", type=Path, default=None, help="image folder (PNGs + timestamps.csv) or video"
    )
    where.add_argument("--site", type=Path, default=None, help="site directory (with --window)")
    cp.add_argument("--window", default=None, help="window slug: use its camera settings")
    cp.add_argument(
        "--source",
        choices=["picamera2", "v4l2"],
        default="picamera2",
        help="camera without a site file: Pi camera or a V4L2 (USB) one",
    )
    cp.add_argument("--device", default=None, help="V4L2 device, e.g. /dev/video0")
    cp.add_argument(
        "--width", type=int, default=320, help="lores width (a --site window sets its own)"
    )
    cp.add_argument("--height", type=int, default=240)
    cp.add_argument(
        "--fps",
        type=float,
        default=None,
        help="frame rate to ask and judge against (default: the window's active_fps, else 10)",
    )
    cp.add_argument("--duration", type=float, default=60.0, help="seconds to watch (default 60)")
    cp.add_argument("--model-dir", type=Path, default=None, help="ONNX models directory")
    cp.add_argument("--json", action="store_true", help="the report as JSON")
    cp.set_defaults(func=_check_placement)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent.vision.cli")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(["vision", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
