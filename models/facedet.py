"""Build face_detector.onnx from the BlazeFace tflite inside the mediapipe wheel.

Build time only (runs in .venv-build): mediapipe's wheel supplies the weights
(``mediapipe/modules/face_detection/face_detection_short_range.tflite``, Apache-2.0),
tflite2onnx converts them, and the TensorFlow Lite interpreter (tflite-runtime)
checks the result on real face images. The product never imports any of these.

Graph change after conversion: the input becomes uint8 grey ``[1, 1, 128, 128]``;
Cast, ``x/127.5 - 1`` and a first convolution whose kernel is summed over the three
colour channels replace the RGB float input. Both are exact for grey frames (R = G =
B), and the verification feeds the tflite model the same grey replicated to RGB.
"""

from __future__ import annotations

import hashlib
import importlib.util
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

TFLITE_REL = "modules/face_detection/face_detection_short_range.tflite"


def tflite_path() -> Path:
    """The tflite file inside the installed mediapipe wheel (mediapipe is not imported)."""
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("mediapipe==0.10.21 is required at build time (.venv-build)")
    path = Path(next(iter(spec.submodule_search_locations))) / TFLITE_REL
    if not path.is_file():
        raise SystemExit(f"{path} not found in the mediapipe wheel")
    return path


def _graph_to_gray_uint8(src: Path, dst: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(src))
    g = model.graph
    old_input = g.input[0]
    first = next(n for n in g.node if old_input.name in n.input)
    if first.op_type != "Conv" or first.input[0] != old_input.name:
        raise SystemExit(f"unexpected first node {first.op_type}; conversion changed?")
    inits = {t.name: t for t in g.initializer}
    kernel = numpy_helper.to_array(inits[first.input[1]])  # [out, 3, kh, kw]
    folded = kernel.sum(axis=1, keepdims=True).astype(np.float32)
    g.initializer.remove(inits[first.input[1]])
    g.initializer.extend(
        [
            numpy_helper.from_array(folded, first.input[1]),
            numpy_helper.from_array(np.array(1 / 127.5, np.float32), "ww_scale"),
            numpy_helper.from_array(np.array(1.0, np.float32), "ww_one"),
        ]
    )
    pre = [
        helper.make_node("Cast", ["gray"], ["ww_gray_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["ww_gray_f", "ww_scale"], ["ww_scaled"]),
        helper.make_node("Sub", ["ww_scaled", "ww_one"], ["ww_norm"]),
    ]
    first.input[0] = "ww_norm"
    nodes = pre + list(g.node)
    del g.node[:]
    g.node.extend(nodes)
    g.input.remove(old_input)
    g.input.insert(0, helper.make_tensor_value_info("gray", TensorProto.UINT8, [1, 1, 128, 128]))
    model.doc_string = (
        "BlazeFace short range (MediaPipe 0.10.21, Apache-2.0), uint8 grey "
        "input, converted by WarmWindow models/facedet.py"
    )
    # tflite2onnx emits initializers and value_info in set order, which changes with
    # Python's string hashing: sort them so that every build writes the same bytes.
    for field in (g.initializer, g.value_info):
        items = sorted(field, key=lambda t: t.name)
        del field[:]
        field.extend(items)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))


@dataclass(frozen=True)
class Verification:
    images: int
    max_abs_regressors: float
    max_abs_logits: float
    detections_tflite: int
    detections_onnx: int
    max_box_px: float


def verify(onnx_path: Path, tflite: Path, frames: list[npt.NDArray[np.uint8]]) -> Verification:
    """Run tflite (RGB float, the original) and the ONNX file (grey uint8) on frames."""
    import tflite_runtime.interpreter as tfl

    from agent.vision.detector import FaceDetector

    interp = tfl.Interpreter(model_path=str(tflite), num_threads=1)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]["index"]
    outs = {d["name"]: d["index"] for d in interp.get_output_details()}
    det = FaceDetector(onnx_path)
    d_reg = d_cls = box = 0.0
    n_tfl = n_onnx = 0
    for frame in frames:
        lb = det.letterbox_for(frame)
        tensor = lb(frame).copy()
        rgb = (tensor[0, 0].astype(np.float32) / 127.5 - 1.0)[None, :, :, None].repeat(3, -1)
        interp.set_tensor(inp, rgb)
        interp.invoke()
        t_reg = interp.get_tensor(outs["regressors"])[0]
        t_cls = interp.get_tensor(outs["classificators"])[0, :, 0]
        o_reg, o_cls = det.raw(tensor)
        d_reg = max(d_reg, float(np.abs(t_reg - o_reg).max()))
        d_cls = max(d_cls, float(np.abs(t_cls - o_cls).max()))
        ft, fo = det.decode(t_reg, t_cls, lb), det.decode(o_reg, o_cls, lb)
        n_tfl += len(ft)
        n_onnx += len(fo)
        for a, b in zip(ft, fo, strict=False):
            box = max(box, abs(a.x - b.x), abs(a.y - b.y), abs(a.w - b.w), abs(a.h - b.h))
    return Verification(len(frames), d_reg, d_cls, n_tfl, n_onnx, box)


def build(out: Path, frames: list[npt.NDArray[np.uint8]]) -> tuple[Verification, str]:
    """Convert, adapt, verify; writes ``out`` only when the outputs match."""
    import tflite2onnx

    src = tflite_path()
    sha_src = hashlib.sha256(src.read_bytes()).hexdigest()
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        tflite2onnx.convert(str(src), str(raw))
        staged = Path(tmp) / "face_detector.onnx"
        _graph_to_gray_uint8(raw, staged)
        v = verify(staged, src, frames)
        # float16 weights are widened to float32 by the converter; the summed first
        # kernel changes rounding, so allow a small tolerance on raw outputs.
        ok = (
            v.max_abs_regressors < 0.05
            and v.max_abs_logits < 0.05
            and v.detections_tflite == v.detections_onnx
            and v.max_box_px < 0.5
        )
        if not ok:
            raise SystemExit(f"ONNX face detector does not match the tflite original: {v}")
        out.write_bytes(staged.read_bytes())
    return v, sha_src
