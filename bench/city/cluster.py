"""The city run's broker side on a 3-node NATS cluster (``python -m bench.city --cluster``).

``bench.natscluster.NatsCluster`` with its nodes in network namespaces, so one can be
partitioned (a pulled cable, its MQTT clients cut too); when the namespaces cannot be
made (no root, no ``ip``) the cluster runs on 127.0.0.1 and the partition is skipped,
saying so. What the run needs from it, and nothing the Mosquitto run does not have:

* the terminals' broker settings: every node listed, ``confirm = "stored"``, MQTT 3.1.1;
* the replicas' environment, as the aggregator reads it (``server.settings``):
  ``WW_EVENTS_FROM=jetstream``, ``WW_NATS_URLS``, ``WW_MQTT_HOST``/``_PORT`` (replica
  *i* starts at node *i*) and ``WW_MQTT_NODES`` (the others) for state, replies and the
  stored confirmations;
* which node leads the events stream (``stream_info``), for the node-kill fault;
* per-node CPU seconds and peak RSS (every incarnation of a restarted node), and the
  connections each node reports in ``/varz``, sampled on a thread of their own (a
  partitioned node's monitor port does not answer).

One ``--cluster`` run at a time per machine: the namespaces, bridge and subnet are named
after the fixed cluster name ``ww-city``, and a start deletes what it finds by that name
(a crashed run's leftovers).
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.natscluster import NATS_SERVER, NatsCluster

STREAM = "WW_EVENTS"


@dataclass
class NodeUsage:
    """CPU seconds per incarnation (pid) and peak RSS of one node."""

    cpu_s: dict[int, float] = field(default_factory=dict)
    peak_rss: int = 0

    def sample(self, row: dict[str, Any]) -> None:
        """One row of ``NatsCluster.node_stats()``."""
        if row["pid"] is None or row["cpu_s"] is None:
            return
        self.cpu_s[row["pid"]] = row["cpu_s"]
        self.peak_rss = max(self.peak_rss, row["rss"] or 0)

    @property
    def total_cpu_s(self) -> float:
        return sum(self.cpu_s.values())


class ClusterSide:
    """Starts, faults and measures the cluster; see the module docstring."""

    def __init__(self, workdir: Path, nodes: int = 3) -> None:
        self.workdir = workdir
        self.size = nodes
        self.cluster: NatsCluster | None = None
        self.netns = False
        self.why_no_netns: str | None = None
        self.usage: list[NodeUsage] = [NodeUsage() for _ in range(nodes)]
        #: (time, connections per node; None where /varz did not answer)
        self.connections: list[tuple[float, list[int | None]]] = []
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    # ------------------------------------------------------------------ life cycle

    def start(self) -> None:
        # The nodes inherit the run's raised descriptor limit (``raise_nofile``).
        try:
            self.cluster = NatsCluster(self.workdir / "nats", self.size, name="ww-city", netns=True)
            self.cluster.start()
            self.netns = True
        except (subprocess.CalledProcessError, OSError) as exc:
            detail = exc.stderr.strip() if isinstance(exc, subprocess.CalledProcessError) else exc
            self.why_no_netns = f"network namespaces unavailable ({detail})"
            print(
                f"{self.why_no_netns}: running the cluster on 127.0.0.1, "
                "WITHOUT the partition fault",
                flush=True,
            )
            self.cluster = NatsCluster(self.workdir / "nats-lo", self.size, name="ww-city")
            self.cluster.start()
        self._poller = threading.Thread(target=self._poll, name="varz", daemon=True)
        self._poller.start()

    def stop(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join(5)
        if self.cluster is not None:
            self.cluster.stop()

    @property
    def c(self) -> NatsCluster:
        assert self.cluster is not None, "cluster not started"
        return self.cluster

    # ------------------------------------------------------------------ settings

    def worker_broker(self) -> dict[str, object]:
        nodes = self.c.mqtt_nodes()
        return {
            "host": nodes[0][0],
            "port": nodes[0][1],
            "nodes": [f"{h}:{p}" for h, p in nodes],
            "confirm": "stored",
            "protocol": "3.1.1",
        }

    def replica_env(self, index: int, client_id: str) -> dict[str, str]:
        nodes = self.c.mqtt_nodes()
        first = nodes[index % len(nodes)]
        others = [n for n in nodes if n != first]
        return {
            "WW_EVENTS_FROM": "jetstream",
            "WW_NATS_URLS": ",".join(self.c.nats_urls()),
            "WW_NATS_STREAM": STREAM,
            "WW_MQTT_HOST": first[0],
            "WW_MQTT_PORT": str(first[1]),
            "WW_MQTT_NODES": ",".join(f"{h}:{p}" for h, p in others),
            "WW_MQTT_PROTOCOL": "3.1.1",
            "WW_MQTT_CLIENT_ID": client_id,
        }

    # ------------------------------------------------------------------ faults

    def stream_leader(self) -> int | None:
        """Index of the node leading the events stream, None when nobody says."""
        return self.c.stream_leader(STREAM)

    def node_label(self, i: int) -> str:
        n = self.c.nodes[i]
        return f"{n.name} ({n.host}:{n.mqtt_port})"

    # ------------------------------------------------------------------ measuring

    def sample_usage(self) -> None:
        for usage, row in zip(self.usage, self.c.node_stats(), strict=True):
            usage.sample(row)

    def _poll(self) -> None:
        while not self._stop.wait(5.0):
            row: list[int | None] = []
            for n in self.c.nodes:
                count: int | None = None
                if n.pid is not None:
                    with contextlib.suppress(OSError, ValueError, KeyError):
                        count = int(n.monitor("/varz", timeout=1.0)["connections"])
                row.append(count)
            self.connections.append((time.time(), row))

    def max_connections(self, start: float, end: float) -> list[int]:
        out = [0] * self.size
        for t, row in self.connections:
            if start <= t <= end:
                for i, v in enumerate(row):
                    out[i] = max(out[i], v or 0)
        return out

    def version(self) -> str:
        try:
            out = subprocess.run([NATS_SERVER, "--version"], capture_output=True, text=True)
            return out.stdout.strip().split()[-1]
        except (OSError, IndexError):
            return "?"
