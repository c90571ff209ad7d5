"""Frame sources: replay of image folders and video files, the protocol, the CLI."""

from __future__ import annotations

import contextlib
import itertools
import subprocess
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from agent.config import CameraConfig
from agent.hardware import camera
from agent.hardware.camera import (
    CameraError,
    FrameSource,
    OpenCVSource,
    Picamera2Source,
    ReplaySource,
    open_source,
)
from agent.vision import scenes

U8 = npt.NDArray[np.uint8]
REPO = Path(__file__).resolve().parents[2]


def _gradient(i: int) -> U8:
    return np.full((240, 320), 10 * i, np.uint8)


def test_every_source_meets_the_protocol() -> None:
    for src in (ReplaySource("x"), OpenCVSource(0), Picamera2Source()):
        assert isinstance(src, FrameSource)


def test_replay_folder_with_timestamps_csv(tmp_path: Path) -> None:
    frames = [scenes.SceneFrame(1000 + 137 * i, _gradient(i), False, None, None) for i in range(5)]
    assert scenes.save(frames, tmp_path) == 5
    with ReplaySource(tmp_path, t0_ms=50) as src:
        got = list(src)
    assert [t for t, _ in got] == [1050 + 137 * i for i in range(5)]
    assert all(g.shape == (240, 320) and g.dtype == np.uint8 for _, g in got)
    assert [int(g[0, 0]) for _, g in got] == [0, 10, 20, 30, 40]


def test_replay_folder_times_from_names_and_resize(tmp_path: Path) -> None:
    for t in (0, 250, 900):
        cv2.imwrite(str(tmp_path / f"{t}.png"), np.full((480, 640, 3), 80, np.uint8))
    with ReplaySource(tmp_path, size=(320, 240)) as src:
        got = list(src)
    assert [t for t, _ in got] == [0, 250, 900]
    assert got[0][1].shape == (240, 320)


def test_replay_video_file(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, (320, 240))
    assert vw.isOpened()
    for i in range(8):
        vw.write(cv2.cvtColor(_gradient(i * 2), cv2.COLOR_GRAY2BGR))
    vw.release()
    with ReplaySource(path) as src:
        got = list(src)
    assert [t for t, _ in got] == [100 * i for i in range(8)]
    assert abs(int(got[3][1][100, 100]) - 60) <= 3


def test_replay_errors(tmp_path: Path) -> None:
    with pytest.raises(CameraError), ReplaySource(tmp_path / "missing"):
        pass
    with pytest.raises(CameraError), ReplaySource(tmp_path):
        pass  # empty folder
    with pytest.raises(CameraError):
        open_source(CameraConfig(source="replay"))


def test_picamera2_without_the_library_says_so() -> None:
    if "picamera2" in sys.modules:
        pytest.skip("running on a Pi")
    with pytest.raises(CameraError, match="picamera2"), Picamera2Source():
        pass


def test_vision_replay_command(tmp_path: Path, face_bank: Callable[..., list[U8]]) -> None:
    faces = face_bank(1, 1, 7)
    sc = scenes.script([("seated", 3000), ("standing", 3000), ("away", 1500)])
    scenes.save(scenes.compose(sc, faces, rng=np.random.default_rng(2)), tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "agent.vision.cli", "replay", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 75
    assert lines[0].startswith("t_ms=0 present=")
    assert "present=1" in lines[20] and "standing=0" in lines[20]
    assert "standing=1" in lines[55]
    assert lines[-1] == "t_ms=7400 present=0 smile=- standing=-"


class _FakeRequest:
    """Stands in for a picamera2 CompletedRequest: its buffer is recycled on release."""

    def __init__(self, cam: _FakePicamera2) -> None:
        self.cam = cam
        h, w = cam.lores
        self.buf = np.zeros((h * 3 // 2, w), np.uint8)
        self.buf[:h] = cam.frames
        self.released = False

    def make_array(self, stream: str) -> U8:
        assert stream == "lores" and not self.released
        return self.buf

    def release(self) -> None:
        self.released = True
        self.buf[:] = 255  # the camera writes the next frame into it


class _FakePicamera2:
    instances: ClassVar[list[_FakePicamera2]] = []

    def __init__(self, camera_num: int = 0) -> None:
        self.frames = 0
        self.lores = (240, 320)
        self.controls: list[dict[str, float]] = []
        self.started = self.closed = False
        self.requests: list[_FakeRequest] = []
        _FakePicamera2.instances.append(self)

    def create_video_configuration(self, **kw: object) -> dict[str, object]:
        lores = kw["lores"]
        assert isinstance(lores, dict) and lores["format"] == "YUV420"
        w, h = lores["size"]
        self.lores = (h, w)
        return kw

    def configure(self, config: object) -> None:
        pass

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.closed = True

    def set_controls(self, controls: dict[str, float]) -> None:
        self.controls.append(controls)

    def captured_request(self) -> contextlib.AbstractContextManager[_FakeRequest]:
        @contextlib.contextmanager
        def cm() -> Iterator[_FakeRequest]:
            self.frames += 1
            req = _FakeRequest(self)
            self.requests.append(req)
            try:
                yield req
            finally:
                req.release()

        return cm()


def test_picamera2_source_copies_the_y_plane_inside_the_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = types.ModuleType("picamera2")
    fake.Picamera2 = _FakePicamera2  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "picamera2", fake)
    with Picamera2Source(320, 240, fps=10) as src:
        got = list(itertools.islice(src, 3))
        src.set_rate(2)
    cam = _FakePicamera2.instances[-1]
    assert cam.closed and not cam.started
    assert all(r.released for r in cam.requests)
    # Values survive the buffer being recycled: the source copied them in time.
    assert [int(g[0, 0]) for _, g in got] == [1, 2, 3]
    assert got[0][1].shape == (240, 320)
    assert cam.controls == [{"FrameRate": 2}]


def test_opencv_source_drops_frames_beyond_the_asked_rate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A device delivering every 10 ms (a file and a fake clock) asked for 25 frames/s."""
    path = tmp_path / "fast.avi"
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 100.0, (64, 48))
    for i in range(40):
        vw.write(np.full((48, 64, 3), 5 * i, np.uint8))
    vw.release()
    clock = itertools.count(1_000_000, 10)
    monkeypatch.setattr(camera, "now_ms", lambda: next(clock))
    with OpenCVSource(str(path), fps=25, backend=cv2.CAP_ANY) as src:
        got = list(itertools.islice(src, 4))
    assert [t - got[0][0] for t, _ in got] == [0, 40, 80, 120]
    # Every 4th frame decoded and passed on; the others only grabbed.
    assert [round(int(g[0, 0]) / 5) for _, g in got] == [0, 4, 8, 12]
    assert all(g.shape == (240, 320) for _, g in got)
