"""Frame sources: Picamera2, OpenCV/V4L2 and replay, behind one small protocol.

A source is a context manager (it owns the camera or file) and an iterator of
``(t_ms, gray)``: ``t_ms`` is UTC milliseconds (replay: the recorded times, shifted
by ``t0_ms``), ``gray`` a 2-D uint8 array at the lores size. Sources never touch
vision or MQTT; the app loop asks ``set_rate`` for the adaptive frame rate.

Picamera2 has no mock camera, so tests, benchmarks and the demo use ``ReplaySource``
on a video file or an image folder; image folders carry their times either in a
``timestamps.csv`` (``file,t_ms``) or in the file names (``<t_ms>.png``).

>>> with open_source(CameraConfig(source="replay", device="run1/")) as src:  # doctest: +SKIP
...     for t_ms, gray in src:
...         obs = vision.process(t_ms, gray)
"""

from __future__ import annotations

import csv
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self, runtime_checkable

import cv2
import numpy as np
import numpy.typing as npt

from agent.protocol import now_ms

if TYPE_CHECKING:
    from agent.config import CameraConfig

U8 = npt.NDArray[np.uint8]
Frame = tuple[int, U8]
IMAGE_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".pgm")
VIDEO_EXT = (".mp4", ".avi", ".mkv", ".mov", ".h264", ".mjpeg")


class CameraError(RuntimeError):
    """The camera cannot be opened or stopped delivering frames."""


@runtime_checkable
class FrameSource(Protocol):
    def __enter__(self) -> Self: ...

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    def __iter__(self) -> Iterator[Frame]: ...

    def set_rate(self, fps: float) -> None: ...


