"""Failing over between broker nodes (``BrokerConfig.nodes``): the pure node order, and
a terminal moving from a killed Mosquitto to a second one without losing an event."""

from __future__ import annotations

import doctest
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from agent.config import BrokerConfig, parse_node
from agent.localbroker import MosquittoBroker
from agent.outbox import Outbox
from agent.transport import Transport, nodes
from agent.transport.nodes import NodeRing
from tests.agent import Subscriber, draft
from tests.waiting import wait_until

SITE, WINDOW = "qingpu", "w01"


def test_doctest() -> None:
    assert doctest.testmod(nodes).failed == 0


def test_parse_node() -> None:
    assert parse_node("broker-1.city:8883") == ("broker-1.city", 8883)
    assert parse_node("[::1]:1883") == ("::1", 1883)
    for bad in ("broker", ":1883", "a:0", "a:65536", "a:x", "a b:1883", "a/b:1"):
        with pytest.raises(ValueError):
            parse_node(bad)


def test_config_nodes_validated_naming_the_field() -> None:
    cfg = BrokerConfig(nodes=["n1:1883", "n2:1884"])
    assert cfg.addresses() == [("n1", 1883), ("n2", 1884)]
    assert BrokerConfig(host="h", port=1).addresses() == [("h", 1)]
    with pytest.raises(ValidationError, match=r"broker\.nodes: 'n2' is not host:port"):
        BrokerConfig(nodes=["n1:1883", "n2"])


def test_start_node_is_stable_and_spreads_a_city() -> None:
    three = [("a", 1), ("b", 1), ("c", 1)]
    starts = Counter(NodeRing(three, f"ww-s{i // 30}-w{i % 30}").current for i in range(900))
    assert set(starts) == set(three)
    assert min(starts.values()) > 900 / 3 * 0.8, starts
    assert NodeRing(three, "ww-x-y").current == NodeRing(three, "ww-x-y").current


def test_advance_goes_round_and_one_node_stays() -> None:
    ring = NodeRing([("a", 1), ("b", 1)], "ww-qingpu-w01")
    first = ring.current
    assert ring.advance() != first and ring.advance() == first and ring.moves == 2
    one = NodeRing([("a", 1)], "ww-qingpu-w01")
    assert one.advance() == ("a", 1) and one.moves == 0
    with pytest.raises(ValueError):
        NodeRing([], "ww-qingpu-w01")


@pytest.fixture
def two_brokers(tmp_path: Path) -> Iterator[tuple[MosquittoBroker, MosquittoBroker]]:
    a, b = MosquittoBroker(tmp_path / "a"), MosquittoBroker(tmp_path / "b")
    a.start()
    try:
        b.start()
        yield a, b
    finally:
        a.stop()
        b.stop()


def test_killed_node_events_keep_flowing_to_the_next(
    two_brokers: tuple[MosquittoBroker, MosquittoBroker], tmp_path: Path
) -> None:
    a, b = two_brokers
    by_label = {f"{x.host}:{x.port}": x for x in (a, b)}
    cfg = BrokerConfig(nodes=list(by_label), keepalive_s=5)
    subs = [Subscriber(x.host, x.port) for x in (a, b)]

    def delivered() -> set[int]:
        return {e["seq"] for s in subs for e in s.unique()}

    try:
        with (
            Outbox(tmp_path / "outbox.db", SITE, WINDOW) as box,
            Transport(cfg, SITE, WINDOW, box, backoff_base_s=0.1, backoff_max_s=1.0) as link,
        ):
            wait_until(lambda: link.connected, 10, "connection")
            first = link.stats().node
            assert first in by_label
            for i in range(20):
                box.add(draft(i))
            # All at the first node's subscriber before it dies (what the node had
            # PUBACKed and not yet passed on would be lost with it: the `stored` mode).
            on_first = subs[[a, b].index(by_label[first])]
            wait_until(lambda: len(on_first.unique()) == 20, 10, "first twenty")
            by_label[first].kill()
            for i in range(20, 40):
                box.add(draft(i))
            wait_until(lambda: delivered() == set(range(1, 41)), 20, "all forty delivered")
            stats = link.stats()
            assert stats.node != first and stats.node in by_label
            assert stats.node_moves >= 1 and link.connected
            wait_until(lambda: box.depth == 0, 10, "outbox empty")
    finally:
        for s in subs:
            s.close()


def test_a_terminal_with_nodes_waits_longer_for_its_connack(tmp_path: Path) -> None:
    """A loaded cluster node takes seconds to load a session; giving up after 5 s starts
    its takeover again elsewhere (1,000 windows on 3 NATS nodes: docs/city-run.md)."""
    with Outbox(tmp_path / "o.db", "s1", "w01") as box:
        waits = [
            Transport(cfg, "s1", "w01", box)._connack_timeout_s
            for cfg in (
                BrokerConfig(),
                BrokerConfig(nodes=["n1:1883", "n2:1883"]),
                BrokerConfig(nodes=["n1:1883", "n2:1883"], connack_timeout_s=12),
                BrokerConfig(connack_timeout_s=8),
            )
        ]
    assert waits == [5.0, 30.0, 12.0, 8.0]
