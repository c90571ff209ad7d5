"""Instructions per frame of the perception pipeline, counted by callgrind, and the
Raspberry Pi 4 / 5 frame time they imply under stated assumptions.

    python -m bench.instructions [--n1 10] [--n2 50] [--repeat 2] [--jobs 2] [--json PATH]
        [--keep DIR | --reuse DIR] [--aarch64 ROOT --qemu PATH [--qemu-cpu cortex-a72]]

This VM has no hardware counters (``perf stat -e instructions`` reads "not supported"),
so instructions are counted by ``valgrind --tool=callgrind``: it executes every
instruction of the process (all threads) on a synthetic CPU and counts it.

Method. The frames are the composed sequence ``python -m bench.vision`` times (seated,
a citizen passing behind, light changing; held-out faces from ../shared/data). Each
stage runs in a fresh process under callgrind twice, for ``n1`` and for ``n2`` frames,
with the same binary, environment and start-up; ``(I(n2) - I(n1)) / (n2 - n1)`` is then
the cost of frames ``n1 .. n2`` with the interpreter's start-up, the imports and the
model loading cancelled out. The stages:

- ``pipeline``: ``Vision()`` as the agent builds it (``agent/app.py``: both sessions from
  ``agent.vision.runtime.make_session``, one intra-op thread), ``Vision.process`` per frame;
- ``detector``: ``FaceDetector().raw`` on the very tensors the pipeline fed it;
- ``smile``: ``SmileClassifier().read_images`` on the very crops the pipeline cut (only the
  frames where it read a smile).

The inputs of the last two are recorded from a native run of the pipeline on the same
frames, so the three agree frame for frame; pipeline minus both inferences is the rest
(letterbox, decode and NMS, choosing the clerk, cutting the crop, the quality checks,
presence and posture, the Python between them). The pipeline's count is also split by
the shared object whose code ran (self cost; onnxruntime's wheel is stripped, so its
functions have no names): that split is where the SIMD kernels are.

With ``--aarch64`` the same child runs execute under qemu-aarch64 inside a copy of an arm64
root, a small TCG plugin (``PLUGIN_C``) counting guest instructions, so the NEON code's own
count stands beside the x86 one. The times for a Pi come from assumed instructions per
cycle and clocks (``PI4``, ``PI5``): an estimate with its basis printed, not a measurement.

Valgrind's synthetic CPU offers AVX2 and FMA but not AVX-512 (OpenCV's own dispatch
reports it under callgrind), so the counts are for the AVX2 code paths, the closest x86
has to the 128-bit NEON a Pi runs. Nothing here asserts a time or a count.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

U8 = npt.NDArray[np.uint8]
ROOT = Path(__file__).resolve().parents[1]
STAGES = ("pipeline", "detector", "smile")

# --------------------------------------------------------------------------- parsing

_NAME = re.compile(r"^\((\d+)\)(?: (.*))?$")


def _name(value: str, table: dict[str, str]) -> str:
    """Resolve callgrind's name compression: ``(3) /lib/x.so`` defines, ``(3)`` reuses."""
    m = _NAME.match(value)
    if m is None:
        return value
    key, name = m.groups()
    if name is not None:
        table[key] = name
        return name
    return table[key]


@dataclass(frozen=True)
class Profile:
    """One callgrind output file: its total and its self cost per shared object."""

    total: int
    by_object: Mapping[str, int]


