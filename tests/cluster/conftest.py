"""A module-scoped 3-node cluster; a missing nats-server fails the tests, never skips them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.natscluster import NATS_SERVER, NatsCluster


@pytest.fixture(scope="module")
def nats_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    if not Path(NATS_SERVER).exists():
        pytest.fail(f"{NATS_SERVER} missing: apt-get install nats-server (Debian's 2.9.10)")
    with NatsCluster(tmp_path_factory.mktemp("nats"), 3) as cluster:
        yield cluster


@pytest.fixture
def cluster(nats_cluster: NatsCluster) -> Iterator[NatsCluster]:
    """The module's cluster, made whole again after a test that killed or froze a node."""
    yield nats_cluster
    for i, node in enumerate(nats_cluster.nodes):
        nats_cluster.thaw(i)
        if node.pid is None:
            nats_cluster.start_node(i, wait=False)
    nats_cluster.wait_ready()
