"""onnxruntime sessions and where the shipped model files are.

Every model runs on one intra-op thread: a Pi 4 has four cores shared with the
agent, MQTT and the OS, and one thread gives steady, predictable frame times.
Model files are found through ``importlib.resources`` on the ``models`` package, so
they work from a checkout, an installed wheel or a zip alike. Nothing is downloaded.
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from importlib import resources
from pathlib import Path
from typing import Any

import onnxruntime as ort

_KEEP = ExitStack()  # keeps files extracted by as_file() alive for the process


class ModelError(RuntimeError):
    """A model file is missing, damaged or not the one the manifest names."""


def model_path(name: str, model_dir: Path | None = None) -> Path:
    """Filesystem path of a model file: in ``model_dir`` when given (the installed bundle
    release, ``/var/lib/warmwindow/bundles/current``), else in the ``models`` package.
    The directory is passed down from the command line; nothing here reads the
    environment."""
    if model_dir is not None:
        path = Path(model_dir) / name
        if not path.is_file():
            raise ModelError(f"model file {name!r} is not in {model_dir}")
        return path
    ref = resources.files("models").joinpath(name)
    if not ref.is_file():
        raise ModelError(
            f"model file {name!r} is not in the models package; run 'warmwindow models build'"
        )
    return Path(_KEEP.enter_context(resources.as_file(ref)))


def manifest(model_dir: Path | None = None) -> dict[str, Any]:
    """The models/manifest.json written by the build (file, sha256, version ...)."""
    text = model_path("manifest.json", model_dir).read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def model_version(model_dir: Path | None = None) -> str:
    """Short version string for health messages, e.g. 'fd1-smile3'."""
    try:
        return str(manifest(model_dir).get("version", "unknown"))
    except (ModelError, ValueError):
        return "unknown"


def session_options(threads: int = 1) -> ort.SessionOptions:
    """The options every model session gets (``make_session``), apart so tests can read them.

    Memory was measured with ``python -m bench.vision`` (peak resident memory of an agent
    process replaying 100 frames, onnxruntime 1.32, x86-64): the choices below are the
    cheapest ones that do not slow the detector down.
    """
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # ENABLE_EXTENDED or BASIC would save about 3 MB of touched optimiser code and make
    # both models about 1.9 times slower (CPU time): ALL's NCHWc layout is the speed.
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Kept on (onnxruntime's defaults, set here so nobody "saves memory" by flipping them):
    # without the arena the peak was 2 MB higher, not lower (malloc fragments across
    # frames); without the memory pattern it was 2 MB lower but the detector 6-10 % slower.
    opts.enable_cpu_mem_arena = True
    opts.enable_mem_pattern = True
    # Spinning workers burn a core for nothing between frames on a Pi.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def make_session(path: Path, threads: int = 1) -> ort.InferenceSession:
    opts = session_options(threads)
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelError(f"cannot load {path}: {exc}") from exc
