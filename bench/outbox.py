"""Agent delivery benchmark through a real Mosquitto: ``python -m bench.outbox``.

Compares, in one run on this machine, the agent's durable path against a plain paho
QoS 1 publish loop (the baseline: same broker, same payload size, same in-flight window,
no durability), and prints each as a ratio to the baseline:

  * live:   ``Outbox.add`` in the app thread while ``Transport`` drains it (the normal
            case: stamp + validate + one fsync per event, then publish and delete);
  * replay: a backlog already stored in the outbox drained after (re)connecting (what
            happens after an outage);
  * add:    ``Outbox.add`` alone, no network.

Throughput is events acknowledged by the broker per wall-clock second; CPU per event is
this process's CPU time (all threads: app, transport, paho) divided by the events. The
broker's own CPU is in neither. Each figure is the median of ``--repeat`` runs. Nothing
is asserted: these are figures to compare, not tests. On a shared machine, trust the CPU
ratios more than the wall-clock ones.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt

from agent import protocol as p
from agent.config import BrokerConfig
from agent.events import Draft
from agent.localbroker import MosquittoBroker
from agent.outbox import Outbox
from agent.protocol import Channel, SessionSummary, topic
from agent.transport import Transport

SITE = "qingpu"
WINDOW = 32  # in-flight window, the same for the baseline and the transport


@dataclass(frozen=True)
class Run:
    events: int
    wall_s: float
    cpu_s: float

    @property
    def rate(self) -> float:
        return self.events / self.wall_s

    @property
    def cpu_us(self) -> float:
        return self.cpu_s / self.events * 1e6


def summary_draft(i: int) -> Draft:
    """A session summary: the largest event an agent sends, so the payloads are honest."""
    ts = 1_700_000_000_000 + i * 1000
    return Draft(
        kind=SessionSummary,
        ts_ms=ts,
        session_id=uuid.uuid4(),
        fields={
            "opened_ms": ts - 240_000,
            "closed_ms": ts,
            "closed_by": "evaluation",
            "stood_on_call": True,
            "stand_after_ms": 2100,
            "smiled_at_greeting": True,
            "smile_after_ms": 3400,
            "smile_peak": 0.82,
            "stood_at_farewell": True,
            "see_off_ms": 3900,
            "rating": "very_satisfied",
        },
    )


def measure(fn: Callable[[], int]) -> Run:
    wall, cpu = time.perf_counter(), time.process_time()
    n = fn()
    return Run(n, time.perf_counter() - wall, time.process_time() - cpu)


def baseline(broker: MosquittoBroker, payload: bytes, n: int) -> Run:
    """Plain paho: publish n QoS 1 messages, wait for every PUBACK."""
    done = threading.Event()
    acked = 0

    def on_publish(*_: object) -> None:
        nonlocal acked
        acked += 1
        if acked == n:
            done.set()

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"bench-plain-{uuid.uuid4().hex[:6]}",
        protocol=mqtt.MQTTv5,
    )
    client.max_inflight_messages_set(WINDOW)
    client.on_publish = on_publish
    client.connect(broker.host, broker.port)
    client.loop_start()
    time.sleep(0.3)
    event_topic = topic(SITE, "w00", Channel.EVENT)

    def run() -> int:
        for _ in range(n):
            client.publish(event_topic, payload, qos=1)
        if not done.wait(300):
            raise RuntimeError("baseline: PUBACKs missing")
        return n

    result = measure(run)
    client.disconnect()
    client.loop_stop()
    return result


def live(broker: MosquittoBroker, tmp: Path, n: int) -> Run:
    window = f"w{uuid.uuid4().hex[:6]}"
    with Outbox(tmp / f"{window}.db", SITE, window) as box:
        cfg = BrokerConfig(host=broker.host, port=broker.port)
        with Transport(cfg, SITE, window, box, max_inflight=WINDOW) as link:
            while not link.connected:
                time.sleep(0.01)

            def run() -> int:
                for i in range(n):
                    box.add(summary_draft(i))
                if not link.flush(300):
                    raise RuntimeError(f"live: not drained {link.stats()}")
                return n

            return measure(run)


def replay(broker: MosquittoBroker, tmp: Path, n: int) -> Run:
    window = f"w{uuid.uuid4().hex[:6]}"
    with Outbox(tmp / f"{window}.db", SITE, window) as box:
        for i in range(n):
            box.add(summary_draft(i))
        cfg = BrokerConfig(host=broker.host, port=broker.port)
        link = Transport(cfg, SITE, window, box, max_inflight=WINDOW)

        def run() -> int:  # includes connecting: part of what a replay costs
            link.start()
            if not link.flush(300):
                raise RuntimeError(f"replay: not drained {link.stats()}")
            return n

        try:
            return measure(run)
        finally:
            link.close()


def add_only(tmp: Path, n: int) -> Run:
    with Outbox(tmp / f"add-{uuid.uuid4().hex[:6]}.db", SITE, "w00") as box:

        def run() -> int:
            for i in range(n):
                box.add(summary_draft(i))
            return n

        return measure(run)


def median_run(runs: list[Run]) -> Run:
    return Run(
        runs[0].events,
        statistics.median(r.wall_s for r in runs),
        statistics.median(r.cpu_s for r in runs),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-announce", action="store_true", help="no ingest announces v2")
    args = ap.parse_args()
    n = args.events
    with tempfile.TemporaryDirectory() as tmpdir, MosquittoBroker(Path(tmpdir) / "mq") as broker:
        tmp = Path(tmpdir)
        # The aggregator's stand-in: without a subscriber Mosquitto answers PUBACK 0x10
        # and the transport (rightly) keeps the rows. QoS 0 keeps its cost small and equal.
        sink = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-sink")
        sink.connect(broker.host, broker.port)
        sink.subscribe("ww/v1/+/+/event", qos=0)
        sink.loop_start()
        if not args.no_announce:
            # An upgraded ingest announces what it accepts, as in production: events go
            # out in the form the outbox keeps. --no-announce measures the terminal that
            # downgrades every event for a server that has not said (version 1).
            accepts = p.Accepts(server="bench-ingest", versions=p.CONTRACT.versions, ts_ms=1)
            sink.publish(
                p.accepts_topic("bench-ingest"), accepts.model_dump_json(), qos=1, retain=True
            ).wait_for_publish(5)
        with Outbox(tmp / "sample.db", SITE, "w00") as box:
            box.add(summary_draft(0))
            payload = box.peek(1)[0].payload.encode()  # what the transport sends
        results: dict[str, list[Run]] = {"baseline": [], "live": [], "replay": [], "add": []}
        for _ in range(args.repeat):  # interleaved, so drift in machine load hits all alike
            results["baseline"].append(baseline(broker, payload, n))
            results["live"].append(live(broker, tmp, n))
            results["replay"].append(replay(broker, tmp, n))
            results["add"].append(add_only(tmp, n))
        sink.loop_stop()
        med = {k: median_run(v) for k, v in results.items()}
        base = med["baseline"]
        print(
            f"{n} events of {len(payload)} B, QoS 1, in-flight window {WINDOW}, "
            f"median of {args.repeat}; ratios are against the plain paho loop"
        )
        print(f"{'path':34s} {'events/s':>9s} {'ratio':>6s} {'CPU us/ev':>10s} {'ratio':>6s}")
        labels = {
            "baseline": "plain paho QoS1 loop (baseline)",
            "live": "outbox + transport, live",
            "replay": "outbox + transport, replay backlog",
            "add": "Outbox.add only (no network)",
        }
        for key, label in labels.items():
            r = med[key]
            print(
                f"{label:34s} {r.rate:9.0f} {r.rate / base.rate:6.2f} "
                f"{r.cpu_us:10.1f} {r.cpu_us / base.cpu_us:6.2f}"
            )


if __name__ == "__main__":
    main()
