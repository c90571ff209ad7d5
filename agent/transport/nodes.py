"""Which broker node the next connection attempt goes to (``BrokerConfig.nodes``).

A city's broker is a cluster: every node takes MQTT and they share the sessions. A
terminal starts at a node chosen by a stable hash of its client id, so a city's
terminals spread over the nodes rather than all landing on the first, and moves to the
next node in the list whenever a connection attempt fails or an established connection
drops (after the usual backoff, which ``Reconnect`` decides). Pure: no clock, no socket.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

__all__ = ["NodeRing"]


class NodeRing:
    """The broker nodes in the order this terminal tries them.

    >>> ring = NodeRing([("a", 1883), ("b", 1883), ("c", 1883)], "ww-qingpu-w03")
    >>> ring.current, ring.advance(), ring.advance(), ring.advance()
    (('c', 1883), ('a', 1883), ('b', 1883), ('c', 1883))
    >>> NodeRing([("a", 1883), ("b", 1883), ("c", 1883)], "ww-qingpu-w01").current
    ('b', 1883)
    """

    def __init__(self, nodes: Sequence[tuple[str, int]], client_id: str) -> None:
        if not nodes:
            raise ValueError("at least one broker node")
        self.nodes = tuple(nodes)
        #: crc32, not hash(): the same start on every boot (hash() is salted per process).
        self._index = zlib.crc32(client_id.encode()) % len(self.nodes)
        self.moves = 0  #: how often the terminal moved to another node

    @property
    def current(self) -> tuple[str, int]:
        """The node the next attempt goes to (or the connection is on)."""
        return self.nodes[self._index]

    @property
    def label(self) -> str:
        host, port = self.current
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def advance(self) -> tuple[str, int]:
        """The attempt failed or the connection dropped: the next node (the same one
        when there is only one)."""
        if len(self.nodes) > 1:
            self._index = (self._index + 1) % len(self.nodes)
            self.moves += 1
        return self.current