def parse_callgrind(lines: Iterable[str]) -> Profile:
    """Parse a callgrind output file holding the single event ``Ir``.

    A cost line is a position then the count; the line after ``calls=`` is the
    inclusive cost of that call, charged to the caller's inclusive cost only, so it is
    skipped here. The self costs must add up to the file's ``totals:``; a file where
    they do not is refused (a parsing error would otherwise pass unseen).
    """
    objects: dict[str, str] = {}
    ob = "???"
    by_object: dict[str, int] = {}
    total: int | None = None
    summary: int | None = None
    events: list[str] | None = None
    skip_next = False
    for raw in lines:
        line = raw.rstrip("\n")
        if not line or line.startswith("#"):
            continue
        head = line[0]
        if head.isdigit() or head in "+-*":
            if skip_next:
                skip_next = False
                continue
            fields = line.split()
            if len(fields) >= 2:  # a position with no count costs nothing
                by_object[ob] = by_object.get(ob, 0) + int(fields[1])
            continue
        key, _, value = line.partition("=")
        if key == "ob":
            ob = _name(value, objects)
        elif key == "cob":
            _name(value, objects)  # may define a name used later by ob=
        elif key == "calls":
            skip_next = True
        elif line.startswith("events:"):
            events = line.split(":", 1)[1].split()
        elif line.startswith("totals:"):
            total = int(line.split(":", 1)[1].split()[0])
        elif line.startswith("summary:"):
            summary = int(line.split(":", 1)[1].split()[0])
    if events is not None and events != ["Ir"]:
        raise ValueError(f"expected the single event Ir, the file records {events}")
    total = total if total is not None else summary
    if total is None:
        raise ValueError("no totals: line (did the profiled process finish?)")
    counted = sum(by_object.values())
    if counted != total:
        raise ValueError(f"self costs add up to {counted:,}, the file's total is {total:,}")
    return Profile(total, by_object)


def read_profile(path: Path) -> Profile:
    with path.open(encoding="utf-8", errors="replace") as f:
        return parse_callgrind(f)


#: Shared objects grouped by what their code is; first match wins.
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("onnxruntime", ("onnxruntime",)),
    ("OpenCV", ("cv2", "opencv")),
    ("numpy", ("numpy",)),
    ("Python interpreter", ("libpython", "/bin/python")),
    (
        "C/C++ runtime (malloc, memcpy, libm)",
        ("libc.so", "libm.so", "libstdc++", "libgcc", "ld-linux"),
    ),
)
#: Groups whose code is mostly vectorised float kernels (MLAS; OpenCV's resize and
#: warpAffine). Their count also holds some scalar framework code, which makes the
#: NEON factor applied to it an upper bound.
SIMD_GROUPS = ("onnxruntime", "OpenCV")


def group_of(obj: str) -> str:
    for group, needles in GROUPS:
        if any(n in obj for n in needles):
            return group
    return "other"


def by_group(by_object: Mapping[str, int]) -> dict[str, int]:
    out = {g: 0 for g, _ in GROUPS} | {"other": 0}
    for obj, n in by_object.items():
        out[group_of(obj)] += n
    return out


def per_frame(lo: Profile, hi: Profile, n1: int, n2: int) -> tuple[float, dict[str, float]]:
    """``(I(n2) - I(n1)) / (n2 - n1)``, in total and per group of shared objects."""
    if n2 <= n1:
        raise ValueError(f"n2 ({n2}) must exceed n1 ({n1})")
    d = n2 - n1
    g_lo, g_hi = by_group(lo.by_object), by_group(hi.by_object)
    return (hi.total - lo.total) / d, {g: (g_hi[g] - g_lo[g]) / d for g in g_hi}


# --------------------------------------------------------------------------- the Pi


@dataclass(frozen=True)
class Core:
    name: str
    ghz: tuple[float, ...]
    #: Assumed instructions per cycle on this mix (interpreter, small CNN kernels).
    ipc: tuple[float, float]


#: Assumptions, not measurements (see the model card for their basis).
PI4 = Core("Pi 4, Cortex-A72", (1.5, 1.8), (0.7, 1.3))
PI5 = Core("Pi 5, Cortex-A76", (2.4,), (1.1, 2.0))
#: AArch64 instructions per x86 instruction: NEON is 128-bit against AVX2's 256, so
#: vectorised kernels need up to about twice as many; scalar code is close to 1:1.
SIMD_FACTOR = (1.3, 2.0)
SCALAR_FACTOR = (1.0, 1.2)


