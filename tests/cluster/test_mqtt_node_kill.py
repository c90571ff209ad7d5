"""A node SIGKILLed under an MQTT terminal: the will, retained state, new subscriptions.

Measured on 2.9.10 (docs/cluster.md): the killed node was the one to publish the will, so
nobody does; for some seconds after the kill, QoS 1 subscriptions on the survivors fail
(their JetStream consumer cannot be created) and a reconnecting client gets no retained
message until it subscribes again after the cluster settled.
"""

from __future__ import annotations

import time
import uuid

from agent.protocol import OFFLINE, ONLINE, Channel, topic
from bench.natscluster import NatsCluster
from tests.cluster.test_mqtt_semantics import SITE, Peer
from tests.waiting import stays_false, wait_until


def read_retained(node: tuple[str, int], t: str, timeout: float) -> tuple[bytes, float]:
    """Subscribe afresh until the retained message comes; (payload, seconds it took)."""
    t0 = time.monotonic()
    got: list[bytes] = []

    def attempt() -> bool:
        p = Peer()
        try:
            p.connect(node)
            if p.subscribe(t) == 1 and stays_false(lambda: bool(p.payloads()), 2.0) is False:
                got.append(p.payloads()[0])
        except AssertionError:
            pass  # no CONNACK or SUBACK yet: the cluster is still electing
        finally:
            p.client.disconnect()
            p.client.loop_stop()
        return bool(got)

    wait_until(attempt, timeout, f"the retained message on {t}")
    return got[0], time.monotonic() - t0


def test_sigkill_of_the_terminal_node_no_will_retained_survives(
    cluster: NatsCluster,
) -> None:
    nodes = cluster.mqtt_nodes()
    for node in nodes:  # the first MQTT client of each node creates the $MQTT_ streams
        warm = Peer()
        warm.connect(node)
        warm.disconnect()
    victim = cluster.stream_leader("$MQTT_rmsgs")  # the worst node to lose
    assert victim is not None, "the retained messages' stream has no leader"
    avail = topic(SITE, f"w{uuid.uuid4().hex[:6]}", Channel.AVAILABILITY)
    term = Peer()
    term.connect(nodes[victim], will=(avail, OFFLINE.encode()))
    term.publish(avail, ONLINE.encode(), retain=True)
    watcher = Peer()
    watcher.connect(nodes[(victim + 1) % 3])
    assert watcher.subscribe(avail) == 1
    wait_until(lambda: watcher.payloads() == [ONLINE.encode()], 10, "retained online")
    cluster.kill(victim)
    assert stays_false(lambda: OFFLINE.encode() in watcher.payloads(), 8.0)  # no will
    watcher.disconnect()
    term.client.loop_stop()
    payload, took = read_retained(nodes[(victim + 2) % 3], avail, 40.0)
    print(f"retained readable on a survivor {took:.1f} s after the kill")
    assert payload == ONLINE.encode()  # stale: the terminal is gone, nobody said so
