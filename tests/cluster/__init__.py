"""Tests against a real 3-node NATS 2.9 cluster (``bench.natscluster``): what the engine
does with what the terminal relies on. Findings are written up in ``docs/cluster.md``.

``js`` runs one JetStream coroutine against the cluster from synchronous test code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import nats
from nats.js import JetStreamContext

T = TypeVar("T")


def js(urls: list[str], fn: Callable[[JetStreamContext], Awaitable[T]], timeout: float = 20.0) -> T:
    """Connect (to any of ``urls``), run ``fn(jetstream)``, close."""

    async def main() -> T:
        nc = await nats.connect(servers=urls, connect_timeout=2, max_reconnect_attempts=2)
        try:
            return await asyncio.wait_for(fn(nc.jetstream(timeout=5)), timeout)
        finally:
            await nc.close()

    return asyncio.run(main())
