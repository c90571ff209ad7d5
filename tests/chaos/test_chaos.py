"""The chaos checks at CI size: five demo windows, a few hundred events, three faults.

Broker restart, agent SIGKILL and server SIGKILL, one after the other on the same stack
(``bench.chaos.stack``: Mosquitto, ``warmwindow server`` on PostgreSQL, the windows as
processes). After each, every sequence number the outboxes had handed out when the fault
was cleared must be in the store exactly once; at the end, every outbox's ``last_seq``
must match the store. The network cut and disk-full need root (``ip netns``, tmpfs) and
run in ``python -m bench.chaos``. A missing Mosquitto or PostgreSQL fails the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.chaos.__main__ import finish, warm_up
from bench.chaos.faults import run_fault
from bench.chaos.stack import ChaosStack


@pytest.fixture
def stack(tmp_path: Path, pg_url: str) -> Iterator[ChaosStack]:
    s = ChaosStack(tmp_path, pg_url, windows=5, pace=0.03)
    try:
        s.start()
        yield s
    finally:
        s.close()


def test_faults_lose_and_duplicate_nothing(stack: ChaosStack) -> None:
    warm_up(stack, timeout=30)
    for name, hold_s in (("broker_restart", 3.0), ("agent_sigkill", 2.0), ("server_sigkill", 5.0)):
        r = run_fault(stack, name, hold_s, recover_timeout_s=30)
        assert r.recover_s is not None, f"{name}: backlog not stored within 30 s ({r.lost} missing)"
        assert (r.lost, r.duplicates) == (0, 0), f"{name}: {r}"
    verdict, took = finish(stack, timeout=20)
    assert took is not None, f"not everything stored after the windows stopped: {verdict.line()}"
    assert verdict.ok, f"{verdict.line()}; {verdict.worst}"
    # "A few hundred events": enough that each fault hit events in flight.
    assert verdict.generated >= 200, verdict.line()