def arm_instructions(groups: Mapping[str, float]) -> tuple[float, float]:
    """Range of AArch64 instructions per frame from the x86 counts per group."""
    simd = sum(groups[g] for g in SIMD_GROUPS)
    scalar = sum(v for g, v in groups.items() if g not in SIMD_GROUPS)
    return (
        SIMD_FACTOR[0] * simd + SCALAR_FACTOR[0] * scalar,
        SIMD_FACTOR[1] * simd + SCALAR_FACTOR[1] * scalar,
    )


def frame_ms(arm: tuple[float, float], core: Core, ghz: float) -> tuple[float, float]:
    """(best, worst) ms per frame on one core: instructions / (IPC x clock)."""
    lo, hi = arm
    return lo / (core.ipc[1] * ghz * 1e6), hi / (core.ipc[0] * ghz * 1e6)


# --------------------------------------------------------------------------- the runs


def prepare(frames: list[U8], n2: int, out: Path) -> int:
    """Run the pipeline natively on ``frames[:n2]`` and save the frames with exactly
    the tensors and crops it fed the two models. Returns how many crops it scored."""
    from agent.vision.detector import F32, FaceDetector
    from agent.vision.pipeline import Vision
    from agent.vision.smile import SmileClassifier

    class Det(FaceDetector):
        def __init__(self) -> None:
            self.seen: list[U8] = []  # the constructor's warm-up lands here too
            super().__init__()

        def raw(self, tensor: U8) -> tuple[F32, F32]:
            self.seen.append(tensor.copy())
            return super().raw(tensor)

    class Smile(SmileClassifier):
        def __init__(self) -> None:
            self.seen: list[U8] = []
            super().__init__()

        def read_images(self, batch: U8) -> tuple[F32, F32]:
            self.seen.append(batch.copy())
            return super().read_images(batch)

    det, clf = Det(), Smile()
    vision = Vision(detector=det, smile=clf)
    tensors: list[U8] = []
    crops: list[U8] = []
    has_crop: list[bool] = []
    n = clf.crop.size
    for i, g in enumerate(frames[:n2]):
        det.seen.clear()
        clf.seen.clear()
        vision.process(i * 100, g)
        (tensor,) = det.seen  # one detector run per frame
        tensors.append(tensor)
        read = list(clf.seen)
        if len(read) > 1:
            raise RuntimeError(f"frame {i}: {len(read)} smile inferences, expected at most 1")
        has_crop.append(bool(read))
        crops.append(read[0] if read else np.zeros((1, 1, n, n), np.uint8))
    np.save(out / "frames.npy", np.stack(frames[:n2]))
    np.save(out / "tensors.npy", np.stack(tensors))
    np.save(out / "crops.npy", np.stack(crops))
    np.save(out / "has_crop.npy", np.array(has_crop))
    return int(sum(has_crop))


#: OpenCV's ids (``cv::CpuFeatures``; the Python module does not export them).
CPU_FEATURES = {"AVX2": 11, "FMA3": 12, "AVX512_SKX": 256, "NEON": 100}


def child(stage: str, data: Path, n: int) -> None:
    """What runs under callgrind: build the stage as the agent does, run ``n`` frames."""
    import cv2

    if stage == "pipeline":
        from agent.vision.pipeline import Vision

        frames = np.load(data / "frames.npy")
        vision = Vision()
        for i in range(n):
            vision.process(i * 100, frames[i])
    elif stage == "detector":
        from agent.vision.detector import FaceDetector

        tensors = np.load(data / "tensors.npy")
        det = FaceDetector()
        for i in range(n):
            det.raw(tensors[i])
    elif stage == "smile":
        from agent.vision.smile import SmileClassifier

        crops, has_crop = np.load(data / "crops.npy"), np.load(data / "has_crop.npy")
        clf = SmileClassifier()
        for i in range(n):
            if has_crop[i]:
                clf.read_images(crops[i])
    else:
        raise ValueError(f"unknown stage {stage!r}")
    seen: dict[str, Any] = {n: bool(cv2.checkHardwareSupport(i)) for n, i in CPU_FEATURES.items()}
    seen["cv2_threads"] = cv2.getNumThreads()
    print("CPU " + json.dumps(seen), flush=True)


