"""A worker process of the city run: a slice of the windows, each with its real Outbox and
Transport, fed by one scripted-day thread.

``python -m bench.city.worker --spec SPEC.json`` (written by ``bench.city``).

Per window: one SQLite outbox file (on tmpfs: the fsync each ``add`` costs is the SD
card's, not something a benchmark of the fleet should pay 10,000 times) and one
``Transport`` thread (one paho client, one TCP connection). The owner thread's wakeups
are what the process mostly spends its CPU on, hence a long ``poll_s``: PUBACKs still
wake it at once, new events wait for the next poll.

Life cycle, every phase bounded in time: connect the windows over ``ramp_s``; wait for
the day's start; play the day; keep draining until SIGTERM (or a hard deadline); then
write the per-window ``last_seq`` and ``depth`` and close every transport.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

from agent.config import BrokerConfig
from agent.outbox import Outbox, now_ms
from agent.transport import Transport
from bench.city.model import ScriptedDay
from bench.proc import stop_on_signals, write_json

log = logging.getLogger("bench.city.worker")

#: select()'s limit: paho cannot watch a socket numbered at or above it.
FD_SETSIZE: Final = 1024
#: Descriptors per window paho selects on: the TCP socket and the socketpair (2).
SELECT_FDS: Final = 3
#: Windows one worker holds. Each window keeps ~7 descriptors open (outbox db, WAL, shm,
#: lock, socket, socketpair); the parking below keeps the first sockets under
#: FD_SETSIZE, but after a broker restart the reconnect storm hands paho new sockets
#: above 1024 when a worker holds 300 windows (2,100 descriptors) and its select()
#: fails: 100 windows keep every descriptor the process owns under the limit.
MAX_WINDOWS_PER_WORKER: Final = 100


def raise_nofile() -> int:
    """Each window holds ~7 descriptors (db, WAL, shm, lock, socket, paho's socketpair)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Worker:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.devices: list[tuple[str, str]] = [tuple(d) for d in spec["devices"]]
        self.stats_path = Path(spec["stats"])
        self.stop = stop_on_signals()
        # A cluster run (``--cluster``) lists every node and waits for the ingest's
        # "stored" confirmations; the Mosquitto run has one broker on 127.0.0.1.
        broker = BrokerConfig(
            host=spec.get("host", "127.0.0.1"),
            port=spec["port"],
            nodes=spec.get("nodes", []),
            confirm=spec.get("confirm", "puback"),
            keepalive_s=spec["keepalive_s"],
            reconnect_spread_s=spec["reconnect_spread_s"],
            connack_timeout_s=spec.get("connack_timeout_s"),
        )
        outdir = Path(spec["outbox_dir"])
        # paho's loop() uses select(), which cannot watch a descriptor numbered 1024 or
        # more. Park the low numbers while the outboxes (4 descriptors each) open, then
        # free them for the sockets paho creates (3 per window: the connection and its
        # wake-up socketpair); the kernel always hands out the lowest free number.
        parked = [os.open(os.devnull, os.O_RDONLY) for _ in range(SELECT_FDS * len(self.devices))]
        if parked and max(parked) >= FD_SETSIZE:
            raise SystemExit(f"{len(self.devices)} windows need sockets above {FD_SETSIZE}")
        self.outboxes = [
            Outbox(outdir / f"{site}-{window}.db", site, window) for site, window in self.devices
        ]
        for fd in parked:
            os.close(fd)
        self.transports = [
            Transport(
                broker,
                box.site,
                box.window,
                box,
                poll_s=spec["poll_s"],
                backoff_max_s=spec["backoff_max_s"],
                max_inflight=spec["max_inflight"],
                retry_rejected_s=2.0,
                # Mosquitto speaks MQTT 5. With "auto", a CONNACK slower than 5 s (a
                # connect storm on a busy machine) makes the transport fall back to 3.1.1
                # for the rest of the run, on a new client and socket. NATS speaks 3.1.1.
                protocol=spec.get("protocol", "5"),
            )
            for box in self.outboxes
        ]
        self.generated = 0
        self.add_errors = 0
        self.phase = "connecting"

    # ------------------------------------------------------------------ phases

    def ramp(self) -> None:
        """Start the transports evenly over ramp_s, so 10,000 CONNECTs are not one burst."""
        gap = self.spec["ramp_s"] / max(1, len(self.transports))
        t0 = time.monotonic()
        for i, t in enumerate(self.transports):
            if self.stop.is_set():
                return
            t.start()
            delay = t0 + (i + 1) * gap - time.monotonic()
            if delay > 0:
                self.stop.wait(delay)

    def play_day(self) -> None:
        start_at = float(self.spec["start_at"])
        while time.time() < start_at and not self.stop.wait(0.2):
            pass
        self.phase = "day"
        duration = float(self.spec["duration_s"])
        day = ScriptedDay(
            len(self.outboxes),
            sessions=int(self.spec["sessions"]),
            duration_s=duration,
            seed=int(self.spec["seed"]),
            step_s=float(self.spec["step_s"]),
        )
        # Bounded: the schedule ends by duration_s; a stalled machine stops at 3x that.
        hard_end = time.monotonic() + 3 * duration + 60
        while not day.done and not self.stop.is_set() and time.monotonic() < hard_end:
            now_s = time.time() - start_at
            for w, draft in day.pop_due(now_s, now_ms(), limit=500):
                try:
                    self.outboxes[w].add(draft)
                    self.generated += 1
                except Exception:  # counted and reported: the run's verdict needs it
                    self.add_errors += 1
                    log.exception("outbox add failed")
            nxt = day.next_due_s()
            if nxt is not None:
                self.stop.wait(min(0.05, max(0.0, nxt - (time.time() - start_at))))
        self.phase = "draining"

    def snapshot(self, final: bool = False) -> dict[str, Any]:
        stats = [t.stats() for t in self.transports]
        doc: dict[str, Any] = {
            "phase": self.phase,
            "windows": len(self.outboxes),
            "connected": sum(1 for t in self.transports if t.connected),
            "generated": self.generated,
            "add_errors": self.add_errors,
            "last_seq": sum(b.last_seq for b in self.outboxes),
            "depth": sum(b.depth for b in self.outboxes),
            "dropped": sum(b.dropped for b in self.outboxes),
            "connects": sum(s.connects for s in stats),
            "queue_full": sum(s.queue_full for s in stats),
            "rejected": sum(s.rejected for s in stats),
            # confirm = "stored" (the cluster run): rows waiting for the ingest's word.
            "unconfirmed": sum(s.unconfirmed for s in stats),
            "confirmed": sum(s.confirmed for s in stats),
            "node_moves": sum(s.node_moves for s in stats),
            "suback_refused": sum(s.suback_refused for s in stats),
        }
        if final:
            doc["per_window"] = [
                [b.site, b.window, b.last_seq, b.depth, b.dropped] for b in self.outboxes
            ]
        return doc

    def reporter(self) -> None:
        while not self.stop.wait(1.0):
            write_json(self.stats_path, self.snapshot())

    def close(self) -> None:
        # Closing is a join per transport, each waiting out its poll: do it in parallel.
        with ThreadPoolExecutor(max_workers=128) as pool:
            list(pool.map(lambda t: t.close(timeout=2.0), self.transports))
        for b in self.outboxes:
            b.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--spec", type=Path, required=True)
    args = ap.parse_args()
    spec = json.loads(args.spec.read_text(encoding="utf-8"))
    logging.basicConfig(level=logging.WARNING, format=f"worker{spec['index']} %(message)s")
    raise_nofile()
    # A real terminal has its own CPU; here 10,000 share two cores with the broker, the
    # replicas and PostgreSQL. Lower priority, but not a CPU cap: a cgroup of low weight
    # starved the fleet into missed keepalives and a reconnect storm. A broker restart
    # wakes all 100 threads of a process at once, and a thread waiting for the GIL wakes
    # every switch interval (5 ms by default) to ask for it: the restarts that overran
    # this machine spent 60-80 % of it in the kernel.
    os.nice(10)
    sys.setswitchinterval(0.1)
    # 10,000 threads: the default 8 MiB stacks are only address space, but keep it modest.
    threading.stack_size(512 * 1024)
    worker = Worker(spec)
    rep = threading.Thread(target=worker.reporter, name="reporter", daemon=True)
    rep.start()
    worker.ramp()
    worker.play_day()
    # Drain until the parent has seen everything stored and says stop (bounded).
    worker.stop.wait(float(spec["drain_limit_s"]))
    worker.phase = "stopped"
    final = worker.snapshot(final=True)
    write_json(worker.stats_path.with_suffix(".final.json"), final)
    worker.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
