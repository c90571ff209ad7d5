"""Waiting in tests: one helper for "until this is true" and one for "this stays false"."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(
    pred: Callable[[], bool],
    timeout: float = 10.0,
    what: str = "the condition",
    poll_s: float = 0.02,
) -> bool:
    """Poll ``pred`` until it is true (then return True); fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(poll_s)
    return True


def stays_false(pred: Callable[[], bool], for_s: float, poll_s: float = 0.02) -> bool:
    """True when ``pred`` never became true during ``for_s`` (e.g. nothing was delivered)."""
    deadline = time.monotonic() + for_s
    while time.monotonic() < deadline:
        if pred():
            return False
        time.sleep(poll_s)
    return not pred()