def callgrind(stage: str, data: Path, n: int, out: Path) -> tuple[Profile, dict[str, Any]]:
    """One fresh process under callgrind; its profile and the CPU it saw."""
    # Fixed hashing, so both runs take the same paths through dicts and sets. numpy's
    # OpenBLAS worker spins for a while after start-up, and how long depends on when
    # valgrind (one thread at a time) schedules it: 7-15 M instructions of noise in
    # trial runs. The pipeline calls no BLAS, so one BLAS thread changes nothing else.
    env = dict(
        os.environ, PYTHONHASHSEED="0", PYTHONDONTWRITEBYTECODE="1", OPENBLAS_NUM_THREADS="1"
    )
    cmd = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}",
        sys.executable,
        "-m",
        "bench.instructions",
        "--child",
        stage,
        str(data),
        str(n),
    ]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stderr[-3000:]}")
    cpu: dict[str, Any] = {}
    for line in res.stdout.splitlines():
        if line.startswith("CPU "):
            cpu = json.loads(line[4:])
    return read_profile(out), cpu


@dataclass(frozen=True)
class Result:
    """Per-frame figures of one repeat."""

    stages: dict[str, float]
    #: The pipeline's count per group of shared objects.
    groups: dict[str, float]
    #: onnxruntime's own code in the detector and smile runs together (the pipeline's
    #: onnxruntime count should match it).
    ort_alone: float
    cpu: dict[str, Any]


def _file(out: Path, r: int, stage: str, n: int) -> Path:
    return out / f"r{r}-{stage}-{n}.out"


def measure(data: Path, n1: int, n2: int, repeat: int, jobs: int, out: Path) -> None:
    """All the callgrind runs, ``jobs`` at a time; files and the CPU seen land in ``out``."""
    runs = [(r, s, n) for r in range(repeat) for s in STAGES for n in (n2, n1)]

    def one(r: int, s: str, n: int) -> None:
        path = _file(out, r, s, n)
        _, cpu = callgrind(s, data, n, path)
        path.with_suffix(".cpu.json").write_text(json.dumps(cpu), encoding="utf-8")

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for f in [pool.submit(one, *key) for key in runs]:
            f.result()


def load(out: Path, n1: int, n2: int, repeat: int) -> list[Result]:
    results = []
    for r in range(repeat):
        stages: dict[str, float] = {}
        groups: dict[str, dict[str, float]] = {}
        for s in STAGES:
            lo, hi = read_profile(_file(out, r, s, n1)), read_profile(_file(out, r, s, n2))
            stages[s], groups[s] = per_frame(lo, hi, n1, n2)
        stages["rest"] = stages["pipeline"] - stages["detector"] - stages["smile"]
        cpu = json.loads(_file(out, r, "pipeline", n2).with_suffix(".cpu.json").read_text())
        ort = groups["detector"]["onnxruntime"] + groups["smile"]["onnxruntime"]
        results.append(Result(stages, groups["pipeline"], ort, cpu))
    return results


# --------------------------------------------------------------------------- AArch64

