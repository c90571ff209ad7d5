"""What every child process of a benchmark harness needs: a clean stop and atomic status."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any


def stop_on_signals() -> threading.Event:
    """An Event set by SIGTERM or SIGINT, so the process can wind down on its own terms."""
    stop = threading.Event()

    def _on_signal(_sig: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    return stop


def write_json(path: Path, doc: dict[str, Any]) -> None:
    """Atomic: the parent may read the file at any moment."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc), encoding="utf-8")
    os.replace(tmp, path)
