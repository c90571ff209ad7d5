"""Can a terminal's PUBACK come before its event is in the replicated events stream?

``python -m bench.cluster_puback [--trials N]`` starts a 3-node cluster
(``bench.natscluster``), creates ``WWEVENTS`` (subjects ``ww.v1.*.*.event``, 3 replicas,
file storage) as the ingest will, and publishes QoS 1 events over MQTT like a terminal:

* ``frozen-leader``: the stream leader SIGSTOPped, publish to another node: PUBACK?
  then thaw: is the event in the stream?
  With ``+kill`` the frozen leader is SIGKILLed instead of thawed.
* ``frozen-others``: both other nodes SIGSTOPped (no quorum), publish to the third
  (``+kill``: that node is SIGKILLed before the others thaw).
* ``kill-after-puback``: publish to the stream leader's own MQTT listener, and at the
  PUBACK SIGKILL that node; restart it; is the event in the stream? (repeated N times)

Prints one JSON line of counts per scenario. Results are in docs/cluster.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import nats
import paho.mqtt.client as mqtt
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from bench.natscluster import NatsCluster

STREAM = "WWEVENTS"
T = TypeVar("T")


def jetstream(urls: list[str], fn: Callable[[JetStreamContext], Awaitable[T]]) -> T:
    async def main() -> T:
        nc = await nats.connect(servers=urls, connect_timeout=2, max_reconnect_attempts=1)
        try:
            return await asyncio.wait_for(fn(nc.jetstream(timeout=3)), 10)
        finally:
            await nc.close()

    return asyncio.run(main())


def stored(c: NatsCluster, subject: str, patience_s: float = 10.0) -> bool:
    """Whether ``subject`` has a message in the stream (asked until ``patience_s``)."""

    async def go(j: JetStreamContext) -> bool:
        await j.get_last_msg(STREAM, subject)
        return True

    deadline = time.monotonic() + patience_s
    while time.monotonic() < deadline:
        try:
            return jetstream(c.nats_urls(), go)
        except NotFoundError:
            pass  # maybe a replica that has not caught up answered: ask again
        except Exception:
            pass  # no leader yet
        time.sleep(0.5)
    return False


class Publisher:
    """A connected MQTT 3.1.1 client publishing QoS 1, as a terminal does."""

    def __init__(self, node: tuple[str, int]) -> None:
        self._acked: dict[int, threading.Event] = {}
        self._lock = threading.Lock()
        connected = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"pub-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv311,
        )
        self.client.on_connect = lambda *_a: connected.set()
        self.client.on_publish = self._on_publish
        self.client.connect(node[0], node[1], keepalive=30)
        self.client.loop_start()
        if not connected.wait(20):
            self.close()
            raise TimeoutError(f"no CONNACK from {node}")

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, *_a: Any) -> None:
        with self._lock:
            self._acked.setdefault(mid, threading.Event()).set()

    def send(self, t: str, wait_s: float) -> float | None:
        """Seconds to the PUBACK, None when none came within ``wait_s``."""
        t0 = time.monotonic()
        with self._lock:
            info = self.client.publish(t, json.dumps({"event_id": str(uuid.uuid4())}), qos=1)
            ev = self._acked.setdefault(info.mid, threading.Event())
        return time.monotonic() - t0 if ev.wait(wait_s) else None

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def publish(node: tuple[str, int], t: str, wait_s: float) -> float | None:
    try:
        pub = Publisher(node)
    except (OSError, TimeoutError):
        return None
    try:
        return pub.send(t, wait_s)
    finally:
        pub.close()


def setup(c: NatsCluster) -> None:
    async def go(j: JetStreamContext) -> None:
        await j.add_stream(name=STREAM, subjects=["ww.v1.*.*.event"], num_replicas=3)

    jetstream(c.nats_urls(), go)
    for node in c.mqtt_nodes():  # the first MQTT client of a node creates $MQTT_ streams
        publish(node, "ww/v1/warm/up/state", 10)
    deadline = time.monotonic() + 20
    while c.stream_leader(STREAM) is None and time.monotonic() < deadline:
        time.sleep(0.2)


def frozen(
    c: NatsCluster, which: str, trials: int, wait_s: float, kill: bool = False
) -> dict[str, Any]:
    """Freeze the stream leader (or the two nodes the publisher is not on), publish to a
    connected publisher, then thaw, or with ``kill`` SIGKILL the frozen leader (or the
    publisher's node) first; count PUBACKs and events found in the stream afterwards."""
    name = which + ("+kill" if kill else "")
    out: dict[str, Any] = {"scenario": name, "trials": trials, "puback": 0, "stored": 0}
    out["puback_not_stored"] = 0
    for k in range(trials):
        leader = c.stream_leader(STREAM)
        assert leader is not None
        if which == "frozen-leader":
            stop, pub = [leader], (leader + 1) % 3
        else:
            pub = (leader + 1) % 3
            stop = [i for i in range(3) if i != pub]
        client = Publisher(c.mqtt_nodes()[pub])  # connected before the fault
        for i in stop:
            c.freeze(i)
        t = f"ww/v1/p{k}/{which}/event"
        took = client.send(t, wait_s)
        client.close()
        if kill and which == "frozen-others":
            c.kill(pub)  # the only node that saw the event dies before the others wake
        if kill and which == "frozen-leader":
            c.kill(leader)  # dies frozen, with the event in its socket buffers
        for i in stop:
            c.thaw(i)
        for i in range(3):
            if c.nodes[i].pid is None:
                c.start_node(i, wait=False)
        try:
            c.wait_ready()
        except TimeoutError:  # seen once after the frozen leader's SIGKILL: wait longer
            out["slow_recovery"] = out.get("slow_recovery", 0) + 1
            c.wait_ready(180)
        ok = stored(c, t.replace("/", "."))
        out["puback"] += took is not None
        out["stored"] += ok
        out["puback_not_stored"] += took is not None and not ok
        out.setdefault("puback_s", []).append(None if took is None else round(took, 2))
    return out


def kill_after_puback(c: NatsCluster, trials: int) -> dict[str, Any]:
    out: dict[str, Any] = {"scenario": "kill-after-puback", "trials": 0, "puback": 0}
    out.update(stored=0, lost=0)
    for k in range(trials):
        leader = c.stream_leader(STREAM)
        if leader is None:
            c.wait_ready()
            continue
        t = f"ww/v1/k{k}/w/event"
        took = publish(c.mqtt_nodes()[leader], t, 5.0)
        c.kill(leader)
        out["trials"] += 1
        if took is None:
            c.start_node(leader)
            continue
        out["puback"] += 1
        c.start_node(leader)
        if stored(c, t.replace("/", ".")):
            out["stored"] += 1
        else:
            out["lost"] += 1
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=50, help="kill-after-puback repetitions")
    ap.add_argument("--frozen-trials", type=int, default=3)
    ap.add_argument("--wait-s", type=float, default=8.0, help="how long to wait for a PUBACK")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d, NatsCluster(Path(d), 3, name="wwpuback") as c:
        setup(c)
        for which in ("frozen-leader", "frozen-others"):
            for kill in (False, True):
                doc = frozen(c, which, args.frozen_trials, args.wait_s, kill)
                print(json.dumps(doc), flush=True)
        print(json.dumps(kill_after_puback(c, args.trials)), flush=True)


if __name__ == "__main__":
    main()
