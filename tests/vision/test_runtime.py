"""The options every model session runs with, read back from real sessions.

The memory and speed reasons for each are in ``agent/vision/runtime.py`` and the
figures come from ``python -m bench.vision``; these tests keep a "memory saving"
that costs frame time (or one that saves nothing) from slipping in unmeasured.
"""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import pytest

from agent.vision.runtime import ModelError, make_session, model_path, session_options


@pytest.mark.parametrize("name", ["face_detector.onnx", "smile.onnx"])
def test_shipped_models_get_the_measured_options(name: str) -> None:
    opts = make_session(model_path(name)).get_session_options()
    assert opts.intra_op_num_threads == 1
    assert opts.inter_op_num_threads == 1
    assert opts.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert opts.enable_cpu_mem_arena and opts.enable_mem_pattern
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_threads_are_the_callers_choice() -> None:
    assert session_options(2).intra_op_num_threads == 2
    assert session_options().intra_op_num_threads == 1


def test_a_damaged_model_is_a_model_error(tmp_path: Path) -> None:
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not an onnx graph")
    with pytest.raises(ModelError, match=r"broken\.onnx"):
        make_session(bad)
