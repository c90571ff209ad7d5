"""``warmwindow vision replay FILE``: run the perception pipeline on a recording.

FILE is a video or an image folder (see ``agent.hardware.camera.ReplaySource``);
one line per frame: ``t_ms present smile standing``. Registered by ``agent.cli``;
also ``python -m agent.vision.cli replay FILE``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent.vision.cli")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(["vision", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