def to_gray(img: npt.NDArray[Any], size: tuple[int, int] | None) -> U8:
    """BGR/grey image -> 2-D uint8 grey, resized to ``size`` (w, h) if given."""
    g = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    if size is not None and (g.shape[1], g.shape[0]) != size:
        g = cv2.resize(g, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(g, dtype=np.uint8)


class Picamera2Source:
    """Raspberry Pi camera: a small YUV420 ``lores`` stream for analysis.

    The Y plane of the lores stream is the grey frame; it is copied out inside
    ``with picam2.captured_request() as req:`` so every buffer goes back to the
    camera at once. picamera2 is imported only here (Raspberry Pi OS package).
    """

    def __init__(
        self,
        width: int = 320,
        height: int = 240,
        *,
        fps: float = 10.0,
        main_size: tuple[int, int] = (640, 480),
        camera_num: int = 0,
    ) -> None:
        self.size = (width, height)
        self.main_size = main_size
        self.fps = fps
        self.camera_num = camera_num
        self._cam: Any = None

    def __enter__(self) -> Self:
        try:
            from picamera2 import Picamera2
        except ImportError as exc:
            raise CameraError("picamera2 is not installed (apt install python3-picamera2)") from exc
        cam = Picamera2(self.camera_num)
        config = cam.create_video_configuration(
            main={"size": self.main_size},
            lores={"size": self.size, "format": "YUV420"},
            buffer_count=4,
            controls={"FrameRate": self.fps},
        )
        cam.configure(config)
        cam.start()
        self._cam = cam
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._cam is not None:
            self._cam.stop()
            self._cam.close()
            self._cam = None

    def set_rate(self, fps: float) -> None:
        # The sensor itself slows down: no stale queued frames, less heat.
        if self._cam is not None and fps != self.fps:
            self._cam.set_controls({"FrameRate": fps})
        self.fps = fps

    def __iter__(self) -> Iterator[Frame]:
        if self._cam is None:
            raise CameraError("use Picamera2Source inside 'with'")
        w, h = self.size
        while self._cam is not None:
            with self._cam.captured_request() as req:
                yuv = req.make_array("lores")
                gray = np.array(yuv[:h, :w], dtype=np.uint8, copy=True)
                t = now_ms()
            yield t, gray


class OpenCVSource:
    """A USB (UVC) camera through OpenCV's V4L2 backend, or any OpenCV device string."""

    def __init__(
        self,
        device: str | int = 0,
        width: int = 320,
        height: int = 240,
        *,
        fps: float = 10.0,
        backend: int = cv2.CAP_V4L2,
    ) -> None:
        self.backend = backend
        self.device = device
        self.size = (width, height)
        self.fps = fps
        self._cap: cv2.VideoCapture | None = None

    def __enter__(self) -> Self:
        dev = int(self.device) if str(self.device).isdigit() else self.device
        cap = cv2.VideoCapture(dev, self.backend)
        if not cap.isOpened():
            raise CameraError(f"cannot open camera {self.device!r}")
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.size[0])
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.size[1])
        cap.set(cv2.CAP_PROP_FPS, self.fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # newest frame, not a queued old one
        self._cap = cap
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def set_rate(self, fps: float) -> None:
        if self._cap is not None and fps != self.fps:
            self._cap.set(cv2.CAP_PROP_FPS, fps)
        self.fps = fps

    def __iter__(self) -> Iterator[Frame]:
        if self._cap is None:
            raise CameraError("use OpenCVSource inside 'with'")
        last = -(10**12)
        while self._cap is not None:
            # Many UVC cameras ignore CAP_PROP_FPS: grab (no decode) the frames that
            # come faster than asked, decode only those the pipeline will see.
            if not self._cap.grab():
                raise CameraError(f"camera {self.device!r} stopped delivering frames")
            t = now_ms()
            if t - last < 1000 / self.fps - 5:
                continue
            ok, img = self._cap.retrieve()
            if not ok:
                raise CameraError(f"camera {self.device!r} gave an undecodable frame")
            last = t
            yield t, to_gray(img, self.size)


def _image_times(folder: Path, files: list[Path], fps: float) -> list[int]:
    stamps = folder / "timestamps.csv"
    if stamps.is_file():
        with stamps.open(newline="") as fh:
            table = {row["file"]: int(row["t_ms"]) for row in csv.DictReader(fh)}
        missing = [f.name for f in files if f.name not in table]
        if missing:
            raise CameraError(f"{stamps}: no time for {missing[:3]}")
        return [table[f.name] for f in files]
    if all(f.stem.isdigit() for f in files):
        return [int(f.stem) for f in files]
    return [round(i * 1000 / fps) for i in range(len(files))]


class ReplaySource:
    """Frames from a video file or an image folder, with their recorded times.

    ``fps`` is only used when the folder has no times; ``realtime`` sleeps so frames
    come at their recorded pace (the demo); tests and benchmarks run flat out.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        size: tuple[int, int] | None = None,
        fps: float = 10.0,
        t0_ms: int = 0,
        realtime: bool = False,
    ) -> None:
        self.path = Path(path)
        self.size = size
        self.fps = fps
        self.t0_ms = t0_ms
        self.realtime = realtime
        self._cap: cv2.VideoCapture | None = None
        self._files: list[Path] = []
        self._times: list[int] = []

    def __enter__(self) -> Self:
        p = self.path
        if p.is_dir():
            self._files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_EXT)
            if not self._files:
                raise CameraError(f"{p}: no images")
            self._times = _image_times(p, self._files, self.fps)
        elif p.is_file():
            cap = cv2.VideoCapture(str(p))
            if not cap.isOpened():
                raise CameraError(f"cannot open video {p}")
            self._cap = cap
        else:
            raise CameraError(f"{p}: no such file or folder")
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def set_rate(self, fps: float) -> None:
        """Replay keeps every recorded frame: the recording fixed the rate."""

    def _pace(self, t_rel: int, start: float) -> None:
        if self.realtime:
            delay = start + t_rel / 1000 - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def __iter__(self) -> Iterator[Frame]:
        start = time.monotonic()
        if self._cap is not None:
            n = 0
            video_fps = self._cap.get(cv2.CAP_PROP_FPS) or self.fps
            while self._cap is not None:
                ok, img = self._cap.read()
                if not ok:
                    return
                # Frame index / fps rather than POS_MSEC: exact for constant-rate files.
                t_rel = round(n * 1000 / video_fps)
                n += 1
                self._pace(t_rel, start)
                yield self.t0_ms + t_rel, to_gray(img, self.size)
            return
        if not self._files:
            raise CameraError("use ReplaySource inside 'with'")
        first = self._times[0]
        for f, t in zip(self._files, self._times, strict=True):
            pic = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
            if pic is None:
                raise CameraError(f"cannot read {f}")
            self._pace(t - first, start)
            yield self.t0_ms + t, to_gray(pic, self.size)


def open_source(cfg: CameraConfig) -> FrameSource:
    """The frame source a window's camera config asks for."""
    size = (cfg.lores_width, cfg.lores_height)
    if cfg.source == "picamera2":
        return Picamera2Source(*size, fps=cfg.active_fps)
    if cfg.source == "v4l2":
        return OpenCVSource(cfg.device or "/dev/video0", *size, fps=cfg.active_fps)
    if cfg.device is None:
        raise CameraError("replay needs camera.device (a video file or image folder)")
    return ReplaySource(cfg.device, size=size, realtime=True)
