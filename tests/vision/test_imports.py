"""The product runs on onnxruntime alone: no TensorFlow, PyTorch or mediapipe."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FORBIDDEN = ("tensorflow", "tflite_runtime", "torch", "mediapipe", "tflite2onnx", "jax")

# A meta-path hook records every attempt to import a forbidden package, even one
# that is not installed here (a guarded `try: import torch` would pass unseen by a
# plain sys.modules check in an environment without torch).
PROBE = """
import importlib.abc, json, sys
FORBIDDEN = {forbidden!r}
tried = []
class Spy(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in FORBIDDEN:
            tried.append(name)
        return None
sys.meta_path.insert(0, Spy())
import numpy as np
import agent.vision, agent.vision.pipeline, agent.vision.detector, agent.vision.smile
import agent.vision.posture, agent.vision.rate, agent.vision.scenes, agent.vision.cli
import agent.hardware.camera, models.cli, models.evaluate
from agent.vision.pipeline import Vision
v = Vision()
for t in range(0, 1000, 100):
    v.process(t, np.full((240, 320), 100, np.uint8))
loaded = [m for m in sys.modules if m.split(".")[0] in FORBIDDEN]
print(json.dumps({{"tried": tried, "loaded": loaded}}))
"""


def test_product_imports_no_training_framework() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(forbidden=FORBIDDEN)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"tried": [], "loaded": []}


def test_probe_catches_a_forbidden_import() -> None:
    """The probe itself works: a module that tries torch is reported."""
    code = PROBE.format(forbidden=FORBIDDEN).replace(
        "import numpy as np",
        "import numpy as np\ntry:\n    import torch\nexcept ImportError:\n    pass",
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "torch" in json.loads(out.stdout.strip().splitlines()[-1])["tried"]