#: A qemu TCG plugin (plugin API 1, qemu-user 7.2) counting the guest instructions that
#: execute, all threads together (the inline add is not atomic, so threads running at
#: once may lose a few counts). Debian's qemu-user-static cannot load plugins; its
#: qemu-user (dynamic) can, and ships none, hence this one.
PLUGIN_C = r"""
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
typedef struct qemu_info_t qemu_info_t;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
void qemu_plugin_register_vcpu_tb_trans_cb(
    qemu_plugin_id_t, void (*)(qemu_plugin_id_t, struct qemu_plugin_tb *));
void qemu_plugin_register_vcpu_tb_exec_inline(
    struct qemu_plugin_tb *, enum qemu_plugin_op, void *, uint64_t);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *);
void qemu_plugin_register_atexit_cb(
    qemu_plugin_id_t, void (*)(qemu_plugin_id_t, void *), void *);
__attribute__((visibility("default"))) int qemu_plugin_version = 1;
static uint64_t insns;
static void trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    qemu_plugin_register_vcpu_tb_exec_inline(
        tb, QEMU_PLUGIN_INLINE_ADD_U64, &insns, qemu_plugin_tb_n_insns(tb));
}
static void done(qemu_plugin_id_t id, void *p) {
    fprintf(stderr, "guest instructions: %" PRIu64 "\n", insns);
}
__attribute__((visibility("default"))) int qemu_plugin_install(
    qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv) {
    qemu_plugin_register_vcpu_tb_trans_cb(id, trans);
    qemu_plugin_register_atexit_cb(id, done, NULL);
    return 0;
}
"""
#: Where the host side (qemu, its libraries, the plugin, this code, the inputs) goes
#: inside the arm64 root.
QEMU_DIR = "/ww-instr"
_GUEST = re.compile(r"^guest instructions: (\d+)$", re.M)


def guest_instructions(stderr: str) -> int:
    """The plugin's count from the run's stderr (the last one, should there be several)."""
    found = _GUEST.findall(stderr)
    if not found:
        raise ValueError(f"no 'guest instructions:' line in:\n{stderr[-2000:]}")
    return int(found[-1])


def qemu_setup(root: Path, qemu: Path, data: Path) -> None:
    """Put a host qemu-aarch64 with its shared libraries and loader, the plugin (built with
    gcc), this checkout's code and the inputs under ``root`` + QEMU_DIR. The root is written
    to: pass a copy. qemu runs inside the chroot so that the guest sees an arm64 system
    (run on the host with ``-L``, onnxruntime's cpuinfo reads the host's x86 /proc and the
    import crashes)."""
    dest = root / QEMU_DIR.lstrip("/")
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "lib").mkdir(parents=True)
    shutil.copy(qemu, dest / "qemu-aarch64")
    ldd = subprocess.run(["ldd", str(qemu)], capture_output=True, text=True, check=True).stdout
    if "not found" in ldd:
        raise RuntimeError(f"{qemu} misses libraries:\n{ldd}")
    for lib in re.findall(r"(/\S+) \(0x", ldd):
        shutil.copy(lib, dest / "lib" / Path(lib).name)
        if "ld-linux" in lib:
            shutil.copy(lib, dest / "ld.so")
    (dest / "count.c").write_text(PLUGIN_C, encoding="utf-8")
    subprocess.run(
        ["gcc", "-O2", "-shared", "-fPIC", "-fvisibility=hidden", "-o", str(dest / "libcount.so"),
         str(dest / "count.c")],
        check=True,
    )  # fmt: skip
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for pkg in ("agent", "bench", "models"):
        shutil.copytree(ROOT / pkg, dest / "src" / pkg, ignore=ignore)
    shutil.copytree(data, dest / "data")


def qemu_count(root: Path, python: str, cpu: str, stage: str, n: int) -> int:
    """Guest instructions of one ``--child`` run under qemu-aarch64 in the chroot."""
    d = QEMU_DIR
    cmd = [f"{d}/ld.so", "--library-path", f"{d}/lib", f"{d}/qemu-aarch64", "-cpu", cpu]
    cmd += ["-plugin", f"{d}/libcount.so", python, "-m", "bench.instructions"]
    cmd += ["--child", stage, f"{d}/data", str(n)]
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "PYTHONPATH": f"{d}/src",
    }

    def enter() -> None:
        os.chroot(root)
        os.chdir(f"{d}/src")

    res = subprocess.run(
        cmd, env=env, preexec_fn=enter, capture_output=True, text=True, check=False
    )
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stderr[-3000:]}")
    return guest_instructions(res.stderr)


def measure_aarch64(
    root: Path, python: str, cpu: str, n1: int, n2: int, repeat: int
) -> list[dict[str, float]]:
    """Per-frame AArch64 instructions of each stage, one dict per repeat."""
    out = []
    for _ in range(repeat):
        per: dict[str, float] = {}
        for s in STAGES:
            lo, hi = (qemu_count(root, python, cpu, s, n) for n in (n1, n2))
            per[s] = (hi - lo) / (n2 - n1)
        per["rest"] = per["pipeline"] - per["detector"] - per["smile"]
        out.append(per)
    return out


