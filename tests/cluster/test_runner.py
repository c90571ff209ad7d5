"""The cluster runner itself: a replicated stream survives a killed node and a partition."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from nats.js import JetStreamContext
from nats.js.api import StreamInfo

from bench.natscluster import NatsCluster
from tests.cluster import js
from tests.waiting import wait_until


def info(c: NatsCluster, stream: str) -> StreamInfo | None:
    async def go(j: JetStreamContext) -> StreamInfo:
        return await j.stream_info(stream)

    try:
        return js(c.nats_urls(), go, timeout=5)
    except Exception:  # no leader right now, or the node we reached is gone
        return None


def publish(c: NatsCluster, subject: str, n: int) -> bool:
    async def go(j: JetStreamContext) -> bool:
        for k in range(n):
            await j.publish(subject, f"m{k}".encode(), timeout=2)
        return True

    try:
        return js(c.nats_urls(), go, timeout=10)
    except Exception:
        return False


def leader_index(c: NatsCluster, stream: str) -> int:
    si = info(c, stream)
    assert si is not None and si.cluster is not None and si.cluster.leader
    return [n.name for n in c.nodes].index(si.cluster.leader)


def all_current(c: NatsCluster, stream: str, messages: int) -> bool:
    si = info(c, stream)
    if si is None or si.cluster is None or si.state.messages != messages:
        return False
    replicas = si.cluster.replicas or []
    return len(replicas) == len(c.nodes) - 1 and all(r.current and not r.lag for r in replicas)


def make_stream(c: NatsCluster, name: str) -> None:
    async def go(j: JetStreamContext) -> None:
        await j.add_stream(name=name, subjects=[f"{name.lower()}.>"], num_replicas=3)

    js(c.nats_urls(), go)
    wait_until(lambda: all_current(c, name, 0), 15, "3 current replicas")


def test_start_names_every_node_and_stats_them(nats_cluster: NatsCluster) -> None:
    c = nats_cluster
    assert c.meta_leader() in {n.name for n in c.nodes}
    assert len(c.mqtt_nodes()) == 3 and len(set(c.nats_urls())) == 3
    stats = c.node_stats()
    assert all(s["rss"] > 1_000_000 and s["cpu_s"] is not None for s in stats)
    assert "stream_replicas: 3" in c.nodes[0].conf_path.read_text()


def test_a_killed_leader_is_replaced_and_its_restart_catches_up(cluster: NatsCluster) -> None:
    make_stream(cluster, "RUNNER")
    assert publish(cluster, "runner.a", 10)
    dead = leader_index(cluster, "RUNNER")
    cluster.kill(dead)
    assert cluster.nodes[dead].pid is None
    wait_until(lambda: publish(cluster, "runner.b", 10), 20, "writes after the kill")
    assert leader_index(cluster, "RUNNER") != dead
    cluster.start_node(dead)
    wait_until(lambda: all_current(cluster, "RUNNER", 20), 20, "the restarted node caught up")


@pytest.fixture
def netns_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    with NatsCluster(tmp_path, 3, name="wwpart", netns=True) as c:
        yield c
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not [n for n in c.nodes if n.netns and n.netns in left], "namespaces left behind"


def test_a_partitioned_leader_loses_the_stream_and_catches_up_after_heal(
    netns_cluster: NatsCluster,
) -> None:
    c = netns_cluster
    make_stream(c, "PART")
    assert publish(c, "part.a", 5)
    cut = leader_index(c, "PART")
    c.partition(cut)
    others = [n for i, n in enumerate(c.nodes) if i != cut]

    def write_to_majority() -> bool:
        urls = [f"nats://{n.host}:{n.client_port}" for n in others]

        async def go(j: JetStreamContext) -> bool:
            await j.publish("part.b", b"x", timeout=2)
            return True

        try:
            return js(urls, go, timeout=5)
        except Exception:
            return False

    wait_until(write_to_majority, 30, "writes on the majority side")
    c.heal(cut)
    wait_until(lambda: all_current(c, "PART", 6), 30, "the healed node caught up")
