"""bench.instructions: the callgrind parsing, the per-frame difference and the Pi range.

A real count takes minutes (every run starts Python, numpy, OpenCV and onnxruntime under
callgrind), so here the parser reads a hand-written file that uses callgrind's name
compression and call lines, and a real file from ``valgrind --tool=callgrind /bin/true``;
the stages' record-and-replay runs natively on frames composed from the shipped demo faces.
"""

from __future__ import annotations

import shutil
import subprocess
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.vision import scenes
from bench.instructions import (
    PI4,
    PI5,
    PLUGIN_C,
    SCALAR_FACTOR,
    SIMD_FACTOR,
    Profile,
    arm_instructions,
    by_group,
    child,
    frame_ms,
    guest_instructions,
    parse_callgrind,
    per_frame,
    prepare,
    read_profile,
)

ORT = "/venv/onnxruntime/capi/onnxruntime_pybind11_state.so"
PY = "/usr/lib/libpython3.11.so.1.0"

# Two objects; main (python) calls run (onnxruntime) twice. The call lines' costs (the
# line after calls=) are inclusive and must not count again; self: python 100 + 7 + 3,
# onnxruntime 1000 + 20. "(1)" and "(2)" reuse compressed names, "+2" / "*" positions.
TINY = f"""# callgrind format
version: 1
creator: callgrind-3.19.0
positions: line
events: Ir
summary: 1130

ob=(1) {PY}
fl=(1) ceval.c
fn=(1) main
10 100
cob=(2) {ORT}
cfi=(2) ???
cfn=(2) run
calls=2 0
+2 1020
* 7
fi=(3) inlined.h
+1 3

ob=(2)
fl=(2)
fn=(2)
0 1000
-1 20

totals: 1130
"""


def test_parse_counts_self_cost_per_object_and_skips_call_lines() -> None:
    p = parse_callgrind(TINY.splitlines())
    assert p.total == 1130
    assert dict(p.by_object) == {PY: 110, ORT: 1020}
    assert by_group(p.by_object)["onnxruntime"] == 1020
    assert by_group(p.by_object)["Python interpreter"] == 110


def test_parse_refuses_a_file_whose_costs_miss_its_total() -> None:
    with pytest.raises(ValueError, match="add up to 1,130"):
        parse_callgrind(TINY.replace("totals: 1130", "totals: 1131").splitlines())
    with pytest.raises(ValueError, match="no totals"):
        parse_callgrind(TINY.replace("totals: 1130", "").replace("summary: 1130", "").split("\n"))


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_parse_reads_a_real_callgrind_file(tmp_path: Path) -> None:
    out = tmp_path / "true.out"
    subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "/bin/true"],
        check=True,
        capture_output=True,
    )
    p = read_profile(out)  # refuses the file unless the self costs add up to its total
    assert p.total > 10_000
    assert any("ld-linux" in ob for ob in p.by_object)


def test_per_frame_is_the_difference_over_the_extra_frames() -> None:
    # Start-up 5e8 (python 4e8, onnxruntime 1e8), then 3e6 + 2e7 per frame.
    def run(n: int) -> Profile:
        return Profile(
            500_000_000 + n * 23_000_000,
            {PY: 400_000_000 + n * 3_000_000, ORT: 100_000_000 + n * 20_000_000},
        )

    total, groups = per_frame(run(10), run(50), 10, 50)
    assert total == 23_000_000
    assert groups["onnxruntime"] == 20_000_000
    assert groups["Python interpreter"] == 3_000_000
    assert groups["OpenCV"] == 0
    with pytest.raises(ValueError):
        per_frame(run(10), run(10), 10, 10)


def test_pi_range_scales_simd_and_scalar_parts_and_divides_by_ipc_and_clock() -> None:
    groups = {"onnxruntime": 10e6, "OpenCV": 2e6, "Python interpreter": 5e6, "numpy": 1e6}
    lo, hi = arm_instructions(groups)
    assert lo == pytest.approx(SIMD_FACTOR[0] * 12e6 + SCALAR_FACTOR[0] * 6e6)
    assert hi == pytest.approx(SIMD_FACTOR[1] * 12e6 + SCALAR_FACTOR[1] * 6e6)
    best, worst = frame_ms((lo, hi), PI4, 1.5)
    assert best == pytest.approx(lo / (PI4.ipc[1] * 1.5e9) * 1e3)
    assert worst == pytest.approx(hi / (PI4.ipc[0] * 1.5e9) * 1e3)
    assert frame_ms((lo, hi), PI5, 2.4)[1] < worst


def test_guest_count_is_read_from_the_plugins_line() -> None:
    err = "onnxruntime warning: cpuinfo_initialize failed.\nguest instructions: 2983632614\n"
    assert guest_instructions(err) == 2_983_632_614
    with pytest.raises(ValueError, match="no 'guest instructions:'"):
        guest_instructions("qemu: uncaught target signal 11 (Segmentation fault)\n")


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
def test_the_qemu_plugin_builds(tmp_path: Path) -> None:
    src = tmp_path / "count.c"
    src.write_text(PLUGIN_C)
    lib = tmp_path / "libcount.so"
    subprocess.run(
        [
            "gcc",
            "-O2",
            "-shared",
            "-fPIC",
            "-fvisibility=hidden",
            "-Werror",
            "-o",
            str(lib),
            str(src),
        ],
        check=True,
    )
    symbols = subprocess.run(["nm", "-D", str(lib)], capture_output=True, text=True).stdout
    assert "qemu_plugin_install" in symbols and "qemu_plugin_version" in symbols


def demo_frames() -> list[np.ndarray]:
    folder = resources.files("agent") / "demo_faces"
    faces = []
    for name in ("neutral.png", "smile.png"):
        img = cv2.imdecode(np.frombuffer((folder / name).read_bytes(), np.uint8), 0)
        assert img is not None, name
        faces.append(np.asarray(img, np.uint8))
    sc = scenes.script([("seated", 1500), ("away", 500)])
    return [f.gray for f in scenes.compose(sc, faces, rng=np.random.default_rng(3))]


def test_stages_replay_what_the_pipeline_fed_the_models(tmp_path: Path) -> None:
    frames = demo_frames()
    scored = prepare(frames, len(frames), tmp_path)
    tensors = np.load(tmp_path / "tensors.npy")
    has_crop = np.load(tmp_path / "has_crop.npy")
    assert tensors.shape == (len(frames), 1, 1, 128, 128)
    assert 0 < scored == int(has_crop.sum()) < len(frames)  # seated smiles read, away none
    for stage in ("pipeline", "detector", "smile"):
        child(stage, tmp_path, len(frames))
    with pytest.raises(ValueError, match="unknown stage"):
        child("posture", tmp_path, 1)