# --------------------------------------------------------------------------- report


def _m(v: float) -> str:
    return f"{v / 1e6:8.3f} M"


def report(
    results: list[Result],
    n1: int,
    n2: int,
    scored: int,
    arm: list[dict[str, float]] | None = None,
    arm_cpu: str = "",
) -> Iterator[str]:
    first = results[0]
    yield (
        f"instructions per frame, valgrind --tool=callgrind (x86-64), frames {n1}..{n2} "
        f"of the composed sequence ({scored} of them with a smile read), "
        f"(I({n2}) - I({n1})) / {n2 - n1}; {len(results)} repeats"
    )
    yield f"CPU seen under callgrind: {json.dumps(first.cpu)} (AVX2 code paths; no AVX-512)"
    names = {
        "detector": "detector inference (session.run)",
        "smile": "smile inference (session.run, both heads)",
        "rest": "rest: letterbox, decode+NMS, clerk, crop, checks, glue",
        "pipeline": "pipeline, Vision.process end to end",
    }
    arm = arm or []
    head = "".join(f"{'x86 #' + str(i + 1):>12}" for i in range(len(results)))
    head += "".join(f"{'AArch64 #' + str(i + 1):>12}" for i in range(len(arm)))
    yield f"  {'stage, instructions per frame':<56}{head}" + ("   AArch64/x86" if arm else "")
    for k in ("detector", "smile", "rest", "pipeline"):
        row = "".join(f"{_m(r.stages[k]):>12}" for r in results)
        row += "".join(f"{_m(a[k]):>12}" for a in arm)
        if arm:
            row += f"   {arm[0][k] / results[0].stages[k]:.2f}"
        yield f"  {names[k]:<56}{row}"
    totals = [r.stages["pipeline"] for r in results]
    spread = (max(totals) - min(totals)) / min(totals)
    yield f"  x86 repeat totals: {', '.join(f'{t:,.0f}' for t in totals)} (spread {spread:.1e})"
    if arm:
        a_tot = [a["pipeline"] for a in arm]
        a_spread = (max(a_tot) - min(a_tot)) / min(a_tot)
        yield (
            f"  AArch64 (qemu-aarch64 -cpu {arm_cpu}, TCG plugin) repeat totals: "
            f"{', '.join(f'{t:,.0f}' for t in a_tot)} (spread {a_spread:.1e})"
        )
    yield (
        f"  onnxruntime's own code: {first.groups['onnxruntime'] / 1e6:.3f} M in the pipeline, "
        f"{first.ort_alone / 1e6:.3f} M in the detector and smile runs together"
    )
    yield "pipeline by shared object (self cost, repeat 1):"
    for g, v in first.groups.items():
        share = v / first.stages["pipeline"]
        mark = "  SIMD kernels" if g in SIMD_GROUPS else ""
        yield f"  {g:<56}{_m(v):>12} {share:6.1%}{mark}"
    est = arm_instructions(first.groups)
    bases = [
        (
            f"from the x86 count (SIMD groups x {SIMD_FACTOR[0]}-{SIMD_FACTOR[1]}, the rest x "
            f"{SCALAR_FACTOR[0]}-{SCALAR_FACTOR[1]})",
            est,
        )
    ]
    if arm:
        a_max = max(a["pipeline"] for a in arm)
        bases.append((f"from the AArch64 count (qemu -cpu {arm_cpu})", (a_max, a_max)))
    for basis, instr in bases:
        yield f"AArch64 instructions/frame {instr[0] / 1e6:.1f}-{instr[1] / 1e6:.1f} M, {basis}:"
        for core in (PI4, PI5):
            for ghz in core.ghz:
                best, worst = frame_ms(instr, core, ghz)
                yield (
                    f"  {core.name} {ghz} GHz, one thread, IPC {core.ipc[0]}-{core.ipc[1]}: "
                    f"{best:.1f}-{worst:.1f} ms/frame = "
                    f"{1000 / worst:.0f}-{1000 / best:.0f} frames/s"
                )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    ap.add_argument("--n1", type=int, default=10, help="frames in the shorter run")
    ap.add_argument("--n2", type=int, default=50, help="frames in the longer run")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--jobs", type=int, default=2, help="callgrind processes at once")
    ap.add_argument("--keep", type=Path, default=None, help="keep callgrind files here")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument(
        "--reuse", type=Path, default=None, help="report on the files a --keep run left there"
    )
    ap.add_argument(
        "--aarch64",
        type=Path,
        default=None,
        metavar="ROOT",
        help="also count AArch64 instructions: an arm64 Debian root (a copy: this writes "
        "ROOT/ww-instr) whose --aarch64-python has numpy, opencv-python-headless, "
        "onnxruntime and pydantic; run as root",
    )
    ap.add_argument("--aarch64-python", default="/opt/v/bin/python", help="inside ROOT")
    ap.add_argument(
        "--qemu",
        type=Path,
        default=None,
        help="a qemu-aarch64 that loads plugins (Debian's qemu-user, not -static)",
    )
    ap.add_argument("--qemu-cpu", default="cortex-a72", help="the guest CPU model")
    ap.add_argument("--child", nargs=3, metavar=("STAGE", "DIR", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        stage, data, n = args.child
        child(stage, Path(data), int(n))
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt install valgrind)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="ww-instr-") as tmp:
        if args.reuse:
            out = args.reuse
            meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
            n1, n2, repeat = meta["n1"], meta["n2"], meta["repeat"]
        else:
            from bench.vision.__main__ import compose_frames

            n1, n2, repeat = args.n1, args.n2, args.repeat
            out = args.keep or Path(tmp)
            (out / "inputs").mkdir(parents=True, exist_ok=True)
            prepare(compose_frames(n2), n2, out / "inputs")
            scored = int(np.load(out / "inputs" / "has_crop.npy")[n1:n2].sum())
            meta = {"n1": n1, "n2": n2, "repeat": repeat, "smiles_read": scored}
            (out / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
            measure(out / "inputs", n1, n2, repeat, args.jobs, out)
        if args.aarch64:
            qemu = args.qemu or shutil.which("qemu-aarch64")
            if qemu is None:
                print("no qemu-aarch64 (Debian: apt install qemu-user)", file=sys.stderr)
                return 2
            qemu_setup(args.aarch64, Path(qemu), out / "inputs")
            per = measure_aarch64(args.aarch64, args.aarch64_python, args.qemu_cpu, n1, n2, repeat)
            doc = {"cpu": args.qemu_cpu, "repeats": per}
            (out / "aarch64.json").write_text(json.dumps(doc), encoding="utf-8")
        results = load(out, n1, n2, repeat)
        arm_file = out / "aarch64.json"
        arm_doc = json.loads(arm_file.read_text()) if arm_file.exists() else {}
        scored = meta["smiles_read"]
    arm = arm_doc.get("repeats") or None
    for line in report(results, n1, n2, scored, arm, arm_doc.get("cpu", "")):
        print(line)
    if args.json:
        doc = {
            "n1": n1,
            "n2": n2,
            "smiles_read": scored,
            "repeats": [
                {
                    "stages": r.stages,
                    "pipeline_by_group": r.groups,
                    "onnxruntime_in_detector_and_smile_runs": r.ort_alone,
                    "cpu": r.cpu,
                }
                for r in results
            ],
            "arm_instructions_from_x86": arm_instructions(results[0].groups),
            "aarch64": arm_doc,
            "assumptions": {
                "simd_factor": SIMD_FACTOR,
                "scalar_factor": SCALAR_FACTOR,
                "cores": [{"name": c.name, "ghz": c.ghz, "ipc": c.ipc} for c in (PI4, PI5)],
            },
        }
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
