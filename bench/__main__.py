"""Run the standard benchmarks in turn: ``python -m bench`` (``make bench``).

Each prints what it compares and the ratio to a baseline measured in the same run.
The long runs are separate commands: ``python -m bench.store_scale`` (10M-event
PostgreSQL store), ``python -m bench.city`` (10,000 windows) and ``python -m
bench.verdicts`` (verdicts against the truth).
"""

from __future__ import annotations

import subprocess
import sys

SUITES = ("bench.vision", "bench.outbox", "bench.ingest", "bench.tile_latency")


def main() -> int:
    status = 0
    for mod in SUITES:
        print(f"\n=== python -m {mod}", flush=True)
        status |= subprocess.run([sys.executable, "-m", mod], check=False).returncode
    return status


if __name__ == "__main__":
    sys.exit(main())
