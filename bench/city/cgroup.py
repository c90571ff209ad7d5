"""A CPU cgroup for the simulated fleet, so it cannot starve what the run measures.

A real terminal has its own CPU. Here 10,000 of them are threads on the same few cores
as the broker, the replicas and PostgreSQL, and a broker restart wakes all of them at
once: with every worker in one cgroup of low weight, the fleet as a whole gets a small
share whenever the server side wants the CPU, and all of it otherwise. ``nice`` alone
does not do this: its weight is per thread, and 4,000 runnable threads at nice 19 still
outweigh one broker thread (the first 10,000-window restart ran out of CPU that way).

cgroup v1 (``cpu.shares``) and v2 (``cpu.weight``) are both handled; where neither can be
written (not root, no cpu controller), ``FleetCgroup.create`` returns None and the run
notes it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Final

ROOT: Final = Path("/sys/fs/cgroup")
#: A quarter of a default group's weight (v1 1024, v2 100).
SHARES_V1: Final = 256
WEIGHT_V2: Final = 25


class FleetCgroup:
    def __init__(self, path: Path, knob: str, value: int) -> None:
        self.path = path
        self.knob = knob
        self.value = value

    @classmethod
    def create(cls, name: str) -> FleetCgroup | None:
        candidates = [
            (ROOT / "cpu", "cpu.shares", SHARES_V1),  # v1
            (ROOT, "cpu.weight", WEIGHT_V2),  # v2 (unified hierarchy)
        ]
        for parent, knob, value in candidates:
            if not (parent / "cgroup.procs").exists():
                continue
            path = parent / name
            try:
                path.mkdir(exist_ok=True)
                (path / knob).write_text(f"{value}\n")
            except OSError:
                with contextlib.suppress(OSError):
                    path.rmdir()
                continue
            return cls(path, knob, value)
        return None

    def add(self, pid: int) -> None:
        """Move a process (with the threads it will start) into the group."""
        (self.path / "cgroup.procs").write_text(f"{pid}\n")

    def remove(self) -> None:
        """Hand any process still inside back to the parent, then delete the group."""
        with contextlib.suppress(OSError):
            for pid in (self.path / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):
                    (self.path.parent / "cgroup.procs").write_text(f"{pid}\n")
        with contextlib.suppress(OSError):
            self.path.rmdir()

    def __str__(self) -> str:
        return f"{self.path} ({self.knob} {self.value})"


def group_name() -> str:
    return f"ww-city-{os.getpid()}"
